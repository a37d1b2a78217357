//! Where a deployment chooses how the hub speaks an agency's standard (docs/standards.md):
//! FHIR R4's identifier systems, the SPDCI search's registry type, locale and purpose
//! codes, and each Primero instance's own lookups and custom case fields
//! (`[standards.primero.<agency id>]`). Every part has defaults, so a deployment sets only what
//! differs.

use std::collections::{BTreeMap, BTreeSet};

use himaya_record::{ConcernKind, DocumentKind, Relationship, ServiceType, Sex};
use serde::Deserialize;

use crate::{invalid, SettingsError};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StandardsSettings {
    pub fhir: FhirSettings,
    pub spdci: SpdciSettings,
    /// A Primero-run agency's form, by agency id; an agency without one gets Primero's
    /// stock case forms and lookups.
    pub primero: BTreeMap<String, PrimeroSettings>,
}

/// The hub's ids as FHIR identifiers, and its codes as code systems.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FhirSettings {
    /// The base of the hub's identifier systems (`{system_base}/sid/case-id`, …), code
    /// systems (`{system_base}/CodeSystem/…`) and extensions
    /// (`{system_base}/StructureDefinition/…`): a URL the deployment controls.
    pub system_base: String,
    /// Identifier systems set one by one, over `system_base`: `case`, `referral`,
    /// `feedback`, `notice`, `delivery`, `disability`, or a kind of identity document
    /// (`national_id = "urn:oid:…"`, the registry's own system for its numbers).
    pub identifier_systems: BTreeMap<String, String>,
}

impl Default for FhirSettings {
    fn default() -> Self {
        FhirSettings {
            system_base: "https://himaya.example/fhir".into(),
            identifier_systems: BTreeMap::new(),
        }
    }
}

/// The hub's own identifiers a FHIR deployment may give a system of its own.
pub const FHIR_HUB_IDENTIFIERS: [&str; 6] = [
    "case",
    "referral",
    "feedback",
    "notice",
    "delivery",
    "disability",
];

/// The SPDCI registry search's choices.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpdciSettings {
    /// `search_criteria.reg_type` (the registry core API's RegistryType).
    pub reg_type: String,
    /// The answer's language, an ISO 639-3 code as the specification's LanguageCode asks.
    pub locale: String,
    /// Where the purpose codes of the consent and authorize objects are documented
    /// (their `purpose.ref_uri`); none: left out.
    pub purpose_ref_uri: Option<String>,
}

impl Default for SpdciSettings {
    fn default() -> Self {
        SpdciSettings {
            reg_type: "ns:org:RegistryType:Social".into(),
            locale: "ara".into(),
            purpose_ref_uri: None,
        }
    }
}

/// Fields the hub can fill that Primero's stock case forms do not define: sent to an
/// instance only when it declares them in `custom_fields`.
pub const PRIMERO_CUSTOM_FIELDS: [&str; 7] = [
    "himaya_referral_id",
    "address_district",
    "school_name",
    "family_size",
    "cash_transfer_beneficiary",
    "birth_cert_no",
    "passport_no",
];

/// One Primero instance's form: the custom fields it added, and its lookup values for the
/// hub's words (over the defaults the connector takes from Primero's stock lookups).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PrimeroSettings {
    /// Custom case fields this instance defines (of [`PRIMERO_CUSTOM_FIELDS`]).
    pub custom_fields: BTreeSet<String>,
    pub lookups: PrimeroLookups,
}

/// The hub's word → the instance's lookup value id; `""` leaves that word out.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PrimeroLookups {
    /// `lookup-gender`, from the hub's sex (female, male, not_stated).
    pub sex: BTreeMap<String, String>,
    /// `lookup-country` (the stock `nationality` field's lookup), from the hub's
    /// nationality codes (EGY, SYR, …).
    pub nationality: BTreeMap<String, String>,
    /// `lookup-protection-concerns`, from the hub's protection concerns.
    pub protection_concerns: BTreeMap<String, String>,
    /// `lookup-disability-type`, from the hub's disability texts (as caseworkers write them).
    pub disability_type: BTreeMap<String, String>,
    /// `lookup-family-relationship`, from the hub's caregiver relationships.
    pub relation: BTreeMap<String, String>,
    /// `lookup-service-type`, from the hub's service types.
    pub service_type: BTreeMap<String, String>,
}

/// A lookup's words of the hub (none: any text, such as a disability as written).
type Words = Vec<&'static str>;

/// An absolute URI (`scheme:rest`, no spaces): what FHIR systems and SPDCI `ref_uri`s are.
fn absolute_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'))
        && !rest.is_empty()
        && !s.chars().any(char::is_whitespace)
        && s.len() <= 500
}

