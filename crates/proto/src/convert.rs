//! Wire ↔ domain conversions. Incoming messages become domain types or a complete list
//! of field violations (paths as the caller wrote them); outgoing ones are infallible.

use chrono::NaiveDate;
use himaya_record::consent::{ConsentMethod, LegalBasis, ProvisionKind};
use himaya_record::lifecycle::{
    AcceptanceDecision, BreakGlassOutcome, ClosureReason, DeadlineKind, LinkKind, NeedDomain,
    ReviewKind, StaffRole,
};
use himaya_record::service_referral::{AbilityToPay, MedicalCoverage, TaskState};
use himaya_record::validate::{validate_details, within, within_vec, MAX_LIST};
use himaya_record::{self as rec, Problem, Violations};
use himaya_record::{
    AgencyType, CaseStatus, ConcernKind, ConsentGiver, DataCategory, DeliveryOutcome, DocumentKind,
    LabourCriterion, Priority, Purpose, Relationship, RiskLevel, ServiceType, Sex, SourceKind,
    TargetGroup,
};

use crate::v1 as pb;

/// A closed vocabulary of the domain carried on the wire as a protobuf enum (its `i32`
/// in the generated messages). Zero is each enum's `…_UNSPECIFIED`, never a domain value.
pub trait WireEnum: Copy + std::fmt::Display + PartialEq + Sized + 'static {
    /// Every domain value, in the order a refusal lists them.
    const ALL: &'static [Self];
    /// Wire number → domain value; `None` for UNSPECIFIED or a number not known here.
    fn from_wire(raw: i32) -> Option<Self>;
    fn to_wire(self) -> i32;
    /// The domain's name for the value (`refer_on`, `turned_18`): what people, forms,
    /// the database and the events use.
    fn code(self) -> &'static str;
}

