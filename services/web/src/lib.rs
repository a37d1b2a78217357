//! The web front: people sign in and work in a browser. HTML is rendered on the server
//! (maud), Arabic and right to left first, English as a switch; no script, no CDN. Every
//! action reaches the hub through the same gRPC as any caller, as the person's agency
//! and naming the person (see `hub`), so the gateway, validation and the consent layer
//! apply unchanged. Schema `web`: persons, sessions, sign-ins, submissions (ids only).

mod actions;
mod admin;
mod audit;
mod casework;
mod directory;
mod hotline;
pub mod hub;
mod lifecycle;
mod oidc;
mod pages;
mod partner;
pub mod people;
mod public;
mod referral;
mod session;
mod signing;
mod submit;
mod team;
pub mod text;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use himaya_proto::status::Lang;
use himaya_settings::Settings;
use maud::{html, Markup};
use sqlx::PgPool;

use crate::people::Role;
use crate::referral::Form;
use crate::session::Session;
use crate::text::{lang_of, pick};

pub const SCHEMA: &str = "web";

/// The largest form the web front reads.
const MAX_FORM_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("storage failed")]
    Store(#[from] himaya_store::StoreError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Internal(&'static str),
}

himaya_store::from_sqlx!(WebError::Store);

impl From<sqlx::migrate::MigrateError> for WebError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        WebError::Store(e.into())
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct App {
    pool: PgPool,
    settings: Arc<Settings>,
    hub: hub::Hub,
    /// The ministry's OpenID Connect provider, when `[web.oidc]` is set.
    oidc: oidc::Oidc,
}

/// Connects and migrates the `web` schema.
pub async fn connect(settings: &Settings) -> Result<PgPool, WebError> {
    let pool = himaya_store::connect_service(&settings.database, SCHEMA).await?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(pool)
}

/// The web front as a component of the hub: its pages, served on `web.listen`, calling
/// the hub's gRPC as the web component.
pub struct Web;

impl himaya_component::Component for Web {
    const NAME: &'static str = "web";

    async fn start(
        ctx: himaya_component::Context,
    ) -> Result<himaya_component::Started, himaya_component::StartError> {
        let listen = ctx.settings.web.listen;
        let router = router(ctx.settings, ctx.grpc_addr).await?;
        Ok(
            himaya_component::Started::default().http(himaya_component::HttpServer {
                name: "web",
                title: "web front",
                setting: "web.listen",
                listen,
                router,
            }),
        )
    }
}

/// The web front's routes, calling the hub at `grpc_addr`.
pub async fn router(
    settings: Arc<Settings>,
    grpc_addr: std::net::SocketAddr,
) -> Result<Router, WebError> {
    let pool = connect(&settings).await?;
    let hub = hub::Hub::new(&settings, grpc_addr)?;
    let oidc = oidc::Oidc::new(&settings)?;
    oidc.warm_up();
    let app = App {
        pool,
        settings,
        hub,
        oidc,
    };
    Ok(Router::new()
        .route("/", get(home))
        .route("/signin", get(signing::sign_in_page).post(signing::sign_in))
        .route("/signin/oidc", get(oidc::start))
        .route("/signin/oidc/callback", get(oidc::callback))
        .route("/signout", post(signing::sign_out))
        .route("/signout/everywhere", post(signing::sign_out_everywhere))
        .route("/lang/{lang}", get(signing::switch_language))
        .route(
            "/referrals",
            get(submit::list_referrals).post(submit::submit_referral),
        )
        .route("/referrals/new", get(submit::new_referral))
        .route(
            "/hotline",
            get(submit::new_escalation).post(submit::submit_escalation),
        )
        .route("/hotline/calls", get(submit::find_calls))
        .route(
            "/hotline/break-glass",
            get(hotline::break_glass_form).post(hotline::break_glass),
        )
        .route("/hotline/follow-ups", get(hotline::follow_ups))
        .route("/audit", get(audit::disclosure_log))
        .route("/cases", get(casework::my_cases))
        .route("/team", get(team::team))
        .route("/services", get(public::service_map))
        .route(
            "/service-referrals",
            get(partner::incoming).post(partner::answer),
        )
        .route("/cases/{case_id}", get(casework::case_page))
        .route("/cases/{case_id}/assign", post(actions::assign))
        .route("/cases/{case_id}/review", post(actions::review))
        .route("/cases/{case_id}/close", post(actions::close))
        .route("/cases/{case_id}/decide", post(actions::decide))
        .route("/cases/{case_id}/assess", post(actions::assess))
        .route("/cases/{case_id}/plan", post(actions::plan))
        .route("/cases/{case_id}/refer", post(actions::refer))
        .route("/cases/{case_id}/complete", post(actions::complete))
        .route("/cases/{case_id}/reopen", post(actions::reopen))
        .route("/team/break-glass/{id}", post(team::review_break_glass))
        .route(
            "/admin/people",
            get(admin::people_page).post(admin::add_person),
        )
        .route(
            "/admin/people/{person_id}/{what}",
            post(admin::change_person),
        )
        .route(
            "/admin/agencies",
            get(directory::agencies_page).post(directory::add),
        )
        .route(
            "/admin/agencies/{agency_id}/status",
            post(directory::set_status),
        )
        .route(
            "/admin/agencies/{agency_id}/enrolment",
            post(directory::enrolment),
        )
        .route("/static/himaya.css", get(stylesheet))
        .route("/static/fonts/{name}", get(pages::font))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(app))
}

