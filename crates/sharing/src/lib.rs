//! The single exit for case data. Every path by which case data leaves the hub (bus
//! deliveries to connectors, gRPC reads by agencies, CLI output for an agency) calls
//! [`disclose`]; nothing else serializes a case record for a recipient.
//!
//! Default deny: a category is disclosed only when a policy rule names the recipient's
//! agency type, the purpose and the category, **and** an active consent (with the child's
//! assent where the child is old enough) or a recorded legal basis on the case covers the
//! recipient, the purpose and the category. Fields are dropped, not blanked: what is not
//! permitted is absent from the document.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use himaya_record::consent::{basis, consented, ConsentGap, ConsentRules};
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharingPolicy {
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
    /// Statistics never carry a count below this: smaller cells are suppressed, so a
    /// rare combination cannot point at a child.
    #[serde(default = "default_min_count")]
    pub statistics_min_count: i64,
}

fn default_min_count() -> i64 {
    5
}

impl Default for SharingPolicy {
    fn default() -> Self {
        SharingPolicy {
            rules: Vec::new(),
            statistics_min_count: default_min_count(),
        }
    }
}

impl SharingPolicy {
    /// Whether this agency type may receive statistics at all.
    pub fn allows_statistics(&self, agency_type: AgencyType) -> bool {
        self.allowed(agency_type, Purpose::Statistics)
            .iter()
            .any(|c| *c != DataCategory::Reference)
    }

    /// A count as statistics may show it: `None` (suppressed) below the threshold.
    pub fn statistic(&self, count: i64) -> Option<i64> {
        (count >= self.statistics_min_count.max(1)).then_some(count)
    }

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
    /// No active consent or legal basis covers this recipient and purpose.
    NoConsent,
    /// The caregiver consented; the child, old enough to assent, did not.
    NoAssent,
    /// Policy and consent each allow something, but nothing beyond references in common.
    NothingInCommon,
    /// The statistics purpose gets aggregates only, never a case.
    StatisticsAreAggregates,
}

impl DenyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::NoPolicyRule => "no_policy_rule",
            DenyReason::NoConsent => "no_consent",
            DenyReason::NoAssent => "no_assent",
            DenyReason::NothingInCommon => "policy_and_consent_share_nothing",
            DenyReason::StatisticsAreAggregates => "statistics_only_as_aggregates",
        }
    }
}

/// Who would receive the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recipient<'a> {
    pub agency_id: &'a str,
    pub agency_type: AgencyType,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Disclosure {
    /// The redacted record, in the serde shape of [`CaseRecord`].
    pub document: Value,
    /// The categories actually present in `document`.
    pub categories: BTreeSet<DataCategory>,
    /// The consents and legal bases (ids) the disclosure rests on, for the log.
    pub basis: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("the case record could not be serialized for disclosure")]
