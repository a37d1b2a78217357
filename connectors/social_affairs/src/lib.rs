//! The social affairs connector, in the shape of Primero's API v2, so a directorate that
//! already runs Primero connects by configuration:
//! - out (`mapping`): a delivery is `POST {endpoint}/api/v2/cases` with `{"data": {…}}` in
//!   the fields of Primero's case forms and the values of its lookups (`profile`: the
//!   stock forms, or the instance's own lookups and custom fields); a withdrawal notice
//!   is a flag on the case (`POST {endpoint}/api/v2/cases/flags`);
//! - in (`inbound`): a case Primero pushes becomes an agency referral into the hub, and a
//!   referral or transfer the directorate accepted or rejected (with its reason) becomes
//!   the service referral's new state.

pub mod inbound;
pub mod mapping;
pub mod profile;
pub mod pull;

pub use mapping::Primero;
pub use profile::Profile;

use std::sync::Arc;

use himaya_connect::{Ask, Inbound, InboundError, Intake, Standard, Wire};
use himaya_record::AgencyType;
use himaya_settings::{Protocol, Settings};
use serde_json::Value;

/// Primero API v2, both directions (and the poller of an instance that cannot push,
/// in the webhooks).
pub struct PrimeroV2;

impl Standard for PrimeroV2 {
    fn protocol(&self) -> Protocol {
        Protocol::PrimeroV2
    }

    fn wire(&self, settings: &Settings) -> Arc<dyn Wire> {
        Arc::new(Primero::new(&settings.standards))
    }

    fn inbound(&self) -> &'static [Inbound] {
        &[CASE, REFERRAL]
    }
}

/// A case a Primero-run directorate pushes (or the poller pulls).
pub const CASE: Inbound = Inbound {
    name: "primero_case",
    path: "primero/api/v2/cases",
    agency_types: &[AgencyType::SocialAffairs],
    own_message_id: false,
    read: read_case,
};

/// A Primero referral or transfer answered.
pub const REFERRAL: Inbound = Inbound {
    name: "primero_referral",
    path: "primero/api/v2/referrals",
    agency_types: &[AgencyType::SocialAffairs],
    own_message_id: false,
    read: read_referral,
};

/// A case a Primero-run directorate pushes: an agency referral into the hub, read with
/// the agency's own Primero form (its lookup values back to the hub's words).
fn read_case(settings: &Settings, agency: &str, v: &Value) -> Result<Ask, InboundError> {
    let form = settings
        .standards
        .primero
        .get(agency)
        .map(Profile::new)
        .unwrap_or_default();
    let c = inbound::case_referral_with(v, &form)?;
    Ok(Ask::Referral {
        message_id: c.message_id,
        kind: Intake::Agency {
            record: c.record_id,
        },
        details: Box::new(c.details),
    })
}

/// A Primero referral or transfer accepted, rejected or done.
fn read_referral(_: &Settings, _agency: &str, v: &Value) -> Result<Ask, InboundError> {
    Ok(Ask::Status(inbound::referral_status(v)?))
}
