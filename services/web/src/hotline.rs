//! The emergency line's screens after an escalation: break-glass on a case (the minimal
//! emergency data set without consent, time-boxed, with a reason code and a
//! justification; the hub logs it and queues it for the ministry's review), and the
//! follow-ups of the line's escalations, each case as the hub lets the line see it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use himaya_proto::status::Lang;
use himaya_proto::v1 as pb;
use maud::{html, Markup};
use serde_json::Value;
use tonic_types::StatusExt;

use crate::people::Role;
use crate::referral::Form;
use crate::session::Session;
use crate::text::{label, lang_of, pick, Local};
use crate::{failed, html_page, hub, pages, posted, signed_in, App};

const OPERATORS: &[Role] = &[Role::HotlineOperator];
/// The most escalations the follow-ups page lists (the newest).
const FOLLOW_UPS: i64 = 50;
/// Case reads the follow-ups page makes at once.
const READS_AT_ONCE: usize = 8;
/// The justification's bounds (the hub's: at least 10 characters, at most a narrative),
/// said on the form.
const MIN_JUSTIFICATION: usize = 10;
const MAX_JUSTIFICATION: usize = himaya_record::validate::MAX_NARRATIVE;

fn title(lang: Lang) -> &'static str {
    pick(lang, "الوصول الطارئ إلى حالة", "Emergency access to a case")
}

/// `GET /hotline/break-glass?case_id=…`: the form, the case filled in when it came from
/// a found call.
pub(crate) async fn break_glass_form(
    State(app): State<App>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let lang = lang_of(&headers);
    let s = match signed_in(&app, &headers, OPERATORS).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let q = Form::parse(query.unwrap_or_default().as_bytes());
    let filled = Form(vec![(
        "case_id".to_owned(),
        q.get("case_id").chars().take(64).collect(),
    )]);
    html_page(
        StatusCode::OK,
        pages::page(
            lang,
            title(lang),
            Some(&s),
            form(lang, &app, &s, &filled, &[]),
        ),
    )
}

/// `POST /hotline/break-glass`: asks the hub; the minimal set and the time left, or the
/// refusal in the page's language.
pub(crate) async fn break_glass(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let lang = lang_of(&headers);
    let (s, f) = match posted(&app, &headers, &body, OPERATORS).await {
        Ok(posted) => posted,
        Err(r) => return r,
    };
    // The hub checks every field (and logs an attempt without a reason as such): its
    // answer comes back next to the fields, in the page's language.
    let msg = pb::BreakGlassRequest {
        case_id: f.get("case_id").to_owned(),
        reason_code: f.get("reason_code").to_owned(),
        justification: f.get("justification").to_owned(),
        actor: s.person.person_id.clone(),
    };
    let answer = match hub::request(&s.person, lang, msg) {
        Ok(r) => {
            pb::cases_client::CasesClient::new(app.hub.channel())
                .break_glass(r)
                .await
        }
        Err(e) => return failed(lang, Some(&s), e),
    };
    let shared = match answer {
        Ok(r) => r.into_inner(),
        Err(status) => return refused(lang, &app, &s, &f, &status),
    };
    tracing::info!(person = %s.person.person_id, case_id = %shared.case_id, break_glass_id = shared.break_glass_id.as_deref().unwrap_or("-"), "break-glass opened from the web");
    html_page(
        StatusCode::OK,
        pages::page(
            lang,
            title(lang),
            Some(&s),
            opened(&Local::new(lang, &app.settings.web), &shared, Utc::now()),
        ),
    )
}

