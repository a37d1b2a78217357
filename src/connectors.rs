//! The connectors component: one delivery consumer per connected agency, each speaking
//! its agency's standard (`agencies.<id>.protocol`), and the webhooks agencies post to.

use std::collections::HashMap;
use std::sync::Arc;

use himaya_connect::Wire;
use himaya_settings::Protocol;

/// Every protocol this build speaks, with its mapping from `connectors/`.
pub fn wires() -> HashMap<Protocol, Arc<dyn Wire>> {
    let all: [(Protocol, Arc<dyn Wire>); 4] = [
        (
            Protocol::HimayaJson,
            Arc::new(himaya_connect::envelope::Envelope),
        ),
        (Protocol::FhirR4, Arc::new(himaya_connector_health::Fhir)),
        (
            Protocol::PrimeroV2,
            Arc::new(himaya_connector_social_affairs::Primero),
        ),
        (
            Protocol::JusticeMinimal,
            Arc::new(himaya_connector_justice::Justice),
        ),
    ];
    all.into_iter().collect()
}
