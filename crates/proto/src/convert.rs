//! Wire ↔ domain conversions. Incoming messages become domain types or a complete list
//! of field violations (paths as the caller wrote them); outgoing ones are infallible.

use chrono::NaiveDate;
use himaya_record::validate::{validate_details, within, within_vec, MAX_LIST};
use himaya_record::{self as rec, Problem, Violations};

use crate::v1 as pb;

macro_rules! enum_map {
    ($from:ident, $to:ident, $pb:ident, $dom:ident { $($v:ident),+ $(,)? }) => {
        /// Wire value → domain value; `None` for unspecified or unknown numbers.
        pub fn $from(raw: i32) -> Option<rec::$dom> {
            match pb::$pb::try_from(raw).ok()? {
                $(pb::$pb::$v => Some(rec::$dom::$v),)+
                _ => None,
            }
        }

        pub fn $to(d: rec::$dom) -> pb::$pb {
            match d { $(rec::$dom::$v => pb::$pb::$v),+ }
        }
    };
}

enum_map!(
    sex_from,
    sex_to,
    Sex,
    Sex {
        Female,
        Male,
        NotStated
    }
);
enum_map!(
    document_from,
    document_to,
    DocumentKind,
    DocumentKind {
        NationalId,
        BirthCertificate,
        Passport,
        RefugeeCard,
        FamilyBook,
        Other
    }
);
enum_map!(
    relationship_from,
    relationship_to,
    Relationship,
    Relationship {
        Mother,
        Father,
        Grandparent,
        Sibling,
        OtherRelative,
        FosterCarer,
        InstitutionStaff,
        Other
    }
);
enum_map!(
    source_from,
    source_to,
    SourceKind,
    SourceKind {
        SelfReferral,
        School,
        CommunityCommittee,
        Hotline,
        Health,
        Justice,
        CashAssistance,
        OtherAgency
    }
);
enum_map!(
    concern_from,
    concern_to,
    ConcernKind,
    ConcernKind {
        PhysicalAbuse,
        SexualAbuse,
        EmotionalAbuse,
        Neglect,
        ExploitativeLabour,
        ChildMarriage,
        SeparatedOrUnaccompanied,
        SchoolDropout,
        FamilyViolence,
        ConflictWithLaw,
        PsychosocialDistress,
        Other
    }
);
enum_map!(
    labour_from,
    labour_to,
    LabourCriterion,
    LabourCriterion {
        DeniesEducationOrPlay,
        PhysicalHarm,
        UnderpaidForBeingAChild,
        WorstFormRecruitment,
        WorstFormTrafficking,
        WorstFormSexualExploitation
    }
);
enum_map!(
    risk_from,
    risk_to,
    RiskLevel,
    RiskLevel { Low, Medium, High }
);
enum_map!(
    service_from,
    service_to,
    ServiceType,
    ServiceType {
        Health,
        Psychosocial,
        Education,
        Legal,
        Economic,
        CaseManagement
    }
);
enum_map!(
    target_from,
    target_to,
    TargetGroup,
    TargetGroup {
        CareInstitution,
        FosterFamily,
        CashTransferHousehold,
        FamilyAffectedByViolence
    }
);
enum_map!(
    giver_from,
    giver_to,
    ConsentGiver,
    ConsentGiver {
        Caregiver,
        ChildAssent
    }
);
enum_map!(
    priority_from,
    priority_to,
    Priority,
    Priority { Routine, Urgent }
);
enum_map!(
    purpose_from,
    purpose_to,
    Purpose,
    Purpose {
        ServiceProvision,
        EmergencyResponse,
        LegalProceedings,
        Statistics
    }
);

fn choices<T: std::fmt::Display>(all: &[T]) -> Problem {
    let names: Vec<String> = all.iter().map(ToString::to_string).collect();
    Problem::NotChosen {
        choices: names.join(", "),
    }
}

/// A required enum: a violation naming the choices when missing or unknown.
fn required<T: Copy + std::fmt::Display>(
    v: &mut Violations,
    field: String,
    all: &[T],
    value: Option<T>,
) -> Option<T> {
    if value.is_none() {
        v.push(field, choices(all));
    }
    value
}

fn text(s: String) -> String {
    s.trim().to_owned()
}

fn opt_text(s: Option<String>) -> Option<String> {
    s.map(text).filter(|s| !s.is_empty())
}

fn name(v: &mut Violations, field: &str, n: Option<pb::PersonName>) -> rec::PersonName {
    let n = n.unwrap_or_else(|| {
        v.push(format!("{field}.as_given"), Problem::Required);
        pb::PersonName::default()
    });
    rec::PersonName {
        as_given: text(n.as_given),
        transliteration: opt_text(n.transliteration),
    }
}

