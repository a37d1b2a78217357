//! A search of the programme's social registry for the child's household, as the SPDCI
//! (Digital Convergence Initiative) social registry API's synchronous search
//! (`POST {endpoint}/registry/sync/search`, pure, no I/O). When the case manager refers
//! a child for economic support, the delivery to a cash-assistance agency is this
//! search: by the child's national number when the identity category is permitted
//! (`idtype-value`), else by name, birth date and governorate (`predicate`: each item one
//! expression, or two joined by a condition, as the specification's examples write them).
//! Every search carries what it rests on: the case's consent as the specification's
//! Consent object, a legal basis as its Authorize object. The registry's answer, a
//! household id or none, is recorded as the agency's reference.

use chrono::{DateTime, Utc};
use himaya_connect::shared::SharedCase;
use himaya_connect::wire::clip;
use himaya_connect::{plain_outbound, MappingError, Outbound, PlainPaths, Wire};
use himaya_events::DeliveryRequested;
use himaya_record::DocumentKind;
use himaya_settings::SpdciSettings;
use serde::Deserialize;
use serde_json::{json, Value};

pub const SENDER: &str = "himaya";

/// The JSON-LD contexts of the specification's Consent and Authorize objects.
const CONSENT_CONTEXT: &str = "https://schema.spdci.org/common/v1/api-schemas/Consent.jsonld";
const AUTHORIZE_CONTEXT: &str = "https://schema.spdci.org/common/v1/api-schemas/Authorize.jsonld";

/// The SPDCI wire, with the deployment's choices (`[standards.spdci]`).
#[derive(Debug, Clone, Default)]
pub struct Spdci {
    pub settings: SpdciSettings,
}

impl Spdci {
    pub fn new(settings: SpdciSettings) -> Spdci {
        Spdci { settings }
    }
}

impl Wire for Spdci {
    fn outbound(&self, d: &DeliveryRequested, case: &SharedCase) -> Result<Outbound, MappingError> {
        let paths = PlainPaths {
            referral: "/registry/sync/search",
            notice: "/himaya/notices",
            outcome: "/himaya/outcomes",
        };
        plain_outbound(d, paths, || {
            let criteria = criteria(case)?;
            let basis = basis(d, &self.settings)?;
            Ok(search(d, &self.settings, criteria, basis))
        })
    }

    /// The first matching record's household id.
    fn reference(&self, answer: &Value) -> Option<String> {
        let record = answer.pointer("/message/search_response/0/data/reg_records/0")?;
        ["household_id", "id"]
            .iter()
            .find_map(|k| record.get(*k).and_then(Value::as_str))
            .map(clip)
    }

    /// SPDCI answers 200 with `status: "rjct"` and a reason code when it refuses.
    fn refused_in_body(&self, answer: &Value) -> Option<String> {
        let r = answer.pointer("/message/search_response/0")?;
        (r.get("status").and_then(Value::as_str) == Some("rjct")).then(|| {
            ["status_reason_message", "status_reason_code"]
                .iter()
                .find_map(|k| r.get(*k).and_then(Value::as_str))
                .map(clip)
                .unwrap_or_else(|| "rejected".into())
        })
    }

    fn rejection_reason(&self, answer: &Value) -> Option<String> {
        answer
            .pointer("/header/status_reason_message")
            .or_else(|| answer.pointer("/message/search_response/0/status_reason_message"))
            .and_then(Value::as_str)
            .map(clip)
    }
}

