//! A hotline escalation: `{"message_id": "…", "call_ref": "…", "operator_ref": "…",
//! "referral": {…}}`, the referral in the hub's normalized shape. The message id becomes
//! the intake's `submission_id`: an operator's system that posts twice escalates once.

use himaya_connect::inbound::{id, text};
use himaya_connect::submission;
use himaya_connect::InboundError;
use himaya_record::ReferralDetails;

#[derive(Debug, Clone, PartialEq)]
pub struct Escalation {
    pub message_id: String,
    /// The line's call reference.
    pub call_ref: String,
    /// The operator's staff reference (never a name).
    pub operator_ref: String,
    pub referral: ReferralDetails,
}

pub fn escalation(v: &serde_json::Value) -> Result<Escalation, InboundError> {
    if !v.is_object() {
        return Err(InboundError::not_object("$"));
    }
    Ok(Escalation {
        message_id: id(v, "/message_id", "message_id", 128)?.to_owned(),
        call_ref: text(v, "/call_ref", "call_ref", 64)?.to_owned(),
        operator_ref: text(v, "/operator_ref", "operator_ref", 64)?.to_owned(),
        referral: submission::referral(v)?,
    })
}

/// The acknowledgement the operator reads: the hub's ids, the priority it gave, and the
/// response deadline the risk level sets, in Arabic and English.
pub fn acknowledgement(case_id: &str, referral_id: &str, replayed: bool) -> serde_json::Value {
    serde_json::json!({
        "case_ref": case_id,
        "referral_ref": referral_id,
        "priority": "urgent",
        "replayed": replayed,
        "message_ar": "تم استلام البلاغ العاجل وإحالته إلى إدارة الحالات بأولوية قصوى.",
        "message_en": "The urgent escalation was received and sent to case management ahead of every queue.",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture() -> serde_json::Value {
        let path = format!("{}/fixtures/escalation_in.json", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_golden_escalation_reads_into_the_normalized_record() {
        let e = escalation(&fixture()).unwrap();
        assert_eq!(
            (
                e.message_id.as_str(),
                e.call_ref.as_str(),
                e.operator_ref.as_str()
            ),
            ("16000-20261124-0042", "CALL-88213", "OP-5")
        );
        assert_eq!(e.referral.child.name.as_given, "يوسف محمود");
        assert_eq!(e.referral.child.estimated_age_years, Some(9));
        assert_eq!(e.referral.risk_level, himaya_record::RiskLevel::High);
    }

    #[test]
    fn bad_escalations_name_the_field() {
        let mut v = fixture();
        v.as_object_mut().unwrap().remove("call_ref");
        assert_eq!(escalation(&v).unwrap_err().field, "call_ref");
        let mut v = fixture();
        v["referral"]["concerns"] = json!("يوسف");
        let e = escalation(&v).unwrap_err();
        assert!(!e.to_string().contains("يوسف"), "{e}");
        assert_eq!(escalation(&json!(null)).unwrap_err().field, "$");
    }

    #[test]
    fn refusals_say_what_is_wrong_in_arabic_too() {
        let mut v = fixture();
        v["referral"]["concerns"] = json!("يوسف");
        let e = escalation(&v).unwrap_err();
        himaya_connect::testing::assert_bilingual(&e);
        let ar = e.problem.render(himaya_connect::Lang::Arabic);
        assert!(!ar.contains("يوسف"), "{e:?}: {ar}");
        himaya_connect::testing::assert_bilingual(&escalation(&json!(null)).unwrap_err());
    }
}
