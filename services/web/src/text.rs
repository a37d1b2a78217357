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
    // The case lifecycle (caseworker and supervisor screens).
    (
        "register",
        "تسجيل الحالة لإدارة الحالة",
        "Register for case management",
    ),
    (
        "refer_on",
        "إحالة إلى جهة أخرى",
        "Refer on to another agency",
    ),
    ("decline", "عدم القبول", "Decline"),
    ("home_visit", "زيارة منزلية", "Home visit"),
    (
        "meeting_with_child",
        "لقاء مع الطفل",
        "Meeting with the child",
    ),
    ("phone", "مكالمة هاتفية", "Phone call"),
    ("safety", "السلامة", "Safety"),
    ("abuse_or_violence", "إساءة أو عنف", "Abuse or violence"),
    ("out_of_school", "خارج المدرسة", "Out of school"),
    (
        "disability_without_care",
        "إعاقة دون رعاية",
        "Disability without care",
    ),
    ("care_institution", "في دار رعاية", "In a care institution"),
    ("foster_family", "في أسرة بديلة", "In a foster family"),
    ("poverty", "الفقر", "Poverty"),
    ("material_need", "حاجة مادية", "Material need"),
    ("housing_need", "حاجة إلى سكن", "Housing need"),
    (
        "cash_transfer_household",
        "أسرة مستفيدة من الدعم النقدي",
        "Cash-transfer household",
    ),
    (
        "family_affected_by_violence",
        "أسرة متأثرة بالعنف",
        "Family affected by violence",
    ),
    // Service referrals (FHIR Task states) and deliveries.
    ("requested", "أُرسلت، بانتظار الجهة", "Requested"),
    ("received", "استلمتها الجهة", "Received by the agency"),
    ("accepted", "قبلتها الجهة", "Accepted"),
    ("rejected", "رفضتها الجهة", "Rejected"),
    ("in_progress", "قيد التنفيذ", "In progress"),
    ("completed", "اكتملت", "Completed"),
    ("failed", "تعذر تنفيذها", "Failed"),
    ("cancelled", "أُلغيت", "Cancelled"),
    ("delivered", "وصلت", "Delivered"),
    ("undelivered", "لم تصل إلى أي جهة", "Reached no agency"),
    // Deadlines that escalate when missed.
    (
        "assignment",
        "إسناد الحالة إلى أخصائي",
        "Assigning a caseworker",
    ),
    (
        "first_contact",
        "أول تواصل مع الطفل",
        "First contact with the child",
    ),
    ("review", "المراجعة الدورية", "Periodic review"),
    ("turns_18_soon", "اقتراب بلوغ 18 عامًا", "Turning 18 soon"),
    ("turns_18", "بلوغ 18 عامًا", "Turning 18"),
    ("plan_action", "إجراء في الخطة", "A plan action"),
    (
        "service_referral",
        "رد جهة على إحالة خدمة",
        "An agency's answer to a service referral",
    ),
    // Consents and legal bases.
    ("caregiver", "ولي الأمر", "The caregiver"),
    ("child_assent", "موافقة الطفل", "The child's assent"),
    ("written", "كتابية", "written"),
    ("verbal", "شفهية", "verbal"),
    (
        "vital_interests",
        "المصلحة الحيوية للطفل",
        "Vital interests",
    ),
    ("legal_obligation", "التزام قانوني", "Legal obligation"),
    ("court_order", "أمر محكمة", "Court order"),
    ("permit", "تسمح", "Permits"),
    ("deny", "تمنع", "Denies"),
    ("service_provision", "تقديم الخدمات", "service provision"),
    (
        "emergency_response",
        "الاستجابة الطارئة",
        "emergency response",
    ),
    (
        "legal_proceedings",
        "الإجراءات القانونية",
        "legal proceedings",
    ),
    ("statistics", "الإحصاء", "statistics"),
    ("reference", "بيانات مرجعية", "reference data"),
    ("identity", "بيانات الهوية", "identity"),
    ("contact", "بيانات الاتصال", "contact details"),
    ("location", "المكان", "location"),
    ("protection_concern", "مخاوف الحماية", "protection concerns"),
    ("justice", "العدالة", "justice"),
    ("case_notes", "ملاحظات الحالة", "case notes"),
    (
        "social_affairs",
        "جهات التضامن الاجتماعي",
        "Social affairs agencies",
    ),
    ("school", "المدارس", "Schools"),
    ("emergency_line", "خط النجدة", "The emergency line"),
    (
        "community",
        "لجان حماية الطفل المجتمعية",
        "Community child-protection committees",
    ),
    (
        "cash_assistance",
        "برامج الدعم النقدي",
        "Cash-assistance programmes",
    ),
    // Break-glass reasons and review findings.
    ("imminent_danger", "خطر وشيك", "Imminent danger"),
    ("medical_emergency", "طارئ طبي", "Medical emergency"),
    ("missing_child", "طفل مفقود", "Missing child"),
    ("abuse_in_progress", "إساءة جارية", "Abuse in progress"),
    ("justified", "مبرر", "Justified"),
    ("unjustified", "غير مبرر", "Not justified"),
    // The disclosure log: which path asked, and why a disclosure was refused.
    (
        "bus_delivery",
        "إرسال إلى نظام الجهة",
        "Delivery to the agency's system",
    ),
    ("grpc_read", "قراءة حالة", "Case read"),
    ("grpc_call", "طلب على حالة", "Request on a case"),
    ("break_glass", "وصول طارئ", "Break-glass"),
    ("export", "تصدير", "Export"),
    (
        "feedback",
        "إفادة للجهة المُحيلة",
        "Feedback to the referrer",
    ),
    (
        "no_policy_rule",
        "لا تسمح سياسة المشاركة",
        "No sharing-policy rule",
    ),
    (
        "no_consent",
        "لا موافقة ولا سند قانوني",
        "No consent or legal basis",
    ),
    ("no_assent", "لم يوافق الطفل", "The child did not assent"),
    (
        "policy_and_consent_share_nothing",
        "لا تقاطع بين السياسة والموافقة",
        "Policy and consent share nothing",
    ),
    (
        "statistics_only_as_aggregates",
        "الإحصاء أرقام مجمّعة فقط",
        "Statistics only as aggregates",
    ),
    (
        "no_part_in_case",
        "لا علاقة للجهة بالحالة",
        "No part in the case",
    ),
    (
        "not_case_owner",
        "الحالة خارج نطاق الجهة",
        "Not the case's owner",
    ),
    ("no_such_case", "لا توجد حالة بهذا الرقم", "No such case"),
    (
        "break_glass_not_for_agency_type",
        "الوصول الطارئ غير متاح لهذا النوع من الجهات",
        "Break-glass not allowed for this agency type",
    ),
    (
        "break_glass_without_reason",
        "وصول طارئ دون سبب أو مبرر",
        "Break-glass without a reason or justification",
    ),
    (
        "break_glass_not_high_risk",
        "الحالة ليست عالية الخطورة",
        "The case is not high risk",
    ),
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

