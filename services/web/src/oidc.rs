//! Signing in through a ministry's own OpenID Connect provider (`[web.oidc]`): the
//! authorization code flow with PKCE (S256), `state` and `nonce`.
//!
//! - `GET /signin/oidc` keeps the state (by its hash), the PKCE verifier and the nonce in
//!   `oidc_starts` for 10 minutes, binds them to this browser with a cookie of its own,
//!   and sends the browser to the provider.
//! - `GET /signin/oidc/callback` takes that row once (deleting it as it reads it), checks
//!   the browser's cookie, exchanges the code, verifies the ID token (signature against
//!   the provider's keys, issuer, audience, expiry, nonce, `at_hash`), maps the claims to
//!   a person of the provider's agency and starts a session as a local sign-in does.
//!
//! Who the person is: after their first sign-in, the provider's `(iss, sub)`. The first
//! time, the login claim finds an existing account of the provider's agency (one made
//! with `himaya person add` is taken over, unless it is disabled or already tied to
//! another subject), or a new account is made. Either way the person's roles are set from
//! the roles claim at every sign-in, so the ministry's directory stays the one place where
//! they are granted or taken away; a person with no mapped role is refused. An account
//! made here has no password: it cannot sign in locally.
//!
//! The provider is reached with the web front's own HTTP client: a connect and an overall
//! timeout, no redirects followed, and no answer read past [`MAX_ANSWER_BYTES`]. An
//! unreachable provider never stops the web front: the sign-in page says the ministry's
//! sign-in is unavailable, and discovery is tried again later.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use himaya_proto::status::Lang;
use himaya_settings::{ExposeSecret, Settings};
use maud::{html, Markup, PreEscaped};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClientAuthMethod,
    CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AccessTokenHash, AdditionalClaims, AsyncHttpClient, AuthType, AuthorizationCode, Client,
    ClientId, ClientSecret, CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, HttpRequest, HttpResponse, IdTokenFields, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, StandardErrorResponse,
    StandardTokenResponse, SubjectIdentifier, TokenResponse, UserInfoClaims,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;

use crate::people::{Person, Role};
use crate::text::{lang_of, pick};
use crate::{failed, html_page, pages, signing, App, WebError};

/// The cookie binding a started sign-in to the browser that started it.
const BINDING_COOKIE: &str = "himaya_oidc";
/// How long a started sign-in waits for the provider's answer.
const START_MINUTES: i64 = 10;
/// The most started sign-ins waiting at once (each is an unauthenticated request's row).
const MAX_WAITING: i64 = 10_000;
/// The largest answer read from the provider (discovery, keys, tokens, user info).
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// The longest callback query read, and its parts.
const MAX_QUERY: usize = 4096;
const MAX_STATE: usize = 128;
const MAX_CODE: usize = 2048;
const MAX_ERROR: usize = 64;
/// The longest login and name taken from the provider's claims (as the sign-in form).
const MAX_LOGIN: usize = 100;
const MAX_NAME: usize = 200;
/// The most values of the roles claim looked at.
const MAX_ROLE_VALUES: usize = 200;
/// The provider's metadata and keys are fetched again after this long.
const METADATA_FRESH: Duration = Duration::from_secs(3600);
/// After a failed discovery, the next try waits at least this long.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// What a person made here has instead of a password hash: not a PHC string, so no
/// password ever verifies against it.
const NO_PASSWORD: &str = "!oidc";

/// Every claim of an ID token or user info answer, by name: the claims to read are named
/// by configuration, not known when compiling.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AllClaims {
    #[serde(flatten)]
    claims: serde_json::Map<String, serde_json::Value>,
}

impl AdditionalClaims for AllClaims {}

type Fields = IdTokenFields<
    AllClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type Tokens = StandardTokenResponse<Fields, CoreTokenType>;
type OidcClient = Client<
    AllClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    Tokens,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// What `[web.oidc]` says, checked and parsed once at start.
struct Config {
    issuer: IssuerUrl,
    client_id: ClientId,
    client_secret: ClientSecret,
    redirect: RedirectUrl,
    scopes: Vec<String>,
    agency_id: String,
    name_ar: String,
    name_en: String,
    login_claim: String,
    name_claim: String,
    roles_claim: String,
    roles: Vec<(String, Role)>,
}

/// The provider, when configured: its settings, the HTTP client that reaches it and what
/// discovery last found.
#[derive(Clone, Default)]
pub(crate) struct Oidc(Option<Arc<Inner>>);

struct Inner {
    config: Config,
    http: Http,
    found: RwLock<Found>,
    /// One discovery at a time; the others wait for its outcome.
    discovering: tokio::sync::Mutex<()>,
    /// When a background retry was last started from the sign-in page.
    retried: Mutex<Option<Instant>>,
}

enum Found {
    NotYet,
    Metadata(Box<CoreProviderMetadata>, Instant),
    Failed(Instant),
}

/// Whether the ministry's sign-in can be offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Availability {
    Ready,
    Unavailable,
}

fn config_error(key: &str, problem: &str) -> WebError {
    WebError::Invalid(format!("configuration key `web.oidc.{key}`: {problem}"))
}

