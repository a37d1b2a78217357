//! The web front: people sign in and work in a browser. HTML is rendered on the server
//! (maud), Arabic and right to left first, English as a switch; no script, no CDN. Every
//! action reaches the hub through the same gRPC as any caller, as the person's agency
//! and naming the person (see `hub`), so the gateway, validation and the consent layer
//! apply unchanged. Schema `web`: persons, sessions, sign-ins, submissions (ids only).

pub mod hub;
mod pages;
pub mod people;
mod referral;
mod session;
pub mod text;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use himaya_proto::status::Lang;
use himaya_proto::v1 as pb;
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

impl From<sqlx::Error> for WebError {
    fn from(e: sqlx::Error) -> Self {
        WebError::Store(e.into())
    }
}

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
}

/// Connects and migrates the `web` schema.
pub async fn connect(settings: &Settings) -> Result<PgPool, WebError> {
    let pool = himaya_store::connect_service(&settings.database, SCHEMA).await?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(pool)
}

/// The web front's routes, calling the hub at `grpc_addr`.
pub async fn router(
    settings: Arc<Settings>,
    grpc_addr: std::net::SocketAddr,
) -> Result<Router, WebError> {
    let pool = connect(&settings).await?;
    let hub = hub::Hub::new(&settings, grpc_addr)?;
    let app = App {
        pool,
        settings,
        hub,
    };
    Ok(Router::new()
        .route("/", get(home))
        .route("/signin", get(sign_in_page).post(sign_in))
        .route("/signout", post(sign_out))
        .route("/signout/everywhere", post(sign_out_everywhere))
        .route("/lang/:lang", get(switch_language))
        .route("/referrals", get(list_referrals).post(submit_referral))
        .route("/referrals/new", get(new_referral))
        .route("/static/himaya.css", get(stylesheet))
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

fn html_page(status: StatusCode, m: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        m.into_string(),
    )
        .into_response()
}

fn failed(lang: Lang, s: Option<&Session>, e: WebError) -> Response {
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

/// The signed-in person holding one of `roles`, or the answer to give instead.
async fn signed_in(app: &App, headers: &HeaderMap, roles: &[Role]) -> Result<Session, Response> {
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

/// A form's CSRF token must be the session's.
fn csrf_refused(lang: Lang, s: &Session, f: &Form) -> Option<Response> {
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
                }
                form method="post" action="/signout/everywhere" {
                    input type="hidden" name="csrf" value=(s.csrf);
                    button.secondary type="submit" { (t("الخروج من كل الأجهزة", "Sign out everywhere")) }
                }
            },
        ),
    )
}