/// `query_type` and `query`: what the search looks for, from what the consent layer let
/// through.
fn criteria(case: &SharedCase) -> Result<(&'static str, Value), MappingError> {
    let c = &case.child;
    if let Some(id) = c.identity_documents.iter().find_map(|d| {
        (d.kind == Some(DocumentKind::NationalId))
            .then_some(d.number.as_ref())
            .flatten()
    }) {
        return Ok(("idtype-value", json!({"type": "NATIONAL_ID", "value": id})));
    }
    let name = c
        .name
        .as_ref()
        .and_then(|n| n.as_given.as_ref())
        .ok_or(MappingError::Missing("child.name (identity category)"))?;
    let mut expressions =
        vec![json!({"attribute_name": "member.name", "operator": "eq", "attribute_value": name})];
    if let Some(dob) = c.date_of_birth {
        expressions.push(json!({"attribute_name": "member.birth_date", "operator": "eq", "attribute_value": dob.to_string()}));
    }
    if let Some(g) = &c.governorate {
        expressions.push(json!({"attribute_name": "household.governorate", "operator": "eq", "attribute_value": g}));
    }
    // The specification's predicate item: `expression1`, and optionally a `condition`
    // and `expression2`, in one item; items are numbered by `seq_num`, and every one of
    // them must hold.
    let predicates: Vec<Value> = expressions
        .chunks(2)
        .enumerate()
        .map(|(i, pair)| match pair {
            [one, two] => json!({"seq_num": i + 1, "expression1": one, "condition": "and", "expression2": two}),
            [one] => json!({"seq_num": i + 1, "expression1": one}),
            _ => Value::Null,
        })
        .collect();
    Ok(("predicate", json!(predicates)))
}

/// A consent or legal basis as the redacted document carries it (`consents[]`, reference
/// category): only what says whether it covers this search, and when it was given.
#[derive(Debug, Deserialize)]
struct DocConsent {
    consent_id: String,
    #[serde(default)]
    given_by: Option<String>,
    #[serde(default)]
    legal_basis: Option<String>,
    #[serde(default)]
    provisions: Vec<DocProvision>,
    #[serde(default)]
    valid_from: Option<DateTime<Utc>>,
    #[serde(default)]
    valid_until: Option<DateTime<Utc>>,
    #[serde(default)]
    recorded_at: Option<DateTime<Utc>>,
    #[serde(default)]
    withdrawn_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
struct DocProvision {
    kind: String,
    #[serde(default)]
    recipient_agency: Option<String>,
    #[serde(default)]
    recipient_type: Option<String>,
    #[serde(default)]
    purposes: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct DocConsents {
    #[serde(default)]
    consents: Vec<DocConsent>,
}

impl DocConsent {
    /// In force when the delivery was made, and permitting this agency the purpose.
    fn covers(&self, d: &DeliveryRequested, at: DateTime<Utc>) -> bool {
        let permits = self.provisions.iter().any(|p| {
            p.kind == "permit"
                && p.recipient_agency
                    .as_deref()
                    .is_none_or(|a| a == d.agency_id)
                && p.recipient_type
                    .as_deref()
                    .is_none_or(|t| t == "cash_assistance")
                && (p.purposes.is_empty() || p.purposes.contains(&d.purpose))
        });
        let denied = self.provisions.iter().any(|p| {
            p.kind == "deny" && p.recipient_agency.as_deref() == Some(d.agency_id.as_str())
        });
        permits
            && !denied
            && self.withdrawn_at.is_none()
            && self.valid_from.is_none_or(|f| f <= at)
            && self.valid_until.is_none_or(|u| at < u)
    }

