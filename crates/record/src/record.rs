//! The normalized case record: the one shape every agency maps to and from.
//! Serde names here are the wire names of the Avro schemas in `proto/avro/` and of the
//! JSON documents the sharing layer discloses; change them only with the schemas.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::id::{CaseId, ReferralId};

/// A name as the family gives it, in Arabic script, with an optional Latin transliteration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonName {
    /// Stored exactly as given (after Unicode trimming); never "corrected".
    pub as_given: String,
    pub transliteration: Option<String>,
}

macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $wire)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary!(Sex { Female => "female", Male => "male", NotStated => "not_stated" });

vocabulary!(
    /// Kinds of identity document; many children have none, which is fine.
    DocumentKind {
        NationalId => "national_id",
        BirthCertificate => "birth_certificate",
        Passport => "passport",
        RefugeeCard => "refugee_card",
        FamilyBook => "family_book",
        Other => "other",
    }
);

vocabulary!(Relationship {
    Mother => "mother",
    Father => "father",
    Grandparent => "grandparent",
    Sibling => "sibling",
    OtherRelative => "other_relative",
    FosterCarer => "foster_carer",
    InstitutionStaff => "institution_staff",
    Other => "other",
});

vocabulary!(
    /// The paths by which a child reaches the hub (docs/domain.md, workflow step 1).
    SourceKind {
        SelfReferral => "self_referral",
        School => "school",
        CommunityCommittee => "community_committee",
        Hotline => "hotline",
        Health => "health",
        Justice => "justice",
        CashAssistance => "cash_assistance",
        OtherAgency => "other_agency",
    }
);

vocabulary!(
    /// Protection concerns: a controlled vocabulary. Poverty or material need is deliberately
    /// absent: alone it is not a child-protection concern (docs/domain.md, workflow step 2).
    ConcernKind {
        PhysicalAbuse => "physical_abuse",
        SexualAbuse => "sexual_abuse",
        EmotionalAbuse => "emotional_abuse",
        Neglect => "neglect",
        ExploitativeLabour => "exploitative_labour",
        ChildMarriage => "child_marriage",
        SeparatedOrUnaccompanied => "separated_or_unaccompanied",
        SchoolDropout => "school_dropout",
        FamilyViolence => "family_violence",
        ConflictWithLaw => "conflict_with_law",
        PsychosocialDistress => "psychosocial_distress",
        Other => "other",
    }
);

vocabulary!(
    /// What makes child labour exploitative (docs/domain.md, "Exploitative child labour"):
    /// at least one must hold for an `exploitative_labour` concern.
    LabourCriterion {
        DeniesEducationOrPlay => "denies_education_or_play",
        PhysicalHarm => "physical_harm",
        UnderpaidForBeingAChild => "underpaid_for_being_a_child",
        WorstFormRecruitment => "worst_form_recruitment",
        WorstFormTrafficking => "worst_form_trafficking",
        WorstFormSexualExploitation => "worst_form_sexual_exploitation",
    }
);

vocabulary!(RiskLevel { Low => "low", Medium => "medium", High => "high" });

vocabulary!(ServiceType {
    Health => "health",
    Psychosocial => "psychosocial",
    Education => "education",
    Legal => "legal",
    Economic => "economic",
    CaseManagement => "case_management",
});

vocabulary!(
    /// Target groups named by Egypt's programme.
    TargetGroup {
        CareInstitution => "care_institution",
        FosterFamily => "foster_family",
        CashTransferHousehold => "cash_transfer_household",
        FamilyAffectedByViolence => "family_affected_by_violence",
    }
);

vocabulary!(ConsentGiver { Caregiver => "caregiver", ChildAssent => "child_assent" });

vocabulary!(
    /// Where a case stands. The spine only creates `referred`; the lifecycle adds the rest.
    CaseStatus {
        Referred => "referred",
        Registered => "registered",
        ReferredOn => "referred_on",
                Declined => "declined",
        Closed => "closed",
        Merged => "merged",
    }
);

vocabulary!(
    /// Hotline escalations and high-risk referrals are urgent and jump every queue.
    Priority { Routine => "routine", Urgent => "urgent" }
);

vocabulary!(
    /// What became of a referral sent to an agency: its system took it, refused it, or
    /// the hub could not send it (no agency, no consent, parked: see the reason).
    DeliveryOutcome {
        Delivered => "delivered",
        Rejected => "rejected",
        Undelivered => "undelivered",
    }
);

