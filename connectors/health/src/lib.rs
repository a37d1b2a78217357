//! The health connector: HL7 FHIR R4 (JSON).
//! - Out (`mapping`): a delivery becomes a transaction Bundle of a Patient carrying only
//!   the fields the consent layer permitted, an optional Condition (disability, when the
//!   health category is permitted) and a ServiceRequest whose priority follows the risk.
//!   A withdrawal notice becomes a Communication.
//! - In (`task`): the agency's answers, as FHIR Task status changes, onto the service
//!   referral's states; `capability`: what that endpoint does, as the CapabilityStatement
//!   it answers at `/metadata`.
//!
//! Identifier systems are the deployment's (`[standards.fhir]`, `mapping::Systems`).

pub mod capability;
pub mod mapping;
pub mod task;

pub use mapping::Fhir;

use std::sync::Arc;

use himaya_connect::{Ask, Inbound, InboundError, Standard, Wire};
use himaya_record::AgencyType;
use himaya_settings::{Protocol, Settings};
use serde_json::Value;

/// HL7 FHIR R4, both directions.
pub struct FhirR4;

impl Standard for FhirR4 {
    fn protocol(&self) -> Protocol {
        Protocol::FhirR4
    }

    fn wire(&self, settings: &Settings) -> Arc<dyn Wire> {
        Arc::new(Fhir::new(&settings.standards.fhir))
    }

    fn inbound(&self) -> &'static [Inbound] {
        &[TASK]
    }
}

/// A health agency's Task status change (`POST fhir/Task`, and `PUT fhir/Task/<id>`).
pub const TASK: Inbound = Inbound {
    name: "fhir_task",
    path: "fhir/Task",
    agency_types: &[AgencyType::Health],
    own_message_id: false,
    read: read_task,
};

fn read_task(settings: &Settings, _agency: &str, v: &Value) -> Result<Ask, InboundError> {
    let systems = mapping::Systems::new(&settings.standards.fhir);
    Ok(Ask::Status(task::status_change_with(v, &systems)?))
}