pub struct RedactError(#[source] serde_json::Error);

/// Decides and redacts in one step, so no caller can disclose without deciding: the
/// categories the policy allows the recipient's type for the purpose, intersected with
/// those the case's consents and legal bases allow the recipient at `now`.
pub fn disclose(
    policy: &SharingPolicy,
    rules: &ConsentRules,
    record: &CaseRecord,
    to: Recipient<'_>,
    purpose: Purpose,
    now: DateTime<Utc>,
) -> Result<Decision, RedactError> {
    let allowed = match decide(policy, rules, record, to, purpose, now) {
        Ok(allowed) => allowed,
        Err(reason) => return Ok(Decision::Deny { reason }),
    };
    let mut d = redact(record, &allowed)?;
    d.basis = basis(record, to.agency_id, to.agency_type, purpose, &allowed, now);
    Ok(Decision::Permit(d))
}

/// The decision of [`disclose`] without the document: the categories this recipient
/// would receive, or why it would receive nothing. For a caller that only needs to know
/// whether a referral can reach an agency (intake's warning); it copies nothing of the
/// case, so nothing of it can leave this way.
pub fn decide(
    policy: &SharingPolicy,
    rules: &ConsentRules,
    record: &CaseRecord,
    to: Recipient<'_>,
    purpose: Purpose,
    now: DateTime<Utc>,
) -> Result<BTreeSet<DataCategory>, DenyReason> {
    if purpose == Purpose::Statistics {
        return Err(DenyReason::StatisticsAreAggregates);
    }
    let by_policy = policy.allowed(to.agency_type, purpose);
    if by_policy.iter().all(|c| *c == DataCategory::Reference) {
        return Err(DenyReason::NoPolicyRule);
    }
    let by_consent = match consented(record, to.agency_id, to.agency_type, purpose, rules, now) {
        Ok(c) => c,
        Err(ConsentGap::NoConsent) => return Err(DenyReason::NoConsent),
        Err(ConsentGap::NoAssent) => return Err(DenyReason::NoAssent),
    };
    let mut allowed: BTreeSet<DataCategory> =
        by_policy.intersection(&by_consent).copied().collect();
    if allowed.iter().all(|c| *c == DataCategory::Reference) {
        return Err(DenyReason::NothingInCommon);
    }
    // References are what lets a recipient act on what it may see: with any consented
    // category, the policy's references come too.
    if by_policy.contains(&DataCategory::Reference) {
        allowed.insert(DataCategory::Reference);
    }
    Ok(allowed)
}

/// The basis recorded for a case-owning ministry's read under its legal mandate.
pub const LEGAL_OBLIGATION: &str = "legal_obligation";

/// A disclosure resting on the recipient's legal mandate rather than on consent (the
/// case-owning ministry reading its own case): the policy alone decides what it sees,
/// and the disclosure log records `legal_obligation` as its basis.
pub fn disclose_by_mandate(
    policy: &SharingPolicy,
    record: &CaseRecord,
    to: Recipient<'_>,
    purpose: Purpose,
) -> Result<Decision, RedactError> {
    if purpose == Purpose::Statistics {
        return Ok(Decision::Deny {
            reason: DenyReason::StatisticsAreAggregates,
        });
    }
    let allowed = policy.allowed(to.agency_type, purpose);
    if allowed.iter().all(|c| *c == DataCategory::Reference) {
        return Ok(Decision::Deny {
            reason: DenyReason::NoPolicyRule,
        });
    }
    let mut d = redact(record, &allowed)?;
    d.basis = vec![LEGAL_OBLIGATION.to_owned()];
    Ok(Decision::Permit(d))
}

/// Keeps only the fields whose category is in `allowed`.
pub fn redact(
    record: &CaseRecord,
    allowed: &BTreeSet<DataCategory>,
) -> Result<Disclosure, RedactError> {
    let mut document = serde_json::to_value(record).map_err(RedactError)?;
    let mut categories = BTreeSet::new();
    let mut keep = |path: &str| match category_of(path) {
        Some(c) if allowed.contains(&c) => {
            categories.insert(c);
            true
        }
        _ => false,
    };
    if !prune(&mut document, &mut String::with_capacity(64), &mut keep) {
        document = Value::Object(Map::new());
    }
    Ok(Disclosure {
        document,
        categories,
        basis: Vec::new(),
    })
}

/// Walks a JSON value in place, keeping leaves whose path `keep` accepts; `path` is the
/// value's own (a buffer each level extends and gives back, so a walk allocates nothing
/// per field). Nulls, and objects or arrays left empty, are dropped so that absence is
/// the only trace of a redaction. False when nothing of `value` is left.
fn prune(value: &mut Value, path: &mut String, keep: &mut impl FnMut(&str) -> bool) -> bool {
    match value {
        Value::Null => false,
        Value::Object(map) => {
            map.retain(|k, v| {
                let len = path.len();
                if len > 0 {
                    path.push('.');
                }
                path.push_str(k);
                let kept = prune(v, path, keep);
                path.truncate(len);
                kept
            });
            !map.is_empty()
        }
        Value::Array(items) => {
            let len = path.len();
            path.push_str("[]");
            items.retain_mut(|v| prune(v, path, keep));
            path.truncate(len);
            !items.is_empty()
        }
        _ => keep(path),
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
    use himaya_record::consent::{Consent, Provision, ProvisionKind};
    use himaya_record::{fixtures, ConsentGiver, FIELD_CATEGORIES};

    use super::*;

    const RULES: ConsentRules = ConsentRules {
        owner_reads_by_legal_obligation: true,
        assent_from_age: 12,
        own_consent_from_age: 18,
    };

    fn now() -> DateTime<Utc> {
        Utc::now()
    }

    fn to(agency_type: AgencyType) -> Recipient<'static> {
        Recipient {
            agency_id: "an-agency",
            agency_type,
        }
    }

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
            &RULES,
            &record,
            to(AgencyType::Health),
            Purpose::ServiceProvision,
            now(),
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
            &RULES,
            &record,
            to(AgencyType::Health),
            Purpose::ServiceProvision,
            now(),
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
                &RULES,
                &record,
                to(AgencyType::School),
                Purpose::ServiceProvision,
                now()
            )
            .unwrap(),
            Decision::Deny { .. }
        ));
    }

    fn health_policy() -> SharingPolicy {
        serde_json::from_value(serde_json::json!({"rules": [
            {"agency_type": "health", "purpose": "service_provision",
             "categories": ["reference", "identity", "location", "health"]},
            {"agency_type": "justice", "purpose": "legal_proceedings",
             "categories": ["reference", "identity", "justice"]}
        ]}))
        .unwrap()
    }

    fn consent(by: ConsentGiver, kind: ProvisionKind, cats: &[DataCategory]) -> Consent {
        let mut c = fixtures::record().consents.remove(0);
        c.consent_id = format!("cns_{by}_{kind}");
        c.given_by = Some(by);
        c.provisions = vec![Provision {
            kind,
            recipient_agency: None,
            recipient_type: None,
            purposes: vec![Purpose::ServiceProvision],
            categories: cats.to_vec(),
        }];
        c
    }

    fn decide(record: &CaseRecord, t: AgencyType, purpose: Purpose) -> Decision {
        disclose(&health_policy(), &RULES, record, to(t), purpose, now()).unwrap()
    }

    #[test]
    fn consent_and_the_childs_assent_both_needed_from_the_assent_age() {
        let record = fixtures::record();
        assert_eq!(
            record.consents.len(),
            2,
            "the form's caregiver consent and assent"
        );
        assert!(matches!(
            decide(&record, AgencyType::Health, Purpose::ServiceProvision),
            Decision::Permit(_)
        ));
        let mut no_assent = record.clone();
        no_assent
            .consents
            .retain(|c| c.given_by == Some(ConsentGiver::Caregiver));
        assert_eq!(
            decide(&no_assent, AgencyType::Health, Purpose::ServiceProvision),
            Decision::Deny {
                reason: DenyReason::NoAssent
            }
        );
        // Younger than the assent age: the caregiver's consent suffices.
        no_assent.child.date_of_birth = chrono::NaiveDate::from_ymd_opt(2020, 1, 1);
        assert!(matches!(
            decide(&no_assent, AgencyType::Health, Purpose::ServiceProvision),
            Decision::Permit(_)
        ));
        let mut withdrawn = record.clone();
        withdrawn.consents[0].withdrawn_at = Some(now());
        assert_eq!(
            decide(&withdrawn, AgencyType::Health, Purpose::ServiceProvision),
            Decision::Deny {
                reason: DenyReason::NoConsent
            }
        );
        let mut expired = record.clone();
        for c in &mut expired.consents {
            c.valid_until = Some(now() - chrono::Duration::days(1));
        }
        assert!(matches!(
            decide(&expired, AgencyType::Health, Purpose::ServiceProvision),
            Decision::Deny { .. }
        ));
        // Consent for service provision says nothing about legal proceedings.
        assert_eq!(
            decide(&record, AgencyType::Justice, Purpose::LegalProceedings),
            Decision::Deny {
                reason: DenyReason::NoConsent
            }
        );
    }

    #[test]
    fn a_deny_provision_removes_its_categories_and_a_legal_basis_stands_alone() {
        let mut record = fixtures::record();
        record.consents.push(consent(
            ConsentGiver::Caregiver,
            ProvisionKind::Deny,
            &[DataCategory::Health],
        ));
        let Decision::Permit(d) = decide(&record, AgencyType::Health, Purpose::ServiceProvision)
        else {
            panic!("identity and location are still consented");
        };
        assert!(!d.categories.contains(&DataCategory::Health));
        assert!(d.document["child"].get("disability").is_none());
        assert!(d.categories.contains(&DataCategory::Identity));

        let mut court = fixtures::closed_record().consents.pop().unwrap();
        court.withdrawn_at = None;
        court.valid_until = None;
        court.provisions[0].recipient_agency = None;
        record.consents = vec![court];
        let Decision::Permit(d) = decide(&record, AgencyType::Justice, Purpose::LegalProceedings)
        else {
            panic!("a court order permits without consent");
        };
        assert_eq!(
            d.categories,
            [DataCategory::Reference, DataCategory::Identity].into()
        );
    }

    mod generated {
        //! Strategies for the property test: random policies, consents (permits, denies,
        //! legal bases, withdrawn, expired), ages, recipients and purposes.

        use himaya_record::consent::ProvisionKind;
        use himaya_record::{AgencyType, ConsentGiver, DataCategory, Purpose};
        use proptest::prelude::*;
        use proptest::sample::{select, subsequence};

        use crate::PolicyRule;

        /// Any subset of `items`, in their order.
        fn subset<T: Clone + std::fmt::Debug + 'static>(
            items: &'static [T],
        ) -> impl Strategy<Value = Vec<T>> {
            subsequence(items, 0..=items.len())
        }

        pub fn categories() -> impl Strategy<Value = Vec<DataCategory>> {
            subset(&DataCategory::ALL)
        }

        pub fn agency_type() -> impl Strategy<Value = AgencyType> {
            select(AgencyType::ALL)
        }

        pub fn purpose() -> impl Strategy<Value = Purpose> {
            select(Purpose::ALL)
        }

        /// Up to 23 rules, as many as a ministry's policy has and more.
        pub fn rules() -> impl Strategy<Value = Vec<PolicyRule>> {
            let rule = (agency_type(), purpose(), categories()).prop_map(
                |(agency_type, purpose, categories)| PolicyRule {
                    agency_type,
                    purpose,
                    categories: categories.into_iter().collect(),
                },
            );
            prop::collection::vec(rule, 0..24)
        }

        /// Whether a consent is in force, withdrawn or past its end (one in six each).
        #[derive(Debug, Clone, Copy)]
        pub enum Validity {
            Withdrawn,
            Expired,
            Current,
        }

        /// One consent's inputs, made into a `Consent` by the test.
        #[derive(Debug, Clone)]
        pub struct ConsentSpec {
            pub giver: ConsentGiver,
            pub kind: ProvisionKind,
            pub categories: Vec<DataCategory>,
            pub purposes: Vec<Purpose>,
            pub recipient_type: Option<AgencyType>,
            /// One in five: given under a court order instead of by someone.
            pub court_order: bool,
            pub validity: Validity,
        }

        /// Up to five consents.
        pub fn consents() -> impl Strategy<Value = Vec<ConsentSpec>> {
            let validity = prop_oneof![
                1 => Just(Validity::Withdrawn),
                1 => Just(Validity::Expired),
                4 => Just(Validity::Current),
            ];
            let one = (
                select(ConsentGiver::ALL),
                select(ProvisionKind::ALL),
                categories(),
                subset(Purpose::ALL),
                prop::option::of(agency_type()),
                prop::bool::weighted(0.2),
                validity,
            )
                .prop_map(
                    |(giver, kind, categories, purposes, recipient_type, court_order, validity)| {
                        ConsentSpec {
                            giver,
                            kind,
                            categories,
                            purposes,
                            recipient_type,
                            court_order,
                            validity,
                        }
                    },
                );
            prop::collection::vec(one, 0..6)
        }
    }

    /// Random policies, consents (permits, denies, legal bases, withdrawn, expired),
    /// recipients and purposes: nothing outside what policy and consent both permit leaves.
    /// 4096 cases; a failure shrinks to the smallest policy and consents that show it.
    #[test]
    fn property_nothing_leaves_outside_policy_and_consent() {
        use generated::Validity;
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};

        let base = fixtures::closed_record();
        let now = now();
        let permits = std::cell::Cell::new(0u32);
        let inputs = (
            generated::rules(),
            // Half the children are younger than the assent age.
            any::<bool>(),
            generated::consents(),
            generated::agency_type(),
            generated::purpose(),
        );
        let mut runner = TestRunner::new(Config {
            source_file: Some(file!()),
            ..Config::with_cases(4096)
        });
        let outcome = runner.run(
            &inputs,
            |(rules, young, consents, recipient_type, purpose)| {
                let policy = SharingPolicy {
                    rules,
                    ..Default::default()
                };
                let mut record = base.clone();
                if young {
                    record.child.date_of_birth = chrono::NaiveDate::from_ymd_opt(2021, 5, 1);
                }
                record.consents = consents
                    .into_iter()
                    .enumerate()
                    .map(|(i, spec)| {
                        let mut c = consent(spec.giver, spec.kind, &spec.categories);
                        c.consent_id = format!("cns_{i}");
                        c.provisions[0].purposes = spec.purposes;
                        c.provisions[0].recipient_type = spec.recipient_type;
                        if spec.court_order {
                            c.given_by = None;
                            c.legal_basis = Some(himaya_record::consent::LegalBasis::CourtOrder);
                        }
                        match spec.validity {
                            Validity::Withdrawn => c.withdrawn_at = Some(now),
                            Validity::Expired => {
                                c.valid_until = Some(now - chrono::Duration::seconds(1))
                            }
                            Validity::Current => {}
                        }
                        c
                    })
                    .collect();
                let recipient = to(recipient_type);
                let decision = disclose(&policy, &RULES, &record, recipient, purpose, now).unwrap();
                // The decision alone (intake's warning) says what disclosing would.
                match (
                    &decision,
                    crate::decide(&policy, &RULES, &record, recipient, purpose, now),
                ) {
                    (Decision::Permit(d), Ok(allowed)) => {
                        prop_assert!(
                            d.categories.is_subset(&allowed),
                            "decide allows less than disclose sent"
                        )
                    }
                    (Decision::Deny { reason }, Err(r)) => prop_assert_eq!(*reason, r),
                    (d, r) => prop_assert!(
                        false,
                        "disclose permits: {}, decide permits: {}",
                        matches!(d, Decision::Permit(_)),
                        r.is_ok()
                    ),
                }
                let Decision::Permit(d) = decision else {
                    return Ok(());
                };
                permits.set(permits.get() + 1);
                let by_policy = policy.allowed(recipient.agency_type, purpose);
                let active: Vec<&Consent> = record
                    .consents
                    .iter()
                    .filter(|c| c.is_active(now))
                    .collect();
                for path in leaf_paths(&d.document) {
                    let c = category_of(&path).unwrap();
                    prop_assert!(by_policy.contains(&c), "{path} ({c:?}) beyond the policy");
                    if c == DataCategory::Reference {
                        continue;
                    }
                    let permitted = active.iter().any(|k| {
                        k.provisions.iter().any(|p| {
                            p.kind == ProvisionKind::Permit
                                && p.recipient_type.is_none_or(|t| t == recipient.agency_type)
                                && (p.purposes.is_empty() || p.purposes.contains(&purpose))
                                && (p.categories.is_empty() || p.categories.contains(&c))
                        })
                    });
                    prop_assert!(permitted, "{path} ({c:?}) without an active permit");
                }
                Ok(())
            },
        );
        if let Err(e) = outcome {
            panic!("{e}");
        }
        let permits = permits.get();
        assert!(
            permits > 50,
            "the generator must reach permits too: {permits}"
        );
    }

    #[test]
    fn unknown_categories_in_policy_are_refused() {
        let bad = serde_json::from_value::<SharingPolicy>(serde_json::json!({"rules": [
            {"agency_type": "health", "purpose": "service_provision", "categories": ["everything"]}
        ]}));
        assert!(bad.is_err());
    }
}
