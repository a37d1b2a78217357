//! The one outbound HTTP executor every connector uses: timeouts, the classification of
//! an agency's answer, retries with jittered backoff, a circuit breaker per agency,
//! masked logging and metrics. An agency saying "no" is data (`Outcome::Rejected`), not
//! an error; only what may pass later is an error, and it is retryable by construction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::Retryable;
use himaya_settings::retry::ExponentialBuilder;
use himaya_settings::ConnectorSettings;
use reqwest::StatusCode;

use crate::breaker::{Breaker, Gate};
use himaya_metrics::{AgencyHandles, Metrics};

/// Bodies larger than this are not read from an agency's answer.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// What the agency answered, once it answered for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx, or 409 (the agency already has this idempotency key).
    Delivered {
        status: u16,
        /// The answer's body, when it was JSON (never logged).
        answer: Option<serde_json::Value>,
    },
    /// Any other 4xx: the agency refuses; repeating the same request cannot help.
    Rejected {
        status: u16,
        answer: Option<serde_json::Value>,
    },
}

/// A failure that may pass: 5xx, 429, 408, timeouts, refused connections, an open circuit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransientError {
    #[error("the agency answered HTTP {0}")]
    Status(u16),
    #[error("the agency did not answer in time")]
    Timeout,
    #[error("the agency could not be reached")]
    Unreachable,
    #[error("the agency's circuit is open after repeated failures; no call was made")]
    CircuitOpen,
    /// 401: the agency does not accept the hub's credentials (an expired login, a wrong
    /// token). Not the agency refusing what was sent: the call waits for credentials
    /// that work.
    #[error("the agency did not accept the hub's credentials (HTTP 401)")]
    Unauthorized,
    /// Not the agency's doing: every call to it was in use until the delivery's wait
    /// ended or the hub began to stop, so this delivery made none.
    #[error("no call was made: the agency's calls were all in use until the delivery's wait ended, or the hub is stopping")]
    NotCalled,
}

