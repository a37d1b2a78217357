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
use himaya_record::{AgencyType, ServiceType};
use himaya_settings::Protocol;
use maud::{html, Markup};

use crate::people::Role;
use crate::referral::Form;
use crate::session::Session;
use crate::text::{lang_of, pick};
use crate::{failed, html_page, hub, hub_unavailable, pages, posted, signed_in, App};

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
    render(&app, lang, &s, None, &Form::default(), &[]).await
}

async fn render(
    app: &App,
    lang: Lang,
    s: &Session,
    shown: Option<Markup>,
    f: &Form,
    errors: &[(String, String)],
) -> Response {
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
        @if manages { (add_form(app, lang, s, f, errors)) }
    };
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    html_page(
        status,
        pages::page(lang, t("دليل الجهات", "The directory"), Some(s), body),
    )
}

/// The form adding an agency, with the hub's errors next to their fields.
fn add_form(app: &App, lang: Lang, s: &Session, f: &Form, errors: &[(String, String)]) -> Markup {
    let t = |ar, en| pick(lang, ar, en);
    let error = |field: &str| -> Markup {
        let said: Vec<&str> = errors
            .iter()
            .filter(|(k, _)| k == field)
            .map(|(_, v)| v.as_str())
            .collect();
        html! {
            @if !said.is_empty() {
                p.error id={(field) "-error"} { (t("خطأ: ", "Error: ")) (said.join(" ")) }
            }
        }
    };
    let described = |field: &str| {
        errors
            .iter()
            .any(|(k, _)| k == field)
            .then(|| format!("{field}-error"))
    };
    let text = |name: &str, label: &str, dir: &str| {
        html! {
            label for=(name) { (label) }
            input id=(name) name=(name) value=(f.get(name)) dir=(dir) maxlength="300"
                aria-invalid=[described(name).map(|_| "true")]
                aria-describedby=[described(name)];
            (error(name))
        }
    };
    let checked = |name: &str, value: &str| f.all(name).any(|v| v == value);
    html! {
        h2 { (t("إضافة جهة", "Add an agency")) }
        @if !errors.is_empty() {
            p.error role="alert" { (t("لم تُضف الجهة: صحّح الحقول المشار إليها.", "The agency was not added: correct the fields marked.")) }
        }
        form method="post" action="/admin/agencies" novalidate {
            input type="hidden" name="csrf" value=(s.csrf);
            (text("agency_id", t("المعرّف (حروف لاتينية صغيرة وأرقام و -؛ تحمله شهادتها)", "Id (small Latin letters, digits and -; its certificate carries it)"), "ltr"))
            label for="agency_type" { (t("النوع", "Type")) }
            select #agency_type name="agency_type" aria-describedby=[described("agency_type")] {
                @for at in AgencyType::ALL {
                    option value=(at.as_str()) selected[f.get("agency_type") == at.as_str()] { (crate::text::label(at.as_str(), lang)) }
                }
            }
            (error("agency_type"))
            (text("name_ar", t("الاسم بالعربية", "Name in Arabic"), "rtl"))
            (text("name_en", t("الاسم بالإنجليزية", "Name in English"), "ltr"))
            fieldset aria-describedby=[described("services")] {
                legend { (t("الخدمات", "Services")) }
                @for st in ServiceType::ALL {
                    label.check { input type="checkbox" name="services" value=(st.as_str()) checked[checked("services", st.as_str())]; " " (crate::text::label(st.as_str(), lang)) }
                }
                (error("services"))
            }
            fieldset aria-describedby=[described("governorates")] {
                legend { (t("المحافظات التي تخدمها", "Governorates served")) }
                label.check { input type="checkbox" name="governorates" value="*" checked[checked("governorates", "*")]; " " (t("كل المحافظات", "Every governorate")) }
                @for g in &app.settings.gazetteer.governorates {
                    label.check { input type="checkbox" name="governorates" value=(g.name_ar) checked[checked("governorates", &g.name_ar)]; " " (if lang == Lang::Arabic { &g.name_ar } else { &g.name_en }) }
                }
                (error("governorates"))
            }
            (text("endpoint", t("عنوان نظامها الذي تُرسل إليه الإحالات (https://…؛ فارغ إن لم يتصل)", "Where its system receives deliveries (https://…; empty when not connected)"), "ltr"))
            label for="protocol" { (t("المعيار الذي يتحدثه نظامها", "The standard its system speaks")) }
            select #protocol name="protocol" aria-describedby=[described("protocol")] {
                @for p in Protocol::ALL {
                    option value=(p.as_str()) selected[f.get("protocol") == p.as_str()] { (p.as_str()) }
                }
            }
            (error("protocol"))
            (text("inbound_token_ref", t("أين يجد المنصة رمز الجهة لخطافاتها (env:… أو file:/…؛ لا الرمز نفسه)", "Where the hub finds the agency's webhook token (env:… or file:/…; never the token itself)"), "ltr"))
            (text("outbound_token_ref", t("أين يجد المنصة الرمز الذي تقدمه لنظام الجهة", "Where the hub finds the token it presents to the agency's system"), "ltr"))
            button type="submit" { (t("إضافة الجهة", "Add the agency")) }
        }
    }
}

