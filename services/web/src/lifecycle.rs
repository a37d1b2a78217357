//! The lifecycle forms of a case page: every move the hub offers a caseworker or a
//! supervisor (decide acceptance, assign, assess, set the plan, refer or complete a plan
//! action, review, close, reopen), each shown only when the case's status allows it and
//! the person's roles may make it. A form refused by the hub comes back filled in, with
//! the hub's words next to the field they are about (see `actions`).

use himaya_proto::status::Lang;
use himaya_proto::v1 as pb;
use himaya_record::lifecycle::{ClosureReason, NeedDomain, ReviewKind};
use himaya_record::service_referral::{has_medical_costs, AbilityToPay, TaskState};
use himaya_record::ServiceType;
use himaya_settings::Settings;
use maud::{html, Markup};
use serde_json::Value;

use crate::people::Role;
use crate::referral::Form;
use crate::session::Session;
use crate::text::{label, pick, Local};

/// A move a case page offers; its form posts to `/cases/:case_id/<path>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Move {
    Decide,
    Assign,
    Assess,
    Plan,
    Refer,
    Complete,
    Review,
    Close,
    Reopen,
}

impl Move {
    pub(crate) fn path(self) -> &'static str {
        match self {
            Move::Decide => "decide",
            Move::Assign => "assign",
            Move::Assess => "assess",
            Move::Plan => "plan",
            Move::Refer => "refer",
            Move::Complete => "complete",
            Move::Review => "review",
            Move::Close => "close",
            Move::Reopen => "reopen",
        }
    }

    /// Who may make the move. A caseworker works the cases assigned to them; a case that
    /// is only referred (or was declined or referred on) is assigned to no one, so its
    /// decision and its reopening are the supervisor's as well.
    pub(crate) fn roles(self) -> &'static [Role] {
        match self {
            Move::Assign => &[Role::Supervisor],
            Move::Decide | Move::Reopen => &[Role::Caseworker, Role::Supervisor],
            _ => &[Role::Caseworker],
        }
    }

    /// Whether the case's status allows the move (the hub's `lifecycle::allowed`).
    pub(crate) fn allowed(self, status: &str) -> bool {
        match self {
            Move::Decide => status == "referred",
            Move::Reopen => matches!(status, "closed" | "declined" | "referred_on"),
            _ => status == "registered",
        }
    }

    /// The id of the move's form on the page (per plan action for `Refer`, `Complete`).
    pub(crate) fn form_id(self, action: &str) -> String {
        match action {
            "" => format!("do-{}", self.path()),
            a => format!("do-{}-{a}", self.path()),
        }
    }
}

/// What the page says after a move went through (`?done=<code>`): a fixed vocabulary,
/// so nothing a request carries is ever echoed.
pub(crate) const DONE: &[(&str, &str, &str)] = &[
    ("decide", "سُجّل قرار القبول.", "The acceptance decision was recorded."),
    (
        "relief",
        "لم تُسجّل الحالة: الحاجة المادية وحدها ليست معيار حماية؛ أُحيلت الأسرة إلى برنامج الدعم النقدي.",
        "Not registered: material need alone is not a protection criterion; the family was referred to cash assistance.",
    ),
    ("assign", "أُسندت الحالة.", "The case was assigned."),
    ("assess", "سُجّل التقييم الشامل.", "The comprehensive assessment was recorded."),
    ("plan", "حُفظت خطة الحماية.", "The protection plan was saved."),
    ("refer", "أُرسلت إحالة الخدمة إلى الجهة المسؤولة.", "The service referral was sent to the responsible agency."),
    (
        "held",
        "سُجّلت إحالة الخدمة لكنها لا تصل إلى الجهة الآن؛ ستجدها بين التصعيدات لدى المشرف.",
        "The service referral was recorded but cannot reach the agency for now; it is among the supervisor's escalations.",
    ),
    ("complete", "سُجّل الإجراء منجزًا.", "The action was recorded as done."),
    ("review", "حُفظت المراجعة.", "The review was saved."),
    ("close", "أُغلقت الحالة.", "The case was closed."),
    ("reopen", "أُعيد فتح الحالة.", "The case was reopened."),
];

/// The confirmation for `code`, if it is one of [`DONE`].
pub(crate) fn done_text(code: &str, lang: Lang) -> Option<&'static str> {
    DONE.iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, ar, en)| pick(lang, ar, en))
}

