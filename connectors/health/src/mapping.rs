//! Deliveries as FHIR R4 resources (pure, no I/O). Every element comes from the redacted
//! case (`SharedCase`): a category the consent layer withheld has no element here.

use himaya_connect::shared::{SharedCase, SharedNotice, SharedOutcome};
use himaya_connect::wire::clip;
use himaya_connect::{DeliveryKind, MappingError, Outbound, Wire};
use himaya_events::DeliveryRequested;
use himaya_record::{DocumentKind, RiskLevel, Sex, SourceKind};
use himaya_settings::FhirSettings;
use serde_json::{json, Value};

/// FHIR's own JSON media type, for what the hub sends and answers.
pub const FHIR_JSON: &str = "application/fhir+json";
/// R4's condition-clinical code system (the `clinicalStatus` of a Condition).
const CONDITION_CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/condition-clinical";
const CONDITION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/condition-category";

/// The systems and canonical URLs of the hub's ids, codes and extensions, from the
/// deployment's `[standards.fhir]`: everything under its `system_base`, and any
/// identifier given a system of its own (a national registry's, for its numbers).
#[derive(Debug, Clone, PartialEq)]
pub struct Systems {
    base: String,
    own: std::collections::BTreeMap<String, String>,
}

impl Default for Systems {
    fn default() -> Self {
        Systems::new(&FhirSettings::default())
    }
}

impl Systems {
    pub fn new(s: &FhirSettings) -> Systems {
        Systems {
            base: s.system_base.trim_end_matches('/').to_owned(),
            own: s.identifier_systems.clone(),
        }
    }

    /// The system of one of the hub's identifiers (`case`, `referral`, `feedback`,
    /// `notice`, `delivery`, `disability`).
    pub fn identifier(&self, key: &str) -> String {
        if let Some(own) = self.own.get(key) {
            return own.clone();
        }
        let name = match key {
            "case" => "case-id",
            "referral" => "referral-id",
            "feedback" => "feedback-id",
            "notice" => "notice-id",
            "disability" => "disability-of-case",
            other => other,
        };
        format!("{}/sid/{name}", self.base)
    }

    /// The system of an identity document's numbers.
    pub fn document(&self, kind: DocumentKind) -> String {
        match self.own.get(kind.as_str()) {
            Some(own) => own.clone(),
            None => format!("{}/sid/document/{}", self.base, kind.as_str()),
        }
    }

    /// One of the hub's code systems (`service-type`, `protection-concern`, …).
    pub fn code_system(&self, name: &str) -> String {
        format!("{}/CodeSystem/{name}", self.base)
    }

    /// One of the hub's extensions.
    pub fn extension(&self, name: &str) -> String {
        format!("{}/StructureDefinition/{name}", self.base)
    }

    /// Who pays a health service referral. R4's `ServiceRequest.supportingInfo` takes
    /// only references and `insurance` a Coverage (an insurance policy with a payor and a
    /// beneficiary), neither of which a per-referral cost-sharing decision is; an
    /// extension with a coded value is R4's way to carry it (see docs/decisions.md).
    pub fn medical_coverage_extension(&self) -> String {
        self.extension("medical-costs-coverage")
    }

    pub fn medical_coverage_system(&self) -> String {
        self.code_system("medical-costs-coverage")
    }
}

/// The FHIR R4 wire, with the deployment's systems.
#[derive(Debug, Clone, Default)]
pub struct Fhir {
    pub systems: Systems,
}

impl Fhir {
    pub fn new(settings: &FhirSettings) -> Fhir {
        Fhir {
            systems: Systems::new(settings),
        }
    }
}

impl Wire for Fhir {
    fn outbound(&self, d: &DeliveryRequested, case: &SharedCase) -> Result<Outbound, MappingError> {
        let body = match DeliveryKind::of(d)? {
            DeliveryKind::Outcome => {
                return Ok(Outbound::with_type(
                    "/Communication",
                    FHIR_JSON,
                    outcome_communication(
                        &self.systems,
                        &SharedOutcome::parse(&d.document_json)?,
                        &d.referral_id,
                    ),
                ))
            }
            DeliveryKind::WithdrawalNotice => {
                return Ok(Outbound::with_type(
                    "/Communication",
                    FHIR_JSON,
                    communication(&self.systems, &SharedNotice::parse(&d.document_json)?),
                ))
            }
            DeliveryKind::Referral | DeliveryKind::ServiceReferral => {
                bundle(&self.systems, d, case)
            }
        };
        Ok(Outbound::with_type("", FHIR_JSON, body))
    }

