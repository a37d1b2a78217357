//! The agencies' webhooks: where an agency's system posts its answers, referrals and
//! escalations over HTTP. Each request is authenticated as one agency (its bearer token),
//! limited in size, checked as UTF-8 JSON, read by that agency's pure inbound mapping, and
//! then enters the hub through the same gRPC services as any other caller, as that agency:
//! the gateway's rules, the intake's validation and the consent layer all apply unchanged.
//! Each message is processed once per agency message id (`connectors.inbound_messages`).

mod hub_client;
pub mod poll;
mod routes;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use himaya_component::HttpServer;
use himaya_connect::{InboundError, Standard};
use himaya_proto::status::{msg, Lang, Msg};
use himaya_settings::{AgencySettings, ExposeSecret, Protocol, Settings};
use http_api_problem::{HttpApiProblem, PROBLEM_JSON_MEDIA_TYPE};
use serde_json::{json, Value};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

pub use hub_client::HubClient;
pub use routes::Route;

#[derive(Clone)]
pub struct App {
    settings: Arc<Settings>,
    pool: PgPool,
    hub: Arc<HubClient>,
}

/// Starts the pollers of agencies that cannot push, and returns the webhook server to
/// serve on `connectors.webhook_listen` (when set).
pub fn start(
    settings: Arc<Settings>,
    pool: PgPool,
    (executor, credentials): (Arc<himaya_connect::Executor>, poll::CredentialsById),
    hub: HubClient,
    standards: &[Arc<dyn Standard>],
    shutdown: CancellationToken,
) -> (Vec<JoinHandle<()>>, Option<HttpServer>) {
    let app = App {
        settings: settings.clone(),
        pool,
        hub: Arc::new(hub),
    };
    let metrics = executor.metrics().clone();
    let tasks = poll::start(&app, executor, &credentials, &shutdown);
    let Some(listen) = settings.connectors.webhook_listen else {
        return (tasks, None);
    };
    let mut router = Router::new();
    for route in Route::all(standards)
        .into_iter()
        .filter(|r| !r.is(Route::fhir_task()))
    {
        router = router.route(
            &route.path(),
            post(move |s, p, h, b| receive(route, s, p, h, b)),
        );
    }
    let router = router
        // FHIR's create (`POST [base]/Task`) and update in place (`PUT [base]/Task/<id>`),
        // and what the endpoint does (`GET [base]/metadata`).
        .route(
            &Route::fhir_task().path(),
            post(|s, p, h, b| receive_task(true, s, p, h, b)),
        )
        .route(
            "/agencies/{agency}/fhir/Task/{id}",
            put(|s, Path((agency, _)): Path<(String, String)>, h, b| {
                receive_task(false, s, Path(agency), h, b)
            }),
        )
        .route("/agencies/{agency}/fhir/metadata", get(fhir_metadata))
        .route(
            "/agencies/{agency}/hotline/cases/{case_id}",
            get(routes::follow_up),
        )
        // The body is read by `receive` itself, after the token is checked.
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(metrics, counted))
        .with_state(app);
    let server = HttpServer {
        name: "webhooks",
        title: "agency webhooks",
        setting: "connectors.webhook_listen",
        listen,
        router,
    };
    (tasks, Some(server))
}

/// Counts every answer by the route's template (never the path as sent: no agency id
/// outside the directory, no case id) and its status (`himaya_webhook_calls_total`).
async fn counted(
    State(metrics): State<Arc<himaya_metrics::Metrics>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(
            || himaya_metrics::Word::new("unmatched"),
            |p| himaya_metrics::Word::new(p.as_str()),
        );
    let answer = next.run(req).await;
    metrics.webhooks.answered(&route, answer.status().as_u16());
    answer
}

/// A refusal to an agency: an HTTP status and a message it can act on (never a value
/// from its payload). Answered as RFC 9457 problem details (`application/problem+json`),
/// or as an `OperationOutcome` to a FHIR client.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    /// What went wrong, for a machine: the problem's `type` is `urn:himaya:problem:<code>`.
    pub code: &'static str,
    /// What went wrong, for a person, told in the caller's language.
    pub message: Said,
    pub field: Option<String>,
    pub violations: Vec<(String, String)>,
    /// When to send again, in whole seconds (`Retry-After`), where the hub said (a busy
    /// or unavailable hub).
    pub retry_after_secs: Option<u32>,
    /// The language the refusal is told in (see [`Refusal::localized`]).
    lang: Lang,
}