/// The form again, with what to correct next to each field.
fn again(
    lang: Lang,
    app: &App,
    s: &Session,
    f: &Form,
    errors: &[(&'static str, String)],
) -> Response {
    html_page(
        StatusCode::UNPROCESSABLE_ENTITY,
        pages::page(lang, title(lang), Some(s), form(lang, app, s, f, errors)),
    )
}

/// The hub's refusal: a field problem next to its field, anything else as a problem
/// page, in the page's language.
fn refused(lang: Lang, app: &App, s: &Session, f: &Form, status: &tonic::Status) -> Response {
    let t = |ar, en| pick(lang, ar, en);
    tracing::warn!(person = %s.person.person_id, code = ?status.code(), "the hub refused a break-glass from the web");
    match status.code() {
        tonic::Code::InvalidArgument => {
            let mut errors = field_errors(status);
            if errors.is_empty() {
                errors.push(("form", status.message().to_owned()));
            }
            again(lang, app, s, f, &errors)
        }
        tonic::Code::NotFound => again(
            lang,
            app,
            s,
            f,
            &[(
                "case_id",
                t(
                    "لا توجد حالة بهذا الرقم: قارنه برقم الحالة في البلاغ المصعّد.",
                    "No case has this number: compare it with the case number of the escalated call.",
                )
                .to_owned(),
            )],
        ),
        tonic::Code::PermissionDenied => html_page(
            StatusCode::FORBIDDEN,
            pages::problem(
                lang,
                Some(s),
                &format!(
                    "{} {}",
                    t("رُفض الوصول الطارئ:", "Emergency access was refused:"),
                    status.message().to_owned()
                ),
                t(
                    "لم يُكشف شيء من الحالة، وسُجّلت المحاولة في سجل الإفصاح. اتصل بمشرف الوزارة إن كان الخطر قائمًا.",
                    "Nothing of the case was disclosed, and the attempt is in the disclosure log. Call the ministry's supervisor if the danger is real.",
                ),
            ),
        ),
        _ => html_page(
            StatusCode::BAD_GATEWAY,
            pages::problem(
                lang,
                Some(s),
                status.message(),
                t(
                    "لم يُفتح شيء. أعد الإرسال بعد قليل.",
                    "Nothing was opened. Send it again shortly.",
                ),
            ),
        ),
    }
}

/// The hub's field violations, by the input each belongs next to.
fn field_errors(status: &tonic::Status) -> Vec<(&'static str, String)> {
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
            let input = match v.field.as_str() {
                "case_id" => "case_id",
                "reason_code" => "reason_code",
                "justification" => "justification",
                _ => "form",
            };
            (input, text)
        })
        .collect()
}