// ---- Numbers and times in the page's language ------------------------------------------
// Arabic pages write digits as `[web] digits` says (Latin or Arabic-Indic), English pages
// in Latin; times are shown at the deployment's fixed offset (`[web] time_zone`), months
// by name so that no reader mistakes day and month.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, Offset, Timelike, Utc};
pub use himaya_settings::Digits;

const MONTHS_AR: [&str; 12] = [
    "يناير",
    "فبراير",
    "مارس",
    "أبريل",
    "مايو",
    "يونيو",
    "يوليو",
    "أغسطس",
    "سبتمبر",
    "أكتوبر",
    "نوفمبر",
    "ديسمبر",
];
const MONTHS_EN: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `s` with its digits 0-9 written as the page writes them: Arabic-Indic (٠١٢٣٤٥٦٧٨٩) on
/// an Arabic page when the setting says so, as they are otherwise.
fn in_digits(lang: Lang, digits: Digits, s: &str) -> String {
    match (lang, digits) {
        (Lang::Arabic, Digits::ArabicIndic) => s
            .chars()
            .map(|c| match c.to_digit(10) {
                Some(d) if c.is_ascii_digit() => char::from_u32(0x0660 + d).unwrap_or(c),
                _ => c,
            })
            .collect(),
        _ => s.to_owned(),
    }
}

/// A whole number (a count, an age, a number of days) in the page's digits.
pub fn number(lang: Lang, digits: Digits, n: impl Into<i128>) -> String {
    in_digits(lang, digits, &n.into().to_string())
}

/// A decimal number with `places` digits after the point (a median in hours), in the
/// page's digits; Arabic-Indic digits take the Arabic decimal separator (٫).
pub fn decimal(lang: Lang, digits: Digits, x: f64, places: usize) -> String {
    let s = in_digits(lang, digits, &format!("{x:.places$}"));
    match (lang, digits) {
        (Lang::Arabic, Digits::ArabicIndic) => s.replace('.', "\u{066B}"),
        _ => s,
    }
}

/// A ratio (0.25) as a whole percentage: "25%", or "٢٥٪" in Arabic-Indic digits.
pub fn percent(lang: Lang, digits: Digits, ratio: f64) -> String {
    let n = format!("{:.0}", ratio * 100.0);
    match (lang, digits) {
        (Lang::Arabic, Digits::ArabicIndic) => format!("{}\u{066A}", in_digits(lang, digits, &n)),
        _ => format!("{n}%"),
    }
}

