//! What the emergency line's system receives (pure, no I/O). The line's policy is for
//! emergency response; its deliveries are withdrawal notices (and referrals, if it ever
//! offers a service), each with the ids the operator's screen needs.

use himaya_connect::shared::SharedCase;
use himaya_connect::{plain_outbound, MappingError, Outbound, PlainPaths, Wire};
use himaya_events::DeliveryRequested;
use serde_json::json;

pub struct EmergencyLineWire;

impl Wire for EmergencyLineWire {
    fn outbound(&self, d: &DeliveryRequested, case: &SharedCase) -> Result<Outbound, MappingError> {
        let paths = PlainPaths {
            referral: "/himaya/cases",
            notice: "/himaya/notices",
            // What the operator waits for: the assignment, and every later step.
            outcome: "/himaya/acknowledgements",
        };
        plain_outbound(d, paths, || {
            Ok(json!({
                "referral_ref": d.referral_id,
                "case_ref": d.case_id,
                "priority": d.priority,
                "status": case.status,
                "risk_level": case.risk_level.map(|r| r.as_str()),
                "governorate": case.child.governorate,
                "sent_at": d.occurred_at,
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use himaya_connect::testing::{assert_golden, delivery};

    #[test]
    fn a_notice_reaches_the_line() {
        let mut d = delivery(
            r#"{"notice_id":"wdn_1","case_id":"case_1","consent_id":"cns_1","categories":["contact"],"withdrawn_at":"2026-11-23T10:00:00Z","message_en":"stop","message_ar":"أوقفوا"}"#,
            None,
        );
        d.kind = "withdrawal_notice".into();
        let o = EmergencyLineWire
            .outbound(&d, &SharedCase::default())
            .unwrap();
        assert_eq!(o.path, "/himaya/notices");
        assert_golden(
            &format!("{}/fixtures/notice_out.json", env!("CARGO_MANIFEST_DIR")),
            &o.body,
        );
    }

    #[test]
    fn the_referrer_hears_what_became_of_its_case() {
        let d = himaya_connect::testing::outcome_delivery();
        let o = EmergencyLineWire
            .outbound(&d, &SharedCase::default())
            .unwrap();
        assert_golden(
            &format!(
                "{}/fixtures/acknowledgement_out.json",
                env!("CARGO_MANIFEST_DIR")
            ),
            &o.body,
        );
    }
}
