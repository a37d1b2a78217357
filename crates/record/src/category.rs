//! Data categories: every field of the normalized record belongs to exactly one, and the
//! sharing layer decides disclosure per category. The table below is the single place
//! that says which field is which; a test walks a fully populated record and fails if
//! any field is missing from it, so a new field cannot slip out uncategorised.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataCategory {
    /// Ids, version, status, dates and the service asked for: what a recipient needs to
    /// route, deduplicate and answer, and nothing about the child.
    Reference,
    /// Names, sex, birth date or age, nationality, identity documents, relationships.
    Identity,
    /// Addresses and phone numbers.
    Contact,
    /// Governorate, district, school.
    Location,
    /// Concerns, risk level, target groups, who referred.
    ProtectionConcern,
    /// Disability and other health information.
    Health,
    /// Anything about courts, police or legal status.
    Justice,
    /// Household size, income, cash-transfer enrolment.
    Economic,
    /// Free text written by professionals.
    CaseNotes,
}

impl DataCategory {
    pub const ALL: [DataCategory; 9] = [
        Self::Reference,
        Self::Identity,
        Self::Contact,
        Self::Location,
        Self::ProtectionConcern,
        Self::Health,
        Self::Justice,
        Self::Economic,
        Self::CaseNotes,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reference => "reference",
            Self::Identity => "identity",
            Self::Contact => "contact",
            Self::Location => "location",
            Self::ProtectionConcern => "protection_concern",
            Self::Health => "health",
            Self::Justice => "justice",
            Self::Economic => "economic",
            Self::CaseNotes => "case_notes",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for DataCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown data category `{0}`; known: reference, identity, contact, location, protection_concern, health, justice, economic, case_notes")]
pub struct UnknownCategory(pub String);

impl FromStr for DataCategory {
    type Err = UnknownCategory;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownCategory(s.to_owned()))
    }
}

use DataCategory::*;

/// Every leaf field of the serialized [`crate::CaseRecord`], by path. Array elements are
/// written `[]`. A path missing here is treated as undisclosable (default deny).
pub const FIELD_CATEGORIES: &[(&str, DataCategory)] = &[
    ("case_id", Reference),
    ("version", Reference),
    ("status", Reference),
    ("created_at", Reference),
    ("updated_at", Reference),
    ("referral.referral_id", Reference),
    ("referral.received_at", Reference),
    ("referral.priority", Reference),
    ("referral.requested_services[]", Reference),
    ("referral.source.kind", ProtectionConcern),
    ("referral.source.agency_id", ProtectionConcern),
    ("referral.source.staff_ref", CaseNotes),
    ("referral.narrative", CaseNotes),
    ("child.name.as_given", Identity),
    ("child.name.transliteration", Identity),
    ("child.sex", Identity),
    ("child.date_of_birth", Identity),
    ("child.estimated_age_years", Identity),
    ("child.nationality", Identity),
    ("child.identity_documents[].kind", Identity),
    ("child.identity_documents[].number", Identity),
    ("child.identity_documents[].issuer", Identity),
    ("child.governorate", Location),
    ("child.district", Location),
    ("child.address", Contact),
    ("child.disability", Health),
    ("child.school.name", Location),
    ("child.school.grade", Location),
    ("caregivers[].name.as_given", Identity),
    ("caregivers[].name.transliteration", Identity),
    ("caregivers[].relationship", Identity),
    ("caregivers[].phone", Contact),
    ("caregivers[].address", Contact),
    ("caregivers[].primary", Identity),
    ("household.size", Economic),
    ("household.cash_transfer_beneficiary", Economic),
    ("household.income_source", Economic),
    ("concerns[].kind", ProtectionConcern),
    ("concerns[].labour_criteria[]", ProtectionConcern),
    ("risk_level", ProtectionConcern),
    ("target_groups[]", ProtectionConcern),
    ("consent_refs[].consent_id", Reference),
    ("consent_refs[].given_by", Reference),
    ("acceptance.decision", Reference),
    ("acceptance.vulnerability_criteria[]", ProtectionConcern),
    ("acceptance.target_groups[]", ProtectionConcern),
    ("acceptance.reason", CaseNotes),
    ("acceptance.referred_on_to", Reference),
    ("acceptance.decided_by", Reference),
    ("acceptance.decided_at", Reference),
    ("assignment.caseworker_id", Reference),
    ("assignment.supervisor_id", Reference),
    ("assignment.assigned_at", Reference),
    ("assessment.risk_factors[]", ProtectionConcern),
    ("assessment.protective_factors[]", ProtectionConcern),
    ("assessment.needs[].domain", ProtectionConcern),
    // A need's words can be about health, the law or money: the most guarded text class.
    ("assessment.needs[].description", CaseNotes),
    ("assessment.assessed_by", Reference),
    ("assessment.assessed_at", Reference),
    ("plan.goals[].description", CaseNotes),
    ("plan.goals[].actions[].action_id", Reference),
    ("plan.goals[].actions[].description", CaseNotes),
    ("plan.goals[].actions[].responsible_agency", Reference),
    ("plan.goals[].actions[].service_type", Reference),
    ("plan.goals[].actions[].due_on", Reference),
    ("plan.goals[].actions[].done", Reference),
    ("plan.set_by", Reference),
    ("plan.set_at", Reference),
    // The reason can be the child's death: protection concern, not reference.
    ("closure.reason", ProtectionConcern),
    ("closure.parents_consulted", CaseNotes),
    ("closure.final_evaluation", CaseNotes),
    ("closure.recommendations", CaseNotes),
    ("closure.closed_by", Reference),
    ("closure.closed_at", Reference),
    ("merged_into", Reference),
    // Consents travel with the data they govern, so a recipient knows its limits; the
    // court order or statute behind a legal basis is justice data.
    ("consents[].consent_id", Reference),
    ("consents[].given_by", Reference),
    ("consents[].method", Reference),
    ("consents[].legal_basis", Reference),
    ("consents[].legal_reference", Justice),
    ("consents[].provisions[].kind", Reference),
    ("consents[].provisions[].recipient_agency", Reference),
    ("consents[].provisions[].recipient_type", Reference),
    ("consents[].provisions[].purposes[]", Reference),
    ("consents[].provisions[].categories[]", Reference),
    ("consents[].valid_from", Reference),
    ("consents[].valid_until", Reference),
    ("consents[].recorded_by", Reference),
    ("consents[].recorded_at", Reference),
    ("consents[].withdrawn_at", Reference),
    ("consents[].revision", Reference),
];

/// The category of a field path, or `None` for a path nobody categorised (never disclosed).
pub fn category_of(path: &str) -> Option<DataCategory> {
    FIELD_CATEGORIES
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, c)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_parse_and_print() {
        for c in DataCategory::ALL {
            assert_eq!(c.as_str().parse::<DataCategory>(), Ok(c));
        }
        assert!("secrets".parse::<DataCategory>().is_err());
    }

    #[test]
    fn table_has_no_duplicate_paths() {
        let mut paths: Vec<_> = FIELD_CATEGORIES.iter().map(|(p, _)| *p).collect();
        paths.sort_unstable();
        let before = paths.len();
        paths.dedup();
        assert_eq!(before, paths.len());
    }
}
