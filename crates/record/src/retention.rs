//! What is left of a case once its retention period has passed: the record without
//! anything that identifies the child or the family, keeping what the hub's statistics
//! count (status, risk, governorate and district, sex, age, concerns, criteria, target
//! groups, services, the lifecycle's dates and who of the staff acted). No I/O: the cases
//! service applies it to the stored record and to the tables around it
//! (`services/cases/src/retention.rs`; the design in `docs/decisions.md`).

use crate::record::{CaseRecord, PersonName};

/// The name left in place of a removed one (the record's names are required text).
fn no_name() -> PersonName {
    PersonName {
        as_given: String::new(),
        transliteration: None,
    }
}

/// Removes the personal data from `rec`, in place. Idempotent: anonymising an anonymised
/// record changes nothing.
///
/// - the child: names, identity documents, address, disability, school are removed; the
///   date of birth becomes the age at the referral (`estimated_age_years`), so the record
///   keeps exactly one of the two as before and age bands can still be counted;
///   sex, nationality, governorate and district stay;
/// - caregivers: names, phones and addresses are removed; the relationship stays;
/// - free text anywhere (the referral's narrative, the household's income source, the
///   acceptance's reason, the assessment's factors and needs, the plan's goals and
///   actions, the closure's evaluation and recommendations, a legal basis's reference)
///   is removed; its vocabulary (need domains, service types, closure reason) stays.
pub fn anonymise(rec: &mut CaseRecord) {
    let child = &mut rec.child;
    child.name = no_name();
    if let Some(born) = child.date_of_birth.take() {
        let age = crate::validate::age_on(born, rec.referral.received_at.date_naive());
        child.estimated_age_years = Some(u8::try_from(age.max(0)).unwrap_or(u8::MAX));
    }
    child.identity_documents.clear();
    child.address = None;
    child.disability = None;
    child.school = None;
    for c in &mut rec.caregivers {
        c.name = no_name();
        c.phone = None;
        c.address = None;
    }
    rec.household.income_source = None;
    rec.referral.narrative = None;
    if let Some(a) = &mut rec.acceptance {
        // The hub's own words for a material-need-only case are no one's data.
        if a.reason.as_deref() != Some(crate::lifecycle::MATERIAL_NEED_ONLY) {
            a.reason = None;
        }
    }
    if let Some(a) = &mut rec.assessment {
        a.risk_factors.clear();
        a.protective_factors.clear();
        for n in &mut a.needs {
            n.description.clear();
        }
    }
    if let Some(p) = &mut rec.plan {
        for g in &mut p.goals {
            g.description.clear();
            for a in &mut g.actions {
                a.description.clear();
            }
        }
    }
    if let Some(c) = &mut rec.closure {
        c.final_evaluation.clear();
        c.recommendations.clear();
    }
    for c in &mut rec.consents {
        c.legal_reference = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    /// Every piece of text of the fixture that is personal or free text.
    const PERSONAL: &[&str] = &[
        "مريم",
        "Maryam",
        "29803091234567",
        "مكتب صحة شبرا",
        "شارع النيل",
        "ضعف سمع",
        "مدرسة النور",
        "فاطمة",
        "Fatima",
        "+20 100",
        "عمل يومي",
        "ثلاثة أسابيع",
        "تعمل الطفلة",
        "عمل في ورشة",
        "أم داعمة",
        "العودة إلى المدرسة",
        "تسجيل في مدرسة",
        "عادت إلى المدرسة",
        "متابعة مع المدرسة",
        "محكمة الأسرة",
        "2014-03-09",
    ];

    #[test]
    fn nothing_personal_is_left_and_what_is_counted_stays() {
        let mut rec = fixtures::closed_record();
        let before = rec.clone();
        let text = serde_json::to_string(&rec).unwrap();
        for p in PERSONAL {
            assert!(text.contains(p), "the fixture holds {p}");
        }
        anonymise(&mut rec);
        let text = serde_json::to_string(&rec).unwrap();
        for p in PERSONAL {
            assert!(!text.contains(p), "{p} is left in {text}");
        }
        // Statistics: the same status, risk, place, sex, concerns, criteria, groups.
        assert_eq!(rec.status, before.status);
        assert_eq!(rec.risk_level, before.risk_level);
        assert_eq!(rec.child.governorate, before.child.governorate);
        assert_eq!(rec.child.district, before.child.district);
        assert_eq!(rec.child.sex, before.child.sex);
        assert_eq!(rec.child.nationality, before.child.nationality);
        assert_eq!(rec.concerns, before.concerns);
        assert_eq!(rec.target_groups, before.target_groups);
        assert_eq!(rec.caregivers.len(), before.caregivers.len());
        assert_eq!(
            rec.caregivers[0].relationship,
            before.caregivers[0].relationship
        );
        assert_eq!(
            rec.acceptance.as_ref().map(|a| &a.vulnerability_criteria),
            before
                .acceptance
                .as_ref()
                .map(|a| &a.vulnerability_criteria)
        );
        assert_eq!(
            rec.closure.as_ref().map(|c| (c.reason, c.closed_at)),
            before.closure.as_ref().map(|c| (c.reason, c.closed_at))
        );
        // Born 2014-03-09, referred 2026-11-22: 12 at the referral.
        assert_eq!(rec.child.date_of_birth, None);
        assert_eq!(rec.child.estimated_age_years, Some(12));
        // Still a record every reader takes.
        let back: CaseRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(back, rec);
        // Twice: nothing more changes.
        let once = rec.clone();
        anonymise(&mut rec);
        assert_eq!(rec, once);
    }
}
