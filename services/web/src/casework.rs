//! The caseworker's and the supervisor's screens: my cases (overdue first), the
//! unassigned queue, and a case as the redactor lets the ministry see it, with its
//! history. A caseworker opens only the cases assigned to them; their staff reference in
//! the case-owning ministry is their login.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use himaya_proto::status::Lang;
use himaya_proto::v1 as pb;
use maud::{html, Markup};
use serde_json::Value;

use crate::people::{Person, Role};
use crate::session::Session;
use crate::text::{label, lang_of, pick};
use crate::{failed, html_page, hub, pages, signed_in, App};

const CASE_PEOPLE: &[Role] = &[Role::Caseworker, Role::Supervisor];

fn work(app: &App) -> pb::case_work_client::CaseWorkClient<tonic::transport::Channel> {
    pb::case_work_client::CaseWorkClient::new(app.hub.channel())
}

/// The list a person sees: a caseworker their own cases, a supervisor the queue.
fn asked(person: &Person) -> pb::ListCasesRequest {
    match person.has(Role::Caseworker) {
        true => pb::ListCasesRequest {
            caseworker_id: person.login.clone(),
            ..Default::default()
        },
        false => pb::ListCasesRequest {
            unassigned: true,
            ..Default::default()
        },
    }
}

pub(crate) async fn my_cases(State(app): State<App>, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    let s = match signed_in(&app, &headers, CASE_PEOPLE).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let req = match hub::request(&s.person, lang, asked(&s.person)) {
        Ok(r) => r,
        Err(e) => return failed(lang, Some(&s), e),
    };
    let cases = match work(&app).list_cases(req).await {
        Ok(r) => r.into_inner().cases,
        Err(status) => return refused(lang, &s, &status),
    };
    let t = |ar, en| pick(lang, ar, en);
    let title = match s.person.has(Role::Caseworker) {
        true => t("حالاتي", "My cases"),
        false => t("الحالات بانتظار أخصائي", "Cases waiting for a caseworker"),
    };
    let body = html! {
        h1 { (title) }
        @if cases.is_empty() {
            p { (t("لا توجد حالات.", "No cases.")) }
        } @else {
            table {
                thead { tr {
                    th { (t("الحالة", "Case")) } th { (t("الوضع", "Status")) } th { (t("الخطر", "Risk")) }
                    th { (t("الموعد التالي", "Next deadline")) }
                } }
                tbody {
                    @for c in &cases {
                        tr.overdue[c.overdue] {
                            td { a href={"/cases/" (c.case_id)} { code { (c.case_id) } } }
                            td { (label(&c.status, lang)) }
                            td { (label(&c.risk_level, lang)) @if c.priority == "urgent" { " · " strong { (t("عاجلة", "urgent")) } } }
                            td {
                                @if c.overdue { strong { (t("متأخر: ", "Overdue: ")) } }
                                (c.next_deadline_kind) " " (c.next_deadline_at.get(..16).unwrap_or(""))
                            }
                        }
                    }
                }
            }
        }
    };
    html_page(StatusCode::OK, pages::page(lang, title, Some(&s), body))
}

