//! Deliveries as Primero v2 cases (pure, no I/O).

use himaya_connect::shared::{SharedCase, SharedNotice, SharedOutcome};
use himaya_connect::wire::clip;
use himaya_connect::{DeliveryKind, MappingError, Outbound, Wire};
use himaya_events::DeliveryRequested;
use himaya_record::DocumentKind;
use serde_json::{json, Map, Value};

/// Primero's child-protection module.
pub const MODULE: &str = "primeromodule-cp";

pub struct Primero;

impl Wire for Primero {
    fn protocol(&self) -> &'static str {
        "primero_v2"
    }

    fn outbound(&self, d: &DeliveryRequested, case: &SharedCase) -> Result<Outbound, MappingError> {
        self.outbound_about(d, case, &[])
    }

    /// Notices and feedback become a flag on the agency's records of the case (Primero
    /// has no inbox): `POST /api/v2/cases/flags`, whose `ids` are record ids.
    fn outbound_about(
        &self,
        d: &DeliveryRequested,
        case: &SharedCase,
        records: &[String],
    ) -> Result<Outbound, MappingError> {
        let flag = |date: &str, message: String| {
            if records.is_empty() {
                return Err(MappingError::Missing(
                    "a Primero record of the case (the hub neither made one there nor received one from it)",
                ));
            }
            Ok(Outbound::json(
                "/api/v2/cases/flags",
                json!({"data": {
                    "record_type": "cases",
                    "ids": records,
                    "date": date.get(..10).unwrap_or(date),
                    "message": message,
                }}),
            ))
        };
        match DeliveryKind::of(d)? {
            DeliveryKind::Outcome => {
                let o = SharedOutcome::parse(&d.document_json)?;
                flag(
                    &o.at,
                    format!("{} / {} ({})", o.message_ar, o.message_en, o.change),
                )
            }
            DeliveryKind::WithdrawalNotice => {
                let n = SharedNotice::parse(&d.document_json)?;
                flag(
                    &n.withdrawn_at,
                    format!(
                        "{} / {} ({}: {})",
                        n.message_ar,
                        n.message_en,
                        n.consent_id,
                        n.categories.join(", ")
                    ),
                )
            }
            DeliveryKind::Referral | DeliveryKind::ServiceReferral => {
                // Primero takes a client-generated id (answering 204), and refuses a
                // second case with it (409): a redelivery after a lost answer cannot make
                // a second case.
                let id = record_id(&d.idempotency_key);
                let mut data = case_data(d, case);
                if let Value::Object(m) = &mut data {
                    m.insert("id".into(), json!(id));
                }
                let mut out = Outbound::json("/api/v2/cases", json!({ "data": data }));
                out.reference = Some(id);
                Ok(out)
            }
        }
    }

    /// Primero answers `{"data": {"id": "<uuid>", …}}`.
    fn reference(&self, answer: &Value) -> Option<String> {
        answer.pointer("/data/id").and_then(Value::as_str).map(clip)
    }

    /// Primero's errors: `{"errors": [{"status": 422, "message": "…", "detail": "…"}]}`.
    fn rejection_reason(&self, answer: &Value) -> Option<String> {
        let e = answer.pointer("/errors/0")?;
        ["/message", "/detail"]
            .iter()
            .find_map(|p| e.pointer(p).and_then(Value::as_str))
            .map(clip)
    }
}

