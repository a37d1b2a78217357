//! What a Primero-run directorate sends the hub (pure, no I/O): its cases, as agency
//! referrals, and its answers to referrals and transfers.

use chrono::NaiveDate;
use himaya_connect::inbound::{id as inbound_id, opt_text, text};
use himaya_connect::{msg, InboundError, StatusChange};
use himaya_record::{
    Child, Concern, ConcernKind, ConsentGiver, ConsentRef, DocumentKind, Household,
    IdentityDocument, PersonName, ReferralDetails, RiskLevel, ServiceType, Sex,
};
use serde_json::Value;

use crate::profile::Profile;

/// A case Primero pushed or was pulled from.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseIn {
    /// Primero's `id` and `last_updated_at`: the same version pushed twice is one message.
    pub message_id: String,
    /// Primero's record id: what its flags (the hub's feedback) address.
    pub record_id: String,
    pub details: ReferralDetails,
}

/// A case pushed by a Primero with the stock forms; see [`case_referral_with`].
pub fn case_referral(v: &Value) -> Result<CaseIn, InboundError> {
    case_referral_with(v, &Profile::default())
}

/// A case pushed by Primero (`{"data": {…}}`), as the referral it makes. Select fields
/// may hold the instance's lookup values (`form`) or the hub's own words; the name is
/// read from its parts (`name_first`, `name_middle`, `name_last`), else from `name`.
pub fn case_referral_with(v: &Value, form: &Profile) -> Result<CaseIn, InboundError> {
    let d = v
        .get("data")
        .filter(|d| d.is_object())
        .ok_or_else(|| InboundError::missing("data"))?;
    let id = inbound_id(d, "/id", "data.id", 64)?;
    // Every version of a Primero case has its own time: it tells one version from the
    // next, so a changed case is a new message and the same version twice is one.
    let updated = chrono::DateTime::parse_from_rfc3339(text(
        d,
        "/last_updated_at",
        "data.last_updated_at",
        40,
    )?)
    .map_err(|_| InboundError::new("data.last_updated_at", msg!("inbound-not-rfc3339-time")))?
    .with_timezone(&chrono::Utc)
    .format("%Y%m%dT%H%M%S%.3fZ");
    let sex = text(d, "/sex", "data.sex", 100)?;
    let sex = match form.sex.word(sex).unwrap_or(sex) {
        "female" => Sex::Female,
        "male" => Sex::Male,
        "unknown" | "other" | "not_stated" => Sex::NotStated,
        _ => {
            return Err(InboundError::new(
                "data.sex",
                msg!("inbound-primero-sex-not-known"),
            ))
        }
    };
    let date_of_birth = opt_text(d, "/date_of_birth", "data.date_of_birth", 10)?
        .map(|s| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| InboundError::not_date("data.date_of_birth"))
        })
        .transpose()?;
    let age = match d.get("age") {
        None | Some(Value::Null) => None,
        Some(a) => Some(
            a.as_u64()
                .and_then(|a| u8::try_from(a).ok())
                .filter(|a| *a < 18)
                .ok_or_else(|| {
                    InboundError::new("data.age", msg!("inbound-primero-age-not-a-child"))
                })?,
        ),
    };
    let mut identity_documents = Vec::new();
    for (field, kind) in [
        ("national_id_no", DocumentKind::NationalId),
        ("birth_cert_no", DocumentKind::BirthCertificate),
        ("passport_no", DocumentKind::Passport),
        ("unhcr_id_no", DocumentKind::RefugeeCard),
    ] {
        if let Some(n) = opt_text(d, &format!("/{field}"), &format!("data.{field}"), 64)? {
            identity_documents.push(IdentityDocument {
                kind,
                number: n.to_owned(),
                issuer: None,
            });
        }
    }
    let concerns = list(d, "protection_concerns")?
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            ConcernKind::parse(c)
                .or_else(|| {
                    form.protection_concerns
                        .word(c)
                        .and_then(ConcernKind::parse)
                })
                .map(|kind| Concern {
                    kind,
                    labour_criteria: Vec::new(),
                })
                .ok_or_else(|| {
                    InboundError::new(
                        format!("data.protection_concerns[{i}]"),
                        msg!("inbound-primero-concern-unknown"),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let risk = text(d, "/risk_level", "data.risk_level", 16)?;
    let risk_level = RiskLevel::parse(risk).ok_or_else(|| {
        InboundError::new("data.risk_level", msg!("inbound-primero-risk-not-known"))
    })?;
    // The services asked for: `services_requested`, else stock Primero's services
    // section (`services_section[].service_type`).
    let (field, services) = match d.get("services_section").and_then(Value::as_array) {
        Some(section) if d.get("services_requested").is_none() => (
            "services_section",
            section
                .iter()
                .filter_map(|s| s.get("service_type").and_then(Value::as_str))
                .collect(),
        ),
        _ => ("services_requested", list(d, "services_requested")?),
    };
    let requested_services = services
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            ServiceType::parse(s)
                .or_else(|| form.service_type.word(s).and_then(ServiceType::parse))
                .ok_or_else(|| {
                    InboundError::new(
                        format!("data.{field}[{i}]"),
                        msg!("inbound-primero-service-unknown"),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let consent_refs = match opt_text(d, "/consent_id", "data.consent_id", 64)? {
        Some(c) => vec![ConsentRef {
            consent_id: c.to_owned(),
            given_by: ConsentGiver::Caregiver,
        }],
        None => Vec::new(),
    };
    let details = ReferralDetails {
        child: Child {
            name: PersonName {
                as_given: full_name(d)?,
                transliteration: opt_text(d, "/name_other", "data.name_other", 200)?
                    .map(str::to_owned),
            },
            sex,
            date_of_birth,
            estimated_age_years: if date_of_birth.is_some() { None } else { age },
            nationality: list(d, "nationality")?
                .first()
                .map(|s| form.nationality.word(s).unwrap_or(s).to_owned()),
            identity_documents,
            governorate: text(d, "/location_current", "data.location_current", 100)?.to_owned(),
            district: opt_text(d, "/address_district", "data.address_district", 100)?
                .map(str::to_owned),
            address: opt_text(d, "/address_current", "data.address_current", 300)?
                .map(str::to_owned),
            disability: opt_text(d, "/disability_type", "data.disability_type", 200)?
                .map(str::to_owned),
            school: None,
        },
        caregivers: Vec::new(),
        household: Household::default(),
        concerns,
        risk_level,
        requested_services,
        target_groups: Vec::new(),
        consent_refs,
        narrative: None,
    };
    Ok(CaseIn {
        message_id: format!("primero:{id}:{updated}"),
        record_id: id.to_owned(),
        details,
    })
}

/// The child's name: Primero's name fields joined, or its derived `name` when the form
/// sends only that.
fn full_name(d: &Value) -> Result<String, InboundError> {
    let mut parts = Vec::new();
    for field in ["name_first", "name_middle", "name_last"] {
        if let Some(p) = opt_text(d, &format!("/{field}"), &format!("data.{field}"), 200)? {
            parts.push(p.trim());
        }
    }
    parts.retain(|p| !p.is_empty());
    if parts.is_empty() {
        return Ok(text(d, "/name", "data.name", 200)?.to_owned());
    }
    Ok(parts.join(" "))
}

/// A string list field; absent is empty.
fn list<'a>(d: &'a Value, field: &str) -> Result<Vec<&'a str>, InboundError> {
    match d.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .ok_or_else(|| InboundError::not_string(format!("data.{field}[{i}]")))
            })
            .collect(),
        Some(_) => Err(InboundError::new(
            format!("data.{field}"),
            msg!("inbound-not-list-of-strings"),
        )),
    }
}

