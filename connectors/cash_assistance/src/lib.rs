//! The cash-assistance connector: a search of the programme's registry for a child's
//! household, in the style of the SPDCI social-registry API (`mapping`). The bulk
//! exchange of household files is a job of its own (`jobs/household_match`).

pub mod mapping;
pub use mapping::Spdci;

/// The SPDCI social-registry search: out only (the registry answers in the same call).
pub struct SpdciRegistry;

impl himaya_connect::Standard for SpdciRegistry {
    fn protocol(&self) -> himaya_settings::Protocol {
        himaya_settings::Protocol::SpdciRegistry
    }

    fn wire(
        &self,
        settings: &himaya_settings::Settings,
    ) -> std::sync::Arc<dyn himaya_connect::Wire> {
        std::sync::Arc::new(Spdci::new(settings.standards.spdci.clone()))
    }
}