/// One call to an agency.
pub struct Call<'a> {
    pub agency_id: &'a str,
    /// POST with `body`, or GET (a poll) without one.
    pub method: Method,
    pub url: &'a str,
    /// Headers beyond the content type (`Idempotency-Key`, `traceparent`, ...).
    pub headers: Vec<(&'static str, String)>,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Call<'_> {
    /// The value of one of the call's headers.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Post,
    Get,
}

/// The executor's result: what was answered, after how many calls, and how long the last took.
#[derive(Debug, Clone)]
pub struct Answered {
    pub outcome: Outcome,
    pub attempts: u32,
    pub latency: Duration,
    /// The answer's `Authorization` header, where a login answers with its token in one
    /// (Primero). Never logged.
    pub authorization: Option<himaya_settings::SecretString>,
}

pub struct Executor {
    client: reqwest::Client,
    /// The client of calls made on the urgent runtime (`himaya_bus::urgent`): a
    /// connection is driven by the runtime it was opened on, so urgent calls keep
    /// connections of their own, which never wait behind routine work.
    urgent_client: reqwest::Client,
    timeout: Duration,
    attempts: u32,
    /// The waits between a delivery's calls (`ConnectorSettings::retry`).
    retry: ExponentialBuilder,
    breaker_failures: u32,
    breaker_cooldown: Duration,
    breakers: Mutex<HashMap<String, Arc<Agency>>>,
    metrics: Arc<Metrics>,
}

/// What the executor keeps per agency: its circuit breaker and its metrics (resolved
/// once: a call then costs atomic increments).
struct Agency {
    breaker: Breaker,
    m: AgencyHandles,
}

impl Agency {
    /// The breaker's state into `himaya_agency_breaker_state`.
    fn show_breaker(&self) {
        self.m.breaker.set(self.breaker.state_code());
    }
}

/// Makes ring the process's rustls crypto provider, unless one is already set.
///
/// reqwest is built with `rustls-no-provider` (Cargo.toml): its own `rustls` feature would
/// compile aws-lc-rs, a C build, beside the ring that tonic and the hub's servers use. A
/// reqwest client then takes rustls's process default, and building one while none is set
/// panics. `main` calls this first thing; the executor, the web front's OpenID Connect
/// client and the tests' clients call it too, so that no order of start-up can reach a
/// client without a provider. A provider set earlier (by this or by an embedding program)
/// is kept: this process links no other.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err only when another thread set one in between: that one stays, as above.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

impl Executor {
    /// An executor counting its calls in `metrics` (`himaya_agency_*`).
    pub fn new(s: &ConnectorSettings, metrics: Arc<Metrics>) -> Result<Executor, reqwest::Error> {
        let timeout = Duration::from_millis(s.timeout_ms);
        install_crypto_provider();
        let client = || {
            reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(5)))
                .user_agent(concat!("himaya/", env!("CARGO_PKG_VERSION")))
                // Never follow a redirect: a 307 would re-send a child's data to whatever
                // host it names, and a 302 would turn the delivery into a GET answered 200.
                .redirect(reqwest::redirect::Policy::none())
                .build()
        };
        Ok(Executor {
            client: client()?,
            urgent_client: client()?,
            timeout,
            attempts: s.attempts.max(1),
            retry: s.retry(),
            breaker_failures: s.breaker_failures.max(1),
            breaker_cooldown: Duration::from_millis(s.breaker_cooldown_ms),
            breakers: Mutex::default(),
            metrics,
        })
    }

    /// The metrics its calls count in.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// How long until `agency`'s open circuit lets a trial call through (zero if closed).
    pub fn reopens_in(&self, agency: &str) -> Duration {
        self.agency(agency).breaker.reopens_in()
    }

    fn agency(&self, agency: &str) -> Arc<Agency> {
        let mut all = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(agency.to_owned())
            .or_insert_with(|| {
                // A trial that never reports (its task dropped) expires after one call's
                // worth of attempts, so the circuit cannot stay shut for good.
                let trial = self.timeout.saturating_mul(self.attempts + 1);
                let a = Agency {
                    breaker: Breaker::new(self.breaker_failures, self.breaker_cooldown, trial),
                    m: self.metrics.agencies.of(agency),
                };
                a.show_breaker();
                Arc::new(a)
            })
            .clone()
    }

    /// Makes the call, trying again on transient failures up to the configured attempts.
    /// Logs the agency, the URL without its query, the status, the attempt and the
    /// latency, never a body.
    pub async fn call(&self, call: &Call<'_>) -> Result<Answered, TransientError> {
        let agency = self.agency(call.agency_id);
        let mut tries = 0u32;
        let attempt = || {
            tries += 1;
            let n = tries;
            let agency = &agency;
            let (breaker, m) = (&agency.breaker, &agency.m);
            async move {
                let gate = breaker.gate();
                agency.show_breaker();
                let result = match gate {
                    Gate::Closed => self.once(call, m).await,
                    Gate::Open => {
                        m.breaker_refusals.inc();
                        Err(TransientError::CircuitOpen)
                    }
                };
                let result = match result {
                    Ok((outcome, latency, authorization)) => {
                        breaker.success();
                        Ok(Answered {
                            outcome,
                            attempts: n,
                            latency,
                            authorization,
                        })
                    }
                    Err(e) => {
                        if e != TransientError::CircuitOpen && breaker.failure() {
                            tracing::warn!(
                                agency = call.agency_id,
                                "circuit opened: the agency failed repeatedly; calls pause"
                            );
                        }
                        Err(e)
                    }
                };
                agency.show_breaker();
                result
            }
        };
        attempt
            .retry(self.retry)
            .sleep(tokio::time::sleep)
            // An open circuit made no call; credentials are the caller's to renew: the
            // same ones again cannot help.
            .when(|e| *e != TransientError::CircuitOpen && *e != TransientError::Unauthorized)
            .await
    }

    async fn once(
        &self,
        call: &Call<'_>,
        m: &AgencyHandles,
    ) -> Result<(Outcome, Duration, Option<himaya_settings::SecretString>), TransientError> {
        let started = Instant::now();
        let client = match himaya_bus::urgent::is_current() {
            true => &self.urgent_client,
            false => &self.client,
        };
        let mut req = match call.method {
            Method::Post => client
                .post(call.url)
                .header(reqwest::header::CONTENT_TYPE, call.content_type)
                .body(call.body.clone()),
            Method::Get => client.get(call.url),
        };
        for (name, value) in &call.headers {
            req = req.header(*name, value.as_str());
        }
        let sent = req.send().await;
        let latency = started.elapsed();
        let resp = match sent {
            Ok(resp) => resp,
            Err(e) => {
                let err = if e.is_timeout() {
                    TransientError::Timeout
                } else {
                    TransientError::Unreachable
                };
                m.transient.inc();
                m.duration.observe(latency.as_secs_f64());
                // reqwest's message can carry the URL's query; say only what kind of failure.
                tracing::warn!(agency = call.agency_id, url = %masked(call.url), latency_ms = latency.as_millis() as u64, error = %err, "agency call failed");
                return Err(err);
            }
        };
        let status = resp.status();
        tracing::info!(agency = call.agency_id, url = %masked(call.url), status = status.as_u16(), latency_ms = latency.as_millis() as u64, "agency answered");
        m.duration.observe(latency.as_secs_f64());
        match classify(status) {
            Err(e) => {
                m.transient.inc();
                Err(e)
            }
            Ok(kind) => {
                let authorization = resp
                    .headers()
                    .get(reqwest::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .map(himaya_settings::SecretString::from);
                let answer = read_json(resp).await;
                let outcome = match kind {
                    Kind::Delivered => {
                        m.delivered.inc();
                        Outcome::Delivered {
                            status: status.as_u16(),
                            answer,
                        }
                    }
                    Kind::Rejected => {
                        m.rejected.inc();
                        Outcome::Rejected {
                            status: status.as_u16(),
                            answer,
                        }
                    }
                };
                Ok((outcome, latency, authorization))
            }
        }
    }
}