impl Oidc {
    /// From the settings; off when `[web.oidc]` is absent. A setting that cannot work
    /// (an agency that is not configured, a URL that does not parse) stops the start.
    pub(crate) fn new(settings: &Settings) -> Result<Oidc, WebError> {
        let Some(o) = settings.web.oidc.as_ref() else {
            return Ok(Oidc(None));
        };
        let Some(agency) = settings.agencies.get(&o.agency_id) else {
            return Err(config_error("agency_id", "names no agency of [agencies]"));
        };
        let issuer =
            IssuerUrl::new(o.issuer.clone()).map_err(|_| config_error("issuer", "is not a URL"))?;
        let redirect = RedirectUrl::new(o.redirect_url.clone())
            .map_err(|_| config_error("redirect_url", "is not a URL"))?;
        let secret = o
            .client_secret
            .as_ref()
            .map(|s| s.expose_secret().to_owned())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| config_error("client_secret", "is required"))?;
        let mut roles = Vec::new();
        for m in &o.roles {
            let role = Role::parse(&m.role)
                .ok_or_else(|| config_error("roles", "names an unknown role"))?;
            roles.push((m.value.clone(), role));
        }
        let timeout = Duration::from_secs(o.timeout_secs.clamp(1, 60));
        let http = Http::new(timeout)?;
        let config = Config {
            issuer,
            client_id: ClientId::new(o.client_id.clone()),
            client_secret: ClientSecret::new(secret),
            redirect,
            scopes: o
                .scopes
                .iter()
                .filter(|s| *s != "openid")
                .cloned()
                .collect(),
            agency_id: o.agency_id.clone(),
            name_ar: o
                .display_name_ar
                .clone()
                .unwrap_or_else(|| agency.name_ar.clone()),
            name_en: o
                .display_name_en
                .clone()
                .unwrap_or_else(|| agency.name_en.clone()),
            login_claim: o.login_claim.clone(),
            name_claim: o.name_claim.clone(),
            roles_claim: o.roles_claim.clone(),
            roles,
        };
        Ok(Oidc(Some(Arc::new(Inner {
            config,
            http,
            found: RwLock::new(Found::NotYet),
            discovering: tokio::sync::Mutex::new(()),
            retried: Mutex::new(None),
        }))))
    }

    /// Starts discovering the provider in the background (bounded by the timeout), so
    /// that the first person to sign in does not wait for it. Nothing waits for it.
    pub(crate) fn warm_up(&self) {
        if let Some(inner) = self.0.clone() {
            tokio::spawn(async move {
                let _ = inner.metadata().await;
            });
        }
    }

    fn availability(&self) -> Option<Availability> {
        let inner = self.0.as_ref()?;
        let failed_at = match &*read(&inner.found) {
            Found::Failed(at) => *at,
            // Not tried yet (the first discovery is under way): offered; a click waits for
            // it, within the timeout.
            Found::NotYet | Found::Metadata(..) => return Some(Availability::Ready),
        };
        // Unavailable now; try again in the background, at most every RETRY_AFTER.
        if failed_at.elapsed() >= RETRY_AFTER {
            let mut last = inner.retried.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_none_or(|t| t.elapsed() >= RETRY_AFTER) {
                *last = Some(Instant::now());
                self.warm_up();
            }
        }
        Some(Availability::Unavailable)
    }
}

fn read(l: &RwLock<Found>) -> std::sync::RwLockReadGuard<'_, Found> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    /// The provider's metadata and keys: as last found while fresh, else discovered now
    /// (within the timeout). A failed refresh keeps what was found before.
    async fn metadata(&self) -> Option<CoreProviderMetadata> {
        if let Found::Metadata(m, at) = &*read(&self.found) {
            if at.elapsed() < METADATA_FRESH {
                return Some((**m).clone());
            }
        }
        let _one = self.discovering.lock().await;
        // Someone else may have just found it, or just failed to: then not again so soon
        // (each try may take the whole timeout).
        match &*read(&self.found) {
            Found::Metadata(m, at) if at.elapsed() < METADATA_FRESH => return Some((**m).clone()),
            Found::Failed(at) if at.elapsed() < RETRY_AFTER => return None,
            _ => {}
        }
        self.discover().await
    }

    /// Discovers now, whatever was found before (the provider's keys may have rotated).
    async fn discover(&self) -> Option<CoreProviderMetadata> {
        let found =
            CoreProviderMetadata::discover_async(self.config.issuer.clone(), &self.http).await;
        let mut slot = self.found.write().unwrap_or_else(|p| p.into_inner());
        match found {
            Ok(m) => {
                tracing::info!("the ministry's OpenID Connect provider was discovered");
                *slot = Found::Metadata(Box::new(m.clone()), Instant::now());
                Some(m)
            }
            Err(e) => {
                tracing::warn!(
                    reason = discovery_reason(&e),
                    "the ministry's OpenID Connect provider could not be discovered"
                );
                match &mut *slot {
                    // Stale but usable: keep it, and try again after RETRY_AFTER.
                    Found::Metadata(m, at) => {
                        *at = Instant::now()
                            .checked_sub(METADATA_FRESH.saturating_sub(RETRY_AFTER))
                            .unwrap_or_else(Instant::now);
                        Some((**m).clone())
                    }
                    _ => {
                        *slot = Found::Failed(Instant::now());
                        None
                    }
                }
            }
        }
    }

    fn client(&self, m: CoreProviderMetadata) -> OidcClient {
        let c = &self.config;
        // client_secret_basic unless the provider takes only client_secret_post.
        let post_only = m.token_endpoint_auth_methods_supported().is_some_and(|ms| {
            !ms.contains(&CoreClientAuthMethod::ClientSecretBasic)
                && ms.contains(&CoreClientAuthMethod::ClientSecretPost)
        });
        let client = OidcClient::from_provider_metadata(
            m,
            c.client_id.clone(),
            Some(c.client_secret.clone()),
        )
        .set_redirect_uri(c.redirect.clone());
        if post_only {
            client.set_auth_type(AuthType::RequestBody)
        } else {
            client
        }
    }
}

fn discovery_reason<E: std::error::Error>(e: &openidconnect::DiscoveryError<E>) -> &'static str {
    use openidconnect::DiscoveryError as D;
    match e {
        D::Request(_) => "request",
        D::Response(..) => "status",
        D::Parse(_) => "parse",
        D::Validation(_) => "validation",
        D::UrlParse(_) => "url",
        D::Other(_) => "other",
        _ => "other",
    }
}

// ---- HTTP to the provider --------------------------------------------------------------

