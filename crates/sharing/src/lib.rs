//! The single exit for case data. Every path by which case data leaves the hub (bus
//! deliveries to connectors, gRPC reads by agencies, CLI output for an agency) calls
//! [`disclose`]; nothing else serializes a case record for a recipient.
//!
//! Default deny: a category is disclosed only when a policy rule names the recipient's
//! agency type, the purpose and the category. Fields are dropped, not blanked: what is not
//! permitted is absent from the document. Consent records (the other half of the
//! decision) arrive with the consent service; until then the policy alone decides.

use std::collections::BTreeSet;

use himaya_record::{category_of, AgencyType, CaseRecord, DataCategory, Purpose};
use serde::Deserialize;
use serde_json::{Map, Value};

/// One rule of the sharing policy: this agency type may receive these categories for
/// this purpose.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    pub agency_type: AgencyType,
    pub purpose: Purpose,
    pub categories: BTreeSet<DataCategory>,
}

/// The sharing policy (`config/base.toml`, `[[sharing.rules]]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharingPolicy {
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
}

impl SharingPolicy {
    /// The categories this recipient may receive for this purpose (empty: deny).
    pub fn allowed(&self, agency_type: AgencyType, purpose: Purpose) -> BTreeSet<DataCategory> {
        self.rules
            .iter()
            .filter(|r| r.agency_type == agency_type && r.purpose == purpose)
            .flat_map(|r| r.categories.iter().copied())
            .collect()
    }
}

/// The outcome of asking to disclose a case.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Only these fields may leave: the document holds nothing else.
    Permit(Disclosure),
    /// Nothing about the child may leave for this recipient and purpose.
    Deny { reason: DenyReason },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// No policy rule gives this agency type anything beyond references for this purpose.
    NoPolicyRule,
}

impl DenyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::NoPolicyRule => "no_policy_rule",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Disclosure {
    /// The redacted record, in the serde shape of [`CaseRecord`].
    pub document: Value,
    /// The categories actually present in `document`.
    pub categories: BTreeSet<DataCategory>,
}

