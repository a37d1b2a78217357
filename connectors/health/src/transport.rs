//! The outbound HTTP executor: one place for timeouts, headers and the classification of
//! an agency's answer. An agency saying "no" is data (`Outcome::Rejected`), not an error;
//! only what may succeed later is an error, and it is retryable by construction.
//! (The lifecycle of more connectors will lift this into a crate shared by all of them.)

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde::Serialize;

/// What the agency answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx, or 409 (the agency already has this idempotency key).
    Delivered {
        status: u16,
        reference: Option<String>,
    },
    /// Any other 4xx: the agency refuses; retrying the same request cannot help.
    Rejected { status: u16 },
}

/// A failure that may pass: 5xx, 429, 408, timeouts, refused connections.
#[derive(Debug, thiserror::Error)]
pub enum TransientError {
    #[error("the agency answered HTTP {0}")]
    Status(u16),
    #[error("the agency did not answer in time")]
    Timeout,
    #[error("the agency could not be reached")]
    Unreachable,
}

pub struct Executor {
    client: reqwest::Client,
}

/// Headers every delivery carries.
pub struct DeliveryHeaders<'a> {
    pub idempotency_key: &'a str,
    pub traceparent: Option<&'a str>,
    pub priority: &'a str,
}

impl Executor {
    pub fn new(timeout: Duration) -> Result<Executor, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("himaya/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Executor { client })
    }

    /// POSTs `body` as JSON. Logs the agency, status and latency, never the body.
    pub async fn post<B: Serialize>(
        &self,
        agency_id: &str,
        url: &str,
        h: &DeliveryHeaders<'_>,
        body: &B,
    ) -> Result<(Outcome, Duration), TransientError> {
        let started = Instant::now();
        let mut req = self
            .client
            .post(url)
            .header("Idempotency-Key", h.idempotency_key)
            .header("X-Himaya-Priority", h.priority)
            .json(body);
        if let Some(tp) = h.traceparent {
            req = req.header("traceparent", tp);
        }
        let resp = req.send().await.map_err(|e| {
            tracing::warn!(
                agency = agency_id,
                timeout = e.is_timeout(),
                "agency call failed"
            );
            if e.is_timeout() {
                TransientError::Timeout
            } else {
                TransientError::Unreachable
            }
        })?;
        let status = resp.status();
        let elapsed = started.elapsed();
        tracing::info!(
            agency = agency_id,
            status = status.as_u16(),
            latency_ms = elapsed.as_millis() as u64,
            "agency answered"
        );
        let outcome = classify(status)?;
        let outcome = match outcome {
            Outcome::Delivered { status, .. } => {
                // The agency's own reference, if its answer is JSON with one; anything
                // else in the answer is ignored (and never logged).
                let reference = resp.json::<serde_json::Value>().await.ok().and_then(|v| {
                    v.get("reference")
                        .and_then(|r| r.as_str())
                        .map(|s| s.chars().take(128).collect())
                });
                Outcome::Delivered { status, reference }
            }
            other => other,
        };
        Ok((outcome, elapsed))
    }
}

/// Sorts an HTTP status into delivered, rejected (permanent) or transient.
pub fn classify(status: StatusCode) -> Result<Outcome, TransientError> {
    let code = status.as_u16();
    if status.is_success() || status == StatusCode::CONFLICT {
        Ok(Outcome::Delivered {
            status: code,
            reference: None,
        })
    } else if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        Err(TransientError::Status(code))
    } else {
        Ok(Outcome::Rejected { status: code })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        assert!(matches!(
            classify(StatusCode::OK),
            Ok(Outcome::Delivered { status: 200, .. })
        ));
        assert!(matches!(
            classify(StatusCode::CONFLICT),
            Ok(Outcome::Delivered { status: 409, .. })
        ));
        assert_eq!(
            classify(StatusCode::UNPROCESSABLE_ENTITY).ok(),
            Some(Outcome::Rejected { status: 422 })
        );
        assert!(matches!(
            classify(StatusCode::SERVICE_UNAVAILABLE),
            Err(TransientError::Status(503))
        ));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS),
            Err(TransientError::Status(429))
        ));
    }
}
