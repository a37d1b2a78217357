//! One referral, one trace. A W3C `traceparent` (TraceContext) comes in on a gRPC call,
//! a webhook call or an AMQP message; the span that handles it continues that trace
//! ([`continue_from`]); whatever it sends on (an outbox row, a message, a call to an
//! agency, a gRPC call to the hub) carries the `traceparent` of its own span
//! ([`onward`], [`traceparent_of`]).
//!
//! With traces off (no `telemetry.otlp_endpoint`) no OpenTelemetry layer is installed:
//! spans have no trace context, and [`onward`] passes the `traceparent` that came in on
//! unchanged, as the hub did before it traced.
//!
//! Spans carry ids and counts only (case, referral and message ids, queue and agency
//! ids, statuses, attempts): never a child's name, number, address or notes.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C trace context header (HTTP, gRPC metadata, AMQP headers).
pub const TRACEPARENT: &str = "traceparent";

/// Makes `span` a child of the span `traceparent` names, unless the current span is
/// already in that trace (then `span` stays the current span's child, one more level
/// down the same trace). Nothing happens when traces are off, when there is no header
/// or when it is not a valid W3C `traceparent` (the span then starts a trace of its
/// own, or stays the current span's child). Call it before the span is entered.
pub fn continue_from(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(tp) = traceparent else {
        return;
    };
    let cx = TraceContextPropagator::new().extract(&Carrier(Some(tp.trim().to_owned())));
    let remote = cx.span().span_context().clone();
    if !remote.is_valid() {
        return;
    }
    let here = tracing::Span::current().context();
    if here.span().span_context().trace_id() == remote.trace_id() {
        return;
    }
    // Fails only when traces are off or the span already started: nothing to do.
    let _ = span.set_parent(cx);
}

/// The `traceparent` naming `span`; `None` when traces are off (or `span` is disabled).
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut out = Carrier(None);
    TraceContextPropagator::new().inject_context(&cx, &mut out);
    out.0
}

/// The `traceparent` of the current span; `None` when traces are off.
pub fn current() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

/// What to send on: the current span's `traceparent` when traces are on; otherwise
/// the one that came in, unchanged.
pub fn onward(incoming: Option<String>) -> Option<String> {
    current().or(incoming)
}

/// A span continuing the trace of a message taken from a queue: the broker hop.
/// `queue` and `message_id` are names and ids, never content.
pub fn consumer(queue: &str, message_id: &str, traceparent: Option<&str>) -> tracing::Span {
    let span = tracing::info_span!(
        "consume",
        otel.name = %format_args!("{queue} process"),
        otel.kind = "consumer",
        messaging.system = "rabbitmq",
        messaging.destination.name = %queue,
        messaging.message.id = %message_id,
    );
    continue_from(&span, traceparent);
    span
}

/// A span for a batch of messages taken from a queue at once. A batch of one continues
/// its message's trace like [`consumer`]; a larger batch starts a span of its own,
/// linked to each message's trace (at most [`MAX_LINKS`]), since it belongs to none of
/// them alone. Handlers that treat each message apart continue its trace themselves.
pub fn batch_consumer<'a>(
    queue: &str,
    size: usize,
    traceparents: impl Iterator<Item = Option<&'a str>>,
) -> tracing::Span {
    let span = tracing::info_span!(
        "consume",
        otel.name = %format_args!("{queue} process"),
        otel.kind = "consumer",
        messaging.system = "rabbitmq",
        messaging.destination.name = %queue,
        messaging.batch.message_count = size,
    );
    let mut tps: Vec<Option<&str>> = traceparents.take(MAX_LINKS).collect();
    if size == 1 {
        continue_from(&span, tps.pop().flatten());
        return span;
    }
    for tp in tps.into_iter().flatten() {
        let cx = TraceContextPropagator::new().extract(&Carrier(Some(tp.trim().to_owned())));
        let sc = cx.span().span_context().clone();
        if sc.is_valid() {
            span.add_link(sc);
        }
    }
    span
}

/// Links a batch span keeps at most.
pub const MAX_LINKS: usize = 128;

/// The one header a trace context is carried in, both ways.
struct Carrier(Option<String>);

impl Extractor for Carrier {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0.as_deref()).flatten()
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

impl Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        if key == TRACEPARENT {
            self.0 = Some(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    const CALLER: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    /// Runs `f` with a trace layer (no exporter) as this thread's subscriber.
    fn traced(f: impl FnOnce()) {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f);
    }

    fn parts(tp: &str) -> Vec<String> {
        tp.split('-').map(str::to_owned).collect()
    }

    #[test]
    fn a_hop_continues_the_trace_with_a_span_of_its_own() {
        traced(|| {
            let hop = consumer("q", "msg_1", Some(CALLER));
            let tp = traceparent_of(&hop).expect("a traceparent while tracing");
            let p = parts(&tp);
            assert_eq!(
                (p[0].as_str(), p[1].as_str(), p[3].as_str()),
                ("00", TRACE, "01")
            );
            assert_ne!(p[2], "b7ad6b7169203331", "its own span id");
            // Inside the hop, what is sent on names the current span, in the same trace.
            let _in = hop.enter();
            assert_eq!(onward(Some(CALLER.to_owned())), Some(tp.clone()));
            // A span continuing the same trace under it stays its child (its own id).
            let inner = tracing::info_span!("inner");
            continue_from(&inner, Some(CALLER));
            let inner_tp = traceparent_of(&inner).expect("traced");
            assert_eq!(parts(&inner_tp)[1], TRACE);
            assert_ne!(inner_tp, tp);
        });
    }

    #[test]
    fn a_missing_or_malformed_traceparent_starts_a_new_trace() {
        traced(|| {
            for bad in [None, Some("not a traceparent"), Some("00-000-000-01")] {
                let span = consumer("q", "msg_1", bad);
                let tp = traceparent_of(&span).expect("a new trace");
                assert_ne!(parts(&tp)[1], TRACE);
            }
        });
    }

    #[test]
    fn a_batch_of_many_links_each_trace() {
        traced(|| {
            let one = batch_consumer("q", 1, [Some(CALLER)].into_iter());
            assert_eq!(parts(&traceparent_of(&one).expect("traced"))[1], TRACE);
            let many = batch_consumer("q", 2, [Some(CALLER), None].into_iter());
            assert_ne!(parts(&traceparent_of(&many).expect("traced"))[1], TRACE);
        });
    }

    #[test]
    fn without_a_trace_layer_the_incoming_traceparent_is_passed_on() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned();
        let span = tracing::info_span!("x");
        continue_from(&span, Some(&tp));
        assert_eq!(traceparent_of(&span), None);
        assert_eq!(onward(Some(tp.clone())), Some(tp));
        assert_eq!(onward(None), None);
    }
}