    /// The ServiceRequest's location in the transaction-response Bundle
    /// (`ServiceRequest/123/_history/1`), else the answer's `id`.
    fn reference(&self, answer: &Value) -> Option<String> {
        answer
            .get("entry")
            .and_then(Value::as_array)
            .and_then(|entries| {
                entries.iter().find_map(|e| {
                    e.pointer("/response/location")
                        .and_then(Value::as_str)
                        .filter(|l| {
                            l.starts_with("ServiceRequest/") || l.starts_with("Communication/")
                        })
                })
            })
            .or_else(|| answer.get("id").and_then(Value::as_str))
            .map(clip)
    }

    /// An OperationOutcome's first issue: its diagnostics, else its details' text, else its code.
    fn rejection_reason(&self, answer: &Value) -> Option<String> {
        let issue = answer.pointer("/issue/0")?;
        ["/diagnostics", "/details/text", "/code"]
            .iter()
            .find_map(|p| issue.pointer(p).and_then(Value::as_str))
            .map(clip)
    }
}

/// Priority from risk: high risk escalated by the emergency line is `stat`, other high
/// risk `asap`; without a permitted risk level, the hub's own priority (routine/urgent).
pub fn priority(d: &DeliveryRequested, case: &SharedCase) -> &'static str {
    let hotline = case
        .referral
        .source
        .as_ref()
        .and_then(|s| s.kind)
        .is_some_and(|k| k == SourceKind::Hotline);
    match case.risk_level {
        Some(RiskLevel::High) if hotline => "stat",
        Some(RiskLevel::High) => "asap",
        _ if d.priority == "urgent" => "urgent",
        _ => "routine",
    }
}

fn bundle(s: &Systems, d: &DeliveryRequested, case: &SharedCase) -> Value {
    let patient_url = urn(&format!("patient:{}", d.case_id));
    let case_system = s.identifier("case");
    let mut entries = vec![json!({
        "fullUrl": patient_url,
        "resource": patient(s, d, case),
        // Conditional create: one Patient per case at the agency, however often we send,
        // and never a replacement of the Patient the agency already keeps.
        "request": {"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier={case_system}|{}", d.case_id)},
    })];
    if let Some(disability) = &case.child.disability {
        let system = s.identifier("disability");
        entries.push(json!({
            "fullUrl": urn(&format!("condition:{}", d.case_id)),
            "resource": {
                "resourceType": "Condition",
                "identifier": [{"system": system, "value": d.case_id}],
                // A disability the case records is current: R4 asks a problem-list
                // Condition for its clinical status (invariant con-3).
                "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]},
                "category": [{"coding": [{"system": CONDITION_CATEGORY, "code": "problem-list-item"}]}],
                "code": {"text": disability},
                "subject": {"reference": patient_url},
            },
            "request": {"method": "POST", "url": "Condition", "ifNoneExist": format!("identifier={system}|{}", d.case_id)},
        }));
    }
    let referral_system = s.identifier("referral");
    entries.push(json!({
        "fullUrl": urn(&format!("servicerequest:{}", d.referral_id)),
        "resource": service_request(s, d, case, &patient_url),
        // Conditional create: a retried Bundle does not make a second request.
        "request": {"method": "POST", "url": "ServiceRequest", "ifNoneExist": format!("identifier={referral_system}|{}", d.referral_id)},
    }));
    json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "identifier": {"system": s.identifier("delivery"), "value": d.idempotency_key},
        "entry": entries,
    })
}