/// Adds an agency through the hub's `Directory.PutAgency`, as the person.
pub(crate) async fn add(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let lang = lang_of(&headers);
    let (s, f) = match posted(&app, &headers, &body, &[Role::Admin]).await {
        Ok(posted) => posted,
        Err(r) => return r,
    };
    let msg = pb::PutAgencyRequest {
        agency_id: f.get("agency_id").to_owned(),
        expected_version: 0,
        agency_type: f.get("agency_type").to_owned(),
        name_ar: f.get("name_ar").to_owned(),
        name_en: f.get("name_en").to_owned(),
        services: f
            .all("services")
            .filter_map(ServiceType::parse)
            .map(|st| himaya_proto::convert::service_to(st).into())
            .collect(),
        governorates: f.all("governorates").map(str::to_owned).collect(),
        endpoint: f.get("endpoint").to_owned(),
        protocol: f.get("protocol").to_owned(),
        inbound_token_ref: f.get("inbound_token_ref").to_owned(),
        outbound_token_ref: f.get("outbound_token_ref").to_owned(),
        place_codes: Default::default(),
    };
    let done = match hub::request(&s.person, lang, msg) {
        Ok(r) => {
            pb::directory_client::DirectoryClient::new(app.hub.channel())
                .put_agency(r)
                .await
        }
        Err(e) => return failed(lang, Some(&s), e),
    };
    match done {
        Ok(a) => {
            let a = a.into_inner();
            let t = |ar, en| pick(lang, ar, en);
            let shown = html! {
                section.created role="status" {
                    h2 { (t("أُضيفت الجهة", "The agency is added")) }
                    p { bdi dir="ltr" { (a.agency_id) } " — " bdi { (a.name_ar) } }
                    p { (t("تستطيع الاتصال بالمنصة خلال ثانية بشهادة تحمل اسمها؛ أعطها رمز تسجيل إن كانت المنصة تصدر شهاداتها.",
                           "It can call the hub within a second with a certificate naming it; give it an enrolment code if the hub issues its certificates.")) }
                }
            };
            render(&app, lang, &s, Some(shown), &Form::default(), &[]).await
        }
        Err(status) if status.code() == tonic::Code::InvalidArgument => {
            let errors = field_errors(&status);
            if errors.is_empty() {
                return refused(lang, &s, &status);
            }
            render(&app, lang, &s, None, &f, &errors).await
        }
        Err(status) => refused(lang, &s, &status),
    }
}

/// The hub's field violations by the form's field (`governorates[2]` → `governorates`).
fn field_errors(status: &tonic::Status) -> Vec<(String, String)> {
    use tonic_types::StatusExt;
    let Some(bad) = status.get_details_bad_request() else {
        return Vec::new();
    };
    bad.field_violations
        .into_iter()
        .map(|v| {
            let field = v.field.split('[').next().unwrap_or("").to_owned();
            let text = v
                .description
                .split_once("] ")
                .map(|(_, t)| t.to_owned())
                .unwrap_or(v.description);
            (field, text)
        })
        .collect()
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
    let (s, f) = match posted(&app, &headers, &body, &[Role::Admin]).await {
        Ok(posted) => posted,
        Err(r) => return r,
    };
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
    let (s, _) = match posted(&app, &headers, &body, &[Role::Admin]).await {
        Ok(posted) => posted,
        Err(r) => return r,
    };
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
    render(&app, lang, &s, Some(shown), &Form::default(), &[]).await
}
