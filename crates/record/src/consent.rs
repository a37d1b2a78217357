//! Consent records (modelled on FHIR Consent) and legal bases, kept on the case record,
//! and what they permit: the consent half of every disclosure decision (the policy half
//! is `himaya_sharing`). Pure: no I/O, time passed in.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::record::{AgencyType, CaseRecord, ConsentGiver, Purpose};
use crate::validate::age_on;
use crate::DataCategory;

vocabulary!(
    /// How consent was given.
    ConsentMethod { Written => "written", Verbal => "verbal" }
);

vocabulary!(
    /// Whether a provision permits or denies what it names.
    ProvisionKind { Permit => "permit", Deny => "deny" }
);

vocabulary!(
    /// Grounds for sharing other than consent; each recorded with its reference.
    LegalBasis {
        VitalInterests => "vital_interests",
        LegalObligation => "legal_obligation",
        CourtOrder => "court_order",
    }
);

/// One rule of a consent: permit or deny, to whom, for what, which data. An empty list
/// means "any".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provision {
    pub kind: ProvisionKind,
    /// One agency (directory id), or …
    #[serde(default)]
    pub recipient_agency: Option<String>,
    /// … every agency of a type; neither: any recipient.
    #[serde(default)]
    pub recipient_type: Option<AgencyType>,
    #[serde(default)]
    pub purposes: Vec<Purpose>,
    #[serde(default)]
    pub categories: Vec<DataCategory>,
}

impl Provision {
    fn applies(&self, agency_id: &str, agency_type: AgencyType, purpose: Purpose) -> bool {
        self.recipient_agency
            .as_deref()
            .is_none_or(|a| a == agency_id)
            && self.recipient_type.is_none_or(|t| t == agency_type)
            && (self.purposes.is_empty() || self.purposes.contains(&purpose))
    }

    fn covers(&self) -> BTreeSet<DataCategory> {
        if self.categories.is_empty() {
            DataCategory::ALL.into_iter().collect()
        } else {
            self.categories.iter().copied().collect()
        }
    }
}

/// A consent (given by the caregiver, or the child's own assent) or a legal basis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// `cns_…` for consents recorded in the hub; a referrer's own reference otherwise.
    pub consent_id: String,
    /// Who consented; absent for a legal basis.
    #[serde(default)]
    pub given_by: Option<ConsentGiver>,
    #[serde(default)]
    pub method: Option<ConsentMethod>,
    /// Set instead of `given_by` when sharing rests on law, not consent.
    #[serde(default)]
    pub legal_basis: Option<LegalBasis>,
    /// The court order, statute or decision the legal basis rests on.
    #[serde(default)]
    pub legal_reference: Option<String>,
    pub provisions: Vec<Provision>,
    pub valid_from: DateTime<Utc>,
    #[serde(default)]
    pub valid_until: Option<DateTime<Utc>>,
    pub recorded_by: String,
    pub recorded_at: DateTime<Utc>,
    /// Set when withdrawn; disclosures stop from this instant.
    #[serde(default)]
    pub withdrawn_at: Option<DateTime<Utc>>,
    /// 1 when granted, +1 per amendment.
    pub revision: i64,
}

impl Consent {
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.withdrawn_at.is_none()
            && self.valid_from <= now
            && self.valid_until.is_none_or(|u| now < u)
    }
}

/// Age rules for consent (configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentRules {
    /// From this age the child's own assent is needed as well as the caregiver's consent.
    pub assent_from_age: i32,
    /// From this age the child's own consent suffices without a caregiver's.
    pub own_consent_from_age: i32,
    /// The case-owning ministry reads its own cases under its legal mandate, without
    /// consent (each such read is in the disclosure log with the basis
    /// `legal_obligation`); other agencies still need consent. See docs/decisions.md.
    #[serde(default = "by_law")]
    pub owner_reads_by_legal_obligation: bool,
}

fn by_law() -> bool {
    true
}

/// Why consent does not allow a disclosure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentGap {
    /// No active consent or legal basis covers this recipient and purpose.
    NoConsent,
    /// The caregiver consented but the child (old enough to assent) did not.
    NoAssent,
}

