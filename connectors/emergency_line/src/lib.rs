//! The social emergency line connector: escalations come in with the highest priority
//! (`inbound`: the intake makes every hotline escalation urgent, and urgent messages
//! jump every queue), the operator gets the hub's acknowledgement in the answer, and
//! follow-up requests read the case's state through the consent layer. Out (`mapping`):
//! what the line's system receives (withdrawal notices; referrals if it offers services).

pub mod inbound;
pub mod mapping;

pub use mapping::EmergencyLineWire;