/// The problem types of the webhooks' refusals: identifiers, not addresses to look up.
const PROBLEM_TYPE: &str = "urn:himaya:problem:";

/// A refusal's message: one of the catalogue (`webhook-*`, `inbound-*`), rendered in the
/// caller's language when the refusal is answered, or text the hub already wrote in that
/// language (its gRPC status message: the webhooks pass the agency's `Accept-Language`
/// on, and the hub's gateway answers in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said {
    Msg(Msg),
    Text(String),
}

impl Said {
    /// The text in `lang` (text the hub wrote is already in it).
    pub fn render(&self, lang: Lang) -> String {
        match self {
            Said::Msg(m) => m.render(lang),
            Said::Text(t) => t.clone(),
        }
    }
}

impl Refusal {
    /// A refusal told by a message of the catalogue.
    pub fn new(status: StatusCode, code: &'static str, message: Msg) -> Refusal {
        Refusal::said(status, code, Said::Msg(message))
    }

    fn said(status: StatusCode, code: &'static str, message: Said) -> Refusal {
        Refusal {
            status,
            code,
            message,
            field: None,
            violations: Vec::new(),
            retry_after_secs: None,
            lang: Lang::English,
        }
    }

    /// A refusal told in the hub's words, `text`, already in the caller's language.
    pub fn told(status: StatusCode, code: &'static str, text: String) -> Refusal {
        Refusal::said(status, code, Said::Text(text))
    }

    /// To be told in the caller's language.
    fn localized(mut self, lang: Lang) -> Refusal {
        self.lang = lang;
        self
    }

    /// RFC 9457 problem details: `type` (the code as a URN), `title` (the status, in the
    /// caller's language), `status`, `detail` (the message, in the caller's language,
    /// after the field it names), `instance` (the webhook called, where given); and as
    /// extension members the `field` named and the hub's field `violations` (`field`,
    /// `description`), where there are any.
    fn problem(&self, instance: Option<&str>) -> HttpApiProblem {
        let mut p = HttpApiProblem::new(self.status)
            .type_url(format!("{PROBLEM_TYPE}{}", self.code))
            .title(title(self.status).render(self.lang))
            .detail(self.text());
        if let Some(instance) = instance {
            p = p.instance(instance);
        }
        if let Some(f) = &self.field {
            p.set_value("field", f);
        }
        if !self.violations.is_empty() {
            let violations: Vec<Value> = self
                .violations
                .iter()
                .map(|(f, d)| json!({"field": f, "description": d}))
                .collect();
            p.set_value("violations", &violations);
        }
        p
    }

    /// The message in the refusal's language, after the field it names.
    pub(crate) fn text(&self) -> String {
        let message = self.message.render(self.lang);
        match &self.field {
            Some(f) => format!("{f}: {message}"),
            None => message,
        }
    }

    #[cfg(test)]
    fn body(&self, protocol: Protocol) -> Value {
        self.body_at(protocol, None)
    }

    /// The refusal as the route's standard answers one; `instance`: the webhook called.
    fn body_at(&self, protocol: Protocol, instance: Option<&str>) -> Value {
        let text = self.text();
        if protocol == Protocol::FhirR4 {
            // FHIR servers answer an OperationOutcome.
            let mut issues = vec![
                json!({"severity": "error", "code": fhir_code(self.status), "diagnostics": text}),
            ];
            issues.extend(self.violations.iter().map(|(f, d)| {
                json!({"severity": "error", "code": "invalid", "diagnostics": d, "expression": [f]})
            }));
            return json!({"resourceType": "OperationOutcome", "issue": issues});
        }
        serde_json::to_value(self.problem(instance)).unwrap_or(Value::Null)
    }
}

/// A problem's title: what its status means (in English, HTTP's reason phrase), for
/// every status a refusal answers with.
fn title(status: StatusCode) -> Msg {
    match status.as_u16() {
        400 => msg!("problem-title-400"),
        401 => msg!("problem-title-401"),
        403 => msg!("problem-title-403"),
        404 => msg!("problem-title-404"),
        408 => msg!("problem-title-408"),
        409 => msg!("problem-title-409"),
        413 => msg!("problem-title-413"),
        422 => msg!("problem-title-422"),
        429 => msg!("problem-title-429"),
        502 => msg!("problem-title-502"),
        503 => msg!("problem-title-503"),
        _ => msg!("problem-title-other"),
    }
}