/// The web front's client for the provider: timeouts, no redirects (a redirect could send
/// the client's secret or a code elsewhere), and a cap on what is read.
struct Http {
    client: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
enum HttpError {
    #[error("the provider could not be reached in time")]
    Send(#[source] reqwest::Error),
    #[error("the provider's answer is larger than {MAX_ANSWER_BYTES} bytes")]
    TooLarge,
    #[error("the request to the provider could not be made")]
    Build,
}

impl Http {
    fn new(timeout: Duration) -> Result<Http, WebError> {
        // reqwest takes rustls's process-wide provider (it is built with
        // `rustls-no-provider`, so no aws-lc-rs beside ring) and panics without one. `main`
        // sets ring first thing; this keeps a web front started any other way (the tests)
        // from reaching here without it. A provider already set is kept.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("himaya-web")
            .build()
            .map_err(|_| {
                WebError::Internal(
                    "the HTTP client for the OpenID Connect provider could not be built \
                     (are the system's CA certificates installed?)",
                )
            })?;
        Ok(Http { client })
    }

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let request = reqwest::Request::try_from(request).map_err(|_| HttpError::Build)?;
        let mut answer = self
            .client
            .execute(request)
            .await
            .map_err(HttpError::Send)?;
        if answer
            .content_length()
            .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
        {
            return Err(HttpError::TooLarge);
        }
        let mut builder = axum::http::Response::builder().status(answer.status());
        if let Some(h) = builder.headers_mut() {
            *h = std::mem::take(answer.headers_mut());
        }
        let mut body = Vec::new();
        while let Some(chunk) = answer.chunk().await.map_err(HttpError::Send)? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(HttpError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        builder.body(body).map_err(|_| HttpError::Build)
    }
}

impl<'c> AsyncHttpClient<'c> for Http {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

// ---- The sign-in page ------------------------------------------------------------------

/// The sign-in page with the ministry's sign-in after the local form, when configured:
/// a plain link, or, while the provider cannot be reached, a notice saying so.
pub(crate) fn on_sign_in_page(app: &App, lang: Lang, page: Markup) -> Markup {
    let (Some(inner), Some(availability)) = (app.oidc.0.as_ref(), app.oidc.availability()) else {
        return page;
    };
    let t = |ar, en| pick(lang, ar, en);
    let name = match lang {
        Lang::Arabic => &inner.config.name_ar,
        Lang::English => &inner.config.name_en,
    };
    let block = html! {
        section.oidc aria-labelledby="oidc-title" {
            h2 #oidc-title { (t("أو بحساب جهتك", "Or with your ministry's account")) }
            @match availability {
                Availability::Ready => p {
                    a href="/signin/oidc" { (t("الدخول عبر ", "Sign in with ")) bdi { (name) } }
                },
                Availability::Unavailable => p.notice role="status" {
                    (t("الدخول عبر ", "Signing in with ")) bdi { (name) }
                    (t(" غير متاح الآن. ادخل باسم المستخدم وكلمة المرور، أو حاول بعد قليل.",
                       " is unavailable right now. Sign in with your login and password, or try again shortly."))
                },
            }
        }
    };
    // After the sign-in form: the first `</form>` of a page with no form in its header
    // (no one is signed in on it). Names in the page are escaped, so no value can hold one.
    let html = page.into_string();
    match html.find("</form>") {
        Some(at) => {
            let at = at + "</form>".len();
            PreEscaped(format!(
                "{}{}{}",
                &html[..at],
                block.into_string(),
                &html[at..]
            ))
        }
        None => PreEscaped(html),
    }
}

// ---- Start -----------------------------------------------------------------------------

/// `GET /signin/oidc`: to the provider, with a new state, PKCE challenge and nonce.
pub(crate) async fn start(State(app): State<App>, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    let Some(inner) = app.oidc.0.clone() else {
        return problem(lang, StatusCode::NOT_FOUND, Problem::NotConfigured);
    };
    let Some(metadata) = inner.metadata().await else {
        record(&app.pool, None, None, "oidc_unavailable").await;
        return problem(lang, StatusCode::SERVICE_UNAVAILABLE, Problem::Unavailable);
    };
    match begin(&app, &inner, metadata, lang).await {
        Ok(r) => r,
        Err(Begin::Busy) => {
            tracing::warn!("ministry sign-in refused: too many started sign-ins waiting");
            problem(lang, StatusCode::SERVICE_UNAVAILABLE, Problem::Busy)
        }
        Err(Begin::Failed(e)) => failed(lang, None, e),
    }
}

enum Begin {
    Busy,
    Failed(WebError),
}

impl From<sqlx::Error> for Begin {
    fn from(e: sqlx::Error) -> Self {
        Begin::Failed(e.into())
    }
}

async fn begin(
    app: &App,
    inner: &Inner,
    metadata: CoreProviderMetadata,
    lang: Lang,
) -> Result<Response, Begin> {
    sqlx::query("DELETE FROM oidc_starts WHERE expires_at < now() - interval '1 hour'")
        .execute(&app.pool)
        .await?;
    let waiting: i64 =
        sqlx::query_scalar("SELECT count(*) FROM oidc_starts WHERE expires_at > now()")
            .fetch_one(&app.pool)
            .await?;
    if waiting >= MAX_WAITING {
        return Err(Begin::Busy);
    }
    let client = inner.client(metadata);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (state, nonce, binding) = (
        crate::session::random_token(),
        crate::session::random_token(),
        crate::session::random_token(),
    );
    let (s, n) = (state.clone(), nonce.clone());
    let mut request = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || CsrfToken::new(s),
            move || Nonce::new(n),
        )
        .set_pkce_challenge(challenge);
    for scope in &inner.config.scopes {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    let (url, _, _) = request.url();
    sqlx::query(
        "INSERT INTO oidc_starts (state_hash, browser_hash, pkce_verifier, nonce, lang, expires_at)
         VALUES ($1, $2, $3, $4, $5, now() + make_interval(mins => $6))",
    )
    .bind(hash(&state))
    .bind(hash(&binding))
    .bind(verifier.secret())
    .bind(&nonce)
    .bind(lang_code(lang))
    .bind(START_MINUTES as i32)
    .execute(&app.pool)
    .await?;
    // Built by hand: axum's Redirect panics on a value that is not a header value.
    let Ok(location) = HeaderValue::from_str(url.as_str()) else {
        return Err(Begin::Failed(WebError::Internal(
            "the provider's authorization URL is not a header value",
        )));
    };
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut().insert(header::LOCATION, location);
    let cookie = binding_cookie(
        &binding,
        app.settings.web.secure_cookies,
        START_MINUTES * 60,
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(r)
}

/// The binding cookie: `SameSite=Lax`, since the provider's redirect back is a navigation
/// from another site (a `Strict` cookie would not come with it); only for the callback.
fn binding_cookie(value: &str, secure: bool, max_age: i64) -> String {
    let mut c = format!(
        "{BINDING_COOKIE}={value}; Path=/signin/oidc; HttpOnly; SameSite=Lax; Max-Age={max_age}"
    );
    if secure {
        c.push_str("; Secure");
    }
    c
}

// ---- Callback --------------------------------------------------------------------------

/// The callback's query, each part bounded.
#[derive(Debug, Default, PartialEq, Eq)]
struct Answer {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
}

/// The callback's query, or `None` when it is too long, repeats a part, or a part is too
/// long: a real provider sends nothing of the kind.
fn parse_answer(query: Option<&str>) -> Option<Answer> {
    let query = query.unwrap_or("");
    if query.len() > MAX_QUERY {
        return None;
    }
    let mut a = Answer::default();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let (slot, max) = match &*k {
            "state" => (&mut a.state, MAX_STATE),
            "code" => (&mut a.code, MAX_CODE),
            "error" => (&mut a.error, MAX_ERROR),
            // iss, session_state, error_description, error_uri: not needed, never shown.
            _ => continue,
        };
        if slot.is_some() || v.len() > max {
            return None;
        }
        *slot = Some(v.into_owned());
    }
    Some(a)
}

/// What went wrong, as the person is told it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    NotConfigured,
    Unavailable,
    Busy,
    /// No such started sign-in, or not from this browser, or a malformed answer.
    NotStartedHere,
    Expired,
    Refused,
    ProviderFailed,
    NoLogin,
    NoRole,
    AccountRefused,
}

fn problem(lang: Lang, status: StatusCode, p: Problem) -> Response {
    let t = |ar, en| pick(lang, ar, en);
    let (what, next) = match p {
        Problem::NotConfigured => (
            t("الدخول عبر حساب الجهة غير مفعّل في هذه المنصة.", "Signing in with a ministry's account is not set up on this hub."),
            t("ادخل باسم المستخدم وكلمة المرور من صفحة الدخول.", "Sign in with your login and password on the sign-in page."),
        ),
        Problem::Unavailable => (
            t("الدخول عبر حساب الجهة غير متاح الآن: تعذر الوصول إلى خدمة الدخول لدى الجهة.", "Signing in with your ministry's account is unavailable right now: its sign-in service could not be reached."),
            t("حاول بعد قليل، أو ادخل باسم المستخدم وكلمة المرور إن كان لديك حساب محلي.", "Try again shortly, or sign in with your login and password if you have a local account."),
        ),
        Problem::Busy => (
            t("المنصة مشغولة بطلبات دخول كثيرة الآن.", "The hub is handling too many sign-ins right now."),
            t("حاول بعد دقائق قليلة.", "Try again in a few minutes."),
        ),
        Problem::NotStartedHere => (
            t("لم يبدأ طلب الدخول هذا من هذا المتصفح، أو استُخدم من قبل.", "This sign-in was not started in this browser, or it was already used."),
            t("افتح صفحة الدخول واختر الدخول عبر حساب جهتك من جديد.", "Open the sign-in page and choose your ministry's sign-in again."),
        ),
        Problem::Expired => (
            t("انتهت مهلة طلب الدخول (10 دقائق).", "This sign-in took too long (over 10 minutes)."),
            t("افتح صفحة الدخول واختر الدخول عبر حساب جهتك من جديد.", "Open the sign-in page and choose your ministry's sign-in again."),
        ),
        Problem::Refused => (
            t("ألغيت عملية الدخول لدى الجهة أو رُفضت.", "The sign-in was cancelled or refused at your ministry."),
            t("ابدأ من جديد من صفحة الدخول؛ إن تكرر الرفض فاسأل مسؤول الحسابات في جهتك.", "Start again from the sign-in page; if it is refused again, ask your ministry's account administrator."),
        ),
        Problem::ProviderFailed => (
            t("لم تُجب خدمة الدخول لدى الجهة كما ينبغي، فلم يكتمل الدخول.", "Your ministry's sign-in service did not answer as expected, so you are not signed in."),
            t("ابدأ من جديد من صفحة الدخول بعد قليل؛ إن تكرر الخطأ فأبلغ مشغلي المنصة.", "Start again from the sign-in page shortly; if it happens again, tell the hub's operators."),
        ),
        Problem::NoLogin => (
            t("لم تُرسل الجهة اسم المستخدم الخاص بك، فلا يمكن معرفة حسابك.", "Your ministry did not send your login, so your account cannot be known."),
            t("اطلب من مسؤول الحسابات في جهتك إكمال بيانات حسابك.", "Ask your ministry's account administrator to complete your account."),
        ),
        Problem::NoRole => (
            t("ليس لحسابك لدى الجهة أي دور في منصة حماية.", "Your ministry's account has no role in Himaya."),
            t("اطلب من مسؤول الحسابات في جهتك منحك الدور المناسب، ثم ادخل من جديد.", "Ask your ministry's account administrator to give you the right role, then sign in again."),
        ),
        Problem::AccountRefused => (
            t("لا يمكن الدخول بهذا الحساب في منصة حماية: إنه موقوف، أو يخص جهة أخرى أو شخصًا آخر.", "This account cannot sign in to Himaya: it is disabled, or belongs to another agency or person."),
            t("اطلب من مسؤول الحسابات في جهتك مراجعة حسابك.", "Ask your ministry's account administrator to look at your account."),
        ),
    };
    html_page(status, pages::problem(lang, None, what, next))
}

fn clear_binding(r: &mut Response, secure: bool) {
    if let Ok(v) = HeaderValue::from_str(&binding_cookie("", secure, 0)) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// `GET /signin/oidc/callback`: the provider's answer. The started sign-in is over,
/// whatever happens: its binding cookie is cleared.
pub(crate) async fn callback(
    State(app): State<App>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let mut r = answered(&app, &headers, query.as_deref()).await;
    clear_binding(&mut r, app.settings.web.secure_cookies);
    r
}

async fn answered(app: &App, headers: &HeaderMap, query: Option<&str>) -> Response {
    let mut lang = lang_of(headers);
    let Some(inner) = app.oidc.0.clone() else {
        return problem(lang, StatusCode::NOT_FOUND, Problem::NotConfigured);
    };
    let Some(answer) = parse_answer(query) else {
        record(&app.pool, None, None, "oidc_bad_answer").await;
        return problem(lang, StatusCode::BAD_REQUEST, Problem::NotStartedHere);
    };
    let Some(state) = answer.state.as_deref() else {
        record(&app.pool, None, None, "oidc_no_state").await;
        return problem(lang, StatusCode::BAD_REQUEST, Problem::NotStartedHere);
    };
    // Taken once: deleted as it is read, so a replayed answer finds nothing.
    let row = sqlx::query_as::<_, StartedRow>(
        "DELETE FROM oidc_starts WHERE state_hash = $1
         RETURNING browser_hash, pkce_verifier, nonce, lang, expires_at < now() AS expired",
    )
    .bind(hash(state))
    .fetch_optional(&app.pool)
    .await;
    let started = match row {
        Ok(Some(row)) => Started::from(row),
        Ok(None) => {
            record(&app.pool, None, None, "oidc_unknown_state").await;
            return problem(lang, StatusCode::BAD_REQUEST, Problem::NotStartedHere);
        }
        Err(e) => return failed(lang, None, e.into()),
    };
    lang = started.lang;
    let from_this_browser = crate::session::cookie(headers, BINDING_COOKIE)
        .is_some_and(|b| bool::from(hash(&b).as_bytes().ct_eq(started.browser_hash.as_bytes())));
    if !from_this_browser {
        record(&app.pool, None, None, "oidc_other_browser").await;
        return problem(lang, StatusCode::BAD_REQUEST, Problem::NotStartedHere);
    }
    if started.expired {
        record(&app.pool, None, None, "oidc_expired").await;
        return problem(lang, StatusCode::BAD_REQUEST, Problem::Expired);
    }
    if answer.error.is_some() {
        // The provider's own words (error, error_description) are never shown or logged.
        record(&app.pool, None, None, "oidc_provider_refused").await;
        return problem(lang, StatusCode::FORBIDDEN, Problem::Refused);
    }
    let Some(code) = answer.code else {
        record(&app.pool, None, None, "oidc_no_code").await;
        return problem(lang, StatusCode::BAD_REQUEST, Problem::NotStartedHere);
    };
    let Some(metadata) = inner.metadata().await else {
        record(&app.pool, None, None, "oidc_unavailable").await;
        return problem(lang, StatusCode::SERVICE_UNAVAILABLE, Problem::Unavailable);
    };
    let claims = match identify(&inner, metadata, code, started).await {
        Ok(c) => c,
        Err(outcome) => {
            record(&app.pool, None, None, outcome).await;
            return problem(lang, StatusCode::BAD_GATEWAY, Problem::ProviderFailed);
        }
    };
    let config = &inner.config;
    let Some(login) = claims.text(&config.login_claim, MAX_LOGIN) else {
        record(&app.pool, None, None, "oidc_no_login").await;
        return problem(lang, StatusCode::FORBIDDEN, Problem::NoLogin);
    };
    let roles = claims.roles(config);
    if roles.is_empty() {
        record(&app.pool, Some(&login), None, "oidc_no_role").await;
        return problem(lang, StatusCode::FORBIDDEN, Problem::NoRole);
    }
    let name = claims
        .text(&config.name_claim, MAX_NAME)
        .unwrap_or_else(|| login.clone());
    let person = match person_for(&app.pool, config, &claims.subject, &login, &name, &roles).await {
        Ok(Ok(p)) => p,
        Ok(Err((person_id, outcome))) => {
            record(&app.pool, Some(&login), person_id.as_deref(), outcome).await;
            return problem(lang, StatusCode::FORBIDDEN, Problem::AccountRefused);
        }
        Err(e) => return failed(lang, None, e),
    };
    record(
        &app.pool,
        Some(&login),
        Some(&person.person_id),
        "oidc_signed_in",
    )
    .await;
    tracing::info!(person = %person.person_id, agency = %person.agency_id, "signed in through the ministry's provider");
    signed_in_page(app, lang, &person).await
}

/// What the start left for the callback.
struct Started {
    browser_hash: String,
    verifier: String,
    nonce: String,
    lang: Lang,
    expired: bool,
}

/// An `oidc_starts` row as the callback takes it.
#[derive(sqlx::FromRow)]
struct StartedRow {
    browser_hash: String,
    pkce_verifier: String,
    nonce: String,
    lang: String,
    expired: bool,
}

impl From<StartedRow> for Started {
    fn from(r: StartedRow) -> Started {
        Started {
            browser_hash: r.browser_hash,
            verifier: r.pkce_verifier,
            nonce: r.nonce,
            lang: if r.lang == "en" {
                Lang::English
            } else {
                Lang::Arabic
            },
            expired: r.expired,
        }
    }
}

/// The verified claims of the person signing in.
struct Claims {
    subject: String,
    /// The ID token's claims; the user info's, for a claim the ID token does not carry.
    id_token: serde_json::Map<String, serde_json::Value>,
    user_info: serde_json::Map<String, serde_json::Value>,
}

impl Claims {
    fn get(&self, name: &str) -> Option<&serde_json::Value> {
        self.id_token.get(name).or_else(|| self.user_info.get(name))
    }

    /// A claim as one line of text of at most `max` characters (`sub` included).
    fn text(&self, name: &str, max: usize) -> Option<String> {
        let v = if name == "sub" {
            self.subject.as_str()
        } else {
            self.get(name)?.as_str()?
        };
        let v = v.trim();
        (!v.is_empty() && v.chars().count() <= max && !v.chars().any(char::is_control))
            .then(|| v.to_owned())
    }

    /// The roles the roles claim's values give (a list of strings, or one string).
    fn roles(&self, config: &Config) -> Vec<Role> {
        let values: Vec<&str> = match self.get(&config.roles_claim) {
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .take(MAX_ROLE_VALUES)
                .filter_map(|v| v.as_str())
                .collect(),
            Some(serde_json::Value::String(s)) => vec![s.as_str()],
            _ => vec![],
        };
        let mut roles = Vec::new();
        for (value, role) in &config.roles {
            if values.contains(&value.as_str()) && !roles.contains(role) {
                roles.push(*role);
            }
        }
        // In the order of Role::ALL, whatever the configuration's order.
        Role::ALL
            .iter()
            .copied()
            .filter(|r| roles.contains(r))
            .collect()
    }
}

/// Exchanges the code and verifies what comes back; the outcome to record when it fails.
async fn identify(
    inner: &Inner,
    metadata: CoreProviderMetadata,
    code: String,
    started: Started,
) -> Result<Claims, &'static str> {
    let client = inner.client(metadata);
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|_| "oidc_no_token_endpoint")?
        .set_pkce_verifier(PkceCodeVerifier::new(started.verifier))
        .request_async(&inner.http)
        .await
        .map_err(|e| match e {
            openidconnect::RequestTokenError::ServerResponse(_) => "oidc_code_refused",
            openidconnect::RequestTokenError::Request(_) => "oidc_token_unreachable",
            _ => "oidc_token_unreadable",
        })?;
    let id_token = tokens.id_token().ok_or("oidc_no_id_token")?;
    let nonce = Nonce::new(started.nonce);
    let mut client = client;
    let mut verified = {
        let verifier = client.id_token_verifier();
        id_token.claims(&verifier, &nonce).cloned()
    };
    // A key the provider's key set does not have: it may have rotated its keys since they
    // were fetched; fetch them once more.
    if let Err(openidconnect::ClaimsVerificationError::SignatureVerification(
        openidconnect::SignatureVerificationError::NoMatchingKey,
    )) = verified
    {
        if let Some(m) = inner.discover().await {
            client = inner.client(m);
            verified = id_token
                .claims(&client.id_token_verifier(), &nonce)
                .cloned();
        }
    }
    let claims = verified.map_err(|e| {
        use openidconnect::ClaimsVerificationError as C;
        match e {
            C::Expired(_) => "oidc_id_token_expired",
            C::InvalidAudience(_) => "oidc_id_token_audience",
            C::InvalidIssuer(_) => "oidc_id_token_issuer",
            C::InvalidNonce(_) => "oidc_id_token_nonce",
            C::SignatureVerification(_) => "oidc_id_token_signature",
            _ => "oidc_id_token_refused",
        }
    })?;
    // at_hash, when the provider sends it: the access token is the one this ID token was
    // issued with (the user info is fetched with it).
    if let Some(expected) = claims.access_token_hash() {
        let verifier = client.id_token_verifier();
        let alg = id_token
            .signing_alg()
            .map_err(|_| "oidc_id_token_signature")?;
        let key = id_token
            .signing_key(&verifier)
            .map_err(|_| "oidc_id_token_signature")?;
        let actual = AccessTokenHash::from_token(tokens.access_token(), alg, key)
            .map_err(|_| "oidc_id_token_signature")?;
        if actual != *expected {
            return Err("oidc_access_token_substituted");
        }
    }
    let subject = claims.subject().as_str().to_owned();
    let mut found = Claims {
        subject: subject.clone(),
        id_token: claims.additional_claims().claims.clone(),
        user_info: serde_json::Map::new(),
    };
    standard_claims_into(&mut found.id_token, &claims);
    // The claims the mapping reads may be only in the user info (a provider puts only
    // `sub` in the ID token unless asked): fetched then, for this subject only.
    let config = &inner.config;
    let missing = [&config.login_claim, &config.roles_claim]
        .iter()
        .any(|c| c.as_str() != "sub" && found.id_token.get(c.as_str()).is_none());
    if missing && client.user_info_url().is_some() {
        let info: UserInfoClaims<AllClaims, CoreGenderClaim> = client
            .user_info(
                tokens.access_token().clone(),
                Some(SubjectIdentifier::new(subject)),
            )
            .map_err(|_| "oidc_user_info_unreachable")?
            .request_async(&inner.http)
            .await
            .map_err(|e| match e {
                openidconnect::UserInfoError::ClaimsVerification(_) => "oidc_user_info_subject",
                openidconnect::UserInfoError::Request(_) => "oidc_user_info_unreachable",
                _ => "oidc_user_info_unreadable",
            })?;
        found.user_info = info.additional_claims().claims.clone();
        if let Some(u) = info.preferred_username() {
            found
                .user_info
                .entry("preferred_username")
                .or_insert_with(|| u.as_str().into());
        }
        if let Some(n) = info.name().and_then(|n| n.get(None)) {
            found
                .user_info
                .entry("name")
                .or_insert_with(|| n.as_str().into());
        }
        if let Some(e) = info.email() {
            found
                .user_info
                .entry("email")
                .or_insert_with(|| e.as_str().into());
        }
    }
    Ok(found)
}

/// The standard claims the mapping may name, whether or not the flattened map kept them.
fn standard_claims_into(
    map: &mut serde_json::Map<String, serde_json::Value>,
    claims: &openidconnect::IdTokenClaims<AllClaims, CoreGenderClaim>,
) {
    if let Some(u) = claims.preferred_username() {
        map.entry("preferred_username")
            .or_insert_with(|| u.as_str().into());
    }
    if let Some(n) = claims.name().and_then(|n| n.get(None)) {
        map.entry("name").or_insert_with(|| n.as_str().into());
    }
    if let Some(e) = claims.email() {
        map.entry("email").or_insert_with(|| e.as_str().into());
    }
}

/// An existing account as [`person_for`] matches it against the provider's answer.
#[derive(sqlx::FromRow)]
struct Linked {
    person_id: String,
    agency_id: String,
    disabled: bool,
    oidc_issuer: Option<String>,
    oidc_subject: Option<String>,
}

/// The person signing in: found by `(issuer, subject)`, else by login in the provider's
/// agency (and tied to the subject), else made; roles set from the provider either way.
/// `Ok(Err((person, outcome)))`: refused.
async fn person_for(
    pool: &PgPool,
    config: &Config,
    subject: &str,
    login: &str,
    name: &str,
    roles: &[Role],
) -> Result<Result<Person, (Option<String>, &'static str)>, WebError> {
    let issuer = config.issuer.as_str();
    let role_names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    let mut tx = pool.begin().await?;
    let by_subject = sqlx::query_as::<_, Linked>(
        "SELECT person_id, agency_id, disabled, oidc_issuer, oidc_subject FROM persons
          WHERE oidc_issuer = $1 AND oidc_subject = $2 FOR UPDATE",
    )
    .bind(issuer)
    .bind(subject)
    .fetch_optional(&mut *tx)
    .await?;
    let by_login = match by_subject {
        Some(_) => None,
        None => {
            sqlx::query_as::<_, Linked>(
                "SELECT person_id, agency_id, disabled, oidc_issuer, oidc_subject FROM persons
                  WHERE login = $1 FOR UPDATE",
            )
            .bind(login)
            .fetch_optional(&mut *tx)
            .await?
        }
    };
    let person_id = match (by_subject, by_login) {
        (Some(row), _) | (None, Some(row)) => {
            let Linked {
                person_id,
                agency_id,
                disabled,
                oidc_issuer: linked_issuer,
                oidc_subject: linked,
            } = row;
            if agency_id != config.agency_id {
                return Ok(Err((Some(person_id), "oidc_other_agency")));
            }
            if disabled {
                return Ok(Err((Some(person_id), "oidc_disabled")));
            }
            // Tied to someone at a provider already: only that someone.
            if linked.is_some_and(|s| s != subject) || linked_issuer.is_some_and(|i| i != issuer) {
                return Ok(Err((Some(person_id), "oidc_other_subject")));
            }
            // The name follows the provider only when it sent one; the login stays what it
            // was (what colleagues know the person by).
            sqlx::query(
                "UPDATE persons SET roles = $2, oidc_issuer = $3, oidc_subject = $4,
                        name_ar = CASE WHEN $5 THEN $6 ELSE name_ar END
                  WHERE person_id = $1",
            )
            .bind(&person_id)
            .bind(&role_names)
            .bind(issuer)
            .bind(subject)
            .bind(name != login)
            .bind(name)
            .execute(&mut *tx)
            .await?;
            person_id
        }
        (None, None) => {
            // Made here: no password (never verifies) and no second factor. Supervisors,
            // operators and administrators need one when signing in locally; through the
            // provider it is the provider that authenticated them, with whatever factors
            // the ministry requires there.
            let person_id = format!("psn_{}", uuid::Uuid::now_v7().simple());
            sqlx::query(
                "INSERT INTO persons (person_id, agency_id, login, name_ar, roles, password_hash,
                                      oidc_issuer, oidc_subject)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&person_id)
            .bind(&config.agency_id)
            .bind(login)
            .bind(name)
            .bind(&role_names)
            .bind(NO_PASSWORD)
            .bind(issuer)
            .bind(subject)
            .execute(&mut *tx)
            .await?;
            person_id
        }
    };
    tx.commit().await?;
    match crate::people::load(pool, &person_id).await? {
        Some(p) => Ok(Ok(p)),
        None => Ok(Err((Some(person_id), "oidc_disabled"))),
    }
}

