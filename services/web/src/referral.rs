//! The school protection officer's (and community committee member's) referral form, its
//! submission through the hub's own intake (so the same validation answers, field by
//! field, in the page's language), and the list of the agency's referrals.

use himaya_proto::convert as cv;
use himaya_proto::status::Lang;
use himaya_proto::v1 as pb;
use himaya_record::{
    ConcernKind, ConsentGiver, LabourCriterion, Relationship, RiskLevel, ServiceType, Sex,
};
use maud::{html, Markup};
use tonic_types::StatusExt;

use crate::text::{label, pick};

/// A submitted form: every value under its field name (checkboxes repeat their name).
#[derive(Default)]
pub struct Form(pub Vec<(String, String)>);

impl Form {
    pub fn parse(body: &[u8]) -> Form {
        Form(form_urlencoded::parse(body).into_owned().collect())
    }

    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .unwrap_or("")
    }

    pub(crate) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn opt(&self, name: &str) -> Option<String> {
        Some(self.get(name).to_owned()).filter(|v| !v.is_empty())
    }
}

/// Which way in a form leads: a school's (or committee's) referral, or the emergency
/// line's escalation of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    School,
    Hotline,
}

impl Way {
    fn action(self) -> &'static str {
        match self {
            Way::School => "/referrals",
            Way::Hotline => "/hotline",
        }
    }
}

/// The intake request a school's form makes, as the officer's school. The submission id
/// is the form's own: a double click or a retried post refers the child once.
pub fn school_request(f: &Form, agency_id: &str, person_id: &str) -> pb::SchoolReferralRequest {
    pb::SchoolReferralRequest {
        submission_id: f.get("submission_id").to_owned(),
        school_agency_id: agency_id.to_owned(),
        officer_ref: person_id.to_owned(),
        referral: Some(details(f)),
    }
}

/// The intake request a community committee's form makes, as the committee (an agency of
/// type `community`): the same form and submission id as a school's, through the agency
/// path with the committee as its source.
pub fn committee_request(f: &Form, agency_id: &str) -> pb::AgencyReferralRequest {
    pb::AgencyReferralRequest {
        submission_id: f.get("submission_id").to_owned(),
        agency_id: agency_id.to_owned(),
        source_kind: pb::SourceKind::CommunityCommittee.into(),
        referral: Some(details(f)),
    }
}

/// The escalation an operator's console makes, as the emergency line.
pub fn hotline_request(f: &Form, agency_id: &str, person_id: &str) -> pb::HotlineEscalationRequest {
    pb::HotlineEscalationRequest {
        submission_id: f.get("submission_id").to_owned(),
        call_ref: f.get("call_ref").to_owned(),
        operator_ref: person_id.to_owned(),
        referral: Some(details(f)),
        hotline_agency_id: agency_id.to_owned(),
    }
}

