//! Deliveries as Primero v2 cases (pure, no I/O), in the fields Primero's case forms
//! define: the name in its parts (`name_first`, `name_middle`, `name_last`; Primero
//! derives `name` itself), select fields with values from the instance's lookups, no
//! field Primero sets itself (`case_id_display`, `status`), and a field the stock forms
//! lack only where the instance declares it (`profile`).

use std::collections::BTreeMap;

use himaya_connect::shared::{SharedCase, SharedNotice, SharedOutcome};
use himaya_connect::wire::clip;
use himaya_connect::{DeliveryKind, MappingError, Outbound, Wire};
use himaya_events::DeliveryRequested;
use himaya_record::DocumentKind;
use himaya_settings::StandardsSettings;
use serde_json::{json, Map, Value};

use crate::profile::{name_parts, Profile};

/// Primero's child-protection module.
pub const MODULE: &str = "primeromodule-cp";

/// The Primero wire: each Primero-run agency's form (`[standards.primero.<agency>]`),
/// the stock one for the others.
#[derive(Debug, Clone, Default)]
pub struct Primero {
    profiles: BTreeMap<String, Profile>,
    stock: Profile,
}

impl Primero {
    pub fn new(settings: &StandardsSettings) -> Primero {
        Primero {
            profiles: settings
                .primero
                .iter()
                .map(|(id, p)| (id.clone(), Profile::new(p)))
                .collect(),
            stock: Profile::default(),
        }
    }

    /// The form of the agency's Primero.
    pub fn profile(&self, agency_id: &str) -> &Profile {
        self.profiles.get(agency_id).unwrap_or(&self.stock)
    }
}