macro_rules! enum_map {
    ($from:ident, $to:ident, $pb:ident, $dom:ident { $($v:ident),+ $(,)? }) => {
        enum_map!($from, $to, $pb, $dom { $($v => $v),+ });
    };
    ($from:ident, $to:ident, $pb:ident, $dom:ident { $($p:ident => $d:ident),+ $(,)? }) => {
        /// Wire value → domain value; `None` for unspecified or unknown numbers.
        pub fn $from(raw: i32) -> Option<$dom> {
            match pb::$pb::try_from(raw).ok()? {
                $(pb::$pb::$p => Some($dom::$d),)+
                _ => None,
            }
        }

        pub fn $to(d: $dom) -> pb::$pb {
            match d { $($dom::$d => pb::$pb::$p),+ }
        }

        impl WireEnum for $dom {
            const ALL: &'static [Self] = &[$($dom::$d),+];

            fn from_wire(raw: i32) -> Option<Self> {
                $from(raw)
            }

            fn to_wire(self) -> i32 {
                $to(self).into()
            }

            fn code(self) -> &'static str {
                self.as_str()
            }
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
enum_map!(
    status_from,
    status_to,
    CaseStatus,
    CaseStatus {
        Referred,
        Registered,
        ReferredOn,
        Declined,
        Closed,
        Merged
    }
);
enum_map!(
    category_from,
    category_to,
    DataCategory,
    DataCategory {
        Reference,
        Identity,
        Contact,
        Location,
        ProtectionConcern,
        Health,
        Justice,
        Economic,
        CaseNotes
    }
);
enum_map!(
    agency_type_from,
    agency_type_to,
    AgencyType,
    AgencyType {
        SocialAffairs,
        School,
        Health,
        Justice,
        CashAssistance,
        EmergencyLine,
        Community
    }
);
enum_map!(
    coverage_from,
    coverage_to,
    MedicalCoverage,
    MedicalCoverage {
        Full => Full,
        Partial => Partial,
        None => NotCovered,
    }
);
enum_map!(
    delivery_from,
    delivery_to,
    DeliveryOutcome,
    DeliveryOutcome {
        Delivered,
        Rejected,
        Undelivered
    }
);
enum_map!(
    decision_from,
    decision_to,
    AcceptanceDecision,
    AcceptanceDecision {
        Register,
        ReferOn,
        Decline
    }
);
enum_map!(
    review_from,
    review_to,
    ReviewKind,
    ReviewKind {
        HomeVisit,
        MeetingWithChild,
        Phone
    }
);
enum_map!(
    need_from,
    need_to,
    NeedDomain,
    NeedDomain {
        Safety,
        Health,
        Education,
        Psychosocial,
        Legal,
        Economic
    }
);
enum_map!(
    closure_from,
    closure_to,
    ClosureReason,
    ClosureReason {
        NeedEnded => NeedEnded,
        Death => Death,
        Turned18 => TurnedEighteen,
        MovedOutOfReach => MovedOutOfReach,
        ContactLost => ContactLost,
    }
);
enum_map!(
    deadline_from,
    deadline_to,
    DeadlineKind,
    DeadlineKind {
        Assignment => Assignment,
        FirstContact => FirstContact,
        Review => Review,
        Turns18 => TurnsEighteen,
        Turns18Soon => TurnsEighteenSoon,
        PlanAction => PlanAction,
        ServiceReferral => ServiceReferral,
        Undelivered => Undelivered,
    }
);
enum_map!(
    staff_role_from,
    staff_role_to,
    StaffRole,
    StaffRole {
        Caseworker,
        Supervisor
    }
);
enum_map!(
    link_from,
    link_to,
    LinkKind,
    LinkKind { SameChild, Sibling }
);
enum_map!(
    provision_from,
    provision_to,
    ProvisionKind,
    ProvisionKind { Permit, Deny }
);
enum_map!(
    method_from,
    method_to,
    ConsentMethod,
    ConsentMethod { Written, Verbal }
);
enum_map!(
    basis_from,
    basis_to,
    LegalBasis,
    LegalBasis {
        VitalInterests,
        LegalObligation,
        CourtOrder
    }
);
enum_map!(
    outcome_from,
    outcome_to,
    BreakGlassOutcome,
    BreakGlassOutcome {
        Justified,
        Unjustified
    }
);
enum_map!(
    state_from,
    state_to,
    ServiceReferralState,
    TaskState {
        Requested => Requested,
        Received => Received,
        Accepted => Accepted,
        Rejected => Rejected,
        InProgress => InProgress,
        Completed => Completed,
        Failed => Failed,
        Cancelled => Cancelled,
    }
);
enum_map!(
    ability_from,
    ability_to,
    AbilityToPay,
    AbilityToPay {
        None => CannotPay,
        Part => Part,
        Full => Full,
    }
);

/// "must be chosen; one of: …" listing `all` by their domain names.
pub fn choices<T: std::fmt::Display>(all: &[T]) -> Problem {
    let names: Vec<String> = all.iter().map(ToString::to_string).collect();
    Problem::NotChosen {
        choices: names.join(", "),
    }
}

/// A required wire enum: the domain value, or a violation at `field` naming the choices
/// when it is UNSPECIFIED or a number the hub does not know.
pub fn required<T: WireEnum>(v: &mut Violations, field: impl Into<String>, raw: i32) -> Option<T> {
    let value = T::from_wire(raw);
    if value.is_none() {
        v.push(field, choices(T::ALL));
    }
    value
}

/// An optional wire enum: UNSPECIFIED is "not given"; a number the hub does not know is a
/// violation at `field` naming the choices.
pub fn optional<T: WireEnum>(v: &mut Violations, field: impl Into<String>, raw: i32) -> Option<T> {
    if raw == 0 {
        return None;
    }
    required(v, field, raw)
}

/// A list of wire enums (at most `MAX_LIST`); each UNSPECIFIED or unknown entry is a
/// violation at its index.
pub fn list<T: WireEnum>(v: &mut Violations, field: &str, raw: &[i32]) -> Vec<T> {
    let raw = within(v, field, raw);
    let mut out = Vec::with_capacity(raw.len().min(MAX_LIST));
    for (i, r) in raw.iter().enumerate() {
        if let Some(x) = required(v, format!("{field}[{i}]"), *r) {
            out.push(x);
        }
    }
    out
}

/// For clients that hold a domain name (a form's value, a command-line flag): its wire
/// number, or 0 (UNSPECIFIED) when it names nothing, which the hub refuses naming the
/// field and the choices.
pub fn wire<T: WireEnum>(code: &str) -> i32 {
    T::ALL
        .iter()
        .find(|t| t.code() == code.trim())
        .map_or(0, |t| t.to_wire())
}

/// For clients holding a domain name: its wire number, or the problem the hub reports for
/// a value outside the vocabulary (the choices), to refuse it before sending.
pub fn parse<T: WireEnum>(name: &str) -> Result<i32, Problem> {
    match wire::<T>(name) {
        0 => Err(choices(T::ALL)),
        n => Ok(n),
    }
}

/// The domain name of a wire value, for showing it: "" for UNSPECIFIED or a number this
/// build does not know.
pub fn code<T: WireEnum>(raw: i32) -> &'static str {
    T::from_wire(raw).map_or("", WireEnum::code)
}

/// The domain names of wire values, for showing them ("" for any not known).
pub fn codes<T: WireEnum>(raw: &[i32]) -> Vec<&'static str> {
    raw.iter().map(|r| code::<T>(*r)).collect()
}

