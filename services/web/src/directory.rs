//! The directory's agencies for the hub's administrators (a person with the `admin` role
//! in the national ministry, the social-affairs agency covering every governorate): the
//! agencies with their version and state, suspending and reactivating one (its calls
//! and webhook posts are refused on every replica within seconds), and a one-time
//! enrolment code for an agency's system to get its certificate. Every change goes
//! through the hub's `Directory` API as the person, which checks it again and records
//! who made it; other administrators see the list only.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use himaya_proto::status::Lang;
use himaya_proto::v1 as pb;
use himaya_record::AgencyType;
use maud::{html, Markup};

use crate::people::Role;
use crate::referral::Form;
use crate::session::Session;
use crate::text::{lang_of, pick};
use crate::{csrf_refused, failed, html_page, hub, hub_unavailable, pages, signed_in, App};

/// The reasons an administrator chooses from (the directory's vocabulary).
const REASONS: [(&str, &str, &str); 5] = [
    ("compromised_key", "مفتاح مخترق", "Compromised key"),
    ("left_programme", "غادرت البرنامج", "Left the programme"),
    (
        "agreement_suspended",
        "اتفاقية معلّقة",
        "Agreement suspended",
    ),
    ("error_corrected", "تصحيح خطأ", "Error corrected"),
    ("other", "سبب آخر", "Other"),
];

/// Whether the person's agency is the one that runs the directory.
fn runs_directory(app: &App, s: &Session) -> bool {
    app.settings
        .agencies
        .get(&s.person.agency_id)
        .is_some_and(|a| a.agency_type == AgencyType::SocialAffairs && a.covers_everywhere())
}

pub(crate) async fn agencies_page(State(app): State<App>, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    let s = match signed_in(&app, &headers, &[Role::Admin]).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    render(&app, lang, &s, None).await
}