impl Wire for Primero {
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
                let mut data = case_data(d, case, self.profile(&d.agency_id));
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

/// The case's fields, as the instance's case form has them.
fn case_data(d: &DeliveryRequested, case: &SharedCase, form: &Profile) -> Value {
    let c = &case.child;
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.into(), v);
    };
    // Primero sets `case_id_display` and `status` itself (its forms do not let a user
    // set them); the hub's ids travel as the record id and, where declared, below.
    put("module_id", json!(MODULE));
    if form.declares("himaya_referral_id") {
        put("himaya_referral_id", json!(d.referral_id));
    }
    if let Some(at) = case.created_at {
        put("registration_date", json!(at.date_naive().to_string()));
    }
    if let Some(n) = &c.name {
        if let Some(a) = &n.as_given {
            let (first, middle, last) = name_parts(a);
            for (field, part) in [
                ("name_first", first),
                ("name_middle", middle),
                ("name_last", last),
            ] {
                if let Some(p) = part {
                    put(field, json!(p));
                }
            }
        }
        if let Some(l) = &n.transliteration {
            put("name_other", json!(l));
        }
    }
    if let Some(sex) = c.sex.and_then(|s| form.sex.value(s.as_str())) {
        put("sex", json!(sex));
    }
    if let Some(dob) = c.date_of_birth {
        put("date_of_birth", json!(dob.to_string()));
        put("estimated", json!(false));
    } else if let Some(age) = c.estimated_age_years {
        put("age", json!(age));
        put("estimated", json!(true));
    }
    if let Some(n) = c
        .nationality
        .as_deref()
        .and_then(|n| form.nationality.value(n))
    {
        put("nationality", json!([n]));
    }
    let mut other_id = false;
    for doc in &c.identity_documents {
        let Some(number) = &doc.number else {
            continue;
        };
        let field = match doc.kind {
            Some(DocumentKind::NationalId) => Some("national_id_no"),
            Some(DocumentKind::RefugeeCard) => Some("unhcr_id_no"),
            Some(DocumentKind::BirthCertificate) if form.declares("birth_cert_no") => {
                Some("birth_cert_no")
            }
            Some(DocumentKind::Passport) if form.declares("passport_no") => Some("passport_no"),
            _ => None,
        };
        match field {
            Some(f) => put(f, json!(number)),
            // The stock form's one slot for any other document: its type and number.
            None if !other_id => {
                other_id = true;
                let kind = doc.kind.map_or("other", |k| k.as_str());
                put("other_id_type", json!(kind));
                put("other_id_no", json!(number));
            }
            None => {}
        }
    }
    if let Some(g) = &c.governorate {
        put("location_current", json!(g));
    }
    if let Some(dist) = c
        .district
        .as_ref()
        .filter(|_| form.declares("address_district"))
    {
        put("address_district", json!(dist));
    }
    if let Some(a) = &c.address {
        put("address_current", json!(a));
    }
    if let Some(dis) = c
        .disability
        .as_deref()
        .and_then(|t| form.disability_type.value(t))
    {
        put("disability_type", json!(dis));
    }
    if let Some(n) = c.school.as_ref().and_then(|s| s.name.as_ref()) {
        if form.declares("school_name") {
            put("school_name", json!(n));
        }
    }
    let mut concerns: Vec<&str> = Vec::new();
    let mut others: Vec<&str> = Vec::new();
    for concern in &case.concerns {
        let word = concern.kind.as_str();
        if let Some((value, only_other)) = form.concern(word) {
            if !concerns.contains(&value) {
                concerns.push(value);
            }
            if only_other {
                others.push(word);
            }
        }
    }
    if !concerns.is_empty() {
        put("protection_concerns", json!(concerns));
    }
    if !others.is_empty() {
        put("protection_concerns_other", json!(others.join(", ")));
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
            if let Some(r) = g.relationship.and_then(|r| form.relation.value(r.as_str())) {
                f.insert("relation".into(), json!(r));
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
    if let Some(size) = case.household.size.filter(|_| form.declares("family_size")) {
        put("family_size", json!(size));
    }
    if let Some(b) = case
        .household
        .cash_transfer_beneficiary
        .filter(|_| form.declares("cash_transfer_beneficiary"))
    {
        put("cash_transfer_beneficiary", json!(b));
    }
    if let Some(n) = &case.referral.narrative {
        put(
            "notes_section",
            json!([{"note_subject": "referral", "note_text": n}]),
        );
    }
    // A service asked of the directorate: a service of the case's services section.
    if let Some(service) = d
        .service_type
        .as_deref()
        .and_then(|s| form.service_type.value(s))
    {
        put(
            "services_section",
            json!([{"service_type": service, "service_response_type": "service_provision"}]),
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
        let o = Primero::default()
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

    /// The fields of Primero's stock case forms the hub fills (basic identity, protection
    /// concerns, family details, notes, services, record owner), and the values of the
    /// stock lookups behind its select fields.
    const STOCK_FIELDS: &[&str] = &[
        "id",
        "module_id",
        "registration_date",
        "name_first",
        "name_middle",
        "name_last",
        "name_other",
        "sex",
        "age",
        "date_of_birth",
        "estimated",
        "nationality",
        "national_id_no",
        "unhcr_id_no",
        "other_id_type",
        "other_id_no",
        "location_current",
        "address_current",
        "disability_type",
        "protection_concerns",
        "protection_concerns_other",
        "risk_level",
        "family_details_section",
        "notes_section",
        "services_section",
    ];
    const STOCK_CONCERNS: &[&str] = &[
        "sexually_exploited",
        "gbv_survivor",
        "trafficked_smuggled",
        "statelessness",
        "arrested_detained",
        "migrant",
        "disabled",
        "serious_health_issue",
        "refugee",
        "caafag",
        "street_child",
        "child_mother",
        "physically_or_mentally_abused",
        "living_with_vulnerable_person",
        "worst_forms_of_child_labor",
        "child_headed_household",
        "mentally_distressed",
        "other",
    ];
    const STOCK_RELATIONS: &[&str] = &[
        "mother",
        "father",
        "aunt",
        "uncle",
        "grandmother",
        "grandfather",
        "brother",
        "sister",
        "husband",
        "wife",
        "partner",
        "other_family",
        "other_nonfamily",
    ];
    const STOCK_SERVICES: &[&str] = &[
        "safehouse_service",
        "health_medical_service",
        "psychosocial_service",
        "police_other_service",
        "legal_assistance_service",
        "livelihoods_service",
        "child_protection_service",
        "family_mediation_service",
        "family_seunification_service",
        "education_service",
        "nfi_clothes_shoes_service",
        "water_sanitation_service",
        "registration_service",
        "food_service",
        "other_service",
    ];

    #[test]
    fn a_case_speaks_only_the_stock_form_and_its_lookups() {
        let case = SharedCase::parse(FULL_CASE).unwrap();
        for service in [None, Some("psychosocial")] {
            let o = Primero::default()
                .outbound(&delivery(FULL_CASE, service), &case)
                .unwrap();
            let data = o.body["data"].as_object().unwrap();
            for k in data.keys() {
                assert!(
                    STOCK_FIELDS.contains(&k.as_str()),
                    "`{k}` is not a stock field"
                );
            }
            for never in ["name", "case_id_display", "status"] {
                assert!(!data.contains_key(never), "{never} is Primero's to set");
            }
            assert!(["male", "female"].contains(&data["sex"].as_str().unwrap()));
            assert_eq!(data["nationality"], json!(["egypt"]));
            for c in data["protection_concerns"].as_array().unwrap() {
                assert!(STOCK_CONCERNS.contains(&c.as_str().unwrap()), "{c}");
            }
            for f in data["family_details_section"].as_array().unwrap() {
                assert!(
                    STOCK_RELATIONS.contains(&f["relation"].as_str().unwrap()),
                    "{f}"
                );
            }
            assert!(["high", "medium", "low"].contains(&data["risk_level"].as_str().unwrap()));
            if service.is_some() {
                let s = &data["services_section"][0]["service_type"];
                assert!(STOCK_SERVICES.contains(&s.as_str().unwrap()), "{s}");
            }
        }
    }

    #[test]
    fn an_instance_gets_its_custom_fields_and_its_own_lookup_values() {
        let mut settings = himaya_settings::StandardsSettings::default();
        let mut form = himaya_settings::PrimeroSettings::default();
        for f in [
            "himaya_referral_id",
            "address_district",
            "school_name",
            "family_size",
            "cash_transfer_beneficiary",
            "birth_cert_no",
        ] {
            form.custom_fields.insert(f.into());
        }
        form.lookups
            .disability_type
            .insert("ضعف سمع".into(), "physical_disability".into());
        form.lookups.protection_concerns.insert(
            "psychosocial_distress".into(),
            "psychosocial_distress".into(),
        );
        form.lookups.sex.insert("female".into(), "f".into());
        settings.primero.insert("mosa-cairo".into(), form);
        let primero = Primero::new(&settings);
        let mut d = delivery(FULL_CASE, Some("psychosocial"));
        d.agency_id = "mosa-cairo".into();
        d.idempotency_key = "srv_1:mosa-cairo".into();
        let o = primero
            .outbound(&d, &SharedCase::parse(FULL_CASE).unwrap())
            .unwrap();
        golden("case_out_declared.json", &o.body);
        // Another Primero of the same deployment keeps the stock form.
        d.agency_id = "mosa-giza".into();
        let stock = primero
            .outbound(&d, &SharedCase::parse(FULL_CASE).unwrap())
            .unwrap();
        for custom in [
            "himaya_referral_id",
            "school_name",
            "family_size",
            "birth_cert_no",
            "disability_type",
        ] {
            assert!(stock.body["data"].get(custom).is_none(), "{custom}");
        }
        assert_eq!(stock.body["data"]["other_id_type"], "birth_certificate");
    }

    #[test]
    fn a_redacted_case_carries_only_what_was_permitted() {
        let doc = r#"{"case_id":"case_1","child":{"name":{"as_given":"مريم"},"governorate":"القاهرة"},"risk_level":"high"}"#;
        let o = Primero::default()
            .outbound(&delivery(doc, None), &SharedCase::parse(doc).unwrap())
            .unwrap();
        golden("case_out_minimal.json", &o.body);
    }

    #[test]
    fn feedback_flags_the_agencys_own_records_or_is_refused_without_one() {
        let d = himaya_connect::testing::outcome_delivery();
        let records = ["9b1e4f2a-77c1-4c55-9d0e-1b2c3d4e5f60".to_owned()];
        let o = Primero::default()
            .outbound_about(&d, &SharedCase::default(), &records)
            .unwrap();
        assert_eq!(o.path, "/api/v2/cases/flags");
        golden("flag_outcome.json", &o.body);
        let e = Primero::default()
            .outbound_about(&d, &SharedCase::default(), &[])
            .unwrap_err();
        assert!(e.to_string().contains("Primero record"), "{e}");
    }

    #[test]
    fn answers_are_read() {
        assert_eq!(
            Primero::default()
                .reference(&json!({"data": {"id": "7c2e"}}))
                .as_deref(),
            Some("7c2e")
        );
        assert_eq!(
            Primero::default()
                .rejection_reason(
                    &json!({"errors": [{"status": 422, "message": "errors.models.case.duplicate"}]})
                )
                .as_deref(),
            Some("errors.models.case.duplicate")
        );
    }
}
