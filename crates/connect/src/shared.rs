//! What an agency may receive of a case: the record as the sharing layer redacted it for
//! that agency, where any field may be missing because its category was not permitted.
//! Every mapping reads the case through this view, so a mapping can only ever send what
//! the consent layer let through: a field absent here cannot appear on the wire.

use chrono::{DateTime, NaiveDate, Utc};
use himaya_record::{
    ConcernKind, DocumentKind, PersonName, Priority, Relationship, RiskLevel, ServiceType, Sex,
    SourceKind, TargetGroup,
};
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct SharedCase {
    pub case_id: Option<String>,
    pub version: Option<i64>,
    pub status: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub referral: SharedReferral,
    pub child: SharedChild,
    pub caregivers: Vec<SharedCaregiver>,
    pub household: SharedHousehold,
    pub concerns: Vec<SharedConcern>,
    pub risk_level: Option<RiskLevel>,
    pub target_groups: Vec<TargetGroup>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct SharedReferral {
    pub referral_id: Option<String>,
    pub source: Option<SharedSource>,
    pub received_at: Option<DateTime<Utc>>,
    pub priority: Option<Priority>,
    pub requested_services: Vec<ServiceType>,
    pub narrative: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct SharedSource {
    pub kind: Option<SourceKind>,
    pub agency_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct SharedChild {
    pub name: Option<SharedName>,
    pub sex: Option<Sex>,
    pub date_of_birth: Option<NaiveDate>,
    pub estimated_age_years: Option<u8>,
    pub nationality: Option<String>,
    pub identity_documents: Vec<SharedDocument>,
    pub governorate: Option<String>,
    pub district: Option<String>,
    pub address: Option<String>,
    pub disability: Option<String>,
    pub school: Option<SharedSchool>,
}

/// A name as the redaction left it (its two parts share one category, but the view does
/// not rely on that).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct SharedName {
    pub as_given: Option<String>,
    pub transliteration: Option<String>,
}

impl From<PersonName> for SharedName {
    fn from(n: PersonName) -> Self {
        SharedName {
            as_given: Some(n.as_given),
            transliteration: n.transliteration,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct SharedDocument {
    pub kind: Option<DocumentKind>,
    pub number: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct SharedSchool {
    pub name: Option<String>,
    pub grade: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct SharedCaregiver {
    pub name: Option<SharedName>,
    pub relationship: Option<Relationship>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub primary: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct SharedHousehold {
    pub size: Option<u16>,
    pub cash_transfer_beneficiary: Option<bool>,
    pub income_source: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct SharedConcern {
    pub kind: ConcernKind,
}

/// A withdrawal notice: which case, which consent, which categories, from when; no case data.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct SharedNotice {
    pub notice_id: String,
    pub case_id: String,
    pub consent_id: String,
    pub categories: Vec<String>,
    pub withdrawn_at: String,
    #[serde(default)]
    pub message_en: String,
    #[serde(default)]
    pub message_ar: String,
}

impl SharedNotice {
    /// The plain JSON most agencies' systems take.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "notice_id": self.notice_id,
            "case_ref": self.case_id,
            "categories": self.categories,
            "withdrawn_at": self.withdrawn_at,
            "message_ar": self.message_ar,
            "message_en": self.message_en,
        })
    }

    pub fn parse(document_json: &str) -> Result<SharedNotice, MappingError> {
        read_document(document_json)
    }
}

/// What became of a case an agency referred: ids, the change and the status, no case data.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct SharedOutcome {
    pub case_id: String,
    /// The agency's own referral (`ref_` id) the case came from.
    pub referral_id: String,
    /// registered | referred_on | declined | assigned | closed | reopened
    pub change: String,
    pub status: String,
    pub version: i64,
    pub at: String,
    pub message_ar: String,
    pub message_en: String,
}

impl SharedOutcome {
    pub fn parse(document_json: &str) -> Result<SharedOutcome, MappingError> {
        read_document(document_json)
    }

    /// The plain JSON most agencies' systems take.
    pub fn to_json(&self, feedback_id: &str) -> serde_json::Value {
        serde_json::json!({
            "feedback_id": feedback_id,
            "case_ref": self.case_id,
            "referral_ref": self.referral_id,
            "change": self.change,
            "status": self.status,
            "at": self.at,
            "message_ar": self.message_ar,
            "message_en": self.message_en,
        })
    }
}

/// The redacted document could not be read as a case: it is parked, never sent half-made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("the delivery's document is not a case the connector can read: {0}")]
    Document(String),
    #[error("the delivery lacks `{0}`, which this agency's standard requires")]
    Missing(&'static str),
    #[error("this agency's connector does not support `{0}` deliveries")]
    Unsupported(String),
}

impl SharedCase {
    /// Reads the redacted document. serde's message names the field and the expected
    /// type, never the value.
    pub fn parse(document_json: &str) -> Result<SharedCase, MappingError> {
        read_document(document_json)
    }
}

/// Reads a delivery's document. serde's message names the field and the expected type,
/// and can quote the value, so only the place and the kind of problem are kept.
fn read_document<T: serde::de::DeserializeOwned>(document_json: &str) -> Result<T, MappingError> {
    serde_json::from_str(document_json).map_err(|e| {
        MappingError::Document(format!(
            "line {} column {}: {}",
            e.line(),
            e.column(),
            kind(&e)
        ))
    })
}

fn kind(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "a field has the wrong type",
        serde_json::error::Category::Eof => "truncated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_document_reads_with_the_rest_absent() {
        let s = SharedCase::parse(
            r#"{"case_id":"case_1","child":{"name":{"as_given":"مريم"},"sex":"female"}}"#,
        )
        .unwrap();
        assert_eq!(s.case_id.as_deref(), Some("case_1"));
        assert_eq!(s.child.name.unwrap().as_given.as_deref(), Some("مريم"));
        assert!(s.child.date_of_birth.is_none() && s.risk_level.is_none());
    }

    #[test]
    fn wrong_types_are_refused_without_echoing_values() {
        let e = SharedCase::parse(r#"{"child":{"sex":"سر"}}"#).unwrap_err();
        assert!(!e.to_string().contains("سر"), "{e}");
        assert!(SharedCase::parse("{not json").is_err());
    }
}