fn fhir_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 | 403 => "security",
        404 => "not-found",
        409 => "conflict",
        413 => "too-long",
        429 | 503 => "transient",
        400 | 422 => "invalid",
        _ => "exception",
    }
}

/// The mapping's refusal, a message of the catalogue: told in the caller's language
/// ([`Refusal::localized`]).
impl From<InboundError> for Refusal {
    fn from(e: InboundError) -> Self {
        let mut r = Refusal::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_payload",
            e.problem,
        );
        r.field = Some(e.field);
        r
    }
}

/// One webhook call: authenticate (from the headers alone), read the body within its
/// size and time limits, dedupe, hand to the hub, remember the answer.
async fn receive(
    route: Route,
    State(app): State<App>,
    Path(agency): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let span = webhook_span(route, named(&app, &agency), &headers);
    let outcome = handle(route, &app, &agency, &headers, body)
        .instrument(span.clone())
        .await;
    let replayed = matches!(outcome, Ok((_, _, true, _)));
    // A refusal names the webhook called, except to a caller that did not prove who it
    // is: the path's agency is only its claim.
    let instance = match &outcome {
        Err(r) if r.status != StatusCode::UNAUTHORIZED => Some(route.instance(&agency)),
        _ => None,
    };
    let answer = reply_at(
        route.protocol(),
        outcome.map(|(s, v, _, _)| (s, v)),
        replayed,
        instance.as_deref(),
    );
    span.record("http.response.status_code", answer.status().as_u16());
    answer
}

/// The agency a webhook's path names, as a span may carry it: a configured agency's id,
/// else `unknown` (the path is the caller's to write, before any token is checked).
fn named<'a>(app: &App, agency: &'a str) -> &'a str {
    if app.settings.agencies.contains_key(agency) {
        agency
    } else {
        "unknown"
    }
}

/// The span of an agency's call to a webhook: it continues the trace of the agency's
/// `traceparent` (the one the hub sent with the delivery, when the agency echoes it),
/// and the hub's gRPC call it makes carries it on. Route and agency ids only.
fn webhook_span(route: Route, agency: &str, headers: &HeaderMap) -> tracing::Span {
    let span = tracing::info_span!(
        "webhook",
        otel.name = %format_args!("POST {}", route.path()),
        otel.kind = "server",
        http.request.method = "POST",
        http.route = %route.path(),
        agency_id = %agency,
        http.response.status_code = tracing::field::Empty,
    );
    let traceparent = headers
        .get(himaya_trace::TRACEPARENT)
        .and_then(|v| v.to_str().ok());
    himaya_trace::continue_from(&span, traceparent);
    span
}

/// A FHIR Task, created (`POST`) or updated in place (`PUT`), answered as FHIR's RESTful
/// API says: `201 Created` with the Task's `Location` (`[base]/Task/<id>/_history/<version>`)
/// for a Task the hub had not seen, `200 OK` for a new version of one it knows (an
/// update); an `ETag` naming the version either way.
async fn receive_task(
    create: bool,
    State(app): State<App>,
    Path(agency): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let span = webhook_span(Route::fhir_task(), named(&app, &agency), &headers);
    let outcome = handle(Route::fhir_task(), &app, &agency, &headers, body)
        .instrument(span.clone())
        .await;
    let replayed = matches!(outcome, Ok((_, _, true, _)));
    let (status, answer, task) = match outcome {
        Ok((status, answer, _, task)) => (status, answer, task),
        Err(r) => return reply(Protocol::FhirR4, Err(r), false),
    };
    let Some((id, version)) = himaya_connector_health::task::task_version(&task) else {
        return reply(Protocol::FhirR4, Ok((status, answer)), replayed);
    };
    let created = create || !routes::task_known(&app, &agency, &task, &id).await;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut resp = reply(Protocol::FhirR4, Ok((status, answer)), replayed);
    let h = resp.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&format!("W/\"{version}\"")) {
        h.insert(axum::http::header::ETAG, etag);
    }
    if created {
        if let Ok(l) = HeaderValue::from_str(&format!(
            "/agencies/{agency}/fhir/Task/{id}/_history/{version}"
        )) {
            h.insert(axum::http::header::LOCATION, l);
        }
    }
    resp
}

