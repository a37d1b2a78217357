//! The agencies' webhooks: where an agency's system posts its answers, referrals and
//! escalations over HTTP. Each request is authenticated as one agency (its bearer token),
//! limited in size, checked as UTF-8 JSON, read by that agency's pure inbound mapping, and
//! then enters the hub through the same gRPC services as any other caller, as that agency:
//! the gateway's rules, the intake's validation and the consent layer all apply unchanged.
//! Each message is processed once per agency message id (`connectors.inbound_messages`).

mod hub_client;
pub mod poll;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use himaya_connect::InboundError;
use himaya_settings::{AgencySettings, Protocol, Settings};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use hub_client::HubClient;
pub use routes::Route;

#[derive(Clone)]
pub struct App {
    settings: Arc<Settings>,
    pool: PgPool,
    hub: Arc<HubClient>,
}

/// Starts the webhook server on `connectors.webhook_listen` (its address, when set) and
/// the pollers of agencies that cannot push.
pub async fn start(
    settings: Arc<Settings>,
    pool: PgPool,
    (executor, credentials): (Arc<himaya_connect::Executor>, poll::CredentialsById),
    hub: HubClient,
    shutdown: CancellationToken,
) -> anyhow::Result<(Option<SocketAddr>, Vec<JoinHandle<()>>)> {
    let app = App {
        settings: settings.clone(),
        pool,
        hub: Arc::new(hub),
    };
    let mut tasks = poll::start(&app, executor, &credentials, &shutdown);
    let Some(listen) = settings.connectors.webhook_listen else {
        return Ok((None, tasks));
    };
    let limit = settings.connectors.max_body_bytes;
    let mut router = Router::new();
    for route in Route::ALL {
        router = router.route(
            route.path(),
            post(move |s, p, h, b| receive(route, s, p, h, b)),
        );
    }
    let router = router
        // FHIR clients also update a Task in place: `PUT [base]/Task/<id>`.
        .route(
            "/agencies/:agency/fhir/Task/:id",
            put(|s, Path((agency, _)): Path<(String, String)>, h, b| {
                receive(Route::FhirTask, s, Path(agency), h, b)
            }),
        )
        .route(
            "/agencies/:agency/hotline/cases/:case_id",
            get(routes::follow_up),
        )
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!("binding the webhooks' port {listen} (connectors.webhook_listen)")
        })?;
    let addr = listener.local_addr()?;
    tasks.push(tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the webhook server stopped");
        }
    }));
    tracing::info!(%addr, "agency webhooks listening");
    Ok((Some(addr), tasks))
}

/// A refusal to an agency: an HTTP status and a message it can act on (never a value
/// from its payload).
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub violations: Vec<(String, String)>,
}

impl Refusal {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code,
            message: message.into(),
            field: None,
            violations: Vec::new(),
        }
    }

    fn body(&self, protocol: Protocol) -> Value {
        let mut text = self.message.clone();
        if let Some(f) = &self.field {
            text = format!("{f}: {text}");
        }
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
        let violations: Vec<Value> = self
            .violations
            .iter()
            .map(|(f, d)| json!({"field": f, "description": d}))
            .collect();
        json!({"error": {"code": self.code, "message": text, "field": self.field, "violations": violations}})
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

impl From<InboundError> for Refusal {
    fn from(e: InboundError) -> Self {
        Refusal {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_payload",
            message: e.problem,
            field: Some(e.field),
            violations: Vec::new(),
        }
    }
}

/// One webhook call: authenticate, read, dedupe, hand to the hub, remember the answer.
async fn receive(
    route: Route,
    State(app): State<App>,
    Path(agency): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    if let Err(r) = authenticate(&app.settings, &agency, &headers, route) {
        return reply(route.protocol(), Err(r), false);
    }
    let outcome = async {
        let body = body.map_err(|e| {
            Refusal::new(
                e.status(),
                "unreadable_body",
                format!(
                    "the body could not be read ({}); at most {} bytes are accepted",
                    e.status(),
                    app.settings.connectors.max_body_bytes
                ),
            )
        })?;
        let text = std::str::from_utf8(&body).map_err(|e| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "not_utf8",
                format!(
                    "the body is not UTF-8 text (first bad byte at {})",
                    e.valid_up_to()
                ),
            )
        })?;
        let value: Value = serde_json::from_str(text).map_err(|e| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "not_json",
                format!(
                    "the body is not JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            )
        })?;
        routes::process(route, &app, &agency, &value).await
    }
    .await;
    match &outcome {
        Ok((_, _, replayed)) => {
            tracing::info!(agency = %agency, route = route.name(), replayed, "webhook accepted")
        }
        Err(r) => {
            tracing::warn!(agency = %agency, route = route.name(), status = r.status.as_u16(), code = r.code, field = r.field.as_deref().unwrap_or("-"), "webhook refused")
        }
    }
    let replayed = matches!(outcome, Ok((_, _, true)));
    reply(route.protocol(), outcome.map(|(s, v, _)| (s, v)), replayed)
}

fn reply(
    protocol: Protocol,
    outcome: Result<(StatusCode, Value), Refusal>,
    replayed: bool,
) -> Response {
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
        Err(r) => (r.status, Json(r.body(protocol))).into_response(),
    };
    if replayed {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    resp
}

/// The agency named in the path, if the bearer token is its own and it speaks the
/// route's standard. An unknown agency and a wrong token get the same answer.
fn authenticate<'a>(
    settings: &'a Settings,
    agency: &str,
    headers: &HeaderMap,
    route: Route,
) -> Result<&'a AgencySettings, Refusal> {
    let unauthenticated = || {
        Refusal::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "send this agency's webhook token as `Authorization: Bearer <token>`",
        )
    };
    let a = settings.agencies.get(agency).ok_or_else(unauthenticated)?;
    let expected = a.inbound_token.as_ref().ok_or_else(unauthenticated)?;
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(unauthenticated)?;
    if !constant_time_eq(given.as_bytes(), expected.expose().as_bytes()) {
        return Err(unauthenticated());
    }
    if a.protocol != route.protocol() || !route.agency_types().contains(&a.agency_type) {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "wrong_route",
            format!(
                "this agency speaks `{}`; `{}` is for {} systems",
                a.protocol.as_str(),
                route.name(),
                route.protocol().as_str()
            ),
        ));
    }
    Ok(a)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_in_full() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn fhir_refusals_are_operation_outcomes() {
        let r = Refusal::from(InboundError::new("status", "is required"));
        let v = r.body(Protocol::FhirR4);
        assert_eq!(v["resourceType"], "OperationOutcome");
        assert_eq!(v["issue"][0]["code"], "invalid");
        assert_eq!(r.body(Protocol::School)["error"]["field"], "status");
    }
}