/// A referral or transfer the directorate answered:
/// `{"data": {"id": "<Primero's id>", "type": "referral"|"transfer", "status": "in_progress"|"accepted"|"rejected"|"done", "rejected_reason": "…", "himaya_referral_id": "srv_…", "responded_by": "<user>"}}`.
pub fn referral_status(v: &Value) -> Result<StatusChange, InboundError> {
    let d = v
        .get("data")
        .filter(|d| d.is_object())
        .ok_or_else(|| InboundError::missing("data"))?;
    let id = inbound_id(d, "/id", "data.id", 64)?;
    let srv = text(d, "/himaya_referral_id", "data.himaya_referral_id", 64)?;
    if !srv.starts_with("srv_") {
        return Err(InboundError::new(
            "data.himaya_referral_id",
            msg!("inbound-primero-referral-id-not-srv"),
        ));
    }
    let status = text(d, "/status", "data.status", 32)?;
    let state = match status {
        "in_progress" => "received",
        "accepted" => "accepted",
        "rejected" => "rejected",
        "done" => "completed",
        _ => {
            return Err(InboundError::new(
                "data.status",
                msg!("inbound-primero-answer-status-not-known"),
            ))
        }
    };
    let reason = opt_text(d, "/rejected_reason", "data.rejected_reason", 500)?.map(str::to_owned);
    if state == "rejected" && reason.is_none() {
        return Err(InboundError::new(
            "data.rejected_reason",
            msg!("inbound-primero-rejected-reason-required"),
        ));
    }
    Ok(StatusChange {
        message_id: format!("{id}:{state}"),
        service_referral_id: srv.to_owned(),
        state,
        reason,
        actor: opt_text(d, "/responded_by", "data.responded_by", 64)?
            .unwrap_or("primero")
            .to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn a_primero_case_becomes_the_referral_of_the_golden_record() {
        let CaseIn {
            message_id,
            record_id,
            details,
        } = case_referral(&fixture("case_in.json")).unwrap();
        assert_eq!(
            message_id,
            "primero:9b1e4f2a-77c1-4c55-9d0e-1b2c3d4e5f60:20261122T101500.000Z"
        );
        assert_eq!(record_id, "9b1e4f2a-77c1-4c55-9d0e-1b2c3d4e5f60");
        let golden: ReferralDetails =
            serde_json::from_value(fixture("case_in_normalized.json")).unwrap();
        assert_eq!(
            details,
            golden,
            "{}",
            serde_json::to_string_pretty(&details).unwrap()
        );
    }

    #[test]
    fn a_stock_primero_case_reads_with_the_instances_lookups() {
        let CaseIn { details, .. } = case_referral(&fixture("case_in_stock.json")).unwrap();
        let golden: ReferralDetails =
            serde_json::from_value(fixture("case_in_normalized.json")).unwrap();
        // The same child as the hub's words give, but for the concerns the stock lookup
        // cannot tell apart and the services its services section asks.
        assert_eq!(details.child, golden.child);
        assert_eq!(
            details
                .concerns
                .iter()
                .map(|c| c.kind.as_str())
                .collect::<Vec<_>>(),
            ["physical_abuse", "other"]
        );
        assert_eq!(
            details.requested_services,
            [ServiceType::Education, ServiceType::Economic]
        );
        // An instance with its own values reads them back to the hub's words.
        let mut own = himaya_settings::PrimeroSettings::default();
        own.lookups
            .nationality
            .insert("SYR".into(), "syrian_arab_republic".into());
        own.lookups.sex.insert("male".into(), "m".into());
        let mut v = fixture("case_in_stock.json");
        v["data"]["nationality"] = json!(["syrian_arab_republic"]);
        v["data"]["sex"] = json!("m");
        let c = case_referral_with(&v, &Profile::new(&own)).unwrap();
        assert_eq!(c.details.child.nationality.as_deref(), Some("SYR"));
        assert_eq!(c.details.child.sex, Sex::Male);
        // Without a part, the derived name is read.
        v["data"].as_object_mut().unwrap().remove("name_first");
        v["data"].as_object_mut().unwrap().remove("name_last");
        v["data"]["name"] = json!("يوسف");
        let c = case_referral_with(&v, &Profile::new(&own)).unwrap();
        assert_eq!(c.details.child.name.as_given, "يوسف");
    }

    #[test]
    fn a_rejected_transfer_carries_its_reason() {
        let c = referral_status(&fixture("transfer_rejected.json")).unwrap();
        assert_eq!(c.state, "rejected");
        assert_eq!(c.service_referral_id, "srv_01JD7Q6B2F");
        assert_eq!(c.reason.as_deref(), Some("خارج نطاق المديرية"));
        assert_eq!(c.message_id, "a1b2:rejected");
    }

    #[test]
    fn bad_cases_name_the_field() {
        let base = fixture("case_in.json");
        let with = |f: &dyn Fn(&mut Value)| {
            let mut v = base.clone();
            f(&mut v);
            case_referral(&v).unwrap_err().field
        };
        assert_eq!(with(&|v| v["data"]["sex"] = json!("x")), "data.sex");
        assert_eq!(with(&|v| v["data"]["age"] = json!(40)), "data.age");
        assert_eq!(
            with(&|v| v["data"]["protection_concerns"] = json!(["theft"])),
            "data.protection_concerns[0]"
        );
        assert_eq!(
            with(&|v| v["data"]["date_of_birth"] = json!("14/03/2015")),
            "data.date_of_birth"
        );
        assert_eq!(with(&|v| v["data"]["name"] = json!(42)), "data.name");
        assert_eq!(with(&|v| v["data"] = json!([])), "data");
    }

    #[test]
    fn every_refusal_says_what_is_wrong_in_arabic_too() {
        let base = fixture("case_in.json");
        let with = |f: &dyn Fn(&mut Value)| {
            let mut v = base.clone();
            f(&mut v);
            case_referral(&v).unwrap_err()
        };
        let answer = |f: &dyn Fn(&mut Value)| {
            let mut v = fixture("transfer_rejected.json");
            f(&mut v);
            referral_status(&v).unwrap_err()
        };
        for e in [
            with(&|v| v["data"]["sex"] = json!("x")),
            with(&|v| v["data"]["age"] = json!(40)),
            with(&|v| v["data"]["protection_concerns"] = json!(["theft"])),
            with(&|v| v["data"]["protection_concerns"] = json!("theft")),
            with(&|v| v["data"]["protection_concerns"] = json!([7])),
            with(&|v| v["data"]["services_requested"] = json!(["x"])),
            with(&|v| v["data"]["date_of_birth"] = json!("14/03/2015")),
            with(&|v| v["data"]["last_updated_at"] = json!("yesterday")),
            with(&|v| v["data"]["risk_level"] = json!("x")),
            with(&|v| v["data"] = json!([])),
            answer(&|v| v["data"]["himaya_referral_id"] = json!("case_1")),
            answer(&|v| v["data"]["status"] = json!("x")),
            answer(&|v| {
                v["data"].as_object_mut().unwrap().remove("rejected_reason");
            }),
            crate::pull::read_page(&json!({"data": {}})).unwrap_err(),
        ] {
            himaya_connect::testing::assert_bilingual(&e);
        }
    }
}