/// Signed in: a new session (as at a local sign-in), and a page that moves on to the start page. Not a redirect: the browser arrived here from the
/// provider's site, and a redirect would carry that on, so the start page would be
/// requested without the new (`SameSite=Strict`) session cookie. A refresh from this page
/// is a navigation of this site's own.
async fn signed_in_page(app: &App, lang: Lang, person: &Person) -> Response {
    let t = |ar, en| pick(lang, ar, en);
    let mut r = html_page(
        StatusCode::OK,
        pages::page(
            lang,
            t("تم الدخول", "Signed in"),
            None,
            html! {
                h1 { (t("تم الدخول", "Signed in")) }
                p { a href="/" { (t("المتابعة إلى الصفحة الرئيسية", "Continue to the start page")) } }
            },
        ),
    );
    if let Err(e) = signing::start_session(app, &person.person_id, &mut r).await {
        return failed(lang, None, e);
    }
    r.headers_mut()
        .insert(header::REFRESH, HeaderValue::from_static("0; url=/"));
    r
}

// ---- Records ---------------------------------------------------------------------------

fn hash(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn lang_code(lang: Lang) -> &'static str {
    match lang {
        Lang::Arabic => "ar",
        Lang::English => "en",
    }
}

/// One row in `signins`, as a local sign-in records (the login only as a hash; none known
/// yet: the hash of nothing). A failure to record is logged, not shown: the person's
/// answer does not depend on it.
async fn record(pool: &PgPool, login: Option<&str>, person_id: Option<&str>, outcome: &str) {
    let login_hash = hash(login.unwrap_or(""));
    let done =
        sqlx::query("INSERT INTO signins (login_hash, person_id, outcome) VALUES ($1, $2, $3)")
            .bind(&login_hash)
            .bind(person_id)
            .bind(outcome)
            .execute(pool)
            .await;
    if let Err(e) = done {
        tracing::error!(error = %e, outcome, "a ministry sign-in could not be recorded");
    }
    if outcome != "oidc_signed_in" {
        tracing::warn!(
            person = person_id.unwrap_or("-"),
            outcome,
            "ministry sign-in refused"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_take_every_role_and_only_those() {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let mut settings = Settings::load(&dir, None).unwrap();
        let with = |role: &str| {
            serde_json::from_value(serde_json::json!({
                "issuer": "https://id.example", "client_id": "himaya", "client_secret": "s",
                "redirect_url": "https://h.example/signin/oidc/callback",
                "agency_id": "mosa-cairo", "roles": [{"value": "g", "role": role}],
            }))
            .unwrap()
        };
        for r in Role::ALL {
            settings.web.oidc = Some(with(r.as_str()));
            settings.validate().unwrap();
            assert!(Oidc::new(&settings).unwrap().0.is_some());
        }
        settings.web.oidc = Some(with("operator"));
        assert!(settings.validate().is_err());
    }

    #[test]
    fn the_callback_query_is_bounded_and_read_once() {
        let a = parse_answer(Some("code=c1&state=s1&iss=x&session_state=y")).unwrap();
        assert_eq!(a.code.as_deref(), Some("c1"));
        assert_eq!(a.state.as_deref(), Some("s1"));
        assert_eq!(parse_answer(None), Some(Answer::default()));
        assert_eq!(parse_answer(Some("state=a&state=b")), None);
        assert_eq!(
            parse_answer(Some(&format!("state={}", "a".repeat(129)))),
            None
        );
        assert_eq!(parse_answer(Some(&"x".repeat(MAX_QUERY + 1))), None);
        let e = parse_answer(Some(
            "error=access_denied&error_description=%3Cb%3E&state=s",
        ))
        .unwrap();
        assert_eq!(e.error.as_deref(), Some("access_denied"));
    }

    #[test]
    fn every_claim_of_a_token_is_kept_by_name() {
        let json = serde_json::json!({
            "iss": "https://id.example", "aud": "himaya", "exp": 2_000_000_000, "iat": 1_700_000_000,
            "sub": "u-1", "preferred_username": "rana", "name": "رنا", "groups": ["cw", "x"],
            "dept": "cairo"
        });
        let c: openidconnect::IdTokenClaims<AllClaims, CoreGenderClaim> =
            serde_json::from_value(json).unwrap();
        let mut map = c.additional_claims().claims.clone();
        standard_claims_into(&mut map, &c);
        assert_eq!(map["groups"], serde_json::json!(["cw", "x"]));
        assert_eq!(map["dept"], "cairo");
        assert_eq!(map["preferred_username"], "rana");
        assert_eq!(map["name"], "رنا");
        assert_eq!(c.subject().as_str(), "u-1");
    }

    #[test]
    fn roles_come_from_the_mapping_only() {
        let config = Config {
            issuer: IssuerUrl::new("https://id.example".into()).unwrap(),
            client_id: ClientId::new("himaya".into()),
            client_secret: ClientSecret::new("s".into()),
            redirect: RedirectUrl::new("https://h.example/signin/oidc/callback".into()).unwrap(),
            scopes: vec![],
            agency_id: "mosa-cairo".into(),
            name_ar: String::new(),
            name_en: String::new(),
            login_claim: "preferred_username".into(),
            name_claim: "name".into(),
            roles_claim: "groups".into(),
            roles: vec![
                ("CW".into(), Role::Caseworker),
                ("leads".into(), Role::Supervisor),
                ("leads".into(), Role::Caseworker),
            ],
        };
        let claims = |groups: serde_json::Value| Claims {
            subject: "u-1".into(),
            id_token: serde_json::json!({ "groups": groups, "preferred_username": " rana\u{7}" })
                .as_object()
                .unwrap()
                .clone(),
            user_info: serde_json::Map::new(),
        };
        assert_eq!(
            claims(serde_json::json!(["CW"])).roles(&config),
            [Role::Caseworker]
        );
        assert_eq!(
            claims(serde_json::json!(["leads", "CW"])).roles(&config),
            [Role::Caseworker, Role::Supervisor]
        );
        assert_eq!(claims(serde_json::json!("leads")).roles(&config).len(), 2);
        assert!(claims(serde_json::json!(["cw", "admin"]))
            .roles(&config)
            .is_empty());
        assert!(claims(serde_json::json!(7)).roles(&config).is_empty());
        let c = claims(serde_json::json!([]));
        assert_eq!(c.text("sub", MAX_LOGIN).as_deref(), Some("u-1"));
        assert_eq!(
            c.text("preferred_username", MAX_LOGIN),
            None,
            "a control character"
        );
        assert_eq!(c.text("missing", MAX_LOGIN), None);
    }

    #[test]
    fn the_binding_cookie_comes_back_from_the_provider_and_only_to_the_callback() {
        let c = binding_cookie("v", true, 600);
        assert!(c.contains("SameSite=Lax") && c.contains("Path=/signin/oidc"));
        assert!(c.contains("HttpOnly") && c.contains("Secure") && c.contains("Max-Age=600"));
    }
}
