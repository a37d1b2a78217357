//! The social emergency line connector: escalations come in with the highest priority
//! (`inbound`: the intake makes every hotline escalation urgent, and urgent messages
//! jump every queue), the operator gets the hub's acknowledgement in the answer, and
//! follow-up requests read the case's state through the consent layer. Out (`mapping`):
//! what the line's system receives (withdrawal notices; referrals if it offers services).

pub mod inbound;
pub mod mapping;

pub use mapping::EmergencyLineWire;

use std::sync::Arc;

use himaya_connect::{Ask, Inbound, InboundError, Intake, Standard, Wire};
use himaya_record::AgencyType;
use himaya_settings::{Protocol, Settings};
use serde_json::Value;

/// The social emergency line's standard: acknowledgements out, escalations in.
pub struct EmergencyLine;

impl Standard for EmergencyLine {
    fn protocol(&self) -> Protocol {
        Protocol::EmergencyLine
    }

    fn wire(&self, _: &Settings) -> Arc<dyn Wire> {
        Arc::new(EmergencyLineWire)
    }

    fn inbound(&self) -> &'static [Inbound] {
        &[ESCALATION]
    }
}

/// An escalation the line posts (the line's follow-ups are read with the same rights).
pub const ESCALATION: Inbound = Inbound {
    name: "hotline_escalation",
    path: "hotline/escalations",
    agency_types: &[AgencyType::EmergencyLine],
    own_message_id: true,
    read: read_escalation,
};

fn read_escalation(_: &Settings, _agency: &str, v: &Value) -> Result<Ask, InboundError> {
    let e = inbound::escalation(v)?;
    Ok(Ask::Referral {
        message_id: e.message_id,
        kind: Intake::Hotline {
            call_ref: e.call_ref,
            operator_ref: e.operator_ref,
        },
        details: Box::new(e.referral),
    })
}