/// The answer's JSON body, if it is JSON and not larger than `MAX_ANSWER_BYTES`.
async fn read_json(mut resp: reqwest::Response) -> Option<serde_json::Value> {
    let mut buf = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        if buf.len() + chunk.len() > MAX_ANSWER_BYTES {
            return None;
        }
        buf.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&buf).ok()
}

/// The URL as it may be logged: scheme, host, port and path; no query, no user info.
pub fn masked(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}{}",
            u.scheme(),
            u.host_str().unwrap_or("?"),
            u.port().map(|p| format!(":{p}")).unwrap_or_default(),
            u.path()
        ),
        Err(_) => "<unparsable url>".into(),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Delivered,
    Rejected,
}

/// Sorts an HTTP status into delivered, rejected (permanent) or transient.
fn classify(status: StatusCode) -> Result<Kind, TransientError> {
    if status.is_success() || status == StatusCode::CONFLICT {
        Ok(Kind::Delivered)
    } else if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        Err(TransientError::Status(status.as_u16()))
    } else if status == StatusCode::UNAUTHORIZED {
        Err(TransientError::Unauthorized)
    } else {
        // 3xx are never followed (see `Executor::new`): the agency's answer, a refusal.
        Ok(Kind::Rejected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One call per delivery, a short timeout: the settings these tests share.
    fn one_call() -> ConnectorSettings {
        ConnectorSettings {
            timeout_ms: 2000,
            attempts: 1,
            backoff_ms: 1,
            breaker_failures: 5,
            breaker_cooldown_ms: 1000,
            max_body_bytes: 1024,
            batch: 64,
            webhook_listen: None,
            hub_url: None,
            client_certs_dir: Default::default(),
        }
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify(StatusCode::OK), Ok(Kind::Delivered));
        assert_eq!(classify(StatusCode::CONFLICT), Ok(Kind::Delivered));
        assert_eq!(
            classify(StatusCode::UNPROCESSABLE_ENTITY),
            Ok(Kind::Rejected)
        );
        assert_eq!(classify(StatusCode::FORBIDDEN), Ok(Kind::Rejected));
        assert_eq!(
            classify(StatusCode::UNAUTHORIZED),
            Err(TransientError::Unauthorized)
        );
        assert_eq!(classify(StatusCode::MOVED_PERMANENTLY), Ok(Kind::Rejected));
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE),
            Err(TransientError::Status(503))
        );
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS),
            Err(TransientError::Status(429))
        );
        assert_eq!(
            classify(StatusCode::REQUEST_TIMEOUT),
            Err(TransientError::Status(408))
        );
    }

    /// A 307 to another host is the agency's answer, never followed with the body.
    #[tokio::test]
    async fn redirects_are_not_followed() {
        use std::io::{Read, Write};
        let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let elsewhere_addr = elsewhere.local_addr().unwrap();
        elsewhere.set_nonblocking(true).unwrap();
        let agency = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = agency.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = agency.accept() {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = write!(s, "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{elsewhere_addr}/steal\r\nContent-Length: 0\r\n\r\n");
            }
        });
        let settings = one_call();
        let ex = Executor::new(&settings, Arc::default()).unwrap();
        let url = format!("http://{addr}/referrals");
        let call = Call {
            agency_id: "a",
            method: Method::Post,
            url: &url,
            headers: vec![],
            content_type: "application/json",
            body: b"{}".to_vec(),
        };
        let answered = ex.call(&call).await.unwrap();
        assert!(matches!(
            answered.outcome,
            Outcome::Rejected { status: 307, .. }
        ));
        assert!(
            elsewhere.accept().is_err(),
            "nothing reached the other host"
        );
    }

    /// An agency whose certificate no CA of the system issued is sent nothing. The one
    /// test where reqwest does a TLS handshake: on ring, the process provider
    /// (`install_crypto_provider`), with the system's roots.
    #[tokio::test]
    async fn an_agency_certificate_no_trusted_ca_issued_gets_nothing() {
        let rcgen::CertifiedKey { cert, key_pair } =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let agency = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = agency.local_addr().unwrap().port();
        let (handshake, handshook) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            if let Ok((tcp, _)) = agency.accept().await {
                let _ = handshake.send(acceptor.accept(tcp).await.is_ok());
            }
        });
        let settings = one_call();
        let ex = Executor::new(&settings, Arc::default()).unwrap();
        let url = format!("https://127.0.0.1:{port}/referrals");
        let call = Call {
            agency_id: "a",
            method: Method::Post,
            url: &url,
            headers: vec![],
            content_type: "application/json",
            body: b"{}".to_vec(),
        };
        assert_eq!(
            ex.call(&call).await.unwrap_err(),
            TransientError::Unreachable
        );
        assert_eq!(
            handshook.await,
            Ok(false),
            "the agency's server saw a handshake that failed, so no request"
        );
    }

    #[test]
    fn urls_are_logged_without_query_or_credentials() {
        assert_eq!(
            masked("https://user:pw@fhir.moh.example:8443/fhir/r4?patient=مريم"),
            "https://fhir.moh.example:8443/fhir/r4"
        );
        assert_eq!(masked("not a url"), "<unparsable url>");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let settings = ConnectorSettings {
            attempts: 41,
            backoff_ms: 100,
            ..one_call()
        };
        let ex = Executor::new(&settings, Arc::default()).unwrap();
        // The wait after the n-th call.
        let waits: Vec<Duration> = backon::BackoffBuilder::build(ex.retry).collect();
        assert_eq!(waits.len(), 40);
        assert!(waits[0] < Duration::from_millis(151));
        assert!(waits[3] >= Duration::from_millis(400));
        assert!(waits[39] <= Duration::from_secs(30));
    }
}