    fn given_at(&self) -> Option<DateTime<Utc>> {
        self.valid_from.or(self.recorded_at)
    }
}

/// The search's `consent` and `authorize` objects: the consents (caregiver's, child's)
/// and the legal bases in force that permit this search, each kind as one object. A
/// search that rests on neither is not sent.
fn basis(
    d: &DeliveryRequested,
    s: &SpdciSettings,
) -> Result<(Option<Value>, Option<Value>), MappingError> {
    let doc: DocConsents = serde_json::from_str(&d.document_json).map_err(|e| {
        MappingError::Document(format!(
            "line {} column {}: consents unreadable",
            e.line(),
            e.column()
        ))
    })?;
    let at = DateTime::parse_from_rfc3339(&d.occurred_at)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|_| Utc::now());
    let covering: Vec<&DocConsent> = doc.consents.iter().filter(|c| c.covers(d, at)).collect();
    let object = |context: &str, kind: &str, of: Vec<&&DocConsent>, words: &str| {
        if of.is_empty() {
            return None;
        }
        let ts = of.iter().filter_map(|c| c.given_at()).max().unwrap_or(at);
        let which: Vec<String> = of
            .iter()
            .map(|c| {
                let by = c
                    .given_by
                    .as_deref()
                    .or(c.legal_basis.as_deref())
                    .unwrap_or("unknown");
                format!("{} ({by})", c.consent_id)
            })
            .collect();
        let mut purpose = json!({
            "text": format!("{}, {words} {}", d.purpose.replace('_', " "), which.join(", ")),
            "code": d.purpose,
        });
        if let Some(uri) = &s.purpose_ref_uri {
            purpose["ref_uri"] = json!(uri);
        }
        Some(json!({
            "@context": context,
            "@type": kind,
            "ts": ts.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "purpose": purpose,
        }))
    };
    let consent = object(
        CONSENT_CONTEXT,
        "Consent",
        covering.iter().filter(|c| c.given_by.is_some()).collect(),
        "as consented in Himaya by",
    );
    let authorize = object(
        AUTHORIZE_CONTEXT,
        "Authorize",
        covering
            .iter()
            .filter(|c| c.given_by.is_none() && c.legal_basis.is_some())
            .collect(),
        "on the legal basis recorded in Himaya as",
    );
    if consent.is_none() && authorize.is_none() {
        return Err(MappingError::Missing(
            "consents (a consent or legal basis in force permitting this agency the purpose)",
        ));
    }
    Ok((consent, authorize))
}

fn search(
    d: &DeliveryRequested,
    s: &SpdciSettings,
    (query_type, query): (&'static str, Value),
    (consent, authorize): (Option<Value>, Option<Value>),
) -> Value {
    let mut search_criteria = json!({
        "version": "1.0.0",
        "reg_type": s.reg_type,
        // The household (a Group in the social registry's data model), not its members.
        "response_entity": "Group",
        "query_type": query_type,
        "query": query,
        "pagination": {"page_size": 5, "page_number": 1},
    });
    if let Some(c) = consent {
        search_criteria["consent"] = c;
    }
    if let Some(a) = authorize {
        search_criteria["authorize"] = a;
    }
    json!({
        "header": {
            "version": "1.0.0",
            "message_id": d.idempotency_key,
            "message_ts": d.occurred_at,
            "action": "search",
            "sender_id": SENDER,
            "receiver_id": d.agency_id,
            "total_count": 1,
            "is_msg_encrypted": false,
        },
        "message": {
            "transaction_id": d.referral_id,
            "search_request": [{
                "reference_id": d.referral_id,
                "timestamp": d.occurred_at,
                "search_criteria": search_criteria,
                "locale": s.locale,
            }],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use himaya_connect::testing::{assert_golden, delivery, FULL_CASE};

    fn golden(name: &str, v: &Value) {
        assert_golden(
            &format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR")),
            v,
        );
    }

    /// The case's consents as the redacted document carries them: the caregiver's consent
    /// and the child's assent from the referral form, an older consent since withdrawn, one
    /// for another agency only, and a court order for cash assistance.
    fn consents() -> Value {
        let permit = |agency: Option<&str>, kind: Option<&str>| json!([{"kind": "permit", "recipient_agency": agency, "recipient_type": kind, "purposes": ["service_provision"], "categories": []}]);
        let consent = |id: &str,
                       by: Option<&str>,
                       basis: Option<&str>,
                       provisions: Value,
                       withdrawn: Option<&str>| {
            json!({"consent_id": id, "given_by": by, "legal_basis": basis, "provisions": provisions,
                   "valid_from": "2026-11-20T08:15:00Z", "valid_until": "2027-11-20T08:15:00Z",
                   "recorded_by": "school-cairo-alnour", "recorded_at": "2026-11-20T08:15:00Z",
                   "withdrawn_at": withdrawn, "revision": 1})
        };
        json!([
            consent("cns_1", Some("caregiver"), None, permit(None, None), None),
            consent(
                "cns_1_assent",
                Some("child_assent"),
                None,
                permit(None, None),
                None
            ),
            consent(
                "cns_old",
                Some("caregiver"),
                None,
                permit(None, None),
                Some("2026-11-21T08:00:00Z")
            ),
            consent(
                "cns_other",
                Some("caregiver"),
                None,
                permit(Some("legal-aid-cairo"), None),
                None
            ),
            consent(
                "cns_court",
                None,
                Some("court_order"),
                permit(None, Some("cash_assistance")),
                None
            ),
        ])
    }

    /// `doc` with the consents whose ids are in `ids`.
    fn with_consents(doc: &str, ids: &[&str]) -> String {
        let mut v: Value = serde_json::from_str(doc).unwrap();
        let all = consents();
        v["consents"] = json!(all
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| ids.contains(&c["consent_id"].as_str().unwrap()))
            .collect::<Vec<_>>());
        v.to_string()
    }

    fn out(doc: &str, service: Option<&str>) -> Result<Outbound, MappingError> {
        let mut d = delivery(doc, service);
        d.agency_id = "takaful-cairo".into();
        d.idempotency_key = "srv_1:takaful-cairo".into();
        Spdci::default().outbound(&d, &SharedCase::parse(doc).unwrap())
    }

    #[test]
    fn a_search_by_name_birth_date_and_governorate() {
        // The full case carries a birth certificate, not a national number.
        let doc = with_consents(
            FULL_CASE,
            &["cns_1", "cns_1_assent", "cns_old", "cns_other"],
        );
        let o = out(&doc, Some("economic")).unwrap();
        assert_eq!(o.path, "/registry/sync/search");
        golden("search_by_predicate.json", &o.body);
        let criteria = &o.body["message"]["search_request"][0]["search_criteria"];
        // The caregiver's consent and the child's assent, not the withdrawn one nor the
        // one for another agency; no legal basis, so no authorize object.
        let text = criteria["consent"]["purpose"]["text"].as_str().unwrap();
        assert!(
            text.contains("cns_1 (caregiver)") && text.contains("cns_1_assent (child_assent)"),
            "{text}"
        );
        assert!(
            !text.contains("cns_old") && !text.contains("cns_other"),
            "{text}"
        );
        assert_eq!(criteria["consent"]["@type"], "Consent");
        assert_eq!(criteria["consent"]["ts"], "2026-11-20T08:15:00Z");
        assert!(criteria.get("authorize").is_none());
    }

    #[test]
    fn predicates_are_shaped_as_the_specification_writes_them() {
        let doc = with_consents(FULL_CASE, &["cns_1"]);
        let o = out(&doc, Some("economic")).unwrap();
        let criteria = &o.body["message"]["search_request"][0]["search_criteria"];
        assert_eq!(criteria["query_type"], "predicate");
        let items = criteria["query"].as_array().unwrap();
        let mut expressions = 0;
        for (i, item) in items.iter().enumerate() {
            assert_eq!(item["seq_num"], json!(i + 1));
            let keys: Vec<&str> = item
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            for k in &keys {
                assert!(
                    ["seq_num", "expression1", "condition", "expression2"].contains(k),
                    "{k}"
                );
            }
            // A condition joins expression1 and expression2 of the same item.
            assert_eq!(
                item.get("condition").is_some(),
                item.get("expression2").is_some(),
                "{item}"
            );
            for e in ["expression1", "expression2"] {
                if let Some(e) = item.get(e) {
                    expressions += 1;
                    assert!(["gt", "lt", "eq", "ge", "le", "in"]
                        .contains(&e["operator"].as_str().unwrap()));
                    assert!(e["attribute_name"].is_string() && !e["attribute_value"].is_null());
                }
            }
            if let Some(c) = item.get("condition") {
                assert!(["and", "or", "not"].contains(&c.as_str().unwrap()));
            }
        }
        assert_eq!(
            (items.len(), expressions),
            (2, 3),
            "name, birth date and governorate"
        );
        // What the specification's LanguageCode asks: ISO 639-3.
        assert_eq!(o.body["message"]["search_request"][0]["locale"], "ara");
        assert_eq!(criteria["response_entity"], "Group");
        assert!(criteria.get("reg_sub_type").is_none());
    }

    #[test]
    fn a_search_by_national_number_sends_nothing_else() {
        let doc = r#"{"case_id":"case_1","child":{"name":{"as_given":"مريم"},"identity_documents":[{"kind":"national_id","number":"31503140101234"}],"governorate":"القاهرة"}}"#;
        // Resting on a court order alone: the specification's authorize object.
        let o = out(&with_consents(doc, &["cns_court"]), Some("economic")).unwrap();
        golden("search_by_id.json", &o.body);
        assert!(!o.body.to_string().contains("مريم"));
        let criteria = &o.body["message"]["search_request"][0]["search_criteria"];
        assert_eq!(criteria["authorize"]["@type"], "Authorize");
        assert!(criteria.get("consent").is_none());
    }

    #[test]
    fn without_consent_or_identity_there_is_no_search() {
        let doc = r#"{"case_id":"case_1","child":{"governorate":"القاهرة"}}"#;
        assert!(matches!(
            out(&with_consents(doc, &["cns_1"]), None),
            Err(MappingError::Missing(_))
        ));
        // Withdrawn, or for another agency: nothing the search may rest on.
        for ids in [&[][..], &["cns_old"], &["cns_other"]] {
            let e = out(&with_consents(FULL_CASE, ids), Some("economic")).unwrap_err();
            assert!(e.to_string().contains("consents"), "{e}");
        }
    }

    #[test]
    fn the_deployment_names_its_purpose_codes_and_locale() {
        let settings = SpdciSettings {
            purpose_ref_uri: Some("https://registry.example.gov.eg/purposes".into()),
            locale: "eng".into(),
            ..SpdciSettings::default()
        };
        let doc = with_consents(FULL_CASE, &["cns_1", "cns_court"]);
        let mut d = delivery(&doc, Some("economic"));
        d.agency_id = "takaful-cairo".into();
        let o = Spdci::new(settings)
            .outbound(&d, &SharedCase::parse(&doc).unwrap())
            .unwrap();
        let request = &o.body["message"]["search_request"][0];
        assert_eq!(request["locale"], "eng");
        for object in ["consent", "authorize"] {
            assert_eq!(
                request["search_criteria"][object]["purpose"]["ref_uri"],
                "https://registry.example.gov.eg/purposes"
            );
            assert_eq!(
                request["search_criteria"][object]["purpose"]["code"],
                "service_provision"
            );
        }
    }

    #[test]
    fn answers_are_read() {
        let found: Value = serde_json::from_str(
            &std::fs::read_to_string(format!(
                "{}/fixtures/search_response_found.json",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        )
        .unwrap();
        let spdci = Spdci::default();
        assert_eq!(spdci.reference(&found).as_deref(), Some("HH-2231-0098"));
        assert_eq!(spdci.refused_in_body(&found), None);
        let refused = json!({"message": {"search_response": [{"status": "rjct", "status_reason_code": "rjct.consent.missing", "status_reason_message": "consent not attached"}]}});
        assert_eq!(
            spdci.refused_in_body(&refused).as_deref(),
            Some("consent not attached")
        );
    }
}
