//! The justice connector (courts, legal aid, police/interior): need-to-know at its
//! strictest. Whatever the sharing policy permits, a legal-protection referral carries only
//! what a court or legal-aid office needs to open a file: who the child is (when the
//! identity category is permitted), sex, age, governorate, the protection concerns and
//! the service asked for. Never an address, a phone, a caregiver, health data or a case
//! note: the agency asks the case manager for more, under its own legal basis.

pub mod mapping;
pub mod status;

pub use mapping::Justice;

use std::sync::Arc;

use himaya_connect::{Ask, Inbound, InboundError, Standard, Wire};
use himaya_record::AgencyType;
use himaya_settings::{Protocol, Settings};
use serde_json::Value;

/// The justice agencies' minimal standard, both directions.
pub struct JusticeMinimal;

impl Standard for JusticeMinimal {
    fn protocol(&self) -> Protocol {
        Protocol::JusticeMinimal
    }

    fn wire(&self, _: &Settings) -> Arc<dyn Wire> {
        Arc::new(Justice)
    }

    fn inbound(&self) -> &'static [Inbound] {
        &[Inbound {
            name: "justice_status",
            path: "justice/status",
            agency_types: &[AgencyType::Justice],
            own_message_id: true,
            read: read_status,
        }]
    }
}

fn read_status(_: &Settings, _agency: &str, v: &Value) -> Result<Ask, InboundError> {
    Ok(Ask::Status(status::status_change(v)?))
}