/// Domain values as wire numbers.
pub fn wires<'a, T: WireEnum>(values: impl IntoIterator<Item = &'a T>) -> Vec<i32> {
    values.into_iter().map(|t| t.to_wire()).collect()
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
            let kind: DocumentKind =
                required(v, f(&format!("identity_documents[{i}].kind")), d.kind)?;
            Some(rec::IdentityDocument {
                kind,
                number: text(d.number),
                issuer: opt_text(d.issuer),
            })
        })
        .collect();
    rec::Child {
        name: name(v, &f("name"), c.name),
        sex: required(v, f("sex"), c.sex).unwrap_or(Sex::NotStated),
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
                relationship: required(&mut v, format!("{f}.relationship"), c.relationship)
                    .unwrap_or(Relationship::Other),
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
            let labour_criteria = list(&mut v, &format!("{f}.labour_criteria"), &c.labour_criteria);
            let kind: ConcernKind = required(&mut v, format!("{f}.kind"), c.kind)?;
            Some(rec::Concern {
                kind,
                labour_criteria,
            })
        })
        .collect();
    let risk_level: Option<RiskLevel> = required(&mut v, format!("{p}.risk_level"), d.risk_level);
    let requested_services = list(
        &mut v,
        &format!("{p}.requested_services"),
        &d.requested_services,
    );
    let target_groups = list(&mut v, &format!("{p}.target_groups"), &d.target_groups);
    let consent_refs = within_vec(&mut v, &format!("{p}.consent_refs"), d.consent_refs)
        .into_iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let given_by: ConsentGiver = required(
                &mut v,
                format!("{p}.consent_refs[{i}].given_by"),
                c.given_by,
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
        risk_level: risk_level.unwrap_or(RiskLevel::High),
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

    /// Every wire enum lists its choices as the domain does, and every domain value
    /// goes to the wire and back.
    #[test]
    fn wire_enums_cover_their_domain_vocabularies_in_order() {
        fn check<T: WireEnum + std::fmt::Debug>(domain: &[T]) {
            assert_eq!(T::ALL, domain);
            for d in domain {
                assert_ne!(d.to_wire(), 0, "{d:?}");
                assert_eq!(T::from_wire(d.to_wire()), Some(*d));
                assert_eq!(wire::<T>(d.code()), d.to_wire());
                assert_eq!(code::<T>(d.to_wire()), d.code());
            }
            assert_eq!(T::from_wire(0), None);
            assert_eq!(T::from_wire(999), None);
            assert_eq!(wire::<T>("no_such_value"), 0);
            assert_eq!(code::<T>(999), "");
        }
        check(Sex::ALL);
        check(DocumentKind::ALL);
        check(Relationship::ALL);
        check(SourceKind::ALL);
        check(ConcernKind::ALL);
        check(LabourCriterion::ALL);
        check(RiskLevel::ALL);
        check(ServiceType::ALL);
        check(TargetGroup::ALL);
        check(ConsentGiver::ALL);
        check(Priority::ALL);
        check(Purpose::ALL);
        check(CaseStatus::ALL);
        check(&DataCategory::ALL);
        check(AgencyType::ALL);
        check(MedicalCoverage::ALL);
        check(DeliveryOutcome::ALL);
        check(AcceptanceDecision::ALL);
        check(ReviewKind::ALL);
        check(NeedDomain::ALL);
        check(ClosureReason::ALL);
        check(DeadlineKind::ALL);
        check(StaffRole::ALL);
        check(LinkKind::ALL);
        check(ProvisionKind::ALL);
        check(ConsentMethod::ALL);
        check(LegalBasis::ALL);
        check(BreakGlassOutcome::ALL);
        check(TaskState::ALL);
        check(AbilityToPay::ALL);
    }

    #[test]
    fn an_unspecified_or_unknown_enum_names_the_field_and_the_choices() {
        let mut v = Violations::new();
        assert_eq!(required::<AcceptanceDecision>(&mut v, "decision", 0), None);
        assert_eq!(required::<ClosureReason>(&mut v, "reason", 42), None);
        assert_eq!(optional::<LegalBasis>(&mut v, "legal_basis", 0), None);
        assert_eq!(optional::<LegalBasis>(&mut v, "legal_basis", 9), None);
        assert_eq!(
            list::<DataCategory>(&mut v, "categories", &[1, 0]),
            vec![DataCategory::Reference]
        );
        assert_eq!(v.iter().count(), 4, "{v:?}");
        let first = v.iter().next().unwrap();
        assert_eq!(first.field, "decision");
        assert_eq!(
            first.problem.text(crate::status::Lang::English),
            "must be chosen; one of: register, refer_on, decline"
        );
        assert!(first
            .problem
            .text(crate::status::Lang::Arabic)
            .contains("register, refer_on, decline"));
        assert!(v.has("reason", "not_chosen"));
        assert!(v.has("legal_basis", "not_chosen"));
        assert!(v.has("categories[1]", "not_chosen"));
        let st = crate::status::invalid_argument(&v, crate::status::Lang::English);
        assert_eq!(st.code(), tonic::Code::InvalidArgument);
        assert!(st
            .message()
            .contains("decision: must be chosen; one of: register, refer_on, decline"));
        assert!(st.message().contains("turned_18"), "{}", st.message());
    }

    #[test]
    fn a_missing_body_is_one_violation() {
        let v = referral_details(None, today(), "referral").unwrap_err();
        assert!(v.has("referral", "required"));
    }
}

