//! The health agency's wire shape (pure, no I/O). Today a JSON envelope around the
//! redacted case; the FHIR R4 mapping (Patient + ServiceRequest) replaces it with the
//! connectors issue.

use himaya_events::DeliveryRequested;
use serde::Serialize;

/// What the agency's endpoint receives.
#[derive(Debug, Serialize, PartialEq)]
pub struct ReferralMessage {
    /// Stable across retries: the agency drops duplicates on it.
    pub idempotency_key: String,
    pub referral_id: String,
    pub case_id: String,
    pub priority: String,
    pub purpose: String,
    /// The data categories present in `case`.
    pub categories: Vec<String>,
    /// The case as redacted for this agency: only permitted fields are present.
    pub case: serde_json::Value,
    /// For a service referral between agencies: the service asked for. The agency
    /// answers it through `himaya.v1.ServiceReferrals` with `referral_id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_type: Option<String>,
    /// Absent for a referral; `withdrawal_notice` when a consent behind an earlier
    /// delivery was withdrawn (`case` then holds the notice: which case, which
    /// categories, from when).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the delivery's document is not JSON")]
pub struct MappingError;

impl TryFrom<&DeliveryRequested> for ReferralMessage {
    type Error = MappingError;

    fn try_from(d: &DeliveryRequested) -> Result<Self, Self::Error> {
        Ok(ReferralMessage {
            idempotency_key: d.idempotency_key.clone(),
            referral_id: d.referral_id.clone(),
            case_id: d.case_id.clone(),
            priority: d.priority.clone(),
            purpose: d.purpose.clone(),
            categories: d.categories.clone(),
            case: serde_json::from_str(&d.document_json).map_err(|_| MappingError)?,
            service_type: d.service_type.clone(),
            kind: (d.kind != "referral").then(|| d.kind.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(doc: &str) -> DeliveryRequested {
        DeliveryRequested {
            message_id: "msg_1".into(),
            occurred_at: "2026-11-22T09:30:00+00:00".into(),
            agency_id: "health-cairo".into(),
            case_id: "case_1".into(),
            referral_id: "ref_1".into(),
            purpose: "service_provision".into(),
            priority: "urgent".into(),
            idempotency_key: "ref_1:health-cairo".into(),
            categories: vec!["identity".into(), "health".into()],
            document_json: doc.into(),
            service_type: None,
            kind: "referral".into(),
        }
    }

    #[test]
    fn golden_message() {
        let m = ReferralMessage::try_from(&delivery(
            r#"{"child":{"name":{"as_given":"مريم"},"disability":"ضعف سمع"}}"#,
        ))
        .unwrap();
        let golden = serde_json::json!({
            "idempotency_key": "ref_1:health-cairo",
            "referral_id": "ref_1",
            "case_id": "case_1",
            "priority": "urgent",
            "purpose": "service_provision",
            "categories": ["identity", "health"],
            "case": {"child": {"name": {"as_given": "مريم"}, "disability": "ضعف سمع"}}
        });
        assert_eq!(serde_json::to_value(&m).unwrap(), golden);
    }

    #[test]
    fn a_corrupt_document_is_refused() {
        assert_eq!(
            ReferralMessage::try_from(&delivery("{not json")),
            Err(MappingError)
        );
    }
}