/// `GET [base]/metadata`: the endpoint's CapabilityStatement. FHIR clients read it before
/// anything else, so it asks no token, and it is the same for every agency's base (it
/// names no agency and tells nothing of the cases).
async fn fhir_metadata(State(app): State<App>) -> Response {
    let systems = himaya_connector_health::mapping::Systems::new(&app.settings.standards.fhir);
    let mut resp = (
        StatusCode::OK,
        Json(himaya_connector_health::capability::capability_statement(
            &systems,
        )),
    )
        .into_response();
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static(FHIR_JSON),
    );
    resp
}

/// FHIR's JSON media type, for every answer of the FHIR webhooks.
const FHIR_JSON: &str = "application/fhir+json";

/// Authenticates, reads and processes one call: `(status, answer, replayed, payload)`.
async fn handle(
    route: Route,
    app: &App,
    agency: &str,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<(StatusCode, Value, bool, Value), Refusal> {
    let lang = Lang::from_header(
        headers
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    );
    authenticate(&app.settings, agency, headers, route).map_err(|r| r.localized(lang))?;
    let outcome = async {
        let body = read_body(&app.settings, headers, body).await?;
        let text = std::str::from_utf8(&body).map_err(|e| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "not_utf8",
                msg!("webhook-not-utf8", at = e.valid_up_to()),
            )
        })?;
        let value: Value = serde_json::from_str(text).map_err(|e| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "not_json",
                msg!("webhook-not-json", line = e.line(), column = e.column()),
            )
        })?;
        let (status, answer, replayed) = hub_client::LANG
            .scope(lang, routes::process(route, app, agency, &value))
            .await?;
        Ok::<_, Refusal>((status, answer, replayed, value))
    }
    .await
    .map_err(|r| r.localized(lang));
    match &outcome {
        Ok((_, _, replayed, _)) => {
            tracing::info!(agency = %agency, route = route.name(), replayed, "webhook accepted")
        }
        Err(r) => {
            tracing::warn!(agency = %agency, route = route.name(), status = r.status.as_u16(), code = r.code, field = r.field.as_deref().unwrap_or("-"), "webhook refused")
        }
    }
    outcome
}

fn reply(
    protocol: Protocol,
    outcome: Result<(StatusCode, Value), Refusal>,
    replayed: bool,
) -> Response {
    reply_at(protocol, outcome, replayed, None)
}

/// [`reply`], a refusal naming the webhook called (`instance`).
fn reply_at(
    protocol: Protocol,
    outcome: Result<(StatusCode, Value), Refusal>,
    replayed: bool,
    instance: Option<&str>,
) -> Response {
    let retry_after = outcome.as_ref().err().and_then(|r| r.retry_after_secs);
    let mut resp = match outcome {
        // FHIR clients expect a resource back: the answer as an informational outcome.
        Ok((status, body)) if protocol == Protocol::FhirR4 => (
            status,
            Json(json!({"resourceType": "OperationOutcome", "issue": [{
                "severity": "information", "code": "informational", "diagnostics": body.to_string()
            }]})),
        )
            .into_response(),
        Ok((status, body)) => (status, Json(body)).into_response(),
        Err(r) if protocol == Protocol::FhirR4 => {
            (r.status, Json(r.body_at(protocol, None))).into_response()
        }
        Err(r) => {
            let mut resp = (r.status, Json(r.body_at(protocol, instance))).into_response();
            let h = resp.headers_mut();
            h.insert(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static(PROBLEM_JSON_MEDIA_TYPE),
            );
            h.insert(
                axum::http::header::CONTENT_LANGUAGE,
                HeaderValue::from_static(r.lang.tag()),
            );
            resp
        }
    };
    if let Some(secs) = retry_after {
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
    }
    if protocol == Protocol::FhirR4 {
        resp.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static(FHIR_JSON),
        );
    }
    if replayed {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    resp
}

/// Up to this much of a declared length over the limit is read and dropped before the
/// 413: a client still sending it then hears the refusal, where closing at once would
/// reset its connection mid-body and lose the answer. Beyond it the connection closes.
const DRAIN_BYTES: u64 = 1 << 20;

