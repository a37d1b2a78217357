//! Every word a person reads on the web front, in Arabic and English, in one place.
//! Arabic is the default; English is a switch the browser remembers (a cookie).

use himaya_proto::status::Lang;

/// The page's language: from the `himaya_lang` cookie, else Arabic.
pub fn lang_of(headers: &axum::http::HeaderMap) -> Lang {
    let cookies = headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok());
    for c in cookies.flat_map(|c| c.split(';')) {
        if let Some(v) = c.trim().strip_prefix("himaya_lang=") {
            return if v == "en" {
                Lang::English
            } else {
                Lang::Arabic
            };
        }
    }
    Lang::Arabic
}

/// `(Arabic, English)`, picked for `lang`.
pub fn pick(lang: Lang, ar: &'static str, en: &'static str) -> &'static str {
    match lang {
        Lang::Arabic => ar,
        Lang::English => en,
    }
}

/// What a closed vocabulary's code reads as. An unknown code reads as itself.
pub fn label(code: &str, lang: Lang) -> &str {
    LABELS
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, ar, en)| pick(lang, ar, en))
        .unwrap_or(code)
}

const LABELS: &[(&str, &str, &str)] = &[
    ("female", "أنثى", "Female"),
    ("male", "ذكر", "Male"),
    ("not_stated", "غير مذكور", "Not stated"),
    ("mother", "الأم", "Mother"),
    ("father", "الأب", "Father"),
    ("grandparent", "الجد أو الجدة", "Grandparent"),
    ("sibling", "أخ أو أخت", "Sibling"),
    ("other_relative", "قريب آخر", "Other relative"),
    ("foster_carer", "أسرة بديلة", "Foster carer"),
    (
        "institution_staff",
        "موظف في دار رعاية",
        "Care institution staff",
    ),
    ("other", "أخرى", "Other"),
    ("physical_abuse", "إيذاء جسدي", "Physical abuse"),
    ("sexual_abuse", "إيذاء جنسي", "Sexual abuse"),
    ("emotional_abuse", "إيذاء نفسي", "Emotional abuse"),
    ("neglect", "إهمال", "Neglect"),
    ("exploitative_labour", "عمل استغلالي", "Exploitative labour"),
    ("child_marriage", "زواج أطفال", "Child marriage"),
    (
        "separated_or_unaccompanied",
        "طفل منفصل أو غير مصحوب",
        "Separated or unaccompanied",
    ),
    ("school_dropout", "تسرب من المدرسة", "School dropout"),
    ("family_violence", "عنف أسري", "Family violence"),
    (
        "conflict_with_law",
        "طفل في نزاع مع القانون",
        "Conflict with the law",
    ),
    (
        "psychosocial_distress",
        "ضائقة نفسية اجتماعية",
        "Psychosocial distress",
    ),
    (
        "denies_education_or_play",
        "يحرمه من التعليم أو اللعب",
        "Denies education or play",
    ),
    ("physical_harm", "يسبب له أذى جسديًا", "Causes physical harm"),
    (
        "underpaid_for_being_a_child",
        "أجر أقل لأنه طفل",
        "Paid less for being a child",
    ),
    ("worst_form_recruitment", "تجنيد", "Recruitment"),
    ("worst_form_trafficking", "اتجار", "Trafficking"),
    (
        "worst_form_sexual_exploitation",
        "استغلال جنسي",
        "Sexual exploitation",
    ),
    ("low", "منخفض", "Low"),
    ("medium", "متوسط", "Medium"),
    ("high", "مرتفع", "High"),
    ("health", "الصحة", "Health"),
    (
        "psychosocial",
        "الدعم النفسي الاجتماعي",
        "Psychosocial support",
    ),
    ("education", "التعليم", "Education"),
    ("legal", "الحماية القانونية", "Legal protection"),
    ("economic", "الدعم الاقتصادي", "Economic support"),
    ("case_management", "إدارة الحالة", "Case management"),
    (
        "referred",
        "محالة، بانتظار التقييم",
        "Referred, awaiting assessment",
    ),
    (
        "registered",
        "مسجلة لإدارة الحالة",
        "Registered for case management",
    ),
    ("referred_on", "محالة إلى خدمات أخرى", "Referred on"),
    ("declined", "لم تُقبل", "Declined"),
    ("closed", "مغلقة", "Closed"),
    ("merged", "مدمجة في حالة أخرى", "Merged into another case"),
    (
        "school_officer",
        "مسؤول حماية مدرسي",
        "School protection officer",
    ),
    (
        "committee_member",
        "عضو لجنة حماية مجتمعية",
        "Community committee member",
    ),
    ("hotline_operator", "موظف خط النجدة", "Hotline operator"),
    ("caseworker", "أخصائي حالة", "Caseworker"),
    ("supervisor", "مشرف", "Supervisor"),
    ("agency_staff", "موظف جهة شريكة", "Partner agency staff"),
    ("auditor", "مدقق", "Auditor"),
    ("admin", "مسؤول الحسابات", "Account administrator"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_vocabulary_code_has_both_words() {
        use himaya_record::{
            ConcernKind, LabourCriterion, Relationship, RiskLevel, ServiceType, Sex,
        };
        let codes = Sex::ALL
            .iter()
            .map(|x| x.as_str())
            .chain(Relationship::ALL.iter().map(|x| x.as_str()))
            .chain(ConcernKind::ALL.iter().map(|x| x.as_str()))
            .chain(LabourCriterion::ALL.iter().map(|x| x.as_str()))
            .chain(RiskLevel::ALL.iter().map(|x| x.as_str()))
            .chain(ServiceType::ALL.iter().map(|x| x.as_str()));
        for code in codes {
            assert_ne!(label(code, Lang::Arabic), code, "{code} has no Arabic");
            assert_ne!(label(code, Lang::English), code, "{code} has no English");
        }
    }
}