/// The referral the form describes, in the hub's wire shape; the hub validates it.
fn details(f: &Form) -> pb::ReferralDetails {
    let code = |name: &str| f.get(name);
    let concerns: Vec<pb::Concern> = f
        .all("concern")
        .filter_map(ConcernKind::parse)
        .map(|k| pb::Concern {
            kind: cv::concern_to(k).into(),
            labour_criteria: match k {
                ConcernKind::ExploitativeLabour => f
                    .all("labour")
                    .filter_map(LabourCriterion::parse)
                    .map(|l| cv::labour_to(l).into())
                    .collect(),
                _ => Vec::new(),
            },
        })
        .collect();
    let caregivers = match f.opt("caregiver_name") {
        None => Vec::new(),
        Some(name) => vec![pb::Caregiver {
            name: Some(pb::PersonName {
                as_given: name,
                transliteration: None,
            }),
            relationship: Relationship::parse(code("caregiver_relationship"))
                .map(|r| cv::relationship_to(r).into())
                .unwrap_or_default(),
            phone: f.opt("caregiver_phone"),
            address: None,
            primary: true,
        }],
    };
    let submission = f.get("submission_id");
    let consent = |given: ConsentGiver, suffix: &str| pb::ConsentRef {
        consent_id: format!("cns_web_{suffix}_{}", submission.trim_start_matches("web_")),
        given_by: cv::giver_to(given).into(),
    };
    let mut consent_refs = Vec::new();
    if f.get("consent_caregiver") == "yes" {
        consent_refs.push(consent(ConsentGiver::Caregiver, "cg"));
    }
    if f.get("consent_child") == "yes" {
        consent_refs.push(consent(ConsentGiver::ChildAssent, "ch"));
    }
    let age = f.get("age").parse::<u32>().ok();
    pb::ReferralDetails {
        child: Some(pb::Child {
            name: Some(pb::PersonName {
                as_given: code("child_name").to_owned(),
                transliteration: f.opt("child_latin"),
            }),
            sex: Sex::parse(code("sex"))
                .map(|s| cv::sex_to(s).into())
                .unwrap_or_default(),
            date_of_birth: f.opt("dob"),
            estimated_age_years: age,
            governorate: code("governorate").to_owned(),
            district: f.opt("district"),
            ..Default::default()
        }),
        caregivers,
        household: Some(pb::Household::default()),
        concerns,
        risk_level: RiskLevel::parse(code("risk"))
            .map(|r| cv::risk_to(r).into())
            .unwrap_or_default(),
        requested_services: f
            .all("service")
            .filter_map(ServiceType::parse)
            .map(|s| cv::service_to(s).into())
            .collect(),
        target_groups: Vec::new(),
        consent_refs,
        narrative: f.opt("narrative"),
    }
}

/// The hub's field violations, by the form field each belongs next to.
pub fn field_errors(status: &tonic::Status) -> Vec<(&'static str, String)> {
    let Some(bad) = status.get_details_bad_request() else {
        return Vec::new();
    };
    bad.field_violations
        .into_iter()
        .map(|v| {
            let text = v
                .description
                .split_once("] ")
                .map(|(_, t)| t.to_owned())
                .unwrap_or(v.description);
            (input_of(&v.field), text)
        })
        .collect()
}

/// Which input of the form a violation's field path names.
fn input_of(path: &str) -> &'static str {
    const INPUTS: &[(&str, &str)] = &[
        ("child.name.as_given", "child_name"),
        ("child.name.transliteration", "child_latin"),
        ("child.sex", "sex"),
        ("child.date_of_birth", "dob"),
        ("child.estimated_age_years", "age"),
        ("child.governorate", "governorate"),
        ("child.district", "district"),
        ("caregivers[0].name", "caregiver_name"),
        ("caregivers[0].relationship", "caregiver_relationship"),
        ("caregivers[0].phone", "caregiver_phone"),
        ("concerns", "concern"),
        ("risk_level", "risk"),
        ("requested_services", "service"),
        ("narrative", "narrative"),
        ("call_ref", "call_ref"),
    ];
    let path = path.strip_prefix("referral.").unwrap_or(path);
    INPUTS
        .iter()
        .find(|(p, _)| path.starts_with(p))
        .map(|(_, i)| *i)
        .unwrap_or("form")
}