fn patient(s: &Systems, d: &DeliveryRequested, case: &SharedCase) -> Value {
    let c = &case.child;
    let mut identifiers = vec![json!({"system": s.identifier("case"), "value": d.case_id})];
    for doc in &c.identity_documents {
        if let (Some(kind), Some(number)) = (doc.kind, &doc.number) {
            identifiers.push(json!({"system": s.document(kind), "value": number}));
        }
    }
    let mut p = json!({"resourceType": "Patient", "identifier": identifiers});
    if let Some(name) = &c.name {
        // Stored as given (Arabic script) and, when known, its Latin transliteration.
        let mut names = Vec::new();
        if let Some(a) = &name.as_given {
            names.push(json!({"use": "official", "text": a}));
        }
        if let Some(l) = &name.transliteration {
            names.push(json!({"use": "usual", "text": l}));
        }
        p["name"] = json!(names);
    }
    if let Some(sex) = c.sex {
        p["gender"] = json!(match sex {
            Sex::Female => "female",
            Sex::Male => "male",
            Sex::NotStated => "unknown",
        });
    }
    if let Some(dob) = c.date_of_birth {
        p["birthDate"] = json!(dob.to_string());
    } else if let Some(age) = c.estimated_age_years {
        p["extension"] = json!([{"url": s.extension("estimated-age"), "valueAge": {"value": age, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}}]);
    }
    let mut address = serde_json::Map::new();
    if let Some(a) = &c.address {
        address.insert("text".into(), json!(a));
    }
    if let Some(d) = &c.district {
        address.insert("district".into(), json!(d));
    }
    if let Some(g) = &c.governorate {
        address.insert("state".into(), json!(g));
    }
    if !address.is_empty() {
        p["address"] = json!([address]);
    }
    let contacts: Vec<Value> = case
        .caregivers
        .iter()
        .filter_map(|g| {
            let mut contact = serde_json::Map::new();
            if let Some(r) = g.relationship {
                contact.insert("relationship".into(), json!([{"text": r.as_str()}]));
            }
            if let Some(n) = g.name.as_ref().and_then(|n| n.as_given.as_ref()) {
                contact.insert("name".into(), json!({"text": n}));
            }
            if let Some(phone) = &g.phone {
                contact.insert(
                    "telecom".into(),
                    json!([{"system": "phone", "value": phone}]),
                );
            }
            if let Some(a) = &g.address {
                contact.insert("address".into(), json!({"text": a}));
            }
            (!contact.is_empty()).then_some(Value::Object(contact))
        })
        .collect();
    if !contacts.is_empty() {
        p["contact"] = json!(contacts);
    }
    p
}

fn service_request(
    s: &Systems,
    d: &DeliveryRequested,
    case: &SharedCase,
    patient_url: &str,
) -> Value {
    let service = d
        .service_type
        .as_deref()
        .unwrap_or("child_protection_referral");
    let mut sr = json!({
        "resourceType": "ServiceRequest",
        "identifier": [{"system": s.identifier("referral"), "value": d.referral_id}],
        "status": "active",
        "intent": "order",
        "priority": priority(d, case),
        "code": {"coding": [{"system": s.code_system("service-type"), "code": service}]},
        "subject": {"reference": patient_url},
        "authoredOn": d.occurred_at,
        "requester": {"display": "Himaya interagency hub"},
    });
    if !case.concerns.is_empty() {
        sr["reasonCode"] = json!(case
            .concerns
            .iter()
            .map(|c| json!({"coding": [{"system": s.code_system("protection-concern"), "code": c.kind.as_str()}]}))
            .collect::<Vec<_>>());
    }
    if let Some(n) = &case.referral.narrative {
        // Present only when the case-notes category was permitted.
        sr["note"] = json!([{"text": n}]);
    }
    if let Some(c) = d.medical_coverage {
        sr["extension"] = json!([{
            "url": s.medical_coverage_extension(),
            "valueCoding": {"system": s.medical_coverage_system(), "code": c.as_str(), "display": c.english()},
        }]);
    }
    sr
}

fn communication(s: &Systems, n: &SharedNotice) -> Value {
    json!({
        "resourceType": "Communication",
        "identifier": [{"system": s.identifier("notice"), "value": n.notice_id}],
        "status": "completed",
        "category": [{"text": "consent-withdrawn"}],
        "about": [{"identifier": {"system": s.identifier("case"), "value": n.case_id}}],
        "sent": n.withdrawn_at,
        "payload": [
            {"contentString": n.message_ar},
            {"contentString": n.message_en},
            {"contentString": format!("consent={}; categories={}", n.consent_id, n.categories.join(","))},
        ],
    })
}