/// The deployment's offset from UTC (`[web] time_zone`, checked when the settings load).
pub fn zone(web: &himaya_settings::WebSettings) -> FixedOffset {
    FixedOffset::east_opt(web.utc_offset_secs()).unwrap_or(Utc.fix())
}

/// A calendar date that has no time of day (a due date, a date of birth), as written on
/// the page: "٣ ديسمبر ٢٠٢٦" or "3 Dec 2026". No zone applies to it.
pub fn day(lang: Lang, digits: Digits, d: NaiveDate) -> String {
    let months = match lang {
        Lang::Arabic => &MONTHS_AR,
        Lang::English => &MONTHS_EN,
    };
    let month = months.get(d.month0() as usize).copied().unwrap_or("");
    in_digits(lang, digits, &format!("{} {month} {}", d.day(), d.year()))
}

/// The date of the moment `t` in the deployment's zone: "٣ ديسمبر ٢٠٢٦", "3 Dec 2026".
pub fn date(lang: Lang, digits: Digits, zone: FixedOffset, t: DateTime<Utc>) -> String {
    day(lang, digits, t.with_timezone(&zone).date_naive())
}

/// The moment `t` to the minute in the deployment's zone: "٣ ديسمبر ٢٠٢٦، ١٤:٠٥",
/// "3 Dec 2026, 14:05".
pub fn date_time(lang: Lang, digits: Digits, zone: FixedOffset, t: DateTime<Utc>) -> String {
    let local = t.with_timezone(&zone);
    let clock = format!("{:02}:{:02}", local.hour(), local.minute());
    format!(
        "{}{}{}",
        day(lang, digits, local.date_naive()),
        pick(lang, "، ", ", "),
        in_digits(lang, digits, &clock)
    )
}

/// The moment `t` to the second, where the order of moments matters (the disclosure
/// log): "٣ ديسمبر ٢٠٢٦، ١٤:٠٥:٠٩", "3 Dec 2026, 14:05:09".
pub fn date_time_seconds(
    lang: Lang,
    digits: Digits,
    zone: FixedOffset,
    t: DateTime<Utc>,
) -> String {
    let local = t.with_timezone(&zone);
    let clock = format!(
        "{:02}:{:02}:{:02}",
        local.hour(),
        local.minute(),
        local.second()
    );
    format!(
        "{}{}{}",
        day(lang, digits, local.date_naive()),
        pick(lang, "، ", ", "),
        in_digits(lang, digits, &clock)
    )
}

/// A time the hub sent as text: RFC 3339 as [`date_time`], a bare `YYYY-MM-DD` as
/// [`day`]; anything else is shown as it came.
pub fn time_text(lang: Lang, digits: Digits, zone: FixedOffset, at: &str) -> String {
    if let Ok(t) = DateTime::parse_from_rfc3339(at) {
        return date_time(lang, digits, zone, t.with_timezone(&Utc));
    }
    match NaiveDate::parse_from_str(at, "%Y-%m-%d") {
        Ok(d) => day(lang, digits, d),
        Err(_) => at.to_owned(),
    }
}

/// The page's language with the deployment's digits and zone: what a handler needs to
/// write numbers and times (`Local::new(lang, &app.settings.web)`).
#[derive(Debug, Clone, Copy)]
pub struct Local {
    pub lang: Lang,
    pub digits: Digits,
    pub zone: FixedOffset,
}

impl Local {
    pub fn new(lang: Lang, web: &himaya_settings::WebSettings) -> Local {
        Local {
            lang,
            digits: web.digits,
            zone: zone(web),
        }
    }

    pub fn number(&self, n: impl Into<i128>) -> String {
        number(self.lang, self.digits, n)
    }

    pub fn decimal(&self, x: f64, places: usize) -> String {
        decimal(self.lang, self.digits, x, places)
    }

    pub fn percent(&self, ratio: f64) -> String {
        percent(self.lang, self.digits, ratio)
    }

    pub fn day(&self, d: NaiveDate) -> String {
        day(self.lang, self.digits, d)
    }

    pub fn date(&self, t: DateTime<Utc>) -> String {
        date(self.lang, self.digits, self.zone, t)
    }

    pub fn date_time(&self, t: DateTime<Utc>) -> String {
        date_time(self.lang, self.digits, self.zone, t)
    }

    pub fn date_time_seconds(&self, t: DateTime<Utc>) -> String {
        date_time_seconds(self.lang, self.digits, self.zone, t)
    }