/// A service of the service map as stored: in the directory's `services` table and in the
/// cases service's copy of it (`service_map`), which have the same columns. The service
/// type becomes the API's enum in [`MappedServiceRow::into_service`] (an unknown one:
/// unspecified).
#[derive(Debug, sqlx::FromRow)]
pub struct MappedServiceRow {
    service_id: String,
    agency_id: String,
    service_type: String,
    name_ar: String,
    name_en: String,
    governorate: String,
    districts: Vec<String>,
    capacity: i32,
    languages: Vec<String>,
    accepting: bool,
    removed: bool,
    version: i64,
    updated_at: chrono::DateTime<chrono::Utc>,
}

impl MappedServiceRow {
    pub fn into_service(self) -> pb::MappedService {
        pb::MappedService {
            service_id: self.service_id,
            agency_id: self.agency_id,
            service_type: rec::ServiceType::parse(&self.service_type)
                .map(service_to)
                .unwrap_or_default()
                .into(),
            name_ar: self.name_ar,
            name_en: self.name_en,
            governorate: self.governorate,
            districts: self.districts,
            capacity: self.capacity,
            languages: self.languages,
            accepting: self.accepting,
            removed: self.removed,
            version: self.version,
            updated_at: self.updated_at.to_rfc3339(),
        }
    }
}