async fn render(app: &App, lang: Lang, s: &Session, shown: Option<Markup>) -> Response {
    let t = |ar, en| pick(lang, ar, en);
    let msg = pb::ListAgenciesRequest::default();
    let listed = match hub::request(&s.person, lang, msg) {
        Ok(r) => {
            pb::directory_client::DirectoryClient::new(app.hub.channel())
                .list_agencies(r)
                .await
        }
        Err(e) => return failed(lang, Some(s), e),
    };
    let page = match listed {
        Ok(p) => p.into_inner(),
        Err(status) => return hub_unavailable(lang, s, &status),
    };
    let manages = runs_directory(app, s);
    let body = html! {
        h1 { (t("دليل الجهات", "The directory's agencies")) }
        @if let Some(m) = shown { (m) }
        @if !manages {
            p { (t("لا يغيّر الدليل إلا مشرفو الوزارة التي تدير المنصة؛ هذه القائمة للاطلاع.",
                   "Only the administrators of the ministry that runs the hub change the directory; this list is for reading.")) }
        }
        table {
            thead { tr {
                th scope="col" { (t("المعرّف", "Id")) }
                th scope="col" { (t("الاسم", "Name")) }
                th scope="col" { (t("النوع", "Type")) }
                th scope="col" { (t("الإصدار", "Version")) }
                th scope="col" { (t("الحالة", "State")) }
                @if manages { th scope="col" { (t("إجراءات", "Actions")) } }
            } }
            tbody {
                @for a in &page.agencies {
                    @let suspended = a.status() == pb::AgencyStatus::Suspended;
                    tr {
                        td { bdi dir="ltr" { (a.agency_id) } }
                        td { bdi { (if lang == Lang::Arabic { &a.name_ar } else { &a.name_en }) } }
                        td { (crate::text::label(&a.agency_type, lang)) }
                        td { (a.version) }
                        td { @if suspended { strong { (t("موقوفة", "Suspended")) } } @else { (t("نشطة", "Active")) } }
                        @if manages {
                            td {
                                @if a.agency_id != s.person.agency_id {
                                    form.inline method="post" action={"/admin/agencies/" (a.agency_id) "/status"} {
                                        input type="hidden" name="csrf" value=(s.csrf);
                                        input type="hidden" name="version" value=(a.version);
                                        input type="hidden" name="status" value=(if suspended { "active" } else { "suspended" });
                                        label for={"reason-" (a.agency_id)} { (t("السبب", "Reason")) }
                                        select id={"reason-" (a.agency_id)} name="reason" {
                                            @for (word, ar, en) in REASONS {
                                                option value=(word) { (pick(lang, ar, en)) }
                                            }
                                        }
                                        button.secondary type="submit" {
                                            (if suspended { t("إعادة التفعيل", "Reactivate") } else { t("إيقاف", "Suspend") })
                                        }
                                    }
                                }
                                form.inline method="post" action={"/admin/agencies/" (a.agency_id) "/enrolment"} {
                                    input type="hidden" name="csrf" value=(s.csrf);
                                    button.secondary type="submit" { (t("رمز تسجيل لشهادة", "Enrolment code for a certificate")) }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if !page.next_after.is_empty() {
            p { (t("تعرض الصفحة أول 500 جهة؛ البقية عبر himaya agencies.", "The page shows the first 500 agencies; the rest with himaya agencies.")) }
        }
    };
    html_page(
        StatusCode::OK,
        pages::page(lang, t("دليل الجهات", "The directory"), Some(s), body),
    )
}

/// What the hub said when it refused a change, as a page naming what to do next.
fn refused(lang: Lang, s: &Session, status: &tonic::Status) -> Response {
    tracing::info!(person = %s.person.person_id, code = ?status.code(), "the hub refused a directory change");
    let code = match status.code() {
        tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        tonic::Code::Aborted | tonic::Code::AlreadyExists => StatusCode::CONFLICT,
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
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
                "عد إلى دليل الجهات وأعد المحاولة.",
                "Go back to the directory and try again.",
            ),
        ),
    )
}

/// Suspends or reactivates an agency at the version the page showed.
pub(crate) async fn set_status(
    State(app): State<App>,
    Path(agency_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let lang = lang_of(&headers);
    let s = match signed_in(&app, &headers, &[Role::Admin]).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let f = Form::parse(&body);
    if let Some(r) = csrf_refused(lang, &s, &f) {
        return r;
    }
    let status = match f.get("status") {
        "active" => pb::AgencyStatus::Active,
        "suspended" => pb::AgencyStatus::Suspended,
        // The hub names the field and its choices.
        _ => pb::AgencyStatus::Unspecified,
    };
    let msg = pb::SetAgencyStatusRequest {
        agency_id,
        // Not a number: version 0, which the hub refuses as stale, naming the current.
        expected_version: f.get("version").parse().unwrap_or(0),
        status: status.into(),
        reason: f.get("reason").to_owned(),
    };
    let done = match hub::request(&s.person, lang, msg) {
        Ok(r) => {
            pb::directory_client::DirectoryClient::new(app.hub.channel())
                .set_agency_status(r)
                .await
        }
        Err(e) => return failed(lang, Some(&s), e),
    };
    match done {
        Ok(_) => Redirect::to("/admin/agencies").into_response(),
        Err(status) => refused(lang, &s, &status),
    }
}

/// A one-time enrolment code, shown once on the directory's page.
pub(crate) async fn enrolment(
    State(app): State<App>,
    Path(agency_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let lang = lang_of(&headers);
    let s = match signed_in(&app, &headers, &[Role::Admin]).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let f = Form::parse(&body);
    if let Some(r) = csrf_refused(lang, &s, &f) {
        return r;
    }
    let msg = pb::CreateEnrolmentRequest { agency_id };
    let made = match hub::request(&s.person, lang, msg) {
        Ok(r) => {
            pb::directory_client::DirectoryClient::new(app.hub.channel())
                .create_enrolment(r)
                .await
        }
        Err(e) => return failed(lang, Some(&s), e),
    };
    let code = match made {
        Ok(c) => c.into_inner(),
        Err(status) => return refused(lang, &s, &status),
    };
    let t = |ar, en| pick(lang, ar, en);
    let shown = html! {
        section.created role="status" {
            h2 { (t("رمز التسجيل (يُعرض مرة واحدة)", "Enrolment code (shown once)")) }
            p { (t("الجهة: ", "Agency: ")) bdi dir="ltr" { (code.agency_id) } }
            p { code dir="ltr" { (code.code) } }
            p { (t("سلّمه لمسؤول نظام الجهة بطريق آمن؛ يستخدمه مرة واحدة مع himaya enrol قبل: ",
                   "Hand it to the agency's system operator by a safe way; it is used once with himaya enrol before: "))
                bdi dir="ltr" { (code.expires_at) } }
        }
    };
    render(&app, lang, &s, Some(shown)).await
}