/// No page is cached, framed, or allowed a script; forms post only here.
async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, "content-security-policy", "default-src 'none'; style-src 'self'; img-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "no-referrer");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    r
}

pub(crate) fn html_page(status: StatusCode, m: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        m.into_string(),
    )
        .into_response()
}

pub(crate) fn failed(lang: Lang, s: Option<&Session>, e: WebError) -> Response {
    tracing::error!(error = %e, "the web front failed a request");
    html_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        pages::problem(
            lang,
            s,
            pick(lang, "حدث خطأ في المنصة.", "Something failed in the hub."),
            pick(
                lang,
                "أعد المحاولة بعد قليل؛ إن تكرر الخطأ فأبلغ مشغلي المنصة.",
                "Try again shortly; if it happens again, tell the hub's operators.",
            ),
        ),
    )
}

/// The hub refused or could not answer a read: its own words (they name no value), and
/// what to do next.
pub(crate) fn hub_unavailable(lang: Lang, s: &Session, status: &tonic::Status) -> Response {
    tracing::warn!(person = %s.person.person_id, code = ?status.code(), "a page's read from the hub failed");
    html_page(
        StatusCode::BAD_GATEWAY,
        pages::problem(
            lang,
            Some(s),
            status.message(),
            pick(
                lang,
                "أعد تحميل الصفحة بعد قليل.",
                "Reload the page shortly.",
            ),
        ),
    )
}

/// The signed-in person holding one of `roles`, or the answer to give instead.
pub(crate) async fn signed_in(
    app: &App,
    headers: &HeaderMap,
    roles: &[Role],
) -> Result<Session, Response> {
    let lang = lang_of(headers);
    let s = match session::current(&app.pool, &app.settings.web, headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(Redirect::to("/signin").into_response()),
        Err(e) => return Err(failed(lang, None, e)),
    };
    if !roles.is_empty() && !roles.iter().any(|r| s.person.has(*r)) {
        tracing::warn!(person = %s.person.person_id, "page refused: not for this person's roles");
        return Err(html_page(
            StatusCode::FORBIDDEN,
            pages::problem(
                lang,
                Some(&s),
                pick(
                    lang,
                    "هذه الصفحة ليست لدورك.",
                    "This page is not for your role.",
                ),
                pick(
                    lang,
                    "ارجع إلى الصفحة الرئيسية لترى ما يمكنك فعله.",
                    "Go back to the start page to see what you can do.",
                ),
            ),
        ));
    }
    Ok(s)
}

