//! gRPC RED at the door: every call counted by service, method and status code, and
//! timed to its last byte (`himaya_grpc_requests_total`,
//! `himaya_grpc_request_duration_seconds`).
//!
//! The method label comes from the compiled contracts (plus health and reflection), never
//! from the path as sent: a path no contract has is counted as `unknown`, so a client
//! inventing paths cannot grow the label set. A unary answer's status travels in the
//! trailers after the body (in the headers only when the answer is a refusal), so the
//! body is watched for its trailers; an answer dropped before them (the client went
//! away) is counted `Cancelled`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use himaya_metrics::{GrpcMethod, Metrics, Word};
use http::Response;
use http_body::{Body, Frame, SizeHint};
use prost::Message;
use tonic::body::Body as BoxBody;
use tonic::Status;

/// Services served beside the contracts.
const OTHERS: &[&str] = &[
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// The label set of every method the hub serves, by request path.
pub struct Methods {
    known: HashMap<String, GrpcMethod>,
    unknown: GrpcMethod,
}

impl Methods {
    pub fn new() -> Methods {
        let mut known = HashMap::new();
        let mut add = |path: &str| {
            let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
                return;
            };
            known.insert(
                path.to_owned(),
                GrpcMethod {
                    service: Word::new(service),
                    method: Word::new(method),
                },
            );
        };
        // The contracts are compiled in: a decoding failure is a build fault, and only
        // leaves their methods counted as `unknown`.
        if let Ok(set) = prost_types::FileDescriptorSet::decode(himaya_proto::FILE_DESCRIPTOR_SET) {
            for file in &set.file {
                for service in &file.service {
                    let full = format!("{}.{}", file.package(), service.name());
                    for m in &service.method {
                        add(&format!("/{full}/{}", m.name()));
                    }
                }
            }
        }
        for path in OTHERS {
            add(path);
        }
        Methods {
            known,
            unknown: GrpcMethod {
                service: Word::new("unknown"),
                method: Word::new("unknown"),
            },
        }
    }

    pub fn of(&self, path: &str) -> &GrpcMethod {
        self.known.get(path).unwrap_or(&self.unknown)
    }
}

impl Default for Methods {
    fn default() -> Self {
        Methods::new()
    }
}

/// One call under way: counted once, when its status is known, or as `Cancelled` when
/// it is dropped before (the client went away, the connection closed).
pub struct Call {
    metrics: Arc<Metrics>,
    method: GrpcMethod,
    started: Instant,
    counted: bool,
}

impl Call {
    pub fn new(metrics: Arc<Metrics>, method: GrpcMethod) -> Call {
        Call {
            metrics,
            method,
            started: Instant::now(),
            counted: false,
        }
    }

    fn finish(&mut self, code: i32) {
        if !self.counted {
            self.counted = true;
            self.metrics
                .grpc
                .record(&self.method, code, self.started.elapsed());
        }
    }

    /// Counts the call when `response` carries its status in the headers (a refusal,
    /// a trailers-only answer); otherwise once its body's trailers go out.
    pub fn answered(mut self, response: Response<BoxBody>) -> Response<BoxBody> {
        match status_of(response.headers()) {
            Some(code) => {
                self.finish(code);
                response
            }
            None => response.map(|inner| {
                BoxBody::new(Watched {
                    inner,
                    call: Some(self),
                })
            }),
        }
    }
}

fn status_of(headers: &http::HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// A response body that counts its call when the trailers pass.
struct Watched {
    inner: BoxBody,
    call: Option<Call>,
}

impl Body for Watched {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let code = match &polled {
            Poll::Ready(Some(Ok(frame))) => frame
                .trailers_ref()
                .map(|t| status_of(t).unwrap_or(tonic::Code::Unknown as i32)),
            Poll::Ready(Some(Err(s))) => Some(s.code() as i32),
            Poll::Ready(None) => Some(tonic::Code::Unknown as i32),
            Poll::Pending => None,
        };
        if let Some(code) = code {
            if let Some(mut call) = this.call.take() {
                call.finish(code);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish(tonic::Code::Cancelled as i32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_come_from_the_contracts_and_invented_paths_are_unknown() {
        let m = Methods::new();
        let intake = m.of("/himaya.v1.Intake/SubmitSchoolReferral");
        assert_eq!(intake.service.as_str(), "himaya.v1.Intake");
        assert_eq!(intake.method.as_str(), "SubmitSchoolReferral");
        assert_eq!(
            m.of("/grpc.health.v1.Health/Check").service.as_str(),
            "grpc.health.v1.Health"
        );
        assert_eq!(
            m.of("/himaya.v1.Intake/Anything").method.as_str(),
            "unknown"
        );
        assert!(m.known.len() > 40, "{} methods", m.known.len());
    }
}