/// The break-glass form, filled with `f`, its errors next to their fields.
fn form(lang: Lang, app: &App, s: &Session, f: &Form, errors: &[(&'static str, String)]) -> Markup {
    let t = |ar, en| pick(lang, ar, en);
    let l = Local::new(lang, &app.settings.web);
    let bg = &app.settings.break_glass;
    let has = |input: &str| errors.iter().any(|(i, _)| *i == input);
    let described = |input: &str| has(input).then(|| format!("{input}-error"));
    let error = |input: &str| -> Markup {
        html! {
            @for (_, e) in errors.iter().filter(|(i, _)| *i == input) {
                p.field-error id={(input) "-error"} { (e) }
            }
        }
    };
    let chosen = f.get("reason_code");
    html! {
        h1 { (title(lang)) }
        p {
            (t("يفتح الحد الأدنى من بيانات الطوارئ للحالة دون موافقة، لمدة ", "Opens the case's minimal emergency data set without consent, for "))
            (l.number(bg.window_minutes))
            (t(" دقيقة. كل وصول يُسجَّل في سجل الإفصاح ويراجعه مشرفو الوزارة.", " minutes. Every access is recorded in the disclosure log and reviewed by the ministry's supervisors."))
        }
        @if has("form") {
            div.error role="alert" { (error("form")) }
        } @else if !errors.is_empty() {
            p.error role="alert" { (t("راجع الحقول المشار إليها أدناه.", "Check the fields marked below.")) }
        }
        form method="post" action="/hotline/break-glass" novalidate {
            input type="hidden" name="csrf" value=(s.csrf);
            label for="case_id" { (t("رقم الحالة", "Case number")) }
            input #case_id name="case_id" value=(f.get("case_id")) maxlength="64" required dir="ltr"
                autofocus[f.get("case_id").is_empty()] aria-invalid=[has("case_id").then_some("true")]
                aria-describedby=[described("case_id")];
            (error("case_id"))
            fieldset aria-describedby=[described("reason_code")] {
                legend { (t("سبب الوصول الطارئ", "Reason for emergency access")) }
                @for (i, code) in bg.reason_codes.iter().enumerate() {
                    label.check {
                        input type="radio" name="reason_code" value=(code) required
                            checked[chosen == code.as_str()]
                            autofocus[!f.get("case_id").is_empty() && i == 0 && errors.is_empty()];
                        " " (label(code, lang))
                    }
                }
                (error("reason_code"))
            }
            label for="justification" { (t("المبرر: لماذا الآن؟", "Justification: why now?")) }
            p.hint id="justification-hint" {
                (t("من ", "")) (l.number(MIN_JUSTIFICATION as u64)) (t(" إلى ", " to ")) (l.number(MAX_JUSTIFICATION as u64))
                (t(" حرف. يقرؤه المشرف عند المراجعة؛ لا يظهر في السجلات.", " characters. The supervisor reads it at review; it is never logged."))
            }
            textarea #justification name="justification" required minlength=(MIN_JUSTIFICATION) maxlength=(MAX_JUSTIFICATION) dir="auto"
                aria-invalid=[has("justification").then_some("true")]
                aria-describedby=(match described("justification") { Some(e) => format!("justification-hint {e}"), None => "justification-hint".to_owned() }) {
                (f.get("justification"))
            }
            (error("justification"))
            button type="submit" { (t("افتح بيانات الطوارئ", "Open the emergency data")) }
        }
        p { a href="/hotline/calls" { (t("البلاغات المصعّدة", "Escalated calls")) } " · " a href="/hotline/follow-ups" { (t("متابعة حالات الخط", "Follow-ups of the line's cases")) } }
    }
}

/// Minutes left until `expires_at` (RFC 3339) from `now`, rounded up; `None` when the
/// time cannot be read.
pub(crate) fn minutes_left(expires_at: &str, now: DateTime<Utc>) -> Option<i64> {
    let until = DateTime::parse_from_rfc3339(expires_at).ok()?;
    let secs = (until.with_timezone(&Utc) - now).num_seconds().max(0);
    Some((secs + 59) / 60)
}

/// What the hub disclosed: only the fields present in its answer (the minimal emergency
/// data set), every text as given and isolated, and how long the access lasts.
fn opened(l: &Local, shared: &pb::SharedCase, now: DateTime<Utc>) -> Markup {
    let lang = l.lang;
    let t = |ar, en| pick(lang, ar, en);
    let doc: Value = serde_json::from_str(&shared.document_json).unwrap_or(Value::Null);
    let child = &doc["child"];
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let expires = shared.break_glass_expires_at.as_deref().unwrap_or("");
    let left = minutes_left(expires, now);
    let until = DateTime::parse_from_rfc3339(expires)
        .ok()
        .map(|d| d.with_timezone(&Utc));
    html! {
        h1 { (t("بيانات الطوارئ للحالة", "Emergency data of the case")) " " code { (shared.case_id) } }
        div.notice role="status" {
            @match (left, until) {
                (Some(0), _) => p.error { (t("انتهت مدة هذا الوصول.", "This access has ended.")) },
                (Some(m), Some(u)) => p {
                    strong { (t("الوقت المتبقي: ", "Time left: ")) (l.number(m)) (t(" دقيقة", " minutes")) }
                    " (" (t("حتى ", "until ")) bdi { time datetime=(u.to_rfc3339()) { (l.date_time(u)) } } ")"
                },
                _ => p.error { (t("لم تذكر المنصة موعد انتهاء هذا الوصول.", "The hub did not say when this access ends.")) },
            }
            p {
                (t("رقم الوصول: ", "Access number: ")) code { (shared.break_glass_id.as_deref().unwrap_or("—")) }
                ". " (t("سُجّل في سجل الإفصاح وسيراجعه مشرف الوزارة.", "It is in the disclosure log and will be reviewed by the ministry's supervisor."))
            }
        }
        h2 { (t("الطفل", "The child")) }
        dl {
            @if let Some(n) = text(&child["name"]["as_given"]) { dt { (t("الاسم", "Name")) } dd { bdi { (n) } } }
            @if let Some(n) = text(&child["name"]["transliteration"]) { dt { (t("الاسم بالحروف اللاتينية", "Name in Latin letters")) } dd { bdi dir="ltr" { (n) } } }
            @if let Some(x) = text(&child["sex"]) { dt { (t("الجنس", "Sex")) } dd { (label(&x, lang)) } }
            @if let Some(d) = text(&child["date_of_birth"]) { dt { (t("تاريخ الميلاد", "Date of birth")) } dd { bdi { (l.time_text(&d)) } } }
            @if let Some(a) = child["estimated_age_years"].as_u64() { dt { (t("العمر التقديري", "Estimated age")) } dd { (l.number(a)) } }
            @if let Some(g) = text(&child["governorate"]) { dt { (t("المحافظة", "Governorate")) } dd { bdi { (g) } } }
            @if let Some(d) = text(&child["district"]) { dt { (t("الحي أو المركز", "District")) } dd { bdi { (d) } } }
            @if let Some(a) = text(&child["address"]) { dt { (t("العنوان", "Address")) } dd { bdi { (a) } } }
        }
        @if let Some(cgs) = doc["caregivers"].as_array() {
            h2 { (t("أولياء الأمر", "Caregivers")) }
            ul {
                @for c in cgs {
                    li {
                        @if let Some(n) = text(&c["name"]["as_given"]) { bdi { (n) } }
                        @if let Some(r) = text(&c["relationship"]) { " · " (label(&r, lang)) }
                        @if let Some(p) = text(&c["phone"]) { " · " (t("الهاتف: ", "Phone: ")) bdi dir="ltr" { (p) } }
                        @if let Some(a) = text(&c["address"]) { " · " (t("العنوان: ", "Address: ")) bdi { (a) } }
                    }
                }
            }
        }
        @if doc["concerns"].is_array() || doc["risk_level"].is_string() {
            h2 { (t("مخاوف الحماية", "Protection concerns")) }
            ul {
                @for c in doc["concerns"].as_array().into_iter().flatten() {
                    @if let Some(k) = c["kind"].as_str() { li { (label(k, lang)) } }
                }
            }
            @if let Some(r) = doc["risk_level"].as_str() {
                p { (t("مستوى الخطر: ", "Risk: ")) (label(r, lang)) }
            }
        }
        p.hint {
            (t("فئات البيانات المكشوفة: ", "Data categories disclosed: "))
            @for (i, c) in shared.categories.iter().enumerate() {
                @if i > 0 { "، " }
                (label(himaya_proto::convert::code::<himaya_record::DataCategory>(*c), lang))
            }
        }
        p { a href="/hotline/follow-ups" { (t("متابعة حالات الخط", "Follow-ups of the line's cases")) } " · " a href="/hotline" { (t("بلاغ جديد", "A new call")) } }
    }
}

/// What the line may see of one case it escalated.
enum Seen {
    /// Disclosed: its status, risk, and what each agency answered.
    Shared {
        status: Option<String>,
        risk: Option<String>,
        deliveries: Vec<(String, String)>,
    },
    /// Refused (the policy or consent): the hub's words.
    NotShared(String),
    /// The hub could not answer.
    Unavailable,
}

/// `GET /hotline/follow-ups`: the line's latest escalations, each case's status as the
/// hub lets the line see it (Cases/GetCase for service provision, through the
/// redactor; every read is a decision in the disclosure log).
pub(crate) async fn follow_ups(State(app): State<App>, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    let s = match signed_in(&app, &headers, OPERATORS).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    /// call reference, case, when.
    type Call = (String, String, DateTime<Utc>);
    // Each case once (its latest call), the newest first.
    let rows: Result<Vec<Call>, sqlx::Error> = sqlx::query_as(
        "SELECT call_ref, case_id, at FROM (
            SELECT DISTINCT ON (case_id) call_ref, case_id, at FROM submissions
             WHERE agency_id = $1 AND call_ref IS NOT NULL
             ORDER BY case_id, at DESC) latest
          ORDER BY at DESC LIMIT $2",
    )
    .bind(&s.person.agency_id)
    .bind(FOLLOW_UPS)
    .fetch_all(&app.pool)
    .await;
    let calls = match rows {
        Ok(r) => r,
        Err(e) => return failed(lang, Some(&s), e.into()),
    };
    let seen = read_all(&app, &s, lang, &calls).await;
    let t = |ar, en| pick(lang, ar, en);
    let l = Local::new(lang, &app.settings.web);
    let agency = |id: &str| -> String {
        match app.settings.agencies.get(id) {
            Some(a) => match lang {
                Lang::Arabic => a.name_ar.clone(),
                Lang::English => a.name_en.clone(),
            },
            None => id.to_owned(),
        }
    };
    let body = html! {
        h1 { (t("متابعة حالات الخط", "Follow-ups of the line's cases")) }
        p.hint { (t("أحدث ", "The line's ")) (l.number(FOLLOW_UPS)) (t(" بلاغًا صعّده الخط، وكل حالة كما تسمح سياسة المشاركة للخط أن يراها.", " latest escalations, each case as the sharing policy lets the line see it.")) }
        @if calls.is_empty() {
            p { (t("لم يصعّد الخط أي بلاغ بعد.", "The line has escalated no call yet.")) }
        } @else {
            div.scroll tabindex="0" role="region" aria-labelledby="follow-ups-caption" {
                table {
                    caption #follow-ups-caption { (t("البلاغات المصعّدة وحالاتها", "Escalated calls and their cases")) }
                    thead { tr {
                        th scope="col" { (t("المكالمة", "Call")) }
                        th scope="col" { (t("الحالة", "Case")) }
                        th scope="col" { (t("وقت التصعيد", "Escalated")) }
                        th scope="col" { (t("ما يراه الخط", "What the line sees")) }
                        th scope="col" { (t("إجراء", "Action")) }
                    } }
                    tbody {
                        @for ((call_ref, case_id, at), seen) in calls.iter().zip(&seen) {
                            tr {
                                td { code { (call_ref) } }
                                td { code { (case_id) } }
                                td { bdi { time datetime=(at.to_rfc3339()) { (l.date_time(*at)) } } }
                                td {
                                    @match seen {
                                        Seen::Shared { status, risk, deliveries } => {
                                            @if let Some(st) = status { (label(st, lang)) }
                                            @if let Some(r) = risk { " · " (t("الخطر: ", "risk: ")) (label(r, lang)) }
                                            @for (a, o) in deliveries { br; bdi { (agency(a)) } ": " (label(o, lang)) }
                                        }
                                        Seen::NotShared(why) => {
                                            (t("غير متاحة للخط: ", "Not shared with the line: ")) (why)
                                        }
                                        Seen::Unavailable => {
                                            (t("تعذرت القراءة الآن؛ أعد تحميل الصفحة بعد قليل.", "Could not be read now; reload the page shortly."))
                                        }
                                    }
                                }
                                td { a href={"/hotline/break-glass?case_id=" (encoded(case_id))} { (t("وصول طارئ", "Emergency access")) } }
                            }
                        }
                    }
                }
            }
        }
        p { a href="/hotline" { (t("تصعيد بلاغ جديد", "Escalate a new call")) } " · " a href="/hotline/calls" { (t("البحث عن بلاغ سابق", "Find an earlier call")) } }
    };
    html_page(
        StatusCode::OK,
        pages::page(
            lang,
            t("متابعة حالات الخط", "Follow-ups of the line's cases"),
            Some(&s),
            body,
        ),
    )
}

/// `value`, percent-encoded for a query string.
pub(crate) fn encoded(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Reads every call's case from the hub, a few at a time; in the calls' order.
async fn read_all(
    app: &App,
    s: &Session,
    lang: Lang,
    calls: &[(String, String, DateTime<Utc>)],
) -> Vec<Seen> {
    let limit = Arc::new(tokio::sync::Semaphore::new(READS_AT_ONCE));
    let mut reads = tokio::task::JoinSet::new();
    for (i, (_, case_id, _)) in calls.iter().enumerate() {
        let (limit, channel) = (limit.clone(), app.hub.channel());
        let req = hub::request(
            &s.person,
            lang,
            pb::GetCaseRequest {
                case_id: case_id.clone(),
                // What the line referred: its outcome, as a school sees its referrals
                // (the policy's service-provision rule for the line: references and
                // place). The emergency data set is break-glass only.
                purpose: pb::Purpose::ServiceProvision.into(),
            },
        );
        reads.spawn(async move {
            let Ok(_permit) = limit.acquire_owned().await else {
                return (i, Seen::Unavailable);
            };
            let Ok(req) = req else {
                return (i, Seen::Unavailable);
            };
            let answer = pb::cases_client::CasesClient::new(channel)
                .get_case(req)
                .await;
            (i, seen(answer))
        });
    }
    let mut out: Vec<Option<Seen>> = calls.iter().map(|_| None).collect();
    while let Some(done) = reads.join_next().await {
        if let Ok((i, seen)) = done {
            if let Some(slot) = out.get_mut(i) {
                *slot = Some(seen);
            }
        }
    }
    out.into_iter()
        .map(|s| s.unwrap_or(Seen::Unavailable))
        .collect()
}

fn seen(answer: Result<tonic::Response<pb::SharedCase>, tonic::Status>) -> Seen {
    match answer {
        Ok(r) => {
            let shared = r.into_inner();
            let doc: Value = serde_json::from_str(&shared.document_json).unwrap_or(Value::Null);
            Seen::Shared {
                status: doc["status"].as_str().map(str::to_owned),
                risk: doc["risk_level"].as_str().map(str::to_owned),
                deliveries: shared
                    .deliveries
                    .into_iter()
                    .map(|d| {
                        let outcome = himaya_proto::convert::code::<himaya_record::DeliveryOutcome>(
                            d.outcome,
                        );
                        (d.agency_id, outcome.to_owned())
                    })
                    .collect(),
            }
        }
        Err(status) if status.code() == tonic::Code::PermissionDenied => {
            Seen::NotShared(status.message().to_owned())
        }
        Err(status) => {
            tracing::warn!(code = ?status.code(), "a follow-up read from the hub failed");
            Seen::Unavailable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_left_round_up_and_stop_at_zero() {
        let now = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(minutes_left("2026-11-22T11:00:00+00:00", now), Some(60));
        assert_eq!(minutes_left("2026-11-22T10:00:01Z", now), Some(1));
        assert_eq!(minutes_left("2026-11-22T09:00:00Z", now), Some(0));
        assert_eq!(minutes_left("2026-11-22T12:30:00+02:00", now), Some(30));
        assert_eq!(minutes_left("soon", now), None);
    }
}
