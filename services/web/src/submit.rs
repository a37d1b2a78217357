//! The ways in for people without a system: a school's (or committee's) referral form
//! and the emergency line's console, each sent through the hub's own intake, and the lists
//! of what was sent.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use himaya_proto::status::Lang;
use himaya_proto::v1 as pb;
use himaya_settings::Settings;
use maud::html;

use crate::people::Role;
use crate::referral::{self, Form, Way};
use crate::text::{lang_of, pick, Local};
use crate::{csrf_refused, failed, html_page, hub, pages, signed_in, App};

const REFERRERS: &[Role] = &[Role::SchoolOfficer, Role::CommitteeMember];

/// The governorates of the gazetteer: (Arabic, English).
fn governorates(settings: &Settings) -> Vec<(String, String)> {
    settings
        .gazetteer
        .governorates
        .iter()
        .map(|g| (g.name_ar.clone(), g.name_en.clone()))
        .collect()
}

pub(crate) async fn new_referral(State(app): State<App>, headers: HeaderMap) -> Response {
    blank(app, headers, Way::School).await
}

pub(crate) async fn new_escalation(State(app): State<App>, headers: HeaderMap) -> Response {
    blank(app, headers, Way::Hotline).await
}

pub(crate) async fn submit_referral(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    send(app, headers, body, Way::School).await
}

pub(crate) async fn submit_escalation(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    send(app, headers, body, Way::Hotline).await
}

/// Who may use each way in.
fn roles_of(way: Way) -> &'static [Role] {
    match way {
        Way::School => REFERRERS,
        Way::Hotline => &[Role::HotlineOperator],
    }
}

fn title_of(lang: Lang, way: Way) -> &'static str {
    match way {
        Way::School => pick(lang, "إحالة طفل", "Refer a child"),
        Way::Hotline => pick(lang, "تصعيد بلاغ", "Escalate a call"),
    }
}

async fn blank(app: App, headers: HeaderMap, way: Way) -> Response {
    let lang = lang_of(&headers);
    let s = match signed_in(&app, &headers, roles_of(way)).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let empty = Form(Vec::new());
    let body = referral::form(
        lang,
        &s.csrf,
        &governorates(&app.settings),
        (way, &empty),
        &[],
    );
    html_page(
        StatusCode::OK,
        pages::page(lang, title_of(lang, way), Some(&s), body),
    )
}

/// Sends a filled form through the hub's intake, as the person's agency, naming them.
async fn send(app: App, headers: HeaderMap, body: Bytes, way: Way) -> Response {
    let lang = lang_of(&headers);
    let s = match signed_in(&app, &headers, roles_of(way)).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let f = Form::parse(&body);
    if let Some(r) = csrf_refused(lang, &s, &f) {
        return r;
    }
    let title = title_of(lang, way);
    let mut intake = pb::intake_client::IntakeClient::new(app.hub.channel());
    let (p, l) = (&s.person, lang);
    // A community committee refers through the agency path, as itself; a school as a
    // school.
    let committee = app
        .settings
        .agencies
        .get(&p.agency_id)
        .is_some_and(|a| a.agency_type == himaya_record::AgencyType::Community);
    let answer = match way {
        Way::School if committee => {
            match hub::request(p, l, referral::committee_request(&f, &p.agency_id)) {
                Ok(req) => intake.submit_agency_referral(req).await,
                Err(e) => return failed(lang, Some(&s), e),
            }
        }
        Way::School => match hub::request(
            p,
            l,
            referral::school_request(&f, &p.agency_id, &p.person_id),
        ) {
            Ok(req) => intake.submit_school_referral(req).await,
            Err(e) => return failed(lang, Some(&s), e),
        },
        Way::Hotline => match hub::request(
            p,
            l,
            referral::hotline_request(&f, &p.agency_id, &p.person_id),
        ) {
            Ok(req) => intake.escalate_hotline_call(req).await,
            Err(e) => return failed(lang, Some(&s), e),
        },
    };
    let r = match answer {
        Ok(r) => r.into_inner(),
        Err(status) if status.code() == tonic::Code::InvalidArgument => {
            let mut errors = referral::field_errors(&status);
            if errors.is_empty() {
                errors.push(("form", status.message().to_owned()));
            }
            let body = referral::form(
                lang,
                &s.csrf,
                &governorates(&app.settings),
                (way, &f),
                &errors,
            );
            return html_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                pages::page(lang, title, Some(&s), body),
            );
        }
        Err(status) => {
            tracing::warn!(person = %s.person.person_id, code = ?status.code(), "the hub refused a submission from the web");
            let next = pick(lang, "لم يُرسل الطلب. أعد الإرسال من الصفحة السابقة بعد قليل (لن يتكرر).", "It was not sent. Send it again from the previous page shortly (it will not be doubled).");
            return html_page(
                StatusCode::BAD_GATEWAY,
                pages::problem(lang, Some(&s), status.message(), next),
            );
        }
    };
    let call_ref =
        Some(f.get("call_ref").to_owned()).filter(|c| way == Way::Hotline && !c.is_empty());
    let saved = sqlx::query(
        "INSERT INTO submissions (submission_id, person_id, agency_id, case_id, referral_id, call_ref)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (submission_id) DO NOTHING",
    )
    .bind(f.get("submission_id"))
    .bind(&s.person.person_id)
    .bind(&s.person.agency_id)
    .bind(&r.case_id)
    .bind(&r.referral_id)
    .bind(&call_ref)
    .execute(&app.pool)
    .await;
    if let Err(e) = saved {
        // The referral is in the hub; only the agency's list misses it.
        tracing::warn!(error = %e, "a submission from the web could not be listed");
    }
    tracing::info!(person = %s.person.person_id, case_id = %r.case_id, "submitted from the web");
    html_page(
        StatusCode::OK,
        pages::page(lang, title, Some(&s), referral::accepted(lang, &r, way)),
    )
}