    pub fn time_text(&self, at: &str) -> String {
        time_text(self.lang, self.digits, self.zone, at)
    }
}

#[cfg(test)]
mod locale_tests {
    use super::*;

    const AR: Lang = Lang::Arabic;
    const EN: Lang = Lang::English;

    fn cairo() -> FixedOffset {
        FixedOffset::east_opt(2 * 3600).unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn numbers_take_arabic_indic_digits_only_on_arabic_pages_that_ask_for_them() {
        assert_eq!(number(AR, Digits::ArabicIndic, 1234567890u32), "١٢٣٤٥٦٧٨٩٠");
        assert_eq!(number(AR, Digits::ArabicIndic, -25i64), "-٢٥");
        assert_eq!(number(AR, Digits::Latin, 25u8), "25");
        assert_eq!(number(EN, Digits::ArabicIndic, 25usize as u64), "25");
        assert_eq!(number(EN, Digits::Latin, 0i32), "0");
        assert_eq!(decimal(AR, Digits::ArabicIndic, 12.25, 1), "١٢٫٢");
        assert_eq!(decimal(AR, Digits::Latin, 3.0, 1), "3.0");
        assert_eq!(decimal(EN, Digits::ArabicIndic, 0.5, 2), "0.50");
        assert_eq!(percent(AR, Digits::ArabicIndic, 0.25), "٢٥٪");
        assert_eq!(percent(AR, Digits::Latin, 0.25), "25%");
        assert_eq!(percent(EN, Digits::ArabicIndic, 1.0), "100%");
    }

    #[test]
    fn dates_and_times_are_in_the_deployments_zone_with_month_names() {
        let t = at("2026-12-03T12:05:00Z");
        assert_eq!(
            date_time(AR, Digits::ArabicIndic, cairo(), t),
            "٣ ديسمبر ٢٠٢٦، ١٤:٠٥"
        );
        assert_eq!(
            date_time(AR, Digits::Latin, cairo(), t),
            "3 ديسمبر 2026، 14:05"
        );
        assert_eq!(
            date_time(EN, Digits::ArabicIndic, cairo(), t),
            "3 Dec 2026, 14:05"
        );
        assert_eq!(date(AR, Digits::ArabicIndic, cairo(), t), "٣ ديسمبر ٢٠٢٦");
        assert_eq!(date(EN, Digits::Latin, cairo(), t), "3 Dec 2026");
        assert_eq!(
            date_time_seconds(
                AR,
                Digits::ArabicIndic,
                cairo(),
                t + chrono::Duration::seconds(9)
            ),
            "٣ ديسمبر ٢٠٢٦، ١٤:٠٥:٠٩"
        );
        assert_eq!(
            date_time_seconds(EN, Digits::Latin, cairo(), t),
            "3 Dec 2026, 14:05:00"
        );
        // Late on New Year's Eve in UTC is already the next year in Cairo.
        let t = at("2026-12-31T23:30:00Z");
        assert_eq!(
            date_time(EN, Digits::Latin, cairo(), t),
            "1 Jan 2027, 01:30"
        );
        assert_eq!(date(AR, Digits::Latin, cairo(), t), "1 يناير 2027");
        let west = FixedOffset::west_opt(3 * 3600 + 30 * 60).unwrap();
        assert_eq!(date_time(EN, Digits::Latin, west, t), "31 Dec 2026, 20:00");
        for (m, name) in MONTHS_AR.iter().enumerate() {
            let d = NaiveDate::from_ymd_opt(2026, m as u32 + 1, 9).unwrap();
            assert_eq!(day(AR, Digits::Latin, d), format!("9 {name} 2026"));
        }
    }

    #[test]
    fn times_sent_as_text_are_read_or_shown_as_they_came() {
        let l = Local {
            lang: AR,
            digits: Digits::ArabicIndic,
            zone: cairo(),
        };
        assert_eq!(l.time_text("2026-12-03T12:05:00Z"), "٣ ديسمبر ٢٠٢٦، ١٤:٠٥");
        assert_eq!(
            l.time_text("2026-12-03T14:05:00+02:00"),
            "٣ ديسمبر ٢٠٢٦، ١٤:٠٥"
        );
        assert_eq!(l.time_text("2026-12-20"), "٢٠ ديسمبر ٢٠٢٦");
        assert_eq!(l.time_text(""), "");
        assert_eq!(l.time_text("soon"), "soon");
        let web = himaya_settings::WebSettings::default();
        let en = Local::new(EN, &web);
        assert_eq!(en.zone, cairo());
        assert_eq!(en.number(7u8), "7");
        assert_eq!(
            en.time_text("2026-12-03T12:05:00.123456Z"),
            "3 Dec 2026, 14:05"
        );
    }
}