impl Priority {
    /// AMQP message priority (0–9); urgent messages overtake routine ones.
    pub fn amqp_priority(self) -> u8 {
        match self {
            Priority::Routine => 1,
            Priority::Urgent => 9,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityDocument {
    pub kind: DocumentKind,
    pub number: String,
    pub issuer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct School {
    pub name: String,
    pub grade: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Child {
    pub name: PersonName,
    pub sex: Sex,
    /// Known birth date; exactly one of this and `estimated_age_years` is set.
    pub date_of_birth: Option<NaiveDate>,
    /// Age as estimated by the referrer when there are no documents.
    pub estimated_age_years: Option<u8>,
    /// ISO 3166-1 alpha-3.
    pub nationality: Option<String>,
    #[serde(default)]
    pub identity_documents: Vec<IdentityDocument>,
    pub governorate: String,
    pub district: Option<String>,
    pub address: Option<String>,
    pub disability: Option<String>,
    pub school: Option<School>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caregiver {
    pub name: PersonName,
    pub relationship: Relationship,
    pub phone: Option<String>,
    pub address: Option<String>,
    #[serde(default)]
    pub primary: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Household {
    pub size: Option<u16>,
    #[serde(default)]
    pub cash_transfer_beneficiary: bool,
    pub income_source: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Concern {
    pub kind: ConcernKind,
    #[serde(default)]
    pub labour_criteria: Vec<LabourCriterion>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRef {
    pub consent_id: String,
    pub given_by: ConsentGiver,
}

/// Who referred the child: the path and, for agencies, which one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferralSource {
    pub kind: SourceKind,
    /// The referring agency's directory id (a school, a clinic, the hotline).
    pub agency_id: Option<String>,
    /// The referring professional's staff or call reference, never their name.
    pub staff_ref: Option<String>,
}

/// What the referrer says about the child: the body of every path in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferralDetails {
    pub child: Child,
    #[serde(default)]
    pub caregivers: Vec<Caregiver>,
    #[serde(default)]
    pub household: Household,
    pub concerns: Vec<Concern>,
    pub risk_level: RiskLevel,
    pub requested_services: Vec<ServiceType>,
    #[serde(default)]
    pub target_groups: Vec<TargetGroup>,
    #[serde(default)]
    pub consent_refs: Vec<ConsentRef>,
    pub narrative: Option<String>,
}

/// The referral that opened (or was added to) a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Referral {
    pub referral_id: ReferralId,
    pub source: ReferralSource,
    pub received_at: DateTime<Utc>,
    pub priority: Priority,
    pub requested_services: Vec<ServiceType>,
    pub narrative: Option<String>,
}

/// The normalized case record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseRecord {
    pub case_id: CaseId,
    /// Bumped on every change; updates name the version they expect.
    pub version: i64,
    pub status: CaseStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub referral: Referral,
    pub child: Child,
    pub caregivers: Vec<Caregiver>,
    pub household: Household,
    pub concerns: Vec<Concern>,
    pub risk_level: RiskLevel,
    pub target_groups: Vec<TargetGroup>,
    pub consent_refs: Vec<ConsentRef>,
    /// The first assessment's decision, once made.
    #[serde(default)]
    pub acceptance: Option<crate::lifecycle::Acceptance>,
    /// The caseworker and supervisor, once assigned.
    #[serde(default)]
    pub assignment: Option<crate::lifecycle::Assignment>,
    /// The comprehensive assessment, once made.
    #[serde(default)]
    pub assessment: Option<crate::lifecycle::Assessment>,
    /// The individual protection plan, once set.
    #[serde(default)]
    pub plan: Option<crate::lifecycle::Plan>,
    /// How the case ended, while it is closed.
    #[serde(default)]
    pub closure: Option<crate::lifecycle::Closure>,
    /// The case this one was merged into (status `merged`).
    #[serde(default)]
    pub merged_into: Option<String>,
    /// Consents and legal bases for sharing, with their history (withdrawn ones kept).
    #[serde(default)]
    pub consents: Vec<crate::consent::Consent>,
}

impl CaseRecord {
    /// Opens a case from a validated referral. Priority: hotline escalations and high risk
    /// are urgent.
    pub fn open(
        details: ReferralDetails,
        source: ReferralSource,
        now: DateTime<Utc>,
    ) -> CaseRecord {
        let priority =
            if source.kind == SourceKind::Hotline || details.risk_level == RiskLevel::High {
                Priority::Urgent
            } else {
                Priority::Routine
            };
        let recorded_by = source
            .agency_id
            .clone()
            .unwrap_or_else(|| "referral".into());
        let consents = crate::consent::from_referral(&details.consent_refs, &recorded_by, now);
        CaseRecord {
            case_id: CaseId::new(),
            version: 1,
            status: CaseStatus::Referred,
            created_at: now,
            updated_at: now,
            referral: Referral {
                referral_id: ReferralId::new(),
                source,
                received_at: now,
                priority,
                requested_services: details.requested_services,
                narrative: details.narrative,
            },
            child: details.child,
            caregivers: details.caregivers,
            household: details.household,
            concerns: details.concerns,
            risk_level: details.risk_level,
            target_groups: details.target_groups,
            consent_refs: details.consent_refs,
            acceptance: None,
            assignment: None,
            assessment: None,
            plan: None,
            closure: None,
            merged_into: None,
            consents,
        }
    }
}

vocabulary!(
    /// Kinds of agency the hub connects (docs/domain.md, "Agencies").
    AgencyType {
        SocialAffairs => "social_affairs",
        School => "school",
        Health => "health",
        Justice => "justice",
        CashAssistance => "cash_assistance",
        EmergencyLine => "emergency_line",
        Community => "community",
    }
);

vocabulary!(
    /// Why data is disclosed; the sharing policy is written per purpose.
    Purpose {
        ServiceProvision => "service_provision",
        EmergencyResponse => "emergency_response",
        LegalProceedings => "legal_proceedings",
        Statistics => "statistics",
    }
);
