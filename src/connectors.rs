//! The connectors component: one delivery consumer per connected agency, each speaking
//! its agency's standard (`agencies.<id>.protocol`), and the webhooks agencies post to.

use std::collections::HashMap;
use std::sync::Arc;

use himaya_connect::Wire;
use himaya_settings::{Protocol, Settings};

/// Every protocol this build speaks, with its mapping from `connectors/` and the
/// deployment's choices for it (`[standards]`).
pub fn wires(settings: &Settings) -> HashMap<Protocol, Arc<dyn Wire>> {
    let standards = &settings.standards;
    let all: Vec<(Protocol, Arc<dyn Wire>)> = vec![
        (
            Protocol::HimayaJson,
            Arc::new(himaya_connect::envelope::Envelope),
        ),
        (
            Protocol::FhirR4,
            Arc::new(himaya_connector_health::Fhir::new(&standards.fhir)),
        ),
        (
            Protocol::PrimeroV2,
            Arc::new(himaya_connector_social_affairs::Primero::new(standards)),
        ),
        (
            Protocol::JusticeMinimal,
            Arc::new(himaya_connector_justice::Justice),
        ),
        (
            Protocol::SpdciRegistry,
            Arc::new(himaya_connector_cash_assistance::Spdci::new(
                standards.spdci.clone(),
            )),
        ),
        (
            Protocol::School,
            Arc::new(himaya_connector_schools::SchoolWire),
        ),
        (
            Protocol::EmergencyLine,
            Arc::new(himaya_connector_emergency_line::EmergencyLineWire),
        ),
    ];
    all.into_iter().collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_protocol_has_a_wire() {
        use himaya_settings::Protocol::*;
        let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let settings = himaya_settings::Settings::load(&config, None).unwrap();
        let wires = super::wires(&settings);
        for p in [
            HimayaJson,
            FhirR4,
            PrimeroV2,
            JusticeMinimal,
            SpdciRegistry,
            School,
            EmergencyLine,
        ] {
            assert_eq!(wires.get(&p).map(|w| w.protocol()), Some(p.as_str()));
        }
    }
}
