//! The supervisor's view of the team: each caseworker's open cases against the cap (25 a
//! caseworker, the seeds' rule) and the escalations raised (missed deadlines, referrals
//! that reached no agency), urgent first. Ids and counts only.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use himaya_proto::v1 as pb;
use maud::html;

use crate::people::Role;
use crate::text::{lang_of, pick};
use crate::{failed, html_page, hub, pages, signed_in, App};

pub(crate) async fn team(State(app): State<App>, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    let s = match signed_in(&app, &headers, &[Role::Supervisor]).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut work = pb::case_work_client::CaseWorkClient::new(app.hub.channel());
    let indicators = match hub::request(&s.person, lang, pb::GetIndicatorsRequest::default()) {
        Ok(r) => work.get_indicators(r).await,
        Err(e) => return failed(lang, Some(&s), e),
    };
    let escalations = match hub::request(&s.person, lang, pb::ListEscalationsRequest::default()) {
        Ok(r) => work.list_escalations(r).await,
        Err(e) => return failed(lang, Some(&s), e),
    };
    let (indicators, escalations) = match (indicators, escalations) {
        (Ok(i), Ok(e)) => (i.into_inner(), e.into_inner().escalations),
        (Err(status), _) | (_, Err(status)) => return crate::hub_unavailable(lang, &s, &status),
    };
    let t = |ar, en| pick(lang, ar, en);
    let body = html! {
        h1 { (t("الفريق", "The team")) }
        h2 { (t("أعباء الأخصائيين", "Caseloads")) }
        table {
            thead { tr { th { (t("الأخصائي", "Caseworker")) } th { (t("الحالات المفتوحة", "Open cases")) } th { (t("الحد", "Cap")) } } }
            tbody {
                @for c in &indicators.caseloads {
                    tr.overdue[c.open_cases >= c.limit] {
                        td { code { (c.caseworker_id) } }
                        td { (c.open_cases) }
                        td { (c.limit) @if c.open_cases >= c.limit { " · " strong { (t("مكتمل", "full")) } } }
                    }
                }
            }
        }
        h2 { (t("التصعيدات", "Escalations")) }
        @if escalations.is_empty() {
            p { (t("لا توجد تصعيدات.", "No escalations.")) }
        } @else {
            table {
                thead { tr { th { (t("الحالة", "Case")) } th { (t("النوع", "Kind")) } th { (t("الأولوية", "Priority")) } th { (t("ما يلزم", "What to do")) } } }
                tbody {
                    @for e in &escalations {
                        tr {
                            td { a href={"/cases/" (e.case_id)} { code { (e.case_id) } } }
                            td { (e.kind) }
                            td { (if e.priority == "urgent" { t("عاجلة", "urgent") } else { t("عادية", "routine") }) }
                            td { (e.explanation.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
        p { a href="/cases" { (t("الحالات بانتظار أخصائي", "Cases waiting for a caseworker")) } }
    };
    html_page(
        StatusCode::OK,
        pages::page(lang, t("الفريق", "The team"), Some(&s), body),
    )
}
