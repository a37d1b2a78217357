//! Himaya's normalized case record and its rules. No I/O lives here: wire formats
//! (protobuf, Avro) convert to and from these types at the edges.

pub mod category;
pub mod id;
#[macro_use]
pub mod record;
pub mod consent;
pub mod gazetteer;
pub mod lifecycle;
pub mod matching;
pub mod retention;
pub mod service_referral;
pub mod validate;

pub use category::{category_of, DataCategory, FIELD_CATEGORIES};
pub use id::{CaseId, IdError, MessageId, ReferralId, ServiceId, ServiceReferralId};
pub use record::*;
pub use validate::{FieldViolation, Problem, Violations};

/// Fully populated records for tests across the workspace: Arabic names, every optional
/// field set, so round-trip and coverage tests see every field.
pub mod fixtures {
    use chrono::{NaiveDate, TimeZone, Utc};

    use crate::record::*;

    pub fn details() -> ReferralDetails {
        ReferralDetails {
            child: Child {
                name: PersonName {
                    as_given: "مريم أحمد عبد الله".into(),
                    transliteration: Some("Maryam Ahmad Abd Allah".into()),
                },
                sex: Sex::Female,
                date_of_birth: NaiveDate::from_ymd_opt(2014, 3, 9),
                estimated_age_years: None,
                nationality: Some("EGY".into()),
                identity_documents: vec![IdentityDocument {
                    kind: DocumentKind::BirthCertificate,
                    number: "29803091234567".into(),
                    issuer: Some("مكتب صحة شبرا".into()),
                }],
                governorate: "القاهرة".into(),
                district: Some("شبرا".into()),
                address: Some("١٢ شارع النيل، شبرا".into()),
                disability: Some("ضعف سمع".into()),
                school: Some(School {
                    name: "مدرسة النور الابتدائية".into(),
                    grade: Some("الرابع".into()),
                }),
            },
            caregivers: vec![Caregiver {
                name: PersonName {
                    as_given: "فاطمة حسن".into(),
                    transliteration: Some("Fatima Hassan".into()),
                },
                relationship: Relationship::Mother,
                phone: Some("+20 100 123 4567".into()),
                address: Some("١٢ شارع النيل، شبرا".into()),
                primary: true,
            }],
            household: Household {
                size: Some(6),
                cash_transfer_beneficiary: true,
                income_source: Some("عمل يومي".into()),
            },
            concerns: vec![
                Concern {
                    kind: ConcernKind::ExploitativeLabour,
                    labour_criteria: vec![
                        LabourCriterion::DeniesEducationOrPlay,
                        LabourCriterion::PhysicalHarm,
                    ],
                },
                Concern {
                    kind: ConcernKind::SchoolDropout,
                    labour_criteria: vec![],
                },
            ],
            risk_level: RiskLevel::High,
            requested_services: vec![ServiceType::Health, ServiceType::Psychosocial],
            target_groups: vec![TargetGroup::CashTransferHousehold],
            consent_refs: vec![
                ConsentRef {
                    consent_id: "cns_demo".into(),
                    given_by: ConsentGiver::Caregiver,
                },
                ConsentRef {
                    consent_id: "cns_demo_assent".into(),
                    given_by: ConsentGiver::ChildAssent,
                },
            ],
            narrative: Some("تغيبت الطفلة عن المدرسة ثلاثة أسابيع وتعمل في ورشة.".into()),
        }
    }

    pub fn school_source() -> ReferralSource {
        ReferralSource {
            kind: SourceKind::School,
            agency_id: Some("school-cairo-alnour".into()),
            staff_ref: Some("officer-17".into()),
        }
    }

