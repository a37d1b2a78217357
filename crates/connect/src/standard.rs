//! One agency standard, both directions: what a connector under `connectors/` gives the
//! hub. The registry of standards (`src/connectors.rs`) is the one place a new standard
//! is added; the delivery consumer and the webhooks take everything else from here.
//!
//! - **Out**: [`Standard::wire`], how a delivery is written in the standard for this
//!   deployment (its identifier systems, an instance's form, …).
//! - **In**: [`Standard::inbound`], the webhook routes agencies speaking the standard post
//!   to, each with the agency types allowed on it and its pure reader. The webhooks do
//!   the rest the same way for every standard: the agency's token, size and UTF-8
//!   checks, the inbox that answers a repeat as the first time, and the gRPC call the
//!   payload becomes, made as that agency.

use std::sync::Arc;

use himaya_record::{AgencyType, ReferralDetails};
use himaya_settings::{Protocol, Settings};
use serde_json::Value;

use crate::{InboundError, StatusChange, Wire};

/// One agency standard.
pub trait Standard: Send + Sync + 'static {
    /// Its name in configuration (`agencies.<id>.protocol`).
    fn protocol(&self) -> Protocol;

    /// How a delivery is written in this standard, with the deployment's choices for it.
    fn wire(&self, settings: &Settings) -> Arc<dyn Wire>;

    /// The webhook routes agencies speaking this standard post to (none for a standard
    /// that only receives).
    fn inbound(&self) -> &'static [Inbound] {
        &[]
    }
}

/// A webhook route: `/agencies/{agency}/<path>`.
#[derive(Clone, Copy)]
pub struct Inbound {
    /// Stored with each message taken (`inbound_messages.route`).
    pub name: &'static str,
    /// Under `/agencies/{agency}/`.
    pub path: &'static str,
    /// The kinds of agency that may post here (with the route's standard as protocol).
    pub agency_types: &'static [AgencyType],
    /// Whether the message id is the agency's own, one per message. Derived ids (a FHIR
    /// Task's version, a Primero record's state) legitimately come back with other field
    /// values, so only the agency's own ids are checked against the body.
    pub own_message_id: bool,
    /// Reads a payload from `agency` (its id) into what it asks of the hub. Pure: no I/O.
    pub read: fn(&Settings, &str, &Value) -> Result<Ask, InboundError>,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("name", &self.name)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What a payload asks of the hub, once read.
#[derive(Debug)]
pub enum Ask {
    /// A service referral moved on at the agency.
    Status(StatusChange),
    /// A child referred to the hub.
    Referral {
        /// The agency's own id for this message: retries carry the same one.
        message_id: String,
        kind: Intake,
        details: Box<ReferralDetails>,
    },
}

impl Ask {
    pub fn message_id(&self) -> &str {
        match self {
            Ask::Status(c) => &c.message_id,
            Ask::Referral { message_id, .. } => message_id,
        }
    }
}

/// Which intake a referral enters by.
#[derive(Debug)]
pub enum Intake {
    /// A school protection officer's referral.
    School { officer_ref: String },
    /// An emergency line escalation.
    Hotline {
        call_ref: String,
        operator_ref: String,
    },
    /// An agency's own case; `record`: its id in the agency's system.
    Agency { record: String },
}

impl Intake {
    /// The agency's own id for what it sent, kept so the hub's feedback can name it.
    pub fn record(&self) -> Option<&str> {
        match self {
            Intake::Agency { record } => Some(record),
            _ => None,
        }
    }
}