/// The Primero record id of a delivery: a UUID (version 8, RFC 9562) from the SHA-256 of
/// its idempotency key, so every attempt of one delivery names the same record.
pub fn record_id(idempotency_key: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("himaya/primero/{idempotency_key}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

fn case_data(d: &DeliveryRequested, case: &SharedCase) -> Value {
    let c = &case.child;
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.into(), v);
    };
    put("module_id", json!(MODULE));
    put("case_id_display", json!(d.case_id));
    put("status", json!("open"));
    put("himaya_referral_id", json!(d.referral_id));
    if let Some(s) = &d.service_type {
        put("service_type", json!(s));
    }
    if let Some(at) = case.created_at {
        put("registration_date", json!(at.date_naive().to_string()));
    }
    if let Some(n) = &c.name {
        if let Some(a) = &n.as_given {
            put("name", json!(a));
        }
        if let Some(l) = &n.transliteration {
            put("name_other", json!(l));
        }
    }
    if let Some(s) = c.sex {
        put("sex", json!(s.as_str()));
    }
    if let Some(dob) = c.date_of_birth {
        put("date_of_birth", json!(dob.to_string()));
        put("estimated", json!(false));
    } else if let Some(age) = c.estimated_age_years {
        put("age", json!(age));
        put("estimated", json!(true));
    }
    if let Some(n) = &c.nationality {
        put("nationality", json!([n]));
    }
    for doc in &c.identity_documents {
        let field = match doc.kind {
            Some(DocumentKind::NationalId) => "national_id_no",
            Some(DocumentKind::BirthCertificate) => "birth_cert_no",
            Some(DocumentKind::Passport) => "passport_no",
            Some(DocumentKind::RefugeeCard) => "unhcr_id_no",
            _ => "other_id_no",
        };
        if let Some(n) = &doc.number {
            put(field, json!(n));
        }
    }
    if let Some(g) = &c.governorate {
        put("location_current", json!(g));
    }
    if let Some(dist) = &c.district {
        put("address_district", json!(dist));
    }
    if let Some(a) = &c.address {
        put("address_current", json!(a));
    }
    if let Some(dis) = &c.disability {
        put("disability_type", json!(dis));
    }
    if let Some(s) = &c.school {
        if let Some(n) = &s.name {
            put("school_name", json!(n));
        }
    }
    if !case.concerns.is_empty() {
        put(
            "protection_concerns",
            json!(case
                .concerns
                .iter()
                .map(|c| c.kind.as_str())
                .collect::<Vec<_>>()),
        );
    }
    if let Some(r) = case.risk_level {
        put("risk_level", json!(r.as_str()));
    }
    let family: Vec<Value> = case
        .caregivers
        .iter()
        .map(|g| {
            let mut f = Map::new();
            if let Some(n) = g.name.as_ref().and_then(|n| n.as_given.as_ref()) {
                f.insert("relation_name".into(), json!(n));
            }
            if let Some(r) = g.relationship {
                f.insert("relation".into(), json!(r.as_str()));
            }
            if let Some(p) = &g.phone {
                f.insert("relation_telephone".into(), json!(p));
            }
            if let Some(a) = &g.address {
                f.insert("relation_address_current".into(), json!(a));
            }
            if let Some(p) = g.primary {
                f.insert("relation_is_caregiver".into(), json!(p));
            }
            Value::Object(f)
        })
        .filter(|f| f.as_object().is_some_and(|o| !o.is_empty()))
        .collect();
    if !family.is_empty() {
        put("family_details_section", json!(family));
    }
    if let Some(size) = case.household.size {
        put("family_size", json!(size));
    }
    if let Some(b) = case.household.cash_transfer_beneficiary {
        put("cash_transfer_beneficiary", json!(b));
    }
    if let Some(n) = &case.referral.narrative {
        put(
            "notes_section",
            json!([{"note_subject": "referral", "note_text": n}]),
        );
    }
    Value::Object(m)
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
    fn a_full_case_becomes_the_golden_primero_case() {
        let d = delivery(FULL_CASE, None);
        let o = Primero
            .outbound(&d, &SharedCase::parse(FULL_CASE).unwrap())
            .unwrap();
        assert_eq!(o.path, "/api/v2/cases");
        golden("case_out_full.json", &o.body);
        // The record id is the hub's, the same on every attempt, a UUID.
        assert_eq!(o.body["data"]["id"], json!(o.reference.as_deref().unwrap()));
        assert_eq!(
            o.reference.as_deref(),
            Some(record_id(&d.idempotency_key).as_str())
        );
        let id = uuid::Uuid::parse_str(o.reference.as_deref().unwrap()).unwrap();
        assert_eq!(id.get_version_num(), 8);
        assert_ne!(record_id("ref_1:mosa-cairo"), record_id("ref_2:mosa-cairo"));
    }

    #[test]
    fn a_redacted_case_carries_only_what_was_permitted() {
        let doc = r#"{"case_id":"case_1","child":{"name":{"as_given":"مريم"},"governorate":"القاهرة"},"risk_level":"high"}"#;
        let o = Primero
            .outbound(&delivery(doc, None), &SharedCase::parse(doc).unwrap())
            .unwrap();
        golden("case_out_minimal.json", &o.body);
    }

    #[test]
    fn feedback_flags_the_agencys_own_records_or_is_refused_without_one() {
        let d = himaya_connect::testing::outcome_delivery();
        let records = ["9b1e4f2a-77c1-4c55-9d0e-1b2c3d4e5f60".to_owned()];
        let o = Primero
            .outbound_about(&d, &SharedCase::default(), &records)
            .unwrap();
        assert_eq!(o.path, "/api/v2/cases/flags");
        golden("flag_outcome.json", &o.body);
        let e = Primero
            .outbound_about(&d, &SharedCase::default(), &[])
            .unwrap_err();
        assert!(e.to_string().contains("Primero record"), "{e}");
    }

    #[test]
    fn answers_are_read() {
        assert_eq!(
            Primero
                .reference(&json!({"data": {"id": "7c2e"}}))
                .as_deref(),
            Some("7c2e")
        );
        assert_eq!(
            Primero
                .rejection_reason(
                    &json!({"errors": [{"status": 422, "message": "errors.models.case.duplicate"}]})
                )
                .as_deref(),
            Some("errors.models.case.duplicate")
        );
    }
}