/// A form the hub refused: what was sent, and each problem by the id of the element it
/// belongs next to (the form's own id for a problem of the whole form).
pub(crate) struct Attempt {
    pub what: Move,
    /// The plan action a `Refer` or `Complete` form is about; empty for the others.
    pub action: String,
    pub form: Form,
    pub errors: Vec<(String, String)>,
}

/// What the forms need to know of the case.
pub(crate) struct CaseState<'a> {
    pub case_id: &'a str,
    pub version: i64,
    pub status: &'a str,
    pub doc: &'a Value,
    pub referrals: &'a [pb::ServiceReferral],
    /// For a supervisor: the agency's caseworkers as (staff id, name, open cases, limit).
    pub caseworkers: &'a [(String, String, i64, i64)],
}

/// One form's values and problems: the attempt's when it is this form's, else none.
struct Filled<'a> {
    form: Option<&'a Form>,
    errors: Vec<&'a (String, String)>,
    id: String,
}

impl<'a> Filled<'a> {
    fn of(attempt: Option<&'a Attempt>, what: Move, action: &str) -> Filled<'a> {
        let mine = attempt.filter(|a| a.what == what && a.action == action);
        Filled {
            form: mine.map(|a| &a.form),
            errors: mine.map(|a| a.errors.iter().collect()).unwrap_or_default(),
            id: what.form_id(action),
        }
    }

    /// The value sent for `name`, or `default` when this form was not sent.
    fn get<'b>(&'b self, name: &str, default: &'b str) -> &'b str {
        match self.form {
            Some(f) => f.get(name),
            None => default,
        }
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.form
            .map(|f| {
                f.0.iter()
                    .filter(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn sent(&self) -> bool {
        self.form.is_some()
    }

    fn wrong(&self, id: &str) -> bool {
        self.errors.iter().any(|(i, _)| i == id)
    }

    /// The `aria-describedby` of an input with a problem.
    fn described(&self, id: &str) -> Option<String> {
        self.wrong(id).then(|| format!("{id}-error"))
    }

    /// The problems of `id`, next to it.
    fn error(&self, id: &str) -> Markup {
        html! {
            @for (_, e) in self.errors.iter().filter(|(i, _)| i == id) {
                p.field-error id={(id) "-error"} { (e) }
            }
        }
    }

    /// The problems of the whole form, at its top.
    fn form_error(&self) -> Markup {
        let id = self.id.clone();
        html! {
            @for (_, e) in self.errors.iter().filter(|(i, _)| *i == id) {
                p.error role="alert" { (e) }
            }
        }
    }
}

fn hidden(s: &Session, version: i64) -> Markup {
    html! {
        input type="hidden" name="csrf" value=(s.csrf);
        input type="hidden" name="version" value=(version);
    }
}

fn action_url(case_id: &str, what: Move) -> String {
    format!("/cases/{case_id}/{}", what.path())
}

/// An agency's name in `lang`, or its id when the directory does not know it.
pub(crate) fn agency_name(settings: &Settings, id: &str, lang: Lang) -> String {
    settings
        .agencies
        .get(id)
        .map(|a| match lang {
            Lang::Arabic => a.name_ar.clone(),
            Lang::English => a.name_en.clone(),
        })
        .unwrap_or_else(|| id.to_owned())
}

fn closure_label(r: ClosureReason, lang: Lang) -> &'static str {
    match r {
        ClosureReason::NeedEnded => pick(
            lang,
            "انتهت الحاجة إلى إدارة الحالة",
            "The need for case management ended",
        ),
        ClosureReason::Death => pick(lang, "وفاة الطفل", "The child died"),
        ClosureReason::TurnedEighteen => pick(lang, "بلغ الطفل 18 عامًا", "The child turned 18"),
        ClosureReason::MovedOutOfReach => pick(
            lang,
            "انتقل إلى منطقة خارج نطاق الفرق",
            "Moved out of the teams' reach",
        ),
        ClosureReason::ContactLost => pick(
            lang,
            "انقطع التواصل مع الطفل والأسرة",
            "Contact with child and family was lost",
        ),
    }
}

/// A closure reason's words (the code itself when unknown).
pub(crate) fn closure_text(code: &str, lang: Lang) -> &str {
    ClosureReason::parse(code)
        .map(|r| closure_label(r, lang))
        .unwrap_or(code)
}

/// What the family can pay, in words.
pub(crate) fn ability_text(code: &str, lang: Lang) -> &str {
    AbilityToPay::parse(code)
        .map(|a| match lang {
            Lang::Arabic => a.arabic(),
            Lang::English => a.english(),
        })
        .unwrap_or(code)
}

/// Who pays a health service, in words.
pub(crate) fn coverage_text(code: &str, lang: Lang) -> &str {
    himaya_record::service_referral::MedicalCoverage::parse(code)
        .map(|c| match lang {
            Lang::Arabic => c.arabic(),
            Lang::English => c.english(),
        })
        .unwrap_or(code)
}

/// Whether `action` has a service referral still under way.
pub(crate) fn live_referral<'a>(
    referrals: &'a [pb::ServiceReferral],
    action: &str,
) -> Option<&'a pb::ServiceReferral> {
    let ended = [
        TaskState::Rejected,
        TaskState::Completed,
        TaskState::Failed,
        TaskState::Cancelled,
    ];
    referrals.iter().find(|r| {
        r.action_id == action
            && !himaya_proto::convert::state_from(r.state).is_some_and(|s| ended.contains(&s))
    })
}

/// The case page's general forms, for this person and the case as it stands.
pub(crate) fn forms(
    lang: Lang,
    s: &Session,
    settings: &Settings,
    c: &CaseState,
    attempt: Option<&Attempt>,
) -> Markup {
    let may = |m: Move| m.allowed(c.status) && m.roles().iter().any(|r| s.person.has(*r));
    let offered: Vec<Move> = [
        Move::Decide,
        Move::Assign,
        Move::Assess,
        Move::Plan,
        Move::Review,
        Move::Close,
        Move::Reopen,
    ]
    .into_iter()
    .filter(|m| may(*m))
    .collect();
    let l = Local::new(lang, &settings.web);
    let t = |ar, en| pick(lang, ar, en);
    html! {
        @if !offered.is_empty() {
            h2 { (t("ما يمكنك فعله الآن", "What you can do now")) }
        }
        @for m in offered {
            @match m {
                Move::Decide => (decide(lang, s, settings, c, attempt)),
                Move::Assign => (assign(&l, s, c, attempt)),
                Move::Assess => (assess(lang, s, c, attempt)),
                Move::Plan => (plan(&l, s, settings, c, attempt)),
                Move::Review => (review(lang, s, c, attempt)),
                Move::Close => (close(lang, s, c, attempt)),
                Move::Reopen => (reopen(lang, s, c, attempt)),
                Move::Refer | Move::Complete => {},
            }
        }
    }
}

fn decide(
    lang: Lang,
    s: &Session,
    settings: &Settings,
    c: &CaseState,
    attempt: Option<&Attempt>,
) -> Markup {
    let t = |ar, en| pick(lang, ar, en);
    let f = Filled::of(attempt, Move::Decide, "");
    let l = &settings.lifecycle;
    let decision = f.get("decision", "register").to_owned();
    let criteria = f.all("criteria");
    let groups = f.all("target_groups");
    html! {
        form.move id=(f.id) method="post" action=(action_url(c.case_id, Move::Decide)) novalidate {
            h3 { (t("قرار القبول (التقييم الأولي)", "Acceptance decision (first assessment)")) }
            (f.form_error())
            (hidden(s, c.version))
            fieldset id="decision" aria-describedby=[f.described("decision")] {
                legend { (t("القرار", "Decision")) }
                @for d in ["register", "refer_on", "decline"] {
                    label.check { input type="radio" name="decision" value=(d) checked[decision == d]; " " (label(d, lang)) }
                }
                (f.error("decision"))
            }
            fieldset id="criteria" aria-describedby=[f.described("criteria")] {
                legend { (t("معايير الاستضعاف التي وُجدت (للتسجيل: واحد على الأقل)", "Vulnerability criteria found (to register: at least one)")) }
                @for k in &l.vulnerability_criteria {
                    label.check { input type="checkbox" name="criteria" value=(k) checked[criteria.contains(&k.as_str())]; " " (label(k, lang)) }
                }
                p.hint { (t("الحاجة المادية وحدها ليست معيار حماية: تُحال الأسرة إلى الدعم النقدي.", "Material need alone is not a protection criterion: the family is referred to cash assistance.")) }
                @for k in &l.material_need_criteria {
                    label.check { input type="checkbox" name="criteria" value=(k) checked[criteria.contains(&k.as_str())]; " " (label(k, lang)) }
                }
                (f.error("criteria"))
            }
            fieldset id="target_groups" aria-describedby=[f.described("target_groups")] {
                legend { (t("الفئات المستهدفة (اختياري)", "Target groups (optional)")) }
                @for g in &l.target_groups {
                    label.check { input type="checkbox" name="target_groups" value=(g) checked[groups.contains(&g.as_str())]; " " (label(g, lang)) }
                }
                (f.error("target_groups"))
            }
            label for="decide_reason" { (t("السبب (مطلوب للإحالة إلى جهة أخرى أو عدم القبول)", "Reason (required to refer on or decline)")) }
            textarea #decide_reason name="decide_reason" maxlength="4000" dir="auto" aria-describedby=[f.described("decide_reason")] { (f.get("decide_reason", "")) }
            (f.error("decide_reason"))
            label for="referred_on_to" { (t("الجهة المحال إليها (للإحالة إلى جهة أخرى)", "The agency it is referred on to (to refer on)")) }
            select #referred_on_to name="referred_on_to" aria-describedby=[f.described("referred_on_to")] {
                option value="" { "—" }
                @for id in settings.agencies.ids() {
                    option value=(id) selected[f.get("referred_on_to", "") == id.as_str()] { (agency_name(settings, &id, lang)) }
                }
            }
            (f.error("referred_on_to"))
            button type="submit" { (t("حفظ القرار", "Save the decision")) }
        }
    }
}

fn assign(l: &Local, s: &Session, c: &CaseState, attempt: Option<&Attempt>) -> Markup {
    let t = |ar, en| pick(l.lang, ar, en);
    let f = Filled::of(attempt, Move::Assign, "");
    let current = c.doc["assignment"]["caseworker_id"].as_str().unwrap_or("");
    let chosen = f.get("caseworker", current).to_owned();
    html! {
        form.move id=(f.id) method="post" action=(action_url(c.case_id, Move::Assign)) {
            h3 { (t("إسناد الحالة", "Assign the case")) }
            (f.form_error())
            (hidden(s, c.version))
            label for="caseworker" { (t("أخصائي الحالة", "Caseworker")) }
            @if c.caseworkers.is_empty() {
                input #caseworker name="caseworker" value=(chosen) maxlength="64" dir="ltr" required aria-describedby=[f.described("caseworker")];
                p.hint { (t("لا يوجد أخصائيون مسجلون بعد؛ اكتب مرجع الأخصائي.", "No caseworkers are registered yet; type the caseworker's reference.")) }
            } @else {
                select #caseworker name="caseworker" aria-describedby=[f.described("caseworker")] {
                    @for (id, name, open, limit) in c.caseworkers {
                        // An option holds text only: the name is isolated with FSI…PDI.
                        option value=(id) selected[chosen == *id] {
                            "\u{2068}" (name) "\u{2069} — " (l.number(*open)) "/" (l.number(*limit))
                            @if open >= limit { " " (t("(مكتمل)", "(full)")) }
                        }
                    }
                }
                p.hint { (t("بجانب كل أخصائي: حالاته المفتوحة والحد الأقصى.", "Next to each caseworker: their open cases and the cap.")) }
            }
            (f.error("caseworker"))
            button type="submit" { (t("إسناد", "Assign")) }
        }
    }
}

