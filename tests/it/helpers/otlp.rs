//! A real OTLP/HTTP trace receiver, as a collector would be: `POST /v1/traces` with an
//! `ExportTraceServiceRequest` in protobuf, answered `200` with an empty
//! `ExportTraceServiceResponse`. It keeps every span it was sent (and each request's raw
//! bytes, to search them for what must never be there).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::Message;

/// One span as received, ids in lowercase hex as in a `traceparent`.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// The `service.name` of the process that sent it.
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// `SPAN_KIND_*` as its number (2 server, 3 client, 5 consumer).
    pub kind: i32,
    pub attributes: BTreeMap<String, String>,
    /// The attributes of its events (log lines inside the span), flattened.
    pub event_attributes: Vec<(String, String)>,
    /// The (trace id, span id) of its links.
    pub links: Vec<(String, String)>,
    /// When it started and ended, nanoseconds since the Unix epoch.
    pub start_ns: u64,
    pub end_ns: u64,
}

#[derive(Clone, Default)]
pub struct OtlpReceiver {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    raw: Arc<Mutex<Vec<Bytes>>>,
    requests: Arc<std::sync::atomic::AtomicU64>,
}

impl OtlpReceiver {
    /// Listens on a free loopback port; the base address to configure as
    /// `telemetry.traces.otlp_endpoint` is `http://<addr>`.
    pub async fn start() -> (OtlpReceiver, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for the OTLP receiver");
        let addr = listener.local_addr().expect("its address");
        let receiver = OtlpReceiver::default();
        let app = Router::new()
            .route("/v1/traces", post(export))
            .layer(DefaultBodyLimit::max(32 * 1024 * 1024))
            .with_state(receiver.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (receiver, addr)
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The spans of one trace.
    pub fn trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        self.spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect()
    }

    /// How many spans arrived so far.
    pub fn count(&self) -> usize {
        self.spans.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// How many export requests arrived so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every request body as received.
    pub fn raw(&self) -> Vec<Bytes> {
        self.raw.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

async fn export(State(r): State<OtlpReceiver>, body: Bytes) -> impl IntoResponse {
    r.requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let Ok(req) = ExportTraceServiceRequest::decode(body.clone()) else {
        return (StatusCode::BAD_REQUEST, Vec::new()).into_response();
    };
    let mut got = Vec::new();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|res| res.attributes.iter())
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
            .map(text)
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                got.push(ReceivedSpan {
                    service: service.clone(),
                    name: s.name,
                    trace_id: hexa(&s.trace_id),
                    span_id: hexa(&s.span_id),
                    parent_span_id: hexa(&s.parent_span_id),
                    kind: s.kind,
                    attributes: attributes(&s.attributes).into_iter().collect(),
                    event_attributes: s
                        .events
                        .iter()
                        .flat_map(|e| attributes(&e.attributes))
                        .collect(),
                    links: s
                        .links
                        .iter()
                        .map(|l| (hexa(&l.trace_id), hexa(&l.span_id)))
                        .collect(),
                    start_ns: s.start_time_unix_nano,
                    end_ns: s.end_time_unix_nano,
                });
            }
        }
    }
    r.spans
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(got);
    r.raw.lock().unwrap_or_else(|p| p.into_inner()).push(body);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
        .into_response()
}

fn attributes(kvs: &[KeyValue]) -> Vec<(String, String)> {
    kvs.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(text).unwrap_or_default(),
            )
        })
        .collect()
}

fn text(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hexa(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
