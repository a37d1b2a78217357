//! Fixtures the mappings' golden tests share (compiled for tests and for the connectors'
//! own test builds through the `testing` module being public).

use himaya_events::DeliveryRequested;

/// A delivery to `health-cairo` carrying `doc`; `service` makes it a service referral.
pub fn delivery(doc: &str, service: Option<&str>) -> DeliveryRequested {
    DeliveryRequested {
        message_id: "msg_1".into(),
        occurred_at: "2026-11-22T09:30:00+00:00".into(),
        agency_id: "health-cairo".into(),
        case_id: "case_1".into(),
        referral_id: if service.is_some() { "srv_1" } else { "ref_1" }.into(),
        purpose: "service_provision".into(),
        priority: "urgent".into(),
        idempotency_key: "ref_1:health-cairo".into(),
        categories: vec!["identity".into(), "health".into()],
        document_json: doc.into(),
        service_type: service.map(str::to_owned),
        kind: "referral".into(),
        medical_coverage: None,
    }
}

/// A whole case as the sharing layer would disclose it with every category permitted:
/// each mapping's golden test starts from it and shows what its standard carries.
pub const FULL_CASE: &str = include_str!("../fixtures/case_full.json");

/// Compares `actual` with the golden fixture at `path`; `HIMAYA_BLESS=1` rewrites the
/// fixture instead (then review the diff before committing it).
pub fn assert_golden(path: &str, actual: &serde_json::Value) {
    if std::env::var_os("HIMAYA_BLESS").is_some() {
        let text = serde_json::to_string_pretty(actual).unwrap_or_default() + "\n";
        if let Err(e) = std::fs::write(path, text) {
            panic!("writing {path}: {e}");
        }
        return;
    }
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e} (HIMAYA_BLESS=1 writes it)"));
    let golden: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(
        actual,
        &golden,
        "{path} differs; actual:\n{}",
        serde_json::to_string_pretty(actual).unwrap_or_default()
    );
}

/// A feedback delivery: the case `case_1` the agency referred was assigned.
pub fn outcome_delivery() -> DeliveryRequested {
    let mut d = delivery(
        r#"{"case_id":"case_1","referral_id":"ref_1","change":"assigned","status":"registered","version":3,"at":"2026-11-24T08:00:00+00:00","message_ar":"عُيّن أخصائي حالة لمتابعة الحالة.","message_en":"A caseworker was assigned to the case."}"#,
        None,
    );
    d.kind = "outcome".into();
    d.referral_id = "fbk_case_1_v3".into();
    d
}

/// Asserts that a mapping's refusal says what is wrong in Arabic as well as in English:
/// an Arabic text with Arabic letters (codes such as `srv_` or `YYYY-MM-DD` may stay as
/// they are), not the English one again.
pub fn assert_bilingual(e: &crate::InboundError) {
    let arabic = |s: &str| s.chars().any(|c| ('\u{0621}'..='\u{064A}').contains(&c));
    assert!(!e.problem.is_empty() && !arabic(&e.problem), "{e:?}");
    assert!(arabic(&e.problem_ar), "no Arabic: {e:?}");
    assert_ne!(e.problem, e.problem_ar, "{e:?}");
}