    pub fn record() -> CaseRecord {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 9, 30, 0).single();
        CaseRecord::open(details(), school_source(), now.unwrap_or_default())
    }

    /// A record that has been through the whole lifecycle: every optional part set.
    pub fn closed_record() -> CaseRecord {
        use crate::lifecycle::*;
        let mut r = record();
        let at = r.created_at;
        r.status = CaseStatus::Closed;
        r.acceptance = Some(Acceptance {
            decision: AcceptanceDecision::Register,
            vulnerability_criteria: vec!["child_labour".into()],
            target_groups: vec!["cash_transfer_household".into()],
            reason: Some("تعمل الطفلة في ورشة".into()),
            referred_on_to: Some("mosa-cairo".into()),
            decided_by: "sw-1".into(),
            decided_at: at,
        });
        r.assignment = Some(Assignment {
            caseworker_id: "sw-1".into(),
            supervisor_id: "sup-1".into(),
            assigned_at: at,
        });
        r.closure = Some(Closure {
            reason: ClosureReason::NeedEnded,
            parents_consulted: true,
            final_evaluation: "عادت إلى المدرسة".into(),
            recommendations: "متابعة مع المدرسة".into(),
            closed_by: "sw-1".into(),
            closed_at: at,
        });
        r.assessment = Some(Assessment {
            risk_factors: vec!["عمل في ورشة".into()],
            protective_factors: vec!["أم داعمة".into()],
            needs: vec![Need {
                domain: NeedDomain::Education,
                description: "العودة إلى المدرسة".into(),
            }],
            assessed_by: "sw-1".into(),
            assessed_at: at,
        });
        r.plan = Some(Plan {
            goals: vec![Goal {
                description: "العودة إلى المدرسة".into(),
                actions: vec![PlanAction {
                    action_id: "a1".into(),
                    description: "تسجيل في مدرسة".into(),
                    responsible_agency: "school-cairo-alnour".into(),
                    service_type: ServiceType::Education,
                    due_on: at.date_naive(),
                    done: false,
                }],
            }],
            set_by: "sw-1".into(),
            set_at: at,
        });
        r.merged_into = Some(crate::CaseId::new().to_string());
        r.consents.push(crate::consent::Consent {
            consent_id: "cns_court".into(),
            given_by: None,
            method: Some(crate::consent::ConsentMethod::Written),
            legal_basis: Some(crate::consent::LegalBasis::CourtOrder),
            legal_reference: Some("محكمة الأسرة بشبرا، قرار ١٢/٢٠٢٦".into()),
            provisions: vec![crate::consent::Provision {
                kind: crate::consent::ProvisionKind::Permit,
                recipient_agency: Some("justice-cairo".into()),
                recipient_type: Some(AgencyType::Justice),
                purposes: vec![Purpose::LegalProceedings],
                categories: vec![crate::DataCategory::Identity],
            }],
            valid_from: at,
            valid_until: Some(at),
            recorded_by: "sw-1".into(),
            recorded_at: at,
            withdrawn_at: Some(at),
            revision: 2,
        });
        r
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 22).unwrap()
    }

    #[test]
    fn the_fixture_is_valid() {
        let v = validate::validate_details(&fixtures::details(), today(), "referral");
        assert!(v.is_empty(), "{v}");
    }

    #[test]
    fn names_with_direction_or_invisible_characters_are_refused() {
        for sneaky in [
            "\u{202E}مريم",
            "مر\u{2067}يم",
            "مر\u{200B}يم",
            "\u{200F}مريم",
        ] {
            let mut d = fixtures::details();
            d.child.name.as_given = sneaky.into();
            let v = validate::validate_details(&d, today(), "referral");
            assert!(
                v.has("referral.child.name.as_given", "invisible_characters"),
                "{sneaky:?}: {v}"
            );
        }
        // An override in any text field (here the address) is refused too.
        let mut d = fixtures::details();
        d.child.address = Some("شارع \u{202E}النيل".into());
        let v = validate::validate_details(&d, today(), "referral");
        assert!(
            v.has("referral.child.address", "invisible_characters"),
            "{v}"
        );
        // Many violations: listed up to the cap, the rest counted.
        let mut v = Violations::new();
        for i in 0..1000 {
            v.push(format!("f[{i}]"), Problem::Required);
        }
        assert_eq!(v.iter().count(), validate::MAX_VIOLATIONS);
        assert_eq!(v.more(), 1000 - validate::MAX_VIOLATIONS);
    }

    #[test]
    fn high_risk_school_referral_is_urgent() {
        assert_eq!(fixtures::record().referral.priority, Priority::Urgent);
        let mut d = fixtures::details();
        d.risk_level = RiskLevel::Low;
        let r = CaseRecord::open(d, fixtures::school_source(), Default::default());
        assert_eq!(r.referral.priority, Priority::Routine);
    }

    #[test]
    fn every_problem_is_reported_at_once_without_values() {
        let mut d = fixtures::details();
        d.child.name.as_given = "   ".into();
        d.child.name.transliteration = Some("مريم".into());
        d.child.estimated_age_years = Some(7);
        d.caregivers[0].phone = Some("call me".into());
        d.concerns[0].labour_criteria.clear();
        d.concerns[1].labour_criteria = vec![LabourCriterion::PhysicalHarm];
        d.requested_services.clear();
        d.child.nationality = Some("egypt".into());
        let v = validate::validate_details(&d, today(), "referral");
        assert!(v.has("referral.child.name.as_given", "required"));
        assert!(v.has("referral.child.name.transliteration", "not_latin_script"));
        assert!(v.has("referral.child.date_of_birth", "both_birth_date_and_age"));
        assert!(v.has("referral.caregivers[0].phone", "invalid_phone"));
        assert!(v.has(
            "referral.concerns[0].labour_criteria",
            "labour_criteria_required"
        ));
        assert!(v.has(
            "referral.concerns[1].labour_criteria",
            "labour_criteria_only_for_labour"
        ));
        assert!(v.has("referral.requested_services", "at_least_one"));
        assert!(v.has("referral.child.nationality", "invalid_code"));
        let text = v.to_string();
        assert!(
            !text.contains("call me") && !text.contains("egypt"),
            "{text}"
        );
    }

    #[test]
    fn adults_and_future_births_are_refused() {
        let mut d = fixtures::details();
        d.child.date_of_birth = NaiveDate::from_ymd_opt(2008, 11, 22);
        let v = validate::validate_details(&d, today(), "r");
        assert!(v.has("r.child.date_of_birth", "not_a_child"));
        d.child.date_of_birth = NaiveDate::from_ymd_opt(2008, 11, 23);
        assert!(validate::validate_details(&d, today(), "r").is_empty());
        d.child.date_of_birth = NaiveDate::from_ymd_opt(2027, 1, 1);
        let v = validate::validate_details(&d, today(), "r");
        assert!(v.has("r.child.date_of_birth", "date_in_future"));
        d.child.date_of_birth = None;
        d.child.estimated_age_years = Some(18);
        let v = validate::validate_details(&d, today(), "r");
        assert!(v.has("r.child.estimated_age_years", "age_out_of_range"));
    }

    #[test]
    fn every_problem_speaks_arabic_and_english() {
        let all = [
            Problem::Required,
            Problem::TooLong { max: 3 },
            Problem::NotAChild,
            Problem::LabourCriteriaRequired,
            Problem::NotChosen {
                choices: "a, b".into(),
            },
        ];
        for p in all {
            assert!(p
                .text(himaya_words::Lang::Arabic)
                .chars()
                .any(|c| ('\u{0600}'..='\u{06FF}').contains(&c)));
            assert!(p.text(himaya_words::Lang::English).is_ascii());
        }
    }
}
