//! The server span of a `himaya.v1` call: the trace a referral's call starts, or the
//! caller's, continued from its `traceparent` metadata. Named after the RPC; it carries
//! the RPC's names and its gRPC status, never the request's content (the handlers' own
//! spans below it record the ids they made, e.g. the intake's `case_id`, `referral_id`).

use himaya_metrics::GrpcMethod;
use http::Request;
use tracing::field::Empty;

/// The span for the call `req` to `rpc` (its names from the compiled contracts, so an
/// invented path is named `unknown`, never after what the caller wrote); disabled for
/// health and reflection (no referral in them).
pub(crate) fn server_span<B>(req: &Request<B>, rpc: &GrpcMethod) -> tracing::Span {
    if !req.uri().path().starts_with("/himaya.v1.") {
        return tracing::Span::none();
    }
    let (service, method) = (rpc.service.as_str(), rpc.method.as_str());
    let span = tracing::info_span!(
        "grpc",
        otel.name = %format_args!("{service}/{method}"),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = Empty,
    );
    let traceparent = req
        .headers()
        .get(himaya_trace::TRACEPARENT)
        .and_then(|v| v.to_str().ok());
    himaya_trace::continue_from(&span, traceparent);
    span
}

/// `fut`, run in `span` (the call's answer, in the call's span).
pub(crate) fn within<F: std::future::Future>(
    span: tracing::Span,
    fut: F,
) -> tracing::instrument::Instrumented<F> {
    tracing::Instrument::instrument(fut, span)
}

/// Records on the current span (the call's) the gRPC status of an answer when it is in
/// its headers (a refusal or an error answered at once); a streamed answer's status
/// travels in its trailers.
pub(crate) fn record_status<B, E>(answered: &Result<http::Response<B>, E>) {
    if let Some(code) = answered
        .as_ref()
        .ok()
        .and_then(|r| r.headers().get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
    {
        tracing::Span::current().record("rpc.grpc.status_code", code);
    }
}