/// A list typed one entry a line.
pub(crate) fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn assess(lang: Lang, s: &Session, c: &CaseState, attempt: Option<&Attempt>) -> Markup {
    let t = |ar, en| pick(lang, ar, en);
    let f = Filled::of(attempt, Move::Assess, "");
    // A new assessment replaces the last one: it starts from it.
    let before = &c.doc["assessment"];
    let joined = |key: &str| -> String {
        before[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    };
    let (risks, protective) = (joined("risk_factors"), joined("protective_factors"));
    let need_before = |domain: &str| -> String {
        before["needs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["domain"] == domain)
            .filter_map(|n| n["description"].as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    html! {
        form.move id=(f.id) method="post" action=(action_url(c.case_id, Move::Assess)) novalidate {
            h3 { (t("التقييم الشامل", "Comprehensive assessment")) }
            @if before.is_object() { p.hint { (t("يحل التقييم الجديد محل السابق؛ يبدأ النموذج منه.", "A new assessment replaces the last one; the form starts from it.")) } }
            (f.form_error())
            (hidden(s, c.version))
            label for="risk_factors" { (t("عوامل الخطر (واحد في كل سطر)", "Risk factors (one a line)")) }
            textarea #risk_factors name="risk_factors" maxlength="4000" dir="auto" aria-describedby=[f.described("risk_factors")] { (f.get("risk_factors", &risks)) }
            (f.error("risk_factors"))
            label for="protective_factors" { (t("عوامل الحماية (واحد في كل سطر)", "Protective factors (one a line)")) }
            textarea #protective_factors name="protective_factors" maxlength="4000" dir="auto" aria-describedby=[f.described("protective_factors")] { (f.get("protective_factors", &protective)) }
            (f.error("protective_factors"))
            fieldset id="needs" aria-describedby=[f.described("needs")] {
                legend { (t("الاحتياجات حسب المجال (اترك المجال فارغًا إن لم توجد حاجة؛ واحد على الأقل)", "Needs by domain (leave a domain empty when there is none; at least one)")) }
                (f.error("needs"))
                @for d in NeedDomain::ALL {
                    @let id = format!("need_{}", d.as_str());
                    @let previous = need_before(d.as_str());
                    label for=(id) { (label(d.as_str(), lang)) }
                    textarea id=(id) name=(id) maxlength="4000" dir="auto" aria-describedby=[f.described(&id)] { (f.get(&id, &previous)) }
                    (f.error(&id))
                }
            }
            button type="submit" { (t("حفظ التقييم", "Save the assessment")) }
        }
    }
}

/// How many goals, and actions per goal, the plan form offers (the hub takes up to 20
/// each; a longer plan is set again from the saved one, which the form starts from).
pub(crate) const GOAL_SLOTS: usize = 3;
pub(crate) const ACTION_SLOTS: usize = 3;

fn plan(
    l: &Local,
    s: &Session,
    settings: &Settings,
    c: &CaseState,
    attempt: Option<&Attempt>,
) -> Markup {
    let lang = l.lang;
    let t = |ar, en| pick(lang, ar, en);
    let f = Filled::of(attempt, Move::Plan, "");
    if !c.doc["assessment"].is_object() && !f.sent() {
        return html! {
            section.move id=(f.id) {
                h3 { (t("خطة الحماية", "Protection plan")) }
                p.hint { (t("سجّل التقييم الشامل أولًا؛ تُوضع الخطة بعده.", "Record the comprehensive assessment first; the plan comes after it.")) }
            }
        };
    }
    let goals: Vec<&Value> = c.doc["plan"]["goals"]
        .as_array()
        .map(|g| g.iter().collect())
        .unwrap_or_default();
    // The earliest due date: today where the deployment is. An input's `min` stays ISO.
    let today = chrono::Utc::now()
        .with_timezone(&l.zone)
        .date_naive()
        .format("%Y-%m-%d")
        .to_string();
    html! {
        form.move id=(f.id) method="post" action=(action_url(c.case_id, Move::Plan)) novalidate {
            h3 { (t("خطة الحماية", "Protection plan")) }
            p.hint { (t("الخطة الجديدة تحل محل السابقة (والنموذج يبدأ منها). لكل إجراء جهة مسؤولة تقدّم الخدمة، وموعد. اترك الصفوف غير المستخدمة فارغة.", "A new plan replaces the last one (the form starts from it). Each action has a responsible agency that offers the service, and a due date. Leave unused rows empty.")) }
            (f.form_error())
            (hidden(s, c.version))
            @for gi in 0..GOAL_SLOTS {
                @let g = goals.get(gi).copied();
                @let gid = format!("g{gi}_desc");
                fieldset id={"g" (gi)} {
                    legend { (t("الهدف", "Goal")) " " (l.number(gi as u64 + 1)) }
                    label for=(gid) { (t("وصف الهدف", "The goal")) }
                    input id=(gid) name=(gid) maxlength="4000" dir="auto" value=(f.get(&gid, g.and_then(|g| g["description"].as_str()).unwrap_or(""))) aria-describedby=[f.described(&gid)];
                    (f.error(&gid))
                    (f.error(&format!("g{gi}_actions")))
                    @for ai in 0..ACTION_SLOTS {
                        @let a = g.and_then(|g| g["actions"].get(ai));
                        @let p = format!("g{gi}_a{ai}");
                        @let before = |k: &str| a.and_then(|a| a[k].as_str()).unwrap_or("").to_owned();
                        fieldset.plan-action {
                            legend { (t("إجراء", "Action")) " " (l.number(gi as u64 + 1)) "." (l.number(ai as u64 + 1)) }
                            @let id = format!("{p}_desc");
                            label for=(id) { (t("ما يُفعل", "What is to be done")) }
                            input id=(id) name=(id) maxlength="4000" dir="auto" value=(f.get(&id, &before("description"))) aria-describedby=[f.described(&id)];
                            (f.error(&id))
                            @let id = format!("{p}_agency");
                            @let chosen = f.get(&id, &before("responsible_agency")).to_owned();
                            label for=(id) { (t("الجهة المسؤولة", "Responsible agency")) }
                            select id=(id) name=(id) aria-describedby=[f.described(&id)] {
                                option value="" { "—" }
                                @for aid in settings.agencies.ids() {
                                    option value=(aid) selected[chosen == aid.as_str()] { (agency_name(settings, &aid, lang)) }
                                }
                            }
                            (f.error(&id))
                            @let id = format!("{p}_service");
                            @let chosen = f.get(&id, &before("service_type")).to_owned();
                            label for=(id) { (t("الخدمة", "Service")) }
                            select id=(id) name=(id) aria-describedby=[f.described(&id)] {
                                option value="" { "—" }
                                @for st in ServiceType::ALL {
                                    option value=(st.as_str()) selected[chosen == st.as_str()] { (label(st.as_str(), lang)) }
                                }
                            }
                            (f.error(&id))
                            @let id = format!("{p}_due");
                            label for=(id) { (t("الموعد (اليوم أو بعده)", "Due (today or later)")) }
                            input id=(id) name=(id) type="date" min=(today) dir="ltr" value=(f.get(&id, &before("due_on"))) aria-describedby=[f.described(&id)];
                            (f.error(&id))
                        }
                    }
                }
            }
            button type="submit" { (t("حفظ الخطة", "Save the plan")) }
        }
    }
}

/// The forms of one plan action: refer it to its agency, or record it done.
pub(crate) fn action_forms(
    lang: Lang,
    s: &Session,
    c: &CaseState,
    action: &Value,
    attempt: Option<&Attempt>,
) -> Markup {
    let t = |ar, en| pick(lang, ar, en);
    let id = action["action_id"].as_str().unwrap_or("");
    let done = action["done"].as_bool().unwrap_or(false);
    let registered = c.status == "registered";
    if done || !registered || !s.person.has(Role::Caseworker) || id.is_empty() {
        return html! {};
    }
    let agency = action["responsible_agency"].as_str().unwrap_or("");
    let service = action["service_type"].as_str().unwrap_or("");
    let referable = agency != s.person.agency_id && live_referral(c.referrals, id).is_none();
    let health = ServiceType::parse(service).is_some_and(has_medical_costs);
    let r = Filled::of(attempt, Move::Refer, id);
    let k = Filled::of(attempt, Move::Complete, id);
    let ability = format!("ability_to_pay-{id}");
    html! {
        @if referable {
            form.inline id=(r.id) method="post" action=(action_url(c.case_id, Move::Refer)) novalidate {
                (r.form_error())
                (hidden(s, c.version))
                input type="hidden" name="action_id" value=(id);
                @if health {
                    label for=(ability) { (t("ما تستطيع الأسرة دفعه من تكاليف العلاج", "What the family can pay of the treatment's costs")) }
                    select id=(ability) name="ability_to_pay" aria-describedby=[r.described(&ability)] {
                        option value="" { "—" }
                        @for a in AbilityToPay::ALL {
                            option value=(a.as_str()) selected[r.get("ability_to_pay", "") == a.as_str()] { (ability_text(a.as_str(), lang)) }
                        }
                    }
                    (r.error(&ability))
                }
                button type="submit" { (t("إحالة إلى الجهة", "Refer to the agency")) " " span.visually-hidden { "(" (id) ")" } }
            }
        }
        form.inline id=(k.id) method="post" action=(action_url(c.case_id, Move::Complete)) {
            (k.form_error())
            (hidden(s, c.version))
            input type="hidden" name="action_id" value=(id);
            button.secondary type="submit" { (t("تم الإنجاز", "Mark done")) " " span.visually-hidden { "(" (id) ")" } }
        }
    }
}

fn review(lang: Lang, s: &Session, c: &CaseState, attempt: Option<&Attempt>) -> Markup {
    let t = |ar, en| pick(lang, ar, en);
    let f = Filled::of(attempt, Move::Review, "");
    let kind = f.get("kind", "home_visit").to_owned();
    html! {
        form.move id=(f.id) method="post" action=(action_url(c.case_id, Move::Review)) novalidate {
            h3 { (t("تسجيل مراجعة", "Record a review")) }
            (f.form_error())
            (hidden(s, c.version))
            label for="kind" { (t("نوع المراجعة", "Kind")) }
            select #kind name="kind" aria-describedby=[f.described("kind")] {
                @for k in ReviewKind::ALL {
                    option value=(k.as_str()) selected[kind == k.as_str()] { (label(k.as_str(), lang)) }
                }
            }
            (f.error("kind"))
            label.check { input type="checkbox" name="child_seen" value="yes" checked[f.get("child_seen", "") == "yes"]; " " (t("رأيت الطفل مباشرة", "I saw the child directly")) }
            label for="findings" { (t("ما وجدته", "Findings")) }
            textarea #findings name="findings" maxlength="4000" dir="auto" required aria-describedby=[f.described("findings")] { (f.get("findings", "")) }
            (f.error("findings"))
            button type="submit" { (t("حفظ المراجعة", "Save the review")) }
        }
    }
}

fn close(lang: Lang, s: &Session, c: &CaseState, attempt: Option<&Attempt>) -> Markup {
    let t = |ar, en| pick(lang, ar, en);
    let f = Filled::of(attempt, Move::Close, "");
    let reason = f.get("reason", "").to_owned();
    html! {
        form.move id=(f.id) method="post" action=(action_url(c.case_id, Move::Close)) novalidate {
            h3 { (t("إغلاق الحالة", "Close the case")) }
            (f.form_error())
            (hidden(s, c.version))
            label for="reason" { (t("سبب الإغلاق", "Reason")) }
            select #reason name="reason" aria-describedby=[f.described("reason")] {
                @for r in ClosureReason::ALL {
                    option value=(r.as_str()) selected[reason == r.as_str()] { (closure_label(*r, lang)) }
                }
            }
            (f.error("reason"))
            label.check { input #parents_consulted type="checkbox" name="parents_consulted" value="yes" checked[f.get("parents_consulted", "") == "yes"] aria-describedby=[f.described("parents_consulted")]; " " (t("استُشير الوالدان", "The parents were consulted")) }
            (f.error("parents_consulted"))
            label for="final_evaluation" { (t("التقييم النهائي", "Final evaluation")) }
            textarea #final_evaluation name="final_evaluation" maxlength="4000" dir="auto" required aria-describedby=[f.described("final_evaluation")] { (f.get("final_evaluation", "")) }
            (f.error("final_evaluation"))
            label for="recommendations" { (t("توصيات لاستمرار الدعم", "Recommendations for continued support")) }
            textarea #recommendations name="recommendations" maxlength="4000" dir="auto" required aria-describedby=[f.described("recommendations")] { (f.get("recommendations", "")) }
            (f.error("recommendations"))
            button type="submit" { (t("إغلاق", "Close")) }
        }
    }
}

fn reopen(lang: Lang, s: &Session, c: &CaseState, attempt: Option<&Attempt>) -> Markup {
    let t = |ar, en| pick(lang, ar, en);
    let f = Filled::of(attempt, Move::Reopen, "");
    html! {
        form.move id=(f.id) method="post" action=(action_url(c.case_id, Move::Reopen)) novalidate {
            h3 { (t("إعادة فتح الحالة", "Reopen the case")) }
            (f.form_error())
            (hidden(s, c.version))
            label for="reopen_reason" { (t("لماذا يُعاد فتحها", "Why it is reopened")) }
            textarea #reopen_reason name="reopen_reason" maxlength="4000" dir="auto" required aria-describedby=[f.described("reopen_reason")] { (f.get("reopen_reason", "")) }
            (f.error("reopen_reason"))
            button type="submit" { (t("إعادة الفتح", "Reopen")) }
        }
    }
}

impl Move {
    /// The form's heading, naming it in a list of problems.
    pub(crate) fn title(self, lang: Lang) -> &'static str {
        match self {
            Move::Decide => pick(lang, "قرار القبول", "Acceptance decision"),
            Move::Assign => pick(lang, "إسناد الحالة", "Assign the case"),
            Move::Assess => pick(lang, "التقييم الشامل", "Comprehensive assessment"),
            Move::Plan => pick(lang, "خطة الحماية", "Protection plan"),
            Move::Refer => pick(lang, "إحالة الإجراء", "Refer the action"),
            Move::Complete => pick(lang, "إنجاز الإجراء", "Mark the action done"),
            Move::Review => pick(lang, "تسجيل مراجعة", "Record a review"),
            Move::Close => pick(lang, "إغلاق الحالة", "Close the case"),
            Move::Reopen => pick(lang, "إعادة فتح الحالة", "Reopen the case"),
        }
    }
}

/// What an element of the forms is called, to name it in the list of problems.
pub(crate) fn field_name(id: &str, l: &Local) -> String {
    let lang = l.lang;
    let t = |ar: &'static str, en: &'static str| pick(lang, ar, en).to_owned();
    let fixed = match id {
        "decision" => Some(t("القرار", "Decision")),
        "criteria" => Some(t("معايير الاستضعاف", "Vulnerability criteria")),
        "target_groups" => Some(t("الفئات المستهدفة", "Target groups")),
        "decide_reason" => Some(t("سبب القرار", "Reason for the decision")),
        "referred_on_to" => Some(t("الجهة المحال إليها", "Agency referred on to")),
        "caseworker" => Some(t("أخصائي الحالة", "Caseworker")),
        "risk_factors" => Some(t("عوامل الخطر", "Risk factors")),
        "protective_factors" => Some(t("عوامل الحماية", "Protective factors")),
        "needs" => Some(t("الاحتياجات", "Needs")),
        "kind" => Some(t("نوع المراجعة", "Kind of review")),
        "findings" => Some(t("ما وجدته", "Findings")),
        "reason" => Some(t("سبب الإغلاق", "Reason for closing")),
        "parents_consulted" => Some(t("استشارة الوالدين", "Parents consulted")),
        "final_evaluation" => Some(t("التقييم النهائي", "Final evaluation")),
        "recommendations" => Some(t("التوصيات", "Recommendations")),
        "reopen_reason" => Some(t("سبب إعادة الفتح", "Why it is reopened")),
        _ => None,
    };
    if let Some(name) = fixed {
        return name;
    }
    if let Some(domain) = id.strip_prefix("need_") {
        return format!("{}: {}", t("الاحتياج", "Need"), label(domain, lang));
    }
    if let Some(action) = id.strip_prefix("ability_to_pay-") {
        return format!(
            "{} ({action})",
            t("ما تستطيع الأسرة دفعه", "What the family can pay")
        );
    }
    for m in [Move::Refer, Move::Complete] {
        if let Some(action) = id.strip_prefix(&format!("do-{}-", m.path())) {
            return format!("{} ({action})", m.title(lang));
        }
    }
    if let Some(m) = id.strip_prefix("do-").and_then(|p| {
        [
            Move::Decide,
            Move::Assign,
            Move::Assess,
            Move::Plan,
            Move::Review,
            Move::Close,
            Move::Reopen,
        ]
        .into_iter()
        .find(|m| m.path() == p)
    }) {
        return m.title(lang).to_owned();
    }
    // The plan's rows: g<goal>_desc, g<goal>_a<action>_<field>.
    if let Some((g, rest)) = id.strip_prefix('g').and_then(|r| r.split_once('_')) {
        if let Ok(g) = g.parse::<u32>() {
            let goal = format!("{} {}", t("الهدف", "Goal"), l.number(u64::from(g) + 1));
            if rest == "desc" {
                return goal;
            }
            if let Some((a, field)) = rest.strip_prefix('a').and_then(|r| r.split_once('_')) {
                if let Ok(a) = a.parse::<u32>() {
                    let what = match field {
                        "desc" => t("ما يُفعل", "what is to be done"),
                        "agency" => t("الجهة المسؤولة", "responsible agency"),
                        "service" => t("الخدمة", "service"),
                        _ => t("الموعد", "due date"),
                    };
                    return format!(
                        "{goal}{} {} {}.{}: {what}",
                        pick(lang, "، ", ", "),
                        t("الإجراء", "action"),
                        l.number(u64::from(g) + 1),
                        l.number(u64::from(a) + 1)
                    );
                }
            }
        }
    }
    id.to_owned()
}
