//! Deliveries as legal-protection referrals (pure, no I/O).

use chrono::Datelike;
use himaya_connect::shared::SharedCase;
use himaya_connect::{plain_outbound, MappingError, Outbound, PlainPaths, Wire};
use himaya_events::DeliveryRequested;
use himaya_record::DocumentKind;
use serde_json::{json, Value};

pub struct Justice;

impl Wire for Justice {
    fn outbound(&self, d: &DeliveryRequested, case: &SharedCase) -> Result<Outbound, MappingError> {
        let paths = PlainPaths {
            referral: "/legal-referrals",
            notice: "/consent-withdrawals",
            outcome: "/referral-outcomes",
        };
        plain_outbound(d, paths, || Ok(referral(d, case)))
    }
}

fn referral(d: &DeliveryRequested, case: &SharedCase) -> Value {
    let c = &case.child;
    let mut child = serde_json::Map::new();
    if let Some(n) = c.name.as_ref().and_then(|n| n.as_given.as_ref()) {
        child.insert("name_ar".into(), json!(n));
    }
    if let Some(n) = c.name.as_ref().and_then(|n| n.transliteration.as_ref()) {
        child.insert("name_latin".into(), json!(n));
    }
    // Only the national number identifies a person to a court; other documents stay home.
    if let Some(id) = c
        .identity_documents
        .iter()
        .find(|doc| doc.kind == Some(DocumentKind::NationalId) && doc.number.is_some())
    {
        child.insert("national_id".into(), json!(id.number));
    }
    if let Some(s) = c.sex {
        child.insert("sex".into(), json!(s.as_str()));
    }
    // Birth year, not the date: enough to tell a minor's age band.
    if let Some(dob) = c.date_of_birth {
        child.insert("birth_year".into(), json!(dob.year()));
    } else if let Some(age) = c.estimated_age_years {
        child.insert("estimated_age_years".into(), json!(age));
    }
    if let Some(g) = &c.governorate {
        child.insert("governorate".into(), json!(g));
    }
    let mut body = json!({
        "referral_ref": d.referral_id,
        "case_ref": d.case_id,
        "requested_service": d.service_type.as_deref().unwrap_or("legal"),
        "priority": d.priority,
        "child": child,
        "concerns": case.concerns.iter().map(|c| c.kind.as_str()).collect::<Vec<_>>(),
        "sent_at": d.occurred_at,
    });
    if let Some(r) = case.risk_level {
        body["risk_level"] = json!(r.as_str());
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use himaya_connect::testing::{assert_golden, delivery, FULL_CASE};

    fn golden(name: &str, actual: &Value) {
        assert_golden(
            &format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR")),
            actual,
        );
    }

    #[test]
    fn a_full_case_leaves_as_the_minimal_set() {
        let d = delivery(FULL_CASE, Some("legal"));
        let o = Justice
            .outbound(&d, &SharedCase::parse(FULL_CASE).unwrap())
            .unwrap();
        assert_eq!(o.path, "/legal-referrals");
        golden("legal_referral_full.json", &o.body);
        let text = o.body.to_string();
        // Permitted or not, these never go to justice.
        for never in [
            "١٢ شارع الترعة",
            "+201001234567",
            "فاطمة",
            "ضعف سمع",
            "كدمات",
            "31503140101234",
            "2015-03-14",
            "شبرا",
            "مدرسة",
        ] {
            assert!(!text.contains(never), "{never} left for justice");
        }
    }

    #[test]
    fn without_identity_no_name_leaves() {
        let doc = r#"{"case_id":"case_1","child":{"sex":"male","estimated_age_years":15,"governorate":"الجيزة"},"concerns":[{"kind":"conflict_with_law"}],"risk_level":"medium"}"#;
        let d = delivery(doc, None);
        let o = Justice
            .outbound(&d, &SharedCase::parse(doc).unwrap())
            .unwrap();
        golden("legal_referral_minimal.json", &o.body);
    }
}