/// The categories consent and legal bases allow for this recipient and purpose.
pub fn consented(
    record: &CaseRecord,
    agency_id: &str,
    agency_type: AgencyType,
    purpose: Purpose,
    rules: &ConsentRules,
    now: DateTime<Utc>,
) -> Result<BTreeSet<DataCategory>, ConsentGap> {
    let active: Vec<&Consent> = record
        .consents
        .iter()
        .filter(|c| c.is_active(now))
        .collect();
    let scope = |from: &dyn Fn(&Consent) -> bool| -> BTreeSet<DataCategory> {
        let mut permit = BTreeSet::new();
        let mut deny = BTreeSet::new();
        for c in active.iter().filter(|c| from(c)) {
            for p in c
                .provisions
                .iter()
                .filter(|p| p.applies(agency_id, agency_type, purpose))
            {
                match p.kind {
                    ProvisionKind::Permit => permit.extend(p.covers()),
                    ProvisionKind::Deny => deny.extend(p.covers()),
                }
            }
        }
        permit.difference(&deny).copied().collect()
    };
    // A legal basis stands on its own: a caregiver's refusal does not undo a court order.
    let legal = scope(&|c| c.legal_basis.is_some());
    let caregiver = scope(&|c| c.given_by == Some(ConsentGiver::Caregiver));
    let child = scope(&|c| c.given_by == Some(ConsentGiver::ChildAssent));
    let age = age_years(record, now.date_naive());
    let by_consent: BTreeSet<DataCategory> = match age {
        Some(a) if a >= rules.own_consent_from_age => child.union(&caregiver).copied().collect(),
        Some(a) if a >= rules.assent_from_age => caregiver.intersection(&child).copied().collect(),
        _ => caregiver.clone(),
    };
    let allowed: BTreeSet<DataCategory> = legal.union(&by_consent).copied().collect();
    if allowed.iter().any(|c| *c != DataCategory::Reference) {
        Ok(allowed)
    } else if !caregiver.is_empty() && legal.is_empty() {
        Err(ConsentGap::NoAssent)
    } else {
        Err(ConsentGap::NoConsent)
    }
}

/// The consents and legal bases a disclosure of `categories` rests on: active ones with
/// a permit provision for this recipient and purpose covering one of them.
pub fn basis(
    record: &CaseRecord,
    agency_id: &str,
    agency_type: AgencyType,
    purpose: Purpose,
    categories: &BTreeSet<DataCategory>,
    now: DateTime<Utc>,
) -> Vec<String> {
    record
        .consents
        .iter()
        .filter(|c| c.is_active(now))
        .filter(|c| {
            c.provisions.iter().any(|p| {
                p.kind == ProvisionKind::Permit
                    && p.applies(agency_id, agency_type, purpose)
                    && p.covers()
                        .iter()
                        .any(|k| *k != DataCategory::Reference && categories.contains(k))
            })
        })
        .map(|c| c.consent_id.clone())
        .collect()
}

/// The child's age today: from the birth date, or the estimate given at referral.
pub fn age_years(record: &CaseRecord, today: NaiveDate) -> Option<i32> {
    match (record.child.date_of_birth, record.child.estimated_age_years) {
        (Some(dob), _) => Some(age_on(dob, today)),
        (None, Some(est)) => {
            let years_since = age_on(record.created_at.date_naive(), today);
            Some(i32::from(est) + years_since)
        }
        (None, None) => None,
    }
}

/// A provision's contradictions: the same recipient, purpose and category both
/// permitted and denied within one consent.
pub fn contradictions(provisions: &[Provision]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (i, a) in provisions.iter().enumerate() {
        for (j, b) in provisions.iter().enumerate().skip(i + 1) {
            let same_scope = a.kind != b.kind
                && a.recipient_agency == b.recipient_agency
                && a.recipient_type == b.recipient_type
                && overlap(&a.purposes, &b.purposes)
                && overlap(&a.categories, &b.categories);
            if same_scope {
                out.push((i, j));
            }
        }
    }
    out
}

fn overlap<T: PartialEq>(a: &[T], b: &[T]) -> bool {
    a.is_empty() || b.is_empty() || a.iter().any(|x| b.contains(x))
}

/// How long the consent recorded on a referral form holds unless amended.
pub const REFERRAL_CONSENT_DAYS: i64 = 365;

/// The consents a referral form carries (`consent_refs`): the referrer attests that the
/// caregiver (and the child, where old enough) agreed to the referral, which the hub
/// records as consent to share for service provision, for a year. Narrower or wider
/// consent is recorded afterwards (`GrantConsent`, `AmendConsent`).
pub fn from_referral(
    refs: &[crate::record::ConsentRef],
    recorded_by: &str,
    now: DateTime<Utc>,
) -> Vec<Consent> {
    refs.iter()
        .map(|r| Consent {
            consent_id: r.consent_id.clone(),
            given_by: Some(r.given_by),
            method: None,
            legal_basis: None,
            legal_reference: None,
            provisions: vec![Provision {
                kind: ProvisionKind::Permit,
                recipient_agency: None,
                recipient_type: None,
                purposes: vec![Purpose::ServiceProvision],
                categories: vec![],
            }],
            valid_from: now,
            valid_until: Some(now + chrono::Duration::days(REFERRAL_CONSENT_DAYS)),
            recorded_by: recorded_by.to_owned(),
            recorded_at: now,
            withdrawn_at: None,
            revision: 1,
        })
        .collect()
}