pub(crate) async fn list_referrals(State(app): State<App>, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    let s = match signed_in(&app, &headers, REFERRERS).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let rows: Result<Vec<(String, String, chrono::DateTime<chrono::Utc>)>, sqlx::Error> = sqlx::query_as(
        "SELECT case_id, referral_id, at FROM submissions WHERE agency_id = $1 ORDER BY at DESC LIMIT 50",
    )
    .bind(&s.person.agency_id)
    .fetch_all(&app.pool)
    .await;
    let rows = match rows {
        Ok(r) => r,
        Err(e) => return failed(lang, Some(&s), e.into()),
    };
    let t = |ar, en| pick(lang, ar, en);
    let l = Local::new(lang, &app.settings.web);
    let body = html! {
        h1 { (t("الإحالات المرسلة من جهتك", "Referrals sent by your agency")) }
        @if rows.is_empty() {
            p { (t("لا توجد إحالات بعد.", "No referrals yet.")) }
        } @else {
            table {
                thead { tr { th { (t("الحالة", "Case")) } th { (t("الإحالة", "Referral")) } th { (t("أُرسلت", "Sent")) } } }
                tbody {
                    @for (case_id, referral_id, at) in &rows {
                        tr { td { code { (case_id) } } td { code { (referral_id) } } td { bdi { time datetime=(at.to_rfc3339()) { (l.date_time(*at)) } } } }
                    }
                }
            }
        }
        p { a href="/referrals/new" { (t("إحالة طفل", "Refer a child")) } }
    };
    html_page(
        StatusCode::OK,
        pages::page(lang, t("الإحالات المرسلة", "Referrals sent"), Some(&s), body),
    )
}

/// An operator finds earlier escalations of the line by call reference.
pub(crate) async fn find_calls(
    State(app): State<App>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let lang = lang_of(&headers);
    let s = match signed_in(&app, &headers, &[Role::HotlineOperator]).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    /// call reference, case, referral, when.
    type Call = (String, String, String, chrono::DateTime<chrono::Utc>);
    let q = Form::parse(query.unwrap_or_default().as_bytes());
    let call = q.get("call_ref").chars().take(64).collect::<String>();
    let rows: Result<Vec<Call>, sqlx::Error> = sqlx::query_as(
        "SELECT call_ref, case_id, referral_id, at FROM submissions
          WHERE agency_id = $1 AND call_ref IS NOT NULL AND ($2 = '' OR call_ref = $2)
          ORDER BY at DESC LIMIT 50",
    )
    .bind(&s.person.agency_id)
    .bind(&call)
    .fetch_all(&app.pool)
    .await;
    let rows = match rows {
        Ok(r) => r,
        Err(e) => return failed(lang, Some(&s), e.into()),
    };
    let t = |ar, en| pick(lang, ar, en);
    let l = Local::new(lang, &app.settings.web);
    let body = html! {
        h1 { (t("البلاغات المصعّدة", "Escalated calls")) }
        form method="get" action="/hotline/calls" {
            label for="call_ref" { (t("رقم المكالمة", "Call reference")) }
            input #call_ref name="call_ref" value=(call) maxlength="64" autofocus dir="ltr";
            button type="submit" { (t("بحث", "Search")) }
        }
        table {
            thead { tr { th { (t("المكالمة", "Call")) } th { (t("الحالة", "Case")) } th { (t("وقت التصعيد", "Escalated")) } th { (t("إجراء", "Action")) } } }
            tbody {
                @for (call_ref, case_id, _, at) in &rows {
                    tr {
                        td { code { (call_ref) } } td { code { (case_id) } } td { bdi { time datetime=(at.to_rfc3339()) { (l.date_time(*at)) } } }
                        td { a href={"/hotline/break-glass?case_id=" (crate::hotline::encoded(case_id))} { (t("وصول طارئ", "Emergency access")) } }
                    }
                }
            }
        }
        p {
            a href="/hotline" { (t("تصعيد بلاغ جديد", "Escalate a new call")) }
            " · " a href="/hotline/follow-ups" { (t("متابعة حالات الخط", "Follow-ups of the line's cases")) }
        }
    };
    html_page(
        StatusCode::OK,
        pages::page(
            lang,
            t("البلاغات المصعّدة", "Escalated calls"),
            Some(&s),
            body,
        ),
    )
}