pub(crate) async fn case_page(
    State(app): State<App>,
    headers: HeaderMap,
    Path(case_id): Path<String>,
) -> Response {
    let lang = lang_of(&headers);
    let s = match signed_in(&app, &headers, CASE_PEOPLE).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    // A caseworker works the cases assigned to them, and reads only those: checked
    // before the case is read, so nothing is disclosed for a page that is refused.
    if s.person.has(Role::Caseworker) && !s.person.has(Role::Supervisor) {
        let own = pb::ListCasesRequest {
            caseworker_id: s.person.login.clone(),
            limit: 200,
            include_closed: true,
            ..Default::default()
        };
        let own = match hub::request(&s.person, lang, own) {
            Ok(r) => work(&app).list_cases(r).await,
            Err(e) => return failed(lang, Some(&s), e),
        };
        let mine = match own {
            Ok(l) => l.into_inner().cases.iter().any(|c| c.case_id == case_id),
            Err(status) => return refused(lang, &s, &status),
        };
        if !mine {
            tracing::warn!(person = %s.person.person_id, "case page refused: not the person's case");
            return html_page(
                StatusCode::FORBIDDEN,
                pages::problem(
                    lang,
                    Some(&s),
                    pick(
                        lang,
                        "هذه الحالة ليست من حالاتك.",
                        "This case is not one of yours.",
                    ),
                    pick(
                        lang,
                        "افتح حالاتك من قائمة «حالاتي».",
                        "Open your cases from “My cases”.",
                    ),
                ),
            );
        }
    }
    let read = pb::GetCaseRequest {
        case_id: case_id.clone(),
        purpose: pb::Purpose::ServiceProvision.into(),
    };
    let shared = match hub::request(&s.person, lang, read) {
        Ok(r) => {
            pb::cases_client::CasesClient::new(app.hub.channel())
                .get_case(r)
                .await
        }
        Err(e) => return failed(lang, Some(&s), e),
    };
    let shared = match shared {
        Ok(r) => r.into_inner(),
        Err(status) => return refused(lang, &s, &status),
    };
    let doc: Value = serde_json::from_str(&shared.document_json).unwrap_or(Value::Null);
    let history = match hub::request(&s.person, lang, pb::GetHistoryRequest { case_id }) {
        Ok(r) => work(&app)
            .get_history(r)
            .await
            .map(|h| h.into_inner().entries),
        Err(e) => return failed(lang, Some(&s), e),
    }
    .unwrap_or_default();
    let body = html! {
        (case_view(lang, &shared, &doc, &history))
        (crate::actions::forms(lang, &s, &shared.case_id, shared.version))
    };
    html_page(
        StatusCode::OK,
        pages::page(lang, pick(lang, "الحالة", "Case"), Some(&s), body),
    )
}

/// The case as disclosed: every text the referrer typed is isolated (`bdi`, `dir=auto`).
fn case_view(
    lang: Lang,
    shared: &pb::SharedCase,
    doc: &Value,
    history: &[pb::HistoryEntry],
) -> Markup {
    let t = |ar, en| pick(lang, ar, en);
    let text = |v: &Value| v.as_str().unwrap_or("—").to_owned();
    let child = &doc["child"];
    html! {
        h1 { (t("الحالة", "Case")) " " code { (shared.case_id) } }
        dl {
            dt { (t("الطفل", "Child")) } dd { bdi { (text(&child["name"]["as_given"])) } }
            dt { (t("الجنس", "Sex")) } dd { (label(child["sex"].as_str().unwrap_or(""), lang)) }
            dt { (t("المحافظة", "Governorate")) } dd { bdi { (text(&child["governorate"])) } }
            dt { (t("الوضع", "Status")) } dd { (label(doc["status"].as_str().unwrap_or(""), lang)) }
            dt { (t("الخطر", "Risk")) } dd { (label(doc["risk_level"].as_str().unwrap_or(""), lang)) }
        }
        h2 { (t("مخاوف الحماية", "Protection concerns")) }
        ul {
            @for c in doc["concerns"].as_array().into_iter().flatten() {
                li { (label(c["kind"].as_str().unwrap_or(""), lang)) }
            }
        }
        @if let Some(n) = doc["referral"]["narrative"].as_str() {
            h2 { (t("ما لاحظه المُحيل", "What the referrer saw")) }
            p dir="auto" { (n) }
        }
        h2 { (t("السجل", "History")) }
        ol {
            @for e in history {
                li { time { (e.at.get(..16).unwrap_or("")) } " · " (e.change) " · " bdi { (e.actor) } }
            }
        }
        p { a href="/cases" { (t("العودة إلى القائمة", "Back to the list")) } }
    }
}

fn refused(lang: Lang, s: &Session, status: &tonic::Status) -> Response {
    let code = match status.code() {
        tonic::Code::PermissionDenied | tonic::Code::NotFound => StatusCode::FORBIDDEN,
        tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
        _ => StatusCode::BAD_GATEWAY,
    };
    html_page(
        code,
        pages::problem(
            lang,
            Some(s),
            status.message(),
            pick(
                lang,
                "ارجع إلى قائمة الحالات.",
                "Go back to the list of cases.",
            ),
        ),
    )
}