/// What became of a case the health agency referred, as a Communication about its own
/// referral (the ServiceRequest it sent is not ours, so the case id identifies it).
fn outcome_communication(s: &Systems, o: &SharedOutcome, feedback_id: &str) -> Value {
    json!({
        "resourceType": "Communication",
        "identifier": [{"system": s.identifier("feedback"), "value": feedback_id}],
        "status": "completed",
        "category": [{"text": "referral-outcome"}],
        "about": [
            {"identifier": {"system": s.identifier("case"), "value": o.case_id}},
            {"identifier": {"system": s.identifier("referral"), "value": o.referral_id}},
        ],
        "sent": o.at,
        "payload": [
            {"contentString": o.message_ar},
            {"contentString": o.message_en},
            {"contentString": format!("change={}; status={}", o.change, o.status)},
        ],
    })
}

/// A stable `urn:uuid:` for a resource of this Bundle (FNV-1a over its key), so a retried
/// Bundle is byte-for-byte the same.
fn urn(key: &str) -> String {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in key.bytes() {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    // A version-8 (custom) UUID of those 128 bits, formatted by the uuid crate as the
    // Primero connector's ids are.
    uuid::Builder::from_custom_bytes(h.to_be_bytes())
        .into_uuid()
        .urn()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use himaya_connect::testing::{assert_golden, delivery, FULL_CASE};
    use himaya_record::service_referral::MedicalCoverage;

    fn golden(name: &str, actual: &Value) {
        assert_golden(
            &format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR")),
            actual,
        );
    }

    fn out(doc: &str, service: Option<&str>) -> Outbound {
        let d = delivery(doc, service);
        Fhir::default()
            .outbound(&d, &SharedCase::parse(doc).unwrap())
            .unwrap()
    }

    #[test]
    fn a_full_case_becomes_the_golden_bundle() {
        let mut d = delivery(FULL_CASE, Some("health"));
        d.medical_coverage = Some(MedicalCoverage::Full);
        let o = Fhir::default()
            .outbound(&d, &SharedCase::parse(FULL_CASE).unwrap())
            .unwrap();
        assert_eq!(o.content_type, FHIR_JSON);
        golden("bundle_full.json", &o.body);
    }

    #[test]
    fn the_service_request_says_who_pays() {
        let case = SharedCase::parse(FULL_CASE).unwrap();
        let sr = |coverage: Option<MedicalCoverage>| {
            let mut d = delivery(FULL_CASE, Some("health"));
            d.medical_coverage = coverage;
            let o = Fhir::default().outbound(&d, &case).unwrap();
            o.body["entry"]
                .as_array()
                .and_then(|e| e.last())
                .map(|e| e["resource"].clone())
                .unwrap()
        };
        for (c, code) in [
            (MedicalCoverage::Full, "full"),
            (MedicalCoverage::Partial, "partial"),
            (MedicalCoverage::NotCovered, "none"),
        ] {
            let r = sr(Some(c));
            assert_eq!(r["resourceType"], "ServiceRequest");
            let s = Systems::default();
            assert_eq!(
                r["extension"][0]["url"],
                json!(s.medical_coverage_extension())
            );
            assert_eq!(
                r["extension"][0]["valueCoding"]["system"],
                json!(s.medical_coverage_system())
            );
            assert_eq!(r["extension"][0]["valueCoding"]["code"], code);
        }
        // A referral that is not a health service's carries no coverage at all.
        assert!(sr(None).get("extension").is_none());
    }

    #[test]
    fn a_redacted_case_carries_only_what_was_permitted() {
        // Identity and health only (the default health rule without location/contact).
        let doc = r#"{"case_id":"case_1","child":{"name":{"as_given":"مريم","transliteration":null},"sex":"female","date_of_birth":"2015-03-14","disability":"ضعف سمع"}}"#;
        let o = out(doc, None);
        golden("bundle_minimal.json", &o.body);
        let text = o.body.to_string();
        for absent in ["address", "contact", "reasonCode", "note", "telecom"] {
            assert!(!text.contains(absent), "{absent} leaked");
        }
    }

    #[test]
    fn priority_follows_risk() {
        let d = delivery("{}", None);
        let with = |risk: &str, source: &str| {
            SharedCase::parse(&format!(
                r#"{{"risk_level":"{risk}","referral":{{"source":{{"kind":"{source}"}}}}}}"#
            ))
            .unwrap()
        };
        assert_eq!(priority(&d, &with("high", "hotline")), "stat");
        assert_eq!(priority(&d, &with("high", "school")), "asap");
        assert_eq!(priority(&d, &with("low", "school")), "urgent");
        let mut routine = delivery("{}", None);
        routine.priority = "routine".into();
        assert_eq!(priority(&routine, &SharedCase::default()), "routine");
    }

    #[test]
    fn a_withdrawal_notice_is_a_communication() {
        let mut d = delivery(
            r#"{"notice_id":"wdn_1","case_id":"case_1","consent_id":"cns_1","categories":["health"],"withdrawn_at":"2026-11-23T10:00:00Z","message_en":"stop","message_ar":"أوقفوا"}"#,
            None,
        );
        d.kind = "withdrawal_notice".into();
        let o = Fhir::default()
            .outbound(&d, &SharedCase::default())
            .unwrap();
        assert_eq!(o.path, "/Communication");
        golden("communication.json", &o.body);
    }

    #[test]
    fn answers_are_read() {
        let ok = json!({"resourceType": "Bundle", "type": "transaction-response", "entry": [
            {"response": {"status": "200 OK", "location": "Patient/p1/_history/1"}},
            {"response": {"status": "201 Created", "location": "ServiceRequest/sr9/_history/1"}}]});
        assert_eq!(
            Fhir::default().reference(&ok).as_deref(),
            Some("ServiceRequest/sr9/_history/1")
        );
        let no = json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "business-rule", "diagnostics": "no paediatric capacity"}]});
        assert_eq!(
            Fhir::default().rejection_reason(&no).as_deref(),
            Some("no paediatric capacity")
        );
    }

    #[test]
    fn feedback_is_a_communication_about_the_agencys_referral() {
        let d = himaya_connect::testing::outcome_delivery();
        let o = Fhir::default()
            .outbound(&d, &SharedCase::default())
            .unwrap();
        assert_eq!(o.path, "/Communication");
        golden("communication_outcome.json", &o.body);
    }

    #[test]
    fn identifier_systems_are_the_deployments() {
        let mut settings = FhirSettings {
            system_base: "https://hub.mosa.gov.eg/fhir".into(),
            ..Default::default()
        };
        settings.identifier_systems.insert(
            "birth_certificate".into(),
            "urn:oid:2.16.818.1.113883.3.1".into(),
        );
        settings
            .identifier_systems
            .insert("case".into(), "urn:oid:2.16.818.1.113883.3.9".into());
        let fhir = Fhir::new(&settings);
        let mut d = delivery(FULL_CASE, Some("health"));
        d.medical_coverage = Some(MedicalCoverage::Partial);
        let o = fhir
            .outbound(&d, &SharedCase::parse(FULL_CASE).unwrap())
            .unwrap();
        let patient = &o.body["entry"][0]["resource"];
        assert_eq!(
            patient["identifier"],
            json!([
                {"system": "urn:oid:2.16.818.1.113883.3.9", "value": "case_1"},
                {"system": "urn:oid:2.16.818.1.113883.3.1", "value": "31503140101234"},
            ])
        );
        assert_eq!(
            o.body["entry"][0]["request"]["ifNoneExist"],
            "identifier=urn:oid:2.16.818.1.113883.3.9|case_1"
        );
        let text = o.body.to_string();
        assert!(!text.contains("himaya.example"), "{text}");
        assert!(text.contains("https://hub.mosa.gov.eg/fhir/sid/referral-id"));
        assert!(text
            .contains("https://hub.mosa.gov.eg/fhir/StructureDefinition/medical-costs-coverage"));
    }

    #[test]
    fn a_disability_is_an_active_condition() {
        let o = out(FULL_CASE, None);
        let condition = &o.body["entry"][1]["resource"];
        assert_eq!(condition["resourceType"], "Condition");
        assert_eq!(
            condition["clinicalStatus"]["coding"][0],
            json!({"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"})
        );
    }

    /// Every kind of resource the health connector emits (a transaction Bundle and each of
    /// its Patient, Condition and ServiceRequest, in full and redacted, with a birth date
    /// or an estimated age; the Communications of a withdrawal notice and of feedback; the
    /// endpoint's CapabilityStatement) passes two independent R4 validators from npm.
    #[test]
    fn every_resource_the_connector_emits_is_valid_fhir_r4() {
        let fhir = Fhir::default();
        let mut resources: Vec<(String, Value)> = Vec::new();
        let mut bundle = |label: &str, d: &DeliveryRequested, doc: &str| {
            let o = fhir.outbound(d, &SharedCase::parse(doc).unwrap()).unwrap();
            for (i, e) in o.body["entry"].as_array().unwrap().iter().enumerate() {
                let kind = e["resource"]["resourceType"].as_str().unwrap().to_owned();
                resources.push((format!("{label}.entry[{i}] {kind}"), e["resource"].clone()));
            }
            resources.push((format!("{label} Bundle"), o.body));
        };
        let mut full = delivery(FULL_CASE, Some("health"));
        full.medical_coverage = Some(MedicalCoverage::NotCovered);
        bundle("full", &full, FULL_CASE);
        let minimal = r#"{"case_id":"case_1","child":{"name":{"as_given":"مريم"},"sex":"female","date_of_birth":"2015-03-14","disability":"ضعف سمع"}}"#;
        bundle("minimal", &delivery(minimal, None), minimal);
        let estimated = r#"{"case_id":"case_1","child":{"sex":"not_stated","estimated_age_years":13,"governorate":"الجيزة"},"risk_level":"high","referral":{"source":{"kind":"hotline"}},"concerns":[{"kind":"neglect"}]}"#;
        let mut hotline = delivery(estimated, None);
        hotline.occurred_at = "2026-11-22T09:30:00.123456+02:00".into();
        bundle("estimated-age", &hotline, estimated);
        let mut notice = delivery(
            r#"{"notice_id":"wdn_1","case_id":"case_1","consent_id":"cns_1","categories":["health"],"withdrawn_at":"2026-11-23T10:00:00Z","message_en":"stop","message_ar":"أوقفوا"}"#,
            None,
        );
        notice.kind = "withdrawal_notice".into();
        let communication =
            |d: &DeliveryRequested| fhir.outbound(d, &SharedCase::default()).unwrap().body;
        resources.push(("notice Communication".into(), communication(&notice)));
        resources.push((
            "feedback Communication".into(),
            communication(&himaya_connect::testing::outcome_delivery()),
        ));
        resources.push((
            "metadata CapabilityStatement".into(),
            crate::capability::capability_statement(&fhir.systems),
        ));
        let kinds: std::collections::BTreeSet<&str> = resources
            .iter()
            .filter_map(|(_, r)| r["resourceType"].as_str())
            .collect();
        assert_eq!(
            kinds.into_iter().collect::<Vec<_>>(),
            [
                "Bundle",
                "CapabilityStatement",
                "Communication",
                "Condition",
                "Patient",
                "ServiceRequest"
            ]
        );
        let errors = himaya_connect::testing::fhir_r4_errors(&resources);
        assert!(
            errors.is_empty(),
            "{} resources, errors:\n{}",
            resources.len(),
            errors.join("\n")
        );
        eprintln!("{} FHIR R4 resources valid", resources.len());

        // The validators do find what is wrong (so a pass above means something).
        let mut broken = resources[0].1.clone();
        broken["gender"] = json!("girl");
        broken["birthDate"] = json!("14/03/2015");
        let found = himaya_connect::testing::fhir_r4_errors(&[("broken Patient".into(), broken)]);
        assert!(found.iter().any(|e| e.contains("gender")), "{found:?}");
        assert!(found.iter().any(|e| e.contains("birthDate")), "{found:?}");
    }

    #[test]
    fn resource_urns_are_stable_uuids() {
        let a = urn("patient:case_1");
        assert_eq!(a, urn("patient:case_1"));
        assert_ne!(a, urn("patient:case_2"));
        assert_eq!(a.len(), "urn:uuid:".len() + 36);
    }
}
