//! The schools connector: a school's system posts its protection officers' referrals to
//! the hub (`inbound`), and receives, in return, only what the sharing policy lets a
//! school see (`mapping`): ids, status and place, never the child's record.

pub mod inbound;
pub mod mapping;

pub use mapping::SchoolWire;

use std::sync::Arc;

use himaya_connect::{Ask, Inbound, InboundError, Intake, Standard, Wire};
use himaya_record::AgencyType;
use himaya_settings::{Protocol, Settings};
use serde_json::Value;

/// The schools' standard: outcomes out, referrals in.
pub struct School;

impl Standard for School {
    fn protocol(&self) -> Protocol {
        Protocol::School
    }

    fn wire(&self, _: &Settings) -> Arc<dyn Wire> {
        Arc::new(SchoolWire)
    }

    fn inbound(&self) -> &'static [Inbound] {
        &[Inbound {
            name: "school_referral",
            path: "school/referrals",
            agency_types: &[AgencyType::School],
            own_message_id: true,
            read: read_referral,
        }]
    }
}

fn read_referral(_: &Settings, _agency: &str, v: &Value) -> Result<Ask, InboundError> {
    let s = inbound::school_referral(v)?;
    Ok(Ask::Referral {
        message_id: s.message_id,
        kind: Intake::School {
            officer_ref: s.officer_ref,
        },
        details: Box::new(s.referral),
    })
}
