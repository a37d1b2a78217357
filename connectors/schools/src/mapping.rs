//! What a school receives (pure, no I/O). The sharing policy gives schools reference and
//! location only, so a delivery says which referral, which service, where, and how urgent:
//! never who the child is or what happened. The school's own protection officer knows.

use himaya_connect::shared::SharedCase;
use himaya_connect::{plain_outbound, MappingError, Outbound, PlainPaths, Wire};
use himaya_events::DeliveryRequested;
use serde_json::{json, Value};

pub struct SchoolWire;

impl Wire for SchoolWire {
    fn outbound(&self, d: &DeliveryRequested, case: &SharedCase) -> Result<Outbound, MappingError> {
        let paths = PlainPaths {
            referral: "/himaya/referrals",
            notice: "/himaya/notices",
            outcome: "/himaya/outcomes",
        };
        plain_outbound(d, paths, || Ok(referral(d, case)))
    }
}

fn referral(d: &DeliveryRequested, case: &SharedCase) -> Value {
    let c = &case.child;
    let mut body = json!({
        "referral_ref": d.referral_id,
        "case_ref": d.case_id,
        "service": d.service_type.as_deref().unwrap_or("education"),
        "priority": d.priority,
        "sent_at": d.occurred_at,
    });
    if let Some(g) = &c.governorate {
        body["governorate"] = json!(g);
    }
    if let Some(dist) = &c.district {
        body["district"] = json!(dist);
    }
    if let Some(s) = &c.school {
        body["school"] = json!({"name": s.name, "grade": s.grade});
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use himaya_connect::testing::{assert_golden, delivery, FULL_CASE};

    #[test]
    fn a_school_gets_ids_and_place_only() {
        // As the school's policy redacts it: reference and location.
        let doc = r#"{"case_id":"case_1","status":"registered","child":{"governorate":"القاهرة","district":"شبرا","school":{"name":"مدرسة النور الابتدائية","grade":"5"}}}"#;
        let d = delivery(doc, Some("education"));
        let o = SchoolWire
            .outbound(&d, &SharedCase::parse(doc).unwrap())
            .unwrap();
        assert_eq!(o.path, "/himaya/referrals");
        assert_golden(
            &format!("{}/fixtures/referral_out.json", env!("CARGO_MANIFEST_DIR")),
            &o.body,
        );
    }

    #[test]
    fn even_a_full_case_gives_no_identity() {
        let d = delivery(FULL_CASE, Some("education"));
        let o = SchoolWire
            .outbound(&d, &SharedCase::parse(FULL_CASE).unwrap())
            .unwrap();
        let text = o.body.to_string();
        for never in [
            "مريم",
            "Mariam",
            "2015-03-14",
            "١٢ شارع",
            "فاطمة",
            "physical_abuse",
        ] {
            assert!(!text.contains(never), "{never} left for a school");
        }
    }

    #[test]
    fn the_referrer_hears_what_became_of_its_case() {
        let d = himaya_connect::testing::outcome_delivery();
        let o = SchoolWire.outbound(&d, &SharedCase::default()).unwrap();
        assert_golden(
            &format!("{}/fixtures/outcome_out.json", env!("CARGO_MANIFEST_DIR")),
            &o.body,
        );
    }
}