/// A list of enum values; each unknown entry is a violation at its index.
fn enum_list<T: Copy + std::fmt::Display>(
    v: &mut Violations,
    field: &str,
    raw: &[i32],
    all: &[T],
    from: fn(i32) -> Option<T>,
) -> Vec<T> {
    let raw = within(v, field, raw);
    let mut out = Vec::with_capacity(raw.len().min(MAX_LIST));
    for (i, r) in raw.iter().enumerate() {
        if let Some(x) = required(v, format!("{field}[{i}]"), all, from(*r)) {
            out.push(x);
        }
    }
    out
}

fn child(v: &mut Violations, p: &str, c: Option<pb::Child>) -> rec::Child {
    let c = c.unwrap_or_else(|| {
        v.push(format!("{p}.child"), Problem::Required);
        pb::Child::default()
    });
    let f = |s: &str| format!("{p}.child.{s}");
    let date_of_birth = opt_text(c.date_of_birth).and_then(|d| {
        let parsed = NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok();
        if parsed.is_none() {
            v.push(f("date_of_birth"), Problem::InvalidDate);
        }
        parsed
    });
    let estimated_age_years = c.estimated_age_years.map(|a| {
        u8::try_from(a).unwrap_or_else(|_| {
            v.push(f("estimated_age_years"), Problem::AgeOutOfRange);
            u8::MAX
        })
    });
    let identity_documents = within_vec(v, &f("identity_documents"), c.identity_documents)
        .into_iter()
        .enumerate()
        .filter_map(|(i, d)| {
            let kind = required(
                v,
                f(&format!("identity_documents[{i}].kind")),
                rec::DocumentKind::ALL,
                document_from(d.kind),
            )?;
            Some(rec::IdentityDocument {
                kind,
                number: text(d.number),
                issuer: opt_text(d.issuer),
            })
        })
        .collect();
    rec::Child {
        name: name(v, &f("name"), c.name),
        sex: required(v, f("sex"), rec::Sex::ALL, sex_from(c.sex)).unwrap_or(rec::Sex::NotStated),
        date_of_birth,
        estimated_age_years,
        nationality: opt_text(c.nationality),
        identity_documents,
        governorate: text(c.governorate),
        district: opt_text(c.district),
        address: opt_text(c.address),
        disability: opt_text(c.disability),
        school: c.school.map(|s| rec::School {
            name: text(s.name),
            grade: opt_text(s.grade),
        }),
    }
}

/// Converts and validates a referral body. `prefix` is its field name in the request.
pub fn referral_details(
    d: Option<pb::ReferralDetails>,
    today: NaiveDate,
    prefix: &str,
) -> Result<rec::ReferralDetails, Violations> {
    let mut v = Violations::new();
    let Some(d) = d else {
        v.push(prefix, Problem::Required);
        return Err(v);
    };
    let p = prefix;
    let child = child(&mut v, p, d.child);
    let caregivers = within_vec(&mut v, &format!("{p}.caregivers"), d.caregivers)
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let f = format!("{p}.caregivers[{i}]");
            rec::Caregiver {
                name: name(&mut v, &format!("{f}.name"), c.name),
                relationship: required(
                    &mut v,
                    format!("{f}.relationship"),
                    rec::Relationship::ALL,
                    relationship_from(c.relationship),
                )
                .unwrap_or(rec::Relationship::Other),
                phone: opt_text(c.phone),
                address: opt_text(c.address),
                primary: c.primary,
            }
        })
        .collect();
    let household = d.household.unwrap_or_default();
    let household = rec::Household {
        size: household.size.map(|s| {
            u16::try_from(s).unwrap_or_else(|_| {
                v.push(
                    format!("{p}.household.size"),
                    Problem::OutOfRange { min: 1, max: 50 },
                );
                0
            })
        }),
        cash_transfer_beneficiary: household.cash_transfer_beneficiary,
        income_source: opt_text(household.income_source),
    };
    let concerns = within_vec(&mut v, &format!("{p}.concerns"), d.concerns)
        .into_iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let f = format!("{p}.concerns[{i}]");
            let labour_criteria = enum_list(
                &mut v,
                &format!("{f}.labour_criteria"),
                &c.labour_criteria,
                rec::LabourCriterion::ALL,
                labour_from,
            );
            let kind = required(
                &mut v,
                format!("{f}.kind"),
                rec::ConcernKind::ALL,
                concern_from(c.kind),
            )?;
            Some(rec::Concern {
                kind,
                labour_criteria,
            })
        })
        .collect();
    let risk_level = required(
        &mut v,
        format!("{p}.risk_level"),
        rec::RiskLevel::ALL,
        risk_from(d.risk_level),
    );
    let requested_services = enum_list(
        &mut v,
        &format!("{p}.requested_services"),
        &d.requested_services,
        rec::ServiceType::ALL,
        service_from,
    );
    let target_groups = enum_list(
        &mut v,
        &format!("{p}.target_groups"),
        &d.target_groups,
        rec::TargetGroup::ALL,
        target_from,
    );
    let consent_refs = within_vec(&mut v, &format!("{p}.consent_refs"), d.consent_refs)
        .into_iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let given_by = required(
                &mut v,
                format!("{p}.consent_refs[{i}].given_by"),
                rec::ConsentGiver::ALL,
                giver_from(c.given_by),
            )?;
            Some(rec::ConsentRef {
                consent_id: text(c.consent_id),
                given_by,
            })
        })
        .collect();
    let details = rec::ReferralDetails {
        child,
        caregivers,
        household,
        concerns,
        risk_level: risk_level.unwrap_or(rec::RiskLevel::High),
        requested_services,
        target_groups,
        consent_refs,
        narrative: opt_text(d.narrative),
    };
    v.extend(validate_details(&details, today, prefix));
    v.into_result(details)
}