impl StandardsSettings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        let f = &self.fhir;
        if !absolute_uri(&f.system_base) || f.system_base.ends_with('/') {
            return Err(invalid(
                "standards.fhir.system_base",
                "must be an absolute URL without a trailing / (e.g. https://hub.example.org/fhir)",
            ));
        }
        for (name, system) in &f.identifier_systems {
            let known = FHIR_HUB_IDENTIFIERS.contains(&name.as_str())
                || DocumentKind::parse(name).is_some();
            if !known {
                let mut all: Vec<&str> = FHIR_HUB_IDENTIFIERS.to_vec();
                all.extend(DocumentKind::ALL.iter().map(|k| k.as_str()));
                return Err(invalid(
                    format!("standards.fhir.identifier_systems.{name}"),
                    format!(
                        "is not an identifier of the hub; one of: {}",
                        all.join(", ")
                    ),
                ));
            }
            if !absolute_uri(system) {
                return Err(invalid(
                    format!("standards.fhir.identifier_systems.{name}"),
                    "must be an absolute URI (https://… or urn:oid:…)",
                ));
            }
        }
        let s = &self.spdci;
        if s.reg_type.trim().is_empty() || s.reg_type.len() > 200 {
            return Err(invalid(
                "standards.spdci.reg_type",
                "must be a registry type of 1-200 characters (e.g. ns:org:RegistryType:Social)",
            ));
        }
        if s.locale.len() != 3 || !s.locale.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(invalid(
                "standards.spdci.locale",
                "must be a three-letter ISO 639-3 code in lower case (e.g. ara)",
            ));
        }
        if let Some(u) = &s.purpose_ref_uri {
            if !absolute_uri(u) {
                return Err(invalid(
                    "standards.spdci.purpose_ref_uri",
                    "must be an absolute URI",
                ));
            }
        }
        for (id, p) in &self.primero {
            p.validate(&format!("standards.primero.{id}"))?;
        }
        Ok(())
    }
}

impl PrimeroSettings {
    /// `key`: where this block is (`standards.primero.<agency id>`).
    pub fn validate(&self, key: &str) -> Result<(), SettingsError> {
        if let Some(bad) = self
            .custom_fields
            .iter()
            .find(|f| !PRIMERO_CUSTOM_FIELDS.contains(&f.as_str()))
        {
            return Err(invalid(
                format!("{key}.custom_fields"),
                format!(
                    "`{bad}` is not a field the hub can fill; one of: {}",
                    PRIMERO_CUSTOM_FIELDS.join(", ")
                ),
            ));
        }
        let l = &self.lookups;
        let words = |all: Vec<&'static str>| all.join(", ");
        let checks: [(&str, &BTreeMap<String, String>, Option<Words>); 6] = [
            (
                "sex",
                &l.sex,
                Some(Sex::ALL.iter().map(|v| v.as_str()).collect()),
            ),
            ("nationality", &l.nationality, None),
            (
                "protection_concerns",
                &l.protection_concerns,
                Some(ConcernKind::ALL.iter().map(|v| v.as_str()).collect()),
            ),
            ("disability_type", &l.disability_type, None),
            (
                "relation",
                &l.relation,
                Some(Relationship::ALL.iter().map(|v| v.as_str()).collect()),
            ),
            (
                "service_type",
                &l.service_type,
                Some(ServiceType::ALL.iter().map(|v| v.as_str()).collect()),
            ),
        ];
        for (lookup, map, vocabulary) in checks {
            for (word, id) in map {
                let at = format!("{key}.lookups.{lookup}");
                match &vocabulary {
                    Some(all) if !all.contains(&word.as_str()) => {
                        return Err(invalid(
                            at,
                            format!(
                                "`{word}` is not a word of the hub; one of: {}",
                                words(all.clone())
                            ),
                        ))
                    }
                    None if word.trim().is_empty() || word.chars().count() > 200 => {
                        return Err(invalid(at, "each value of the hub needs 1-200 characters"))
                    }
                    _ => {}
                }
                let id_ok = id.len() <= 100
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if !id_ok {
                    return Err(invalid(
                        at,
                        "a Primero lookup value id is up to 100 of a-z, 0-9 and _ (\"\" leaves the word out)",
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        StandardsSettings::default().validate().unwrap();
        PrimeroSettings::default()
            .validate("agencies.x.primero")
            .unwrap();
    }

    #[test]
    fn mistakes_are_named_by_key() {
        let mut s = StandardsSettings::default();
        s.fhir
            .identifier_systems
            .insert("national_id".into(), "urn:oid:2.16.818.1".into());
        s.validate().unwrap();
        s.fhir
            .identifier_systems
            .insert("tax".into(), "urn:oid:1".into());
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("standards.fhir.identifier_systems.tax"), "{e}");
        let mut s = StandardsSettings::default();
        s.fhir.system_base = "himaya fhir".into();
        assert!(s.validate().is_err());
        let mut s = StandardsSettings::default();
        s.spdci.locale = "ar".into();
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("standards.spdci.locale"), "{e}");

        let mut p = PrimeroSettings::default();
        p.custom_fields.insert("favourite_colour".into());
        let e = p.validate("agencies.m.primero").unwrap_err().to_string();
        assert!(e.contains("agencies.m.primero.custom_fields"), "{e}");
        let mut p = PrimeroSettings::default();
        p.lookups.sex.insert("girl".into(), "female".into());
        assert!(p.validate("k").is_err());
        let mut p = PrimeroSettings::default();
        p.lookups
            .protection_concerns
            .insert("neglect".into(), "Neglect Case".into());
        assert!(p.validate("k").is_err());
        p.lookups
            .protection_concerns
            .insert("neglect".into(), String::new());
        p.validate("k").unwrap();
    }
}
