//! The cash-assistance connector: (a) a search of the programme's registry for a child's
//! household, in the style of the SPDCI social-registry API (`mapping`); (b) bulk
//! exchange of household lists as Avro object container files (`bulk`).

pub mod bulk;
pub mod enrolment;
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
