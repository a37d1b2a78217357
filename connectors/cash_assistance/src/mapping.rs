//! A search of the programme's social registry for the child's household, in the style of
//! the SPDCI (Digital Convergence Initiative) social-registry sync search (pure, no I/O).
//! When the case manager refers a child for economic support, the delivery to a
//! cash-assistance agency is this search: by the child's national number when the
//! identity category is permitted, else by name, birth date and governorate. The
//! registry's answer, a household id or none, is recorded as the agency's reference.

use himaya_connect::shared::SharedCase;
use himaya_connect::wire::clip;
use himaya_connect::{plain_outbound, MappingError, Outbound, PlainPaths, Wire};
use himaya_events::DeliveryRequested;
use himaya_record::DocumentKind;
use serde_json::{json, Value};

pub const SENDER: &str = "himaya";

pub struct Spdci;

impl Wire for Spdci {
    fn protocol(&self) -> &'static str {
        "spdci_registry"
    }

    fn outbound(&self, d: &DeliveryRequested, case: &SharedCase) -> Result<Outbound, MappingError> {
        let paths = PlainPaths {
            referral: "/registry/sync/search",
            notice: "/himaya/notices",
            outcome: "/himaya/outcomes",
        };
        plain_outbound(d, paths, || Ok(search(d, &criteria(case)?)))
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

/// What the search looks for, from what the consent layer let through.
fn criteria(case: &SharedCase) -> Result<Value, MappingError> {
    let c = &case.child;
    if let Some(id) = c.identity_documents.iter().find_map(|d| {
        (d.kind == Some(DocumentKind::NationalId))
            .then_some(d.number.as_ref())
            .flatten()
    }) {
        return Ok(
            json!({"query_type": "idtype-value", "query": {"type": "NATIONAL_ID", "value": id}}),
        );
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
    // DCI's predicate query: numbered expressions, each joined to the next with `and`.
    let last = expressions.len();
    let predicates: Vec<Value> = expressions
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let mut p = json!({"seq_num": i + 1, "expression1": e});
            if i + 1 < last {
                p["condition"] = json!("and");
            }
            p
        })
        .collect();
    Ok(json!({"query_type": "predicate", "query": predicates}))
}

fn search(d: &DeliveryRequested, criteria: &Value) -> Value {
    let mut search_criteria = json!({
        "version": "1.0.0",
        "reg_type": "ns:org:RegistryType:Social",
        "reg_sub_type": "household",
        "pagination": {"page_size": 5, "page_number": 1},
    });
    if let (Some(sc), Some(c)) = (search_criteria.as_object_mut(), criteria.as_object()) {
        sc.extend(c.clone());
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
                "locale": "ar",
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

    #[test]
    fn a_search_by_name_birth_date_and_governorate() {
        // The full case carries a birth certificate, not a national number.
        let d = delivery(FULL_CASE, Some("economic"));
        let o = Spdci
            .outbound(&d, &SharedCase::parse(FULL_CASE).unwrap())
            .unwrap();
        assert_eq!(o.path, "/registry/sync/search");
        golden("search_by_predicate.json", &o.body);
    }

    #[test]
    fn a_search_by_national_number_sends_nothing_else() {
        let doc = r#"{"case_id":"case_1","child":{"name":{"as_given":"مريم"},"identity_documents":[{"kind":"national_id","number":"31503140101234"}],"governorate":"القاهرة"}}"#;
        let o = Spdci
            .outbound(
                &delivery(doc, Some("economic")),
                &SharedCase::parse(doc).unwrap(),
            )
            .unwrap();
        golden("search_by_id.json", &o.body);
        assert!(!o.body.to_string().contains("مريم"));
    }

    #[test]
    fn without_identity_there_is_nothing_to_search_with() {
        let doc = r#"{"case_id":"case_1","child":{"governorate":"القاهرة"}}"#;
        assert!(matches!(
            Spdci.outbound(&delivery(doc, None), &SharedCase::parse(doc).unwrap()),
            Err(MappingError::Missing(_))
        ));
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
        assert_eq!(Spdci.reference(&found).as_deref(), Some("HH-2231-0098"));
        assert_eq!(Spdci.refused_in_body(&found), None);
        let refused = json!({"message": {"search_response": [{"status": "rjct", "status_reason_code": "rjct.consent.missing", "status_reason_message": "consent not attached"}]}});
        assert_eq!(
            Spdci.refused_in_body(&refused).as_deref(),
            Some("consent not attached")
        );
    }
}