/// The body, at most `connectors.max_body_bytes` and within `limits.body_read_timeout_ms`:
/// a declared length over the limit is refused before any work (413; up to
/// [`DRAIN_BYTES`] of it read and dropped first), a body that stops coming is 408.
async fn read_body(
    settings: &Settings,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<Bytes, Refusal> {
    let max = settings.connectors.max_body_bytes;
    let too_large = || {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            msg!("webhook-body-too-large", max = max),
        )
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > max as u64) {
        if n <= DRAIN_BYTES {
            let _ = tokio::time::timeout(settings.limits.body_read_timeout(), drain(body)).await;
        }
        return Err(too_large());
    }
    let read = axum::body::to_bytes(body, max);
    match tokio::time::timeout(settings.limits.body_read_timeout(), read).await {
        Err(_) => Err(Refusal::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            msg!(
                "webhook-body-timeout",
                ms = settings.limits.body_read_timeout_ms
            ),
        )),
        Ok(Ok(b)) => Ok(b),
        Ok(Err(_)) if declared.is_none() => Err(too_large()),
        Ok(Err(_)) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "unreadable_body",
            msg!("webhook-body-unreadable"),
        )),
    }
}

/// Reads `body` to its end (or its first error), keeping nothing.
async fn drain(mut body: axum::body::Body) {
    use axum::body::HttpBody as _;
    while let Some(Ok(_)) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {}
}

/// The agency named in the path, if the bearer token is its own and it speaks the
/// route's standard. An unknown agency and a wrong token get the same answer.
fn authenticate(
    settings: &Settings,
    agency: &str,
    headers: &HeaderMap,
    route: Route,
) -> Result<std::sync::Arc<AgencySettings>, Refusal> {
    let unauthenticated = || {
        Refusal::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            msg!("webhook-unauthenticated"),
        )
    };
    // A suspended agency is refused like an unknown one, from the directory's change on.
    let a = settings
        .agencies
        .get(agency)
        .filter(|a| !a.suspended)
        .ok_or_else(unauthenticated)?;
    let expected = a.inbound_token.as_ref().ok_or_else(unauthenticated)?;
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(unauthenticated)?;
    if !constant_time_eq(given.as_bytes(), expected.expose_secret().as_bytes()) {
        return Err(unauthenticated());
    }
    if a.protocol != route.protocol() || !route.agency_types().contains(&a.agency_type) {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "wrong_route",
            msg!(
                "webhook-wrong-route",
                protocol = a.protocol.as_str(),
                route = route.name(),
                expected = route.protocol().as_str()
            ),
        ));
    }
    Ok(a)
}