/// The form, filled with `f` (empty for a new one) and its errors next to their fields.
pub fn form(
    lang: Lang,
    csrf: &str,
    governorates: &[(String, String)],
    (way, f): (Way, &Form),
    errors: &[(&'static str, String)],
) -> Markup {
    let t = |ar, en| pick(lang, ar, en);
    let error = |input: &str| -> Markup {
        html! {
            @for (_, e) in errors.iter().filter(|(i, _)| *i == input) {
                p.field-error id={(input) "-error"} { (e) }
            }
        }
    };
    let checked = |name: &str, value: &str| f.all(name).any(|v| v == value);
    let submission = match f.get("submission_id") {
        "" => format!("web_{}", uuid::Uuid::new_v4().simple()),
        s => s.to_owned(),
    };
    let heading = match way {
        Way::School => t("إحالة طفل", "Refer a child"),
        Way::Hotline => t("تصعيد بلاغ من الخط", "Escalate a call"),
    };
    html! {
        h1 { (heading) }
        @if errors.iter().any(|(i, _)| *i == "form") {
            div.error role="alert" {
                @for (_, e) in errors.iter().filter(|(i, _)| *i == "form") { p { (e) } }
            }
        } @else if !errors.is_empty() {
            p.error role="alert" { (t("راجع الحقول المشار إليها أدناه.", "Check the fields marked below.")) }
        }
        form method="post" action=(way.action()) novalidate {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="submission_id" value=(submission);
            @if way == Way::Hotline {
                // The console starts on the call: the minimal fields first, keyboard only.
                label for="call_ref" { (t("رقم المكالمة", "Call reference")) }
                input #call_ref name="call_ref" value=(f.get("call_ref")) maxlength="64" required autofocus dir="ltr";
                (error("call_ref"))
            }
            fieldset {
                legend { (t("الطفل", "The child")) }
                label for="child_name" { (t("الاسم كما ورد (بالعربية)", "Name as given (Arabic script)")) }
                input #child_name name="child_name" value=(f.get("child_name")) maxlength="200" required dir="auto";
                (error("child_name"))
                label for="child_latin" { (t("الاسم بالحروف اللاتينية (اختياري)", "Name in Latin letters (optional)")) }
                input #child_latin name="child_latin" value=(f.get("child_latin")) maxlength="200" dir="ltr";
                (error("child_latin"))
                label for="sex" { (t("الجنس", "Sex")) }
                select #sex name="sex" {
                    option value="" { "—" }
                    @for s in Sex::ALL {
                        // A caller often cannot say: the console starts at "not stated".
                        option value=(s.as_str()) selected[f.get("sex") == s.as_str() || (way == Way::Hotline && f.get("sex").is_empty() && *s == Sex::NotStated)] { (label(s.as_str(), lang)) }
                    }
                }
                (error("sex"))
                label for="dob" { (t("تاريخ الميلاد", "Date of birth")) }
                input #dob type="date" name="dob" value=(f.get("dob")) dir="ltr";
                (error("dob"))
                label for="age" { (t("أو العمر التقديري بالسنوات (دون وثائق)", "or estimated age in years (no documents)")) }
                input #age type="number" name="age" min="0" max="17" value=(f.get("age")) dir="ltr";
                (error("age"))
                label for="governorate" { (t("المحافظة", "Governorate")) }
                select #governorate name="governorate" {
                    option value="" { "—" }
                    @for (ar, en) in governorates {
                        option value=(ar) selected[f.get("governorate") == ar.as_str()] {
                            (match lang { Lang::Arabic => ar, Lang::English => en })
                        }
                    }
                }
                (error("governorate"))
                label for="district" { (t("الحي أو المركز", "District")) }
                input #district name="district" value=(f.get("district")) maxlength="100" dir="auto";
                (error("district"))
            }
            fieldset {
                legend { (t("ولي الأمر", "Caregiver")) }
                label for="caregiver_name" { (t("الاسم", "Name")) }
                input #caregiver_name name="caregiver_name" value=(f.get("caregiver_name")) maxlength="200" dir="auto";
                (error("caregiver_name"))
                label for="caregiver_relationship" { (t("صلة القرابة", "Relationship")) }
                select #caregiver_relationship name="caregiver_relationship" {
                    option value="" { "—" }
                    @for r in Relationship::ALL {
                        option value=(r.as_str()) selected[f.get("caregiver_relationship") == r.as_str()] { (label(r.as_str(), lang)) }
                    }
                }
                (error("caregiver_relationship"))
                label for="caregiver_phone" { (t("الهاتف", "Phone")) }
                input #caregiver_phone type="tel" name="caregiver_phone" value=(f.get("caregiver_phone")) maxlength="24" dir="ltr";
                (error("caregiver_phone"))
            }
            fieldset {
                legend { (t("مخاوف الحماية", "Protection concerns")) }
                @for k in ConcernKind::ALL {
                    label.check { input type="checkbox" name="concern" value=(k.as_str()) checked[checked("concern", k.as_str())]; " " (label(k.as_str(), lang)) }
                }
                (error("concern"))
                p.hint { (t("العمل استغلالي إذا:", "Labour is exploitative when it:")) }
                @for l in LabourCriterion::ALL {
                    label.check { input type="checkbox" name="labour" value=(l.as_str()) checked[checked("labour", l.as_str())]; " " (label(l.as_str(), lang)) }
                }
            }
            fieldset {
                legend { (t("مستوى الخطر", "Risk")) }
                @for r in RiskLevel::ALL {
                    // A call is escalated as high risk unless the operator says otherwise.
                    label.check { input type="radio" name="risk" value=(r.as_str()) checked[f.get("risk") == r.as_str() || (way == Way::Hotline && f.get("risk").is_empty() && *r == RiskLevel::High)]; " " (label(r.as_str(), lang)) }
                }
                (error("risk"))
            }
            fieldset {
                legend { (t("الخدمات المطلوبة", "Services asked for")) }
                @for s in ServiceType::ALL {
                    label.check { input type="checkbox" name="service" value=(s.as_str()) checked[checked("service", s.as_str())]; " " (label(s.as_str(), lang)) }
                }
                (error("service"))
            }
            fieldset {
                legend { (t("الموافقة", "Consent")) }
                label.check { input type="checkbox" name="consent_caregiver" value="yes" checked[f.get("consent_caregiver") == "yes"]; " " (t("وافق ولي الأمر على مشاركة البيانات لتقديم الخدمات", "The caregiver consented to sharing for services")) }
                label.check { input type="checkbox" name="consent_child" value="yes" checked[f.get("consent_child") == "yes"]; " " (t("وافق الطفل (من سن 12)", "The child assented (from age 12)")) }
            }
            label for="narrative" { (t("ما لاحظته، بكلماتك", "What you saw, in your words")) }
            textarea #narrative name="narrative" maxlength="4000" dir="auto" { (f.get("narrative")) }
            (error("narrative"))
            button type="submit" {
                (match way { Way::School => t("إرسال الإحالة", "Send the referral"), Way::Hotline => t("تصعيد الآن", "Escalate now") })
            }
        }
    }
}