async fn sign_in_page(headers: HeaderMap, State(app): State<App>) -> Response {
    let lang = lang_of(&headers);
    let pre = session::random_token();
    let cookie = session::set_cookie(
        session::PRE_COOKIE,
        &pre,
        app.settings.web.secure_cookies,
        None,
    );
    let mut r = html_page(StatusCode::OK, pages::sign_in(lang, &pre, None));
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

async fn sign_in(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let lang = lang_of(&headers);
    let f = Form::parse(&body);
    let web = &app.settings.web;
    let again = |status, problem: &str| {
        let pre = session::random_token();
        let mut r = html_page(status, pages::sign_in(lang, &pre, Some(problem)));
        let c = session::set_cookie(session::PRE_COOKIE, &pre, web.secure_cookies, None);
        if let Ok(v) = HeaderValue::from_str(&c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
        r
    };
    let pre = session::cookie(&headers, session::PRE_COOKIE).unwrap_or_default();
    if !session::csrf_ok(&pre, f.get("pre")) {
        return again(
            StatusCode::FORBIDDEN,
            pick(
                lang,
                "انتهت صلاحية صفحة الدخول؛ أعد المحاولة.",
                "The sign-in page expired; try again.",
            ),
        );
    }
    let outcome = people::sign_in(
        &app.pool,
        web,
        f.get("login"),
        f.get("password"),
        f.get("code"),
    )
    .await;
    let person = match outcome {
        Ok(Ok(p)) => p,
        Ok(Err(people::Refused::WrongCredentials)) => {
            return again(
                StatusCode::UNAUTHORIZED,
                pick(
                    lang,
                    "اسم المستخدم أو كلمة المرور غير صحيحة.",
                    "The login or the password is wrong.",
                ),
            );
        }
        Ok(Err(people::Refused::Locked(until))) => {
            let minutes = ((until - chrono::Utc::now()).num_seconds().max(1) + 59) / 60;
            let text = match lang {
                Lang::Arabic => format!("الحساب مقفل مؤقتًا بعد محاولات فاشلة متكررة؛ حاول بعد {minutes} دقيقة، أو اطلب من مسؤول الحسابات في جهتك فتحه."),
                Lang::English => format!("The account is locked after repeated failures; try again in {minutes} minute(s), or ask your agency's account administrator."),
            };
            return again(StatusCode::TOO_MANY_REQUESTS, &text);
        }
        Ok(Err(people::Refused::SecondFactor)) => {
            return again(StatusCode::UNAUTHORIZED, pick(lang, "رمز التحقق مطلوب لدورك أو غير صحيح: أدخل الرمز الحالي من تطبيق المصادقة.", "Your role needs a verification code, or it was wrong: enter the current code from your authenticator app."));
        }
        Err(e) => return failed(lang, None, e),
    };
    // A new session at every sign-in: a cookie planted before it is worth nothing.
    let (token, _) = match session::create(&app.pool, &person.person_id).await {
        Ok(t) => t,
        Err(e) => return failed(lang, None, e),
    };
    let mut r = Redirect::to("/").into_response();
    let h = r.headers_mut();
    for c in [
        session::set_cookie(session::COOKIE, &token, web.secure_cookies, None),
        session::set_cookie(session::PRE_COOKIE, "", web.secure_cookies, Some(0)),
    ] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    r
}

async fn sign_out(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    ending(app, headers, body, false).await
}

async fn sign_out_everywhere(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    ending(app, headers, body, true).await
}

async fn ending(app: App, headers: HeaderMap, body: Bytes, everywhere: bool) -> Response {
    let lang = lang_of(&headers);
    let s = match signed_in(&app, &headers, &[]).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = csrf_refused(lang, &s, &Form::parse(&body)) {
        return r;
    }
    let ended = if everywhere {
        session::end_all(&app.pool, &s.person.person_id)
            .await
            .map(|_| ())
    } else {
        session::end(&app.pool, &headers).await
    };
    if let Err(e) = ended {
        return failed(lang, Some(&s), e);
    }
    let mut r = Redirect::to("/signin").into_response();
    let c = session::set_cookie(
        session::COOKIE,
        "",
        app.settings.web.secure_cookies,
        Some(0),
    );
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

async fn switch_language(State(app): State<App>, Path(lang): Path<String>) -> Response {
    let code = if lang == "en" { "en" } else { "ar" };
    let c = session::set_cookie(
        "himaya_lang",
        code,
        app.settings.web.secure_cookies,
        Some(31_536_000),
    );
    let mut r = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
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

async fn new_referral(State(app): State<App>, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    let s = match signed_in(&app, &headers, REFERRERS).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let body = referral::form(
        lang,
        &s.csrf,
        &governorates(&app.settings),
        &Form(Vec::new()),
        &[],
    );
    html_page(
        StatusCode::OK,
        pages::page(
            lang,
            pick(lang, "إحالة طفل", "Refer a child"),
            Some(&s),
            body,
        ),
    )
}

async fn submit_referral(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let lang = lang_of(&headers);
    let s = match signed_in(&app, &headers, REFERRERS).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let f = Form::parse(&body);
    if let Some(r) = csrf_refused(lang, &s, &f) {
        return r;
    }
    let msg = referral::request(&f, &s.person.agency_id, &s.person.person_id);
    let req = match hub::request(&s.person, lang, msg) {
        Ok(r) => r,
        Err(e) => return failed(lang, Some(&s), e),
    };
    let title = pick(lang, "إحالة طفل", "Refer a child");
    let answer = pb::intake_client::IntakeClient::new(app.hub.channel())
        .submit_school_referral(req)
        .await;
    let r = match answer {
        Ok(r) => r.into_inner(),
        Err(status) if status.code() == tonic::Code::InvalidArgument => {
            let mut errors = referral::field_errors(&status);
            if errors.is_empty() {
                errors.push(("form", status.message().to_owned()));
            }
            let body = referral::form(lang, &s.csrf, &governorates(&app.settings), &f, &errors);
            return html_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                pages::page(lang, title, Some(&s), body),
            );
        }
        Err(status) => {
            tracing::warn!(person = %s.person.person_id, code = ?status.code(), "the hub refused a referral from the web");
            let next = pick(lang, "لم تُرسل الإحالة. أعد الإرسال من الصفحة السابقة بعد قليل (لن تتكرر).", "The referral was not sent. Send it again from the previous page shortly (it will not be doubled).");
            return html_page(
                StatusCode::BAD_GATEWAY,
                pages::problem(lang, Some(&s), status.message(), next),
            );
        }
    };
    let saved = sqlx::query(
        "INSERT INTO submissions (submission_id, person_id, agency_id, case_id, referral_id)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (submission_id) DO NOTHING",
    )
    .bind(f.get("submission_id"))
    .bind(&s.person.person_id)
    .bind(&s.person.agency_id)
    .bind(&r.case_id)
    .bind(&r.referral_id)
    .execute(&app.pool)
    .await;
    if let Err(e) = saved {
        // The referral is in the hub; only the school's list misses it.
        tracing::warn!(error = %e, "a referral sent from the web could not be listed");
    }
    tracing::info!(person = %s.person.person_id, case_id = %r.case_id, "referral sent from the web");
    html_page(
        StatusCode::OK,
        pages::page(lang, title, Some(&s), referral::accepted(lang, &r)),
    )
}

async fn list_referrals(State(app): State<App>, headers: HeaderMap) -> Response {
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
    let body = html! {
        h1 { (t("الإحالات المرسلة من جهتك", "Referrals sent by your agency")) }
        @if rows.is_empty() {
            p { (t("لا توجد إحالات بعد.", "No referrals yet.")) }
        } @else {
            table {
                thead { tr { th { (t("الحالة", "Case")) } th { (t("الإحالة", "Referral")) } th { (t("أُرسلت", "Sent")) } } }
                tbody {
                    @for (case_id, referral_id, at) in &rows {
                        tr { td { code { (case_id) } } td { code { (referral_id) } } td { time datetime=(at.to_rfc3339()) { (at.format("%Y-%m-%d %H:%M")) } } }
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
