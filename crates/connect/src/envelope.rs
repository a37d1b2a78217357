//! The hub's own wire (`protocol = "himaya_json"`): a JSON envelope around the redacted
//! case, POSTed to the agency's `endpoint` as given. For agencies whose system has no
//! standard of its own, and the shape the demo agency speaks.

use himaya_events::DeliveryRequested;
use serde_json::json;

use crate::shared::{MappingError, SharedCase};
use crate::wire::{Outbound, Wire};

pub struct Envelope;

impl Wire for Envelope {
    fn outbound(&self, d: &DeliveryRequested, _: &SharedCase) -> Result<Outbound, MappingError> {
        // The document goes as the consent layer redacted it, field for field.
        let case: serde_json::Value = serde_json::from_str(&d.document_json)
            .map_err(|_| MappingError::Document("not JSON".into()))?;
        let mut body = json!({
            "idempotency_key": d.idempotency_key,
            "referral_id": d.referral_id,
            "case_id": d.case_id,
            "priority": d.priority,
            "purpose": d.purpose,
            "categories": d.categories,
            "case": case,
        });
        if let Some(s) = &d.service_type {
            body["service_type"] = json!(s);
        }
        // A health service referral says who pays: full, partial or none (the family).
        if let Some(c) = d.medical_coverage {
            body["medical_coverage"] = json!(c.as_str());
        }
        if d.kind != "referral" {
            body["kind"] = json!(d.kind);
        }
        Ok(Outbound::json("", body))
    }
}

/// The hub's own JSON envelope, for an agency without a standard of its own.
pub struct HimayaJson;

impl crate::Standard for HimayaJson {
    fn protocol(&self) -> himaya_settings::Protocol {
        himaya_settings::Protocol::HimayaJson
    }

    fn wire(&self, _: &himaya_settings::Settings) -> std::sync::Arc<dyn Wire> {
        std::sync::Arc::new(Envelope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::delivery;

    #[test]
    fn golden_message() {
        let d = delivery(
            r#"{"child":{"name":{"as_given":"مريم"},"disability":"ضعف سمع"}}"#,
            None,
        );
        let out = Envelope.outbound(&d, &SharedCase::default()).unwrap();
        let golden = json!({
            "idempotency_key": "ref_1:health-cairo",
            "referral_id": "ref_1",
            "case_id": "case_1",
            "priority": "urgent",
            "purpose": "service_provision",
            "categories": ["identity", "health"],
            "case": {"child": {"name": {"as_given": "مريم"}, "disability": "ضعف سمع"}}
        });
        assert_eq!(out.body, golden);
        assert_eq!(out.path, "");
    }

    #[test]
    fn a_health_service_referral_says_who_pays() {
        let mut d = delivery("{}", Some("health"));
        d.medical_coverage = Some(himaya_record::service_referral::MedicalCoverage::Partial);
        let out = Envelope.outbound(&d, &SharedCase::default()).unwrap();
        assert_eq!(out.body["medical_coverage"], "partial");
        assert_eq!(out.body["service_type"], "health");
    }

    #[test]
    fn a_corrupt_document_is_refused() {
        assert!(Envelope
            .outbound(&delivery("{not json", None), &SharedCase::default())
            .is_err());
    }
}