/// The answer to a referral sent: the case, its priority and whether it went out.
pub fn accepted(lang: Lang, r: &pb::SubmitReferralResponse, way: Way) -> Markup {
    let t = |ar, en| pick(lang, ar, en);
    html! {
        h1 { (t("تم استلام الإحالة", "Referral received")) }
        dl {
            dt { (t("رقم الحالة", "Case")) } dd { code { (r.case_id) } }
            dt { (t("رقم الإحالة", "Referral")) } dd { code { (r.referral_id) } }
            dt { (t("الأولوية", "Priority")) }
            dd { (if r.priority == pb::Priority::Urgent as i32 { t("عاجلة", "Urgent") } else { t("عادية", "Routine") }) }
        }
        @if r.replayed {
            p { (t("سبق إرسال هذه الإحالة؛ لم يُنشأ شيء جديد.", "This referral had been sent already; nothing new was created.")) }
        }
        @for w in &r.warnings {
            p.error role="alert" { (t("لم تُرسل بعد: ", "Not sent yet: ")) (w.message) }
        }
        @match way {
            Way::School => p { a href="/referrals" { (t("إحالات المدرسة", "The school's referrals")) } " · " a href="/referrals/new" { (t("إحالة أخرى", "Another referral")) } },
            Way::Hotline => {
                p { (t("الحالة عاجلة: تسبق كل ما عداها لدى الوزارة المسؤولة والجهات المعنية.", "The case is urgent: it goes ahead of everything else at the owning ministry and the agencies concerned.")) }
                p { a href="/hotline" autofocus { (t("بلاغ جديد", "A new call")) } " · " a href="/hotline/calls" { (t("البلاغات المصعّدة", "Escalated calls")) } }
            }
        }
    }
}