/// Equal length and content, the content compared in constant time (`subtle`); tokens of
/// different lengths are unequal.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_hub_is_a_429_saying_when_to_send_again() {
        use tonic_types::StatusExt;
        let mut details = tonic_types::ErrorDetails::new();
        details.set_retry_info(Some(std::time::Duration::from_millis(1500)));
        let st = tonic::Status::with_error_details(tonic::Code::ResourceExhausted, "busy", details);
        let r = hub_client::refusal(&st);
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
        let resp = reply(Protocol::HimayaJson, Err(r), false);
        // Whole seconds, rounded up.
        assert_eq!(resp.headers()[axum::http::header::RETRY_AFTER], "2");
        // A refusal that is the agency's to fix says nothing of retrying.
        let r = hub_client::refusal(&tonic::Status::invalid_argument("x"));
        let resp = reply(Protocol::HimayaJson, Err(r), false);
        assert!(!resp.headers().contains_key(axum::http::header::RETRY_AFTER));
    }

    #[test]
    fn tokens_compare_in_full() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"abcd", b"abc"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn fhir_refusals_are_operation_outcomes() {
        let r = Refusal::from(InboundError::missing("status"));
        let v = r.body(Protocol::FhirR4);
        assert_eq!(v["resourceType"], "OperationOutcome");
        assert_eq!(v["issue"][0]["code"], "invalid");
        assert_eq!(r.body(Protocol::School)["field"], "status");
    }

    #[test]
    fn refusals_are_problem_details() {
        let mut r = Refusal::from(InboundError::missing("status")).localized(Lang::English);
        r.violations = vec![("referral.child.sex".into(), "is required".into())];
        let v = r.body_at(
            Protocol::School,
            Some("/agencies/school-1/school/referrals"),
        );
        assert_eq!(v["type"], "urn:himaya:problem:invalid_payload");
        assert_eq!(v["title"], "Unprocessable Entity");
        assert_eq!(v["status"], 422);
        assert_eq!(v["detail"], "status: is required");
        assert_eq!(v["instance"], "/agencies/school-1/school/referrals");
        assert_eq!(v["field"], "status");
        assert_eq!(
            v["violations"],
            json!([{"field": "referral.child.sex", "description": "is required"}])
        );
        // No instance where none is given, no empty members.
        let v = Refusal::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            msg!("webhook-unauthenticated"),
        )
        .localized(Lang::Arabic)
        .body(Protocol::JusticeMinimal);
        assert_eq!(
            v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()),
            Some(vec![
                "detail".to_owned(),
                "status".to_owned(),
                "title".to_owned(),
                "type".to_owned()
            ])
        );
        assert_eq!(v["title"], "لم يُتحقق من هوية المرسل");
        assert_eq!(
            v["detail"],
            "أرسل رمز الجهة الخاص بالخطافات في `Authorization: Bearer <token>`"
        );
    }

    #[test]
    fn every_status_a_refusal_answers_with_has_its_title_in_both_languages() {
        let arabic = |s: &str| s.chars().any(|c| ('\u{0621}'..='\u{064A}').contains(&c));
        for code in [400, 401, 403, 404, 408, 409, 413, 422, 429, 502, 503] {
            let status = StatusCode::from_u16(code).unwrap();
            let t = title(status);
            assert_ne!(t.id(), "problem-title-other", "{code}");
            // In English, HTTP's own reason phrase.
            assert_eq!(
                Some(t.render(Lang::English).as_str()),
                status.canonical_reason(),
                "{code}"
            );
            assert!(arabic(&t.render(Lang::Arabic)), "{code}");
        }
        let other = title(StatusCode::IM_A_TEAPOT);
        assert_eq!(
            other.render(Lang::English),
            "The request could not be processed"
        );
        assert_eq!(other.render(Lang::Arabic), "تعذرت معالجة الطلب");
    }

    #[tokio::test]
    async fn a_refusal_is_answered_as_problem_json_in_the_callers_language() {
        let r = Refusal::new(
            StatusCode::CONFLICT,
            "conflict",
            msg!("webhook-referral-kept-changing"),
        );
        let resp = reply(Protocol::School, Err(r.localized(Lang::Arabic)), false);
        assert_eq!(resp.status(), StatusCode::CONFLICT);
        let h = resp.headers();
        assert_eq!(
            h[axum::http::header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert_eq!(h[axum::http::header::CONTENT_LANGUAGE], "ar");
        let body = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["detail"], "ظلت الإحالة تتغير أثناء تطبيق هذا؛ أعد الإرسال");
        // The hub's own words come in the caller's language already: passed on as they are.
        let r = Refusal::told(StatusCode::CONFLICT, "conflict", "مأخوذ".into());
        let resp = reply(Protocol::School, Err(r.localized(Lang::English)), false);
        let body = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["detail"], "مأخوذ");
        // A FHIR client still gets its OperationOutcome.
        let r = Refusal::new(
            StatusCode::CONFLICT,
            "conflict",
            msg!("webhook-referral-kept-changing"),
        );
        let resp = reply(Protocol::FhirR4, Err(r), false);
        assert_eq!(
            resp.headers()[axum::http::header::CONTENT_TYPE],
            "application/fhir+json"
        );
    }

    #[test]
    fn payload_refusals_speak_the_callers_language() {
        let r = || Refusal::from(InboundError::missing("status"));
        let en = r().localized(Lang::English).body(Protocol::FhirR4);
        assert_eq!(en["issue"][0]["diagnostics"], "status: is required");
        let ar = r().localized(Lang::Arabic);
        assert_eq!(
            ar.body(Protocol::FhirR4)["issue"][0]["diagnostics"],
            "status: حقل مطلوب"
        );
        assert_eq!(ar.body(Protocol::School)["detail"], "status: حقل مطلوب");
        assert_eq!(ar.body(Protocol::School)["field"], "status");
    }
}