#[derive(Debug, thiserror::Error)]
#[error("the case record could not be serialized for disclosure")]
pub struct RedactError(#[source] serde_json::Error);

/// Decides and redacts in one step, so no caller can disclose without deciding.
pub fn disclose(
    policy: &SharingPolicy,
    record: &CaseRecord,
    agency_type: AgencyType,
    purpose: Purpose,
) -> Result<Decision, RedactError> {
    let allowed = policy.allowed(agency_type, purpose);
    if allowed.iter().all(|c| *c == DataCategory::Reference) {
        return Ok(Decision::Deny {
            reason: DenyReason::NoPolicyRule,
        });
    }
    redact(record, &allowed).map(Decision::Permit)
}

/// Keeps only the fields whose category is in `allowed`.
pub fn redact(
    record: &CaseRecord,
    allowed: &BTreeSet<DataCategory>,
) -> Result<Disclosure, RedactError> {
    let full = serde_json::to_value(record).map_err(RedactError)?;
    let mut categories = BTreeSet::new();
    let mut keep = |path: &str| match category_of(path) {
        Some(c) if allowed.contains(&c) => {
            categories.insert(c);
            true
        }
        _ => false,
    };
    let document = prune(full, "", &mut keep).unwrap_or(Value::Object(Map::new()));
    Ok(Disclosure {
        document,
        categories,
    })
}

/// Walks a JSON value, keeping leaves whose path `keep` accepts. Nulls, and objects or
/// arrays left empty, are dropped so that absence is the only trace of a redaction.
fn prune(value: Value, path: &str, keep: &mut impl FnMut(&str) -> bool) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Object(map) => {
            let kept: Map<String, Value> = map
                .into_iter()
                .filter_map(|(k, v)| {
                    let child = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    prune(v, &child, keep).map(|v| (k, v))
                })
                .collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        Value::Array(items) => {
            let child = format!("{path}[]");
            let kept: Vec<Value> = items
                .into_iter()
                .filter_map(|v| prune(v, &child, keep))
                .collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        leaf => keep(path).then_some(leaf),
    }
}

/// Every leaf path of a JSON document (array elements as `[]`), for tests and audits.
pub fn leaf_paths(value: &Value) -> BTreeSet<String> {
    fn walk(v: &Value, path: &str, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let child = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(v, &child, out);
                }
            }
            Value::Array(items) => items
                .iter()
                .for_each(|v| walk(v, &format!("{path}[]"), out)),
            Value::Null => {}
            _ => {
                out.insert(path.to_owned());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(value, "", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use himaya_record::{fixtures, FIELD_CATEGORIES};

    use super::*;

    #[test]
    fn every_field_of_the_record_has_a_category() {
        let full = serde_json::to_value(fixtures::record()).unwrap();
        let uncategorised: Vec<_> = leaf_paths(&full)
            .into_iter()
            .filter(|p| category_of(p).is_none())
            .collect();
        assert!(
            uncategorised.is_empty(),
            "add to FIELD_CATEGORIES: {uncategorised:?}"
        );
        // The fixture has a birth date; its twin without documents has an estimated age.
        let mut undocumented = fixtures::record();
        undocumented.child.date_of_birth = None;
        undocumented.child.estimated_age_years = Some(9);
        let mut paths = leaf_paths(&full);
        paths.extend(leaf_paths(&serde_json::to_value(undocumented).unwrap()));
        let closed = serde_json::to_value(fixtures::closed_record()).unwrap();
        let uncategorised: Vec<_> = leaf_paths(&closed)
            .into_iter()
            .filter(|p| category_of(p).is_none())
            .collect();
        assert!(
            uncategorised.is_empty(),
            "add to FIELD_CATEGORIES: {uncategorised:?}"
        );
        paths.extend(leaf_paths(&closed));
        let stale: Vec<_> = FIELD_CATEGORIES
            .iter()
            .filter(|(p, _)| !paths.contains(*p))
            .collect();
        assert!(
            stale.is_empty(),
            "table names fields the record lacks: {stale:?}"
        );
    }

    /// Exhaustive over every subset of categories: nothing outside the permitted set is
    /// ever present, and everything inside it is.
    #[test]
    fn redaction_keeps_exactly_the_permitted_categories() {
        let record = fixtures::closed_record();
        let all = leaf_paths(&serde_json::to_value(&record).unwrap());
        for mask in 0u32..(1 << DataCategory::ALL.len()) {
            let allowed: BTreeSet<_> = DataCategory::ALL
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, c)| *c)
                .collect();
            let d = redact(&record, &allowed).unwrap();
            let out = leaf_paths(&d.document);
            for p in &out {
                assert!(allowed.contains(&category_of(p).unwrap()), "{p} leaked");
            }
            for p in &all {
                if allowed.contains(&category_of(p).unwrap()) {
                    assert!(out.contains(p), "{p} missing under {allowed:?}");
                }
            }
            assert!(d.categories.is_subset(&allowed));
        }
    }

    #[test]
    fn default_deny_and_policy_union() {
        let record = fixtures::record();
        let empty = SharingPolicy::default();
        let d = disclose(
            &empty,
            &record,
            AgencyType::Health,
            Purpose::ServiceProvision,
        )
        .unwrap();
        assert_eq!(
            d,
            Decision::Deny {
                reason: DenyReason::NoPolicyRule
            }
        );
        let policy: SharingPolicy = serde_json::from_value(serde_json::json!({"rules": [
            {"agency_type": "health", "purpose": "service_provision", "categories": ["reference", "identity"]},
            {"agency_type": "health", "purpose": "service_provision", "categories": ["health"]},
            {"agency_type": "justice", "purpose": "service_provision", "categories": ["case_notes"]}
        ]}))
        .unwrap();
        let Decision::Permit(d) = disclose(
            &policy,
            &record,
            AgencyType::Health,
            Purpose::ServiceProvision,
        )
        .unwrap() else {
            panic!("expected a permit");
        };
        assert_eq!(d.document["child"]["disability"], "ضعف سمع");
        assert!(d
            .document
            .get("referral")
            .unwrap()
            .get("narrative")
            .is_none());
        assert!(d.document["child"].get("address").is_none());
        let only_refs: SharingPolicy = serde_json::from_value(serde_json::json!({"rules": [
            {"agency_type": "school", "purpose": "service_provision", "categories": ["reference"]}
        ]}))
        .unwrap();
        assert!(matches!(
            disclose(
                &only_refs,
                &record,
                AgencyType::School,
                Purpose::ServiceProvision
            )
            .unwrap(),
            Decision::Deny { .. }
        ));
    }

    #[test]
    fn unknown_categories_in_policy_are_refused() {
        let bad = serde_json::from_value::<SharingPolicy>(serde_json::json!({"rules": [
            {"agency_type": "health", "purpose": "service_provision", "categories": ["everything"]}
        ]}));
        assert!(bad.is_err());
    }
}
