//! The justice agency's answers: the referral's status and hearing outcomes, as coded
//! values only (a court's free text about a child stays at the court).
//!
//! ```json
//! {"message_id": "moj-5531", "referral_ref": "srv_…", "status": "hearing_held",
//!  "hearing": {"date": "2026-12-01", "outcome": "adjourned"}, "officer_ref": "CLK-88"}
//! ```

use himaya_connect::inbound::{id, opt_text, text};
use himaya_connect::{msg, InboundError, StatusChange};
use serde_json::Value;

/// Hearing outcomes the hub records (as the reason of the state change).
pub const OUTCOMES: [&str; 5] = [
    "protection_order_granted",
    "custody_decided",
    "adjourned",
    "dismissed",
    "referred_to_another_court",
];

/// The statuses the agency sends, each with a meaning in [`state_of`].
pub const STATUSES: [&str; 8] = [
    "received",
    "accepted",
    "rejected",
    "hearing_scheduled",
    "hearing_held",
    "order_issued",
    "closed",
    "withdrawn",
];

/// The agency's status → the service referral's state.
pub fn state_of(status: &str) -> Option<&'static str> {
    Some(match status {
        "received" => "received",
        "accepted" => "accepted",
        "rejected" => "rejected",
        "hearing_scheduled" | "hearing_held" => "in_progress",
        "order_issued" | "closed" => "completed",
        "withdrawn" => "cancelled",
        _ => return None,
    })
}

pub fn status_change(v: &Value) -> Result<StatusChange, InboundError> {
    if !v.is_object() {
        return Err(InboundError::not_object("$"));
    }
    let message_id = id(v, "/message_id", "message_id", 128)?;
    let srv = text(v, "/referral_ref", "referral_ref", 64)?;
    if !srv.starts_with("srv_") {
        return Err(InboundError::new(
            "referral_ref",
            msg!("inbound-justice-referral-ref-not-srv"),
        ));
    }
    let status = text(v, "/status", "status", 32)?;
    let state = state_of(status).ok_or_else(|| InboundError::not_one_of("status", &STATUSES))?;
    let outcome = opt_text(v, "/hearing/outcome", "hearing.outcome", 40)?;
    if let Some(o) = outcome {
        if !OUTCOMES.contains(&o) {
            return Err(InboundError::not_one_of("hearing.outcome", &OUTCOMES));
        }
    }
    let date = opt_text(v, "/hearing/date", "hearing.date", 10)?;
    if let Some(d) = date {
        if chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_err() {
            return Err(InboundError::not_date("hearing.date"));
        }
    }
    let reason_code = match v.get("reason_code") {
        None | Some(serde_json::Value::Null) => None,
        Some(_) => Some(id(v, "/reason_code", "reason_code", 64)?),
    };
    let reason = match (outcome, date, reason_code) {
        (Some(o), d, _) => Some(match d {
            Some(d) => format!("hearing {d}: {o}"),
            None => format!("hearing: {o}"),
        }),
        (None, _, Some(code)) => Some(code.to_owned()),
        (None, _, None) => None,
    };
    if matches!(state, "rejected" | "cancelled") && reason.is_none() {
        return Err(InboundError::new(
            "reason_code",
            msg!("inbound-justice-reason-code-required"),
        ));
    }
    Ok(StatusChange {
        message_id: message_id.to_owned(),
        service_referral_id: srv.to_owned(),
        state,
        reason,
        actor: opt_text(v, "/officer_ref", "officer_ref", 64)?
            .unwrap_or("justice")
            .to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture() -> Value {
        let path = format!(
            "{}/fixtures/status_hearing.json",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_golden_hearing_outcome_maps_onto_a_state() {
        assert_eq!(
            status_change(&fixture()).unwrap(),
            StatusChange {
                message_id: "moj-5531".into(),
                service_referral_id: "srv_01JD7Q6B2E".into(),
                state: "in_progress",
                reason: Some("hearing 2026-12-01: adjourned".into()),
                actor: "CLK-88".into(),
            }
        );
    }

    #[test]
    fn bad_payloads_name_the_field() {
        let with = |f: &dyn Fn(&mut Value)| {
            let mut v = fixture();
            f(&mut v);
            status_change(&v).unwrap_err().field
        };
        assert_eq!(with(&|v| v["status"] = json!("guilty")), "status");
        assert_eq!(
            with(&|v| v["hearing"]["outcome"] = json!("سجن")),
            "hearing.outcome"
        );
        assert_eq!(
            with(&|v| v["hearing"]["date"] = json!("tomorrow")),
            "hearing.date"
        );
        assert_eq!(
            with(&|v| v["referral_ref"] = json!("case_1")),
            "referral_ref"
        );
        assert_eq!(
            with(&|v| {
                v.as_object_mut().unwrap().remove("message_id");
            }),
            "message_id"
        );
        assert_eq!(
            with(&|v| {
                v["status"] = json!("rejected");
                v.as_object_mut().unwrap().remove("hearing");
            }),
            "reason_code"
        );
        assert!(status_change(&json!("x")).is_err());
    }

    #[test]
    fn every_status_has_a_state_and_every_refusal_speaks_arabic() {
        assert!(STATUSES.iter().all(|s| state_of(s).is_some()));
        let with = |f: &dyn Fn(&mut Value)| {
            let mut v = fixture();
            f(&mut v);
            status_change(&v).unwrap_err()
        };
        for e in [
            with(&|v| v["status"] = json!("guilty")),
            with(&|v| v["hearing"]["outcome"] = json!("سجن")),
            with(&|v| v["hearing"]["date"] = json!("tomorrow")),
            with(&|v| v["referral_ref"] = json!("case_1")),
            with(&|v| {
                v["status"] = json!("rejected");
                v.as_object_mut().unwrap().remove("hearing");
            }),
            status_change(&json!("x")).unwrap_err(),
        ] {
            himaya_connect::testing::assert_bilingual(&e);
            let ar = e.problem.render(himaya_connect::Lang::Arabic);
            assert!(!ar.contains("سجن"), "{e:?}: {ar}");
        }
    }
}
