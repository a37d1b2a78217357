//! What a connector's mapping provides to the shared delivery consumer: how a delivery
//! looks on the agency's wire, and how to read the agency's answer. Mappings are pure:
//! no I/O, so they are tested against golden fixtures.

use himaya_events::DeliveryRequested;

use crate::shared::{MappingError, SharedCase};

/// One outbound request, ready for the executor.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    /// Appended to the agency's configured `endpoint` ("" for the endpoint itself).
    pub path: String,
    pub content_type: &'static str,
    pub body: serde_json::Value,
    /// The id the agency's record will have, when the hub chooses it (a client-generated
    /// id, as Primero takes): the delivery's reference when the answer names none (a 204,
    /// or the 409 of an agency that already has it, which counts as delivered).
    pub reference: Option<String>,
}

impl Outbound {
    pub fn json(path: impl Into<String>, body: serde_json::Value) -> Outbound {
        Outbound::with_type(path, "application/json", body)
    }

    pub fn with_type(
        path: impl Into<String>,
        content_type: &'static str,
        body: serde_json::Value,
    ) -> Outbound {
        Outbound {
            path: path.into(),
            content_type,
            body,
            reference: None,
        }
    }
}

/// The kinds of delivery the router produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryKind {
    /// A child referred to the agency (`referral_id` a `ref_` id).
    Referral,
    /// A service asked of the agency by a case manager (`referral_id` a `srv_` id).
    ServiceReferral,
    /// Consent behind an earlier delivery was withdrawn (`referral_id` a `wdn_` id).
    WithdrawalNotice,
    /// What became of a case the agency referred (`referral_id` an `fbk_` id).
    Outcome,
}

impl DeliveryKind {
    pub fn of(d: &DeliveryRequested) -> Result<DeliveryKind, MappingError> {
        match (d.kind.as_str(), d.service_type.is_some()) {
            ("referral", false) => Ok(DeliveryKind::Referral),
            ("referral", true) => Ok(DeliveryKind::ServiceReferral),
            ("withdrawal_notice", _) => Ok(DeliveryKind::WithdrawalNotice),
            ("outcome", _) => Ok(DeliveryKind::Outcome),
            (other, _) => Err(MappingError::Unsupported(other.chars().take(40).collect())),
        }
    }
}

/// An agency's standard, as the delivery consumer sees it.
pub trait Wire: Send + Sync + 'static {
    /// The request that carries `d` (whose redacted case is `case`) to the agency.
    fn outbound(&self, d: &DeliveryRequested, case: &SharedCase) -> Result<Outbound, MappingError>;

    /// The same, for a notice or feedback about a case, knowing `records`: the agency's
    /// own ids of that case (the records the hub made there, or the one it sent the hub).
    /// A standard that addresses records by their id (Primero's flags) names them.
    fn outbound_about(
        &self,
        d: &DeliveryRequested,
        case: &SharedCase,
        _records: &[String],
    ) -> Result<Outbound, MappingError> {
        self.outbound(d, case)
    }

    /// The agency's own reference for what it received, from its 2xx answer.
    fn reference(&self, answer: &serde_json::Value) -> Option<String> {
        ["reference", "id"]
            .iter()
            .find_map(|k| answer.get(*k).and_then(|v| v.as_str()))
            .map(clip)
    }

    /// A refusal some standards put inside a 2xx answer (a search answered "rejected"):
    /// the reason, when this 2xx answer is in fact the agency saying no.
    fn refused_in_body(&self, _answer: &serde_json::Value) -> Option<String> {
        None
    }

    /// Why the agency said no, from its 4xx answer, in its own words.
    fn rejection_reason(&self, answer: &serde_json::Value) -> Option<String> {
        ["reason", "error", "message"]
            .iter()
            .find_map(|k| answer.get(*k).and_then(|v| v.as_str()))
            .map(clip)
    }
}

/// Where a standard that takes notices and feedback as the hub's plain JSON receives each
/// kind of delivery (paths after the agency's endpoint).
pub struct PlainPaths {
    pub referral: &'static str,
    pub notice: &'static str,
    pub outcome: &'static str,
}

/// A delivery for such a standard: a notice as `SharedNotice::to_json`, feedback as
/// `SharedOutcome::to_json`, and a referral as the standard's own mapping (`referral`).
pub fn plain_outbound(
    d: &DeliveryRequested,
    paths: PlainPaths,
    referral: impl FnOnce() -> Result<serde_json::Value, MappingError>,
) -> Result<Outbound, MappingError> {
    use crate::shared::{SharedNotice, SharedOutcome};
    Ok(match DeliveryKind::of(d)? {
        DeliveryKind::Outcome => Outbound::json(
            paths.outcome,
            SharedOutcome::parse(&d.document_json)?.to_json(&d.referral_id),
        ),
        DeliveryKind::WithdrawalNotice => Outbound::json(
            paths.notice,
            SharedNotice::parse(&d.document_json)?.to_json(),
        ),
        DeliveryKind::Referral | DeliveryKind::ServiceReferral => {
            Outbound::json(paths.referral, referral()?)
        }
    })
}

/// Agencies' strings are kept, cut to a sane length.
pub fn clip(s: &str) -> String {
    s.chars().take(500).collect()
}