/// Domain → wire, for clients (the CLI) and tests.
pub fn referral_details_to_pb(d: &rec::ReferralDetails) -> pb::ReferralDetails {
    let pname = |n: &rec::PersonName| pb::PersonName {
        as_given: n.as_given.clone(),
        transliteration: n.transliteration.clone(),
    };
    let c = &d.child;
    pb::ReferralDetails {
        child: Some(pb::Child {
            name: Some(pname(&c.name)),
            sex: sex_to(c.sex).into(),
            date_of_birth: c.date_of_birth.map(|d| d.format("%Y-%m-%d").to_string()),
            estimated_age_years: c.estimated_age_years.map(u32::from),
            nationality: c.nationality.clone(),
            identity_documents: c
                .identity_documents
                .iter()
                .map(|i| pb::IdentityDocument {
                    kind: document_to(i.kind).into(),
                    number: i.number.clone(),
                    issuer: i.issuer.clone(),
                })
                .collect(),
            governorate: c.governorate.clone(),
            district: c.district.clone(),
            address: c.address.clone(),
            disability: c.disability.clone(),
            school: c.school.as_ref().map(|s| pb::School {
                name: s.name.clone(),
                grade: s.grade.clone(),
            }),
        }),
        caregivers: d
            .caregivers
            .iter()
            .map(|g| pb::Caregiver {
                name: Some(pname(&g.name)),
                relationship: relationship_to(g.relationship).into(),
                phone: g.phone.clone(),
                address: g.address.clone(),
                primary: g.primary,
            })
            .collect(),
        household: Some(pb::Household {
            size: d.household.size.map(u32::from),
            cash_transfer_beneficiary: d.household.cash_transfer_beneficiary,
            income_source: d.household.income_source.clone(),
        }),
        concerns: d
            .concerns
            .iter()
            .map(|c| pb::Concern {
                kind: concern_to(c.kind).into(),
                labour_criteria: c
                    .labour_criteria
                    .iter()
                    .map(|l| labour_to(*l).into())
                    .collect(),
            })
            .collect(),
        risk_level: risk_to(d.risk_level).into(),
        requested_services: d
            .requested_services
            .iter()
            .map(|s| service_to(*s).into())
            .collect(),
        target_groups: d
            .target_groups
            .iter()
            .map(|t| target_to(*t).into())
            .collect(),
        consent_refs: d
            .consent_refs
            .iter()
            .map(|c| pb::ConsentRef {
                consent_id: c.consent_id.clone(),
                given_by: giver_to(c.given_by).into(),
            })
            .collect(),
        narrative: d.narrative.clone(),
    }
}

#[cfg(test)]
mod tests {
    use himaya_record::fixtures;
    use prost::Message;

    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 22).unwrap()
    }

    #[test]
    fn arabic_details_round_trip_through_protobuf_bytes() {
        let d = fixtures::details();
        let bytes = referral_details_to_pb(&d).encode_to_vec();
        let back = pb::ReferralDetails::decode(bytes.as_slice()).unwrap();
        assert_eq!(
            referral_details(Some(back), today(), "referral").unwrap(),
            d
        );
    }

    #[test]
    fn unspecified_enums_and_bad_dates_are_field_violations() {
        let mut p = referral_details_to_pb(&fixtures::details());
        let child = p.child.as_mut().unwrap();
        child.sex = 0;
        child.date_of_birth = Some("09/03/2014".into());
        p.risk_level = 42;
        p.requested_services = vec![1, 0];
        let v = referral_details(Some(p), today(), "referral").unwrap_err();
        assert!(v.has("referral.child.sex", "not_chosen"));
        assert!(v.has("referral.child.date_of_birth", "invalid_date"));
        assert!(v.has("referral.risk_level", "not_chosen"));
        assert!(v.has("referral.requested_services[1]", "not_chosen"));
    }

    #[test]
    fn a_missing_body_is_one_violation() {
        let v = referral_details(None, today(), "referral").unwrap_err();
        assert!(v.has("referral", "required"));
    }
}