/// A form posted by a signed-in person holding one of `roles`, its CSRF token checked:
/// the session and the form, or the answer to give instead.
pub(crate) async fn posted(
    app: &App,
    headers: &HeaderMap,
    body: &[u8],
    roles: &[Role],
) -> Result<(Session, Form), Response> {
    let lang = lang_of(headers);
    let s = signed_in(app, headers, roles).await?;
    let f = Form::parse(body);
    match csrf_refused(lang, &s, &f) {
        Some(r) => Err(r),
        None => Ok((s, f)),
    }
}

/// A form's CSRF token must be the session's.
pub(crate) fn csrf_refused(lang: Lang, s: &Session, f: &Form) -> Option<Response> {
    if session::csrf_ok(&s.csrf, f.get("csrf")) {
        return None;
    }
    tracing::warn!(person = %s.person.person_id, "form refused: CSRF token missing or wrong");
    Some(html_page(
        StatusCode::FORBIDDEN,
        pages::problem(
            lang,
            Some(s),
            pick(
                lang,
                "انتهت صلاحية هذا النموذج أو لم يُرسل من صفحات المنصة.",
                "This form has expired or did not come from the hub's pages.",
            ),
            pick(
                lang,
                "افتح الصفحة من جديد وأعد الإرسال.",
                "Open the page again and send it again.",
            ),
        ),
    ))
}

async fn home(State(app): State<App>, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    let s = match signed_in(&app, &headers, &[]).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let t = |ar, en| pick(lang, ar, en);
    let referrer = s.person.has(Role::SchoolOfficer) || s.person.has(Role::CommitteeMember);
    let operator = s.person.has(Role::HotlineOperator);
    let casework = s.person.has(Role::Caseworker) || s.person.has(Role::Supervisor);
    html_page(
        StatusCode::OK,
        pages::page(
            lang,
            t("الصفحة الرئيسية", "Start"),
            Some(&s),
            html! {
                h1 { (t("أهلًا", "Welcome")) ", " bdi { (s.person.name_ar) } }
                ul.actions {
                    @if referrer {
                        li { a href="/referrals/new" { (t("إحالة طفل", "Refer a child")) } }
                        li { a href="/referrals" { (t("الإحالات المرسلة", "Referrals sent")) } }
                    }
                    @if s.person.has(Role::AgencyStaff) {
                        li { a href="/service-referrals" { (t("الإحالات الواردة إلى جهتك", "Service referrals to your agency")) } }
                    }
                    @if s.person.has(Role::Supervisor) {
                        li { a href="/team" { (t("الفريق: الأعباء والتصعيدات", "The team: caseloads and escalations")) } }
                    }
                    @if casework {
                        li { a href="/cases" { (if s.person.has(Role::Caseworker) { t("حالاتي", "My cases") } else { t("الحالات بانتظار أخصائي", "Cases waiting for a caseworker") }) } }
                    }
                    @if s.person.has(Role::Admin) {
                        li { a href="/admin/people" { (t("حسابات جهتك", "Your agency's accounts")) } }
                        li { a href="/admin/agencies" { (t("دليل الجهات", "The directory's agencies")) } }
                    }
                    @if operator {
                        li { a href="/hotline" { (t("تصعيد بلاغ", "Escalate a call")) } }
                        li { a href="/hotline/calls" { (t("البحث عن بلاغ سابق", "Find an earlier call")) } }
                        li { a href="/hotline/follow-ups" { (t("متابعة حالات الخط", "Follow-ups of the line's cases")) } }
                        li { a href="/hotline/break-glass" { (t("الوصول الطارئ إلى حالة", "Emergency access to a case")) } }
                    }
                    @if s.person.has(Role::Auditor) {
                        li { a href="/audit" { (t("سجل الإفصاح", "Disclosure log")) } }
                    }
                }
                form method="post" action="/signout/everywhere" {
                    input type="hidden" name="csrf" value=(s.csrf);
                    button.secondary type="submit" { (t("الخروج من كل الأجهزة", "Sign out everywhere")) }
                }
            },
        ),
    )
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../static/himaya.css"),
    )
        .into_response()
}
