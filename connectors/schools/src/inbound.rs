//! A school system's referral: `{"message_id": "…", "officer_ref": "…", "referral": {…}}`,
//! the referral in the hub's normalized shape. The message id becomes the intake's
//! `submission_id`, so a school that posts twice refers the child once.

use himaya_connect::inbound::{id, text};
use himaya_connect::submission;
use himaya_connect::InboundError;
use himaya_record::ReferralDetails;

#[derive(Debug, Clone, PartialEq)]
pub struct SchoolSubmission {
    pub message_id: String,
    /// The protection officer's staff reference (not their name).
    pub officer_ref: String,
    pub referral: ReferralDetails,
}

pub fn school_referral(v: &serde_json::Value) -> Result<SchoolSubmission, InboundError> {
    if !v.is_object() {
        return Err(InboundError::not_object("$"));
    }
    Ok(SchoolSubmission {
        message_id: id(v, "/message_id", "message_id", 128)?.to_owned(),
        officer_ref: text(v, "/officer_ref", "officer_ref", 64)?.to_owned(),
        referral: submission::referral(v)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture() -> serde_json::Value {
        let path = format!("{}/fixtures/referral_in.json", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_golden_referral_reads_into_the_normalized_record() {
        let s = school_referral(&fixture()).unwrap();
        assert_eq!(s.message_id, "nour-2026-0412");
        assert_eq!(s.officer_ref, "PO-17");
        // The same referral as examples/school-referral.json, in the normalized record.
        assert_eq!(s.referral.child.name.as_given, "مريم أحمد عبد الله");
        assert_eq!(s.referral.risk_level, himaya_record::RiskLevel::High);
        assert_eq!(s.referral.concerns[0].labour_criteria.len(), 2);
        assert_eq!(s.referral.concerns[1].labour_criteria, vec![]);
    }

    #[test]
    fn bad_referrals_say_where_without_echoing_values() {
        let mut v = fixture();
        v["referral"]["child"]["sex"] = json!("مريم");
        let e = school_referral(&v).unwrap_err();
        assert!(e.field.starts_with("referral (line"), "{e}");
        assert!(!e.to_string().contains("مريم"), "{e}");
        let mut v = fixture();
        v["referral"]["child"]["estimated_age_years"] = json!("مريم");
        assert!(!school_referral(&v)
            .unwrap_err()
            .to_string()
            .contains("مريم"));
        let mut v = fixture();
        v["referral"].as_object_mut().unwrap().remove("risk_level");
        assert_eq!(
            school_referral(&v).unwrap_err().field,
            "referral (risk_level)"
        );
        assert_eq!(
            school_referral(&json!({"officer_ref": "x"}))
                .unwrap_err()
                .field,
            "message_id"
        );
        assert_eq!(school_referral(&json!([])).unwrap_err().field, "$");
    }

    #[test]
    fn refusals_say_what_is_wrong_in_arabic_too() {
        let mut v = fixture();
        v["referral"]["child"]["sex"] = json!(7);
        let wrong = school_referral(&v).unwrap_err();
        let mut v = fixture();
        v["referral"].as_object_mut().unwrap().remove("risk_level");
        let missing = school_referral(&v).unwrap_err();
        for e in [wrong, missing, school_referral(&json!([])).unwrap_err()] {
            himaya_connect::testing::assert_bilingual(&e);
        }
    }
}
