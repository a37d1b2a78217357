//! The webhooks' way into the hub: gRPC, as the agency that posted. Under mutual TLS each
//! agency's calls carry that agency's own certificate, so the gateway proves the caller
//! exactly as for a direct gRPC client; in development identity mode the header says it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::StatusCode;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::{Code, Request, Status};

use himaya_proto::status::msg;

use super::Refusal;

tokio::task_local! {
    /// The language of the agency's request, passed on to the hub's calls so that its
    /// field errors come back in it.
    pub static LANG: himaya_proto::status::Lang;
}

pub struct HubClient {
    url: String,
    /// Set under mutual TLS: where the agencies' certificates are.
    certs: Option<PathBuf>,
    channels: Mutex<HashMap<String, Channel>>,
}

impl HubClient {
    /// `url` is the hub's gRPC address; `certs` the folder of agency certificates when
    /// the hub requires mutual TLS.
    pub fn new(url: String, certs: Option<PathBuf>) -> HubClient {
        HubClient {
            url,
            certs,
            channels: Mutex::default(),
        }
    }

    /// A channel carrying `agency`'s identity (made once, then reused).
    pub async fn channel(&self, agency: &str) -> Result<Channel, Refusal> {
        let key = if self.certs.is_some() { agency } else { "" };
        if let Some(ch) = self
            .channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
        {
            return Ok(ch.clone());
        }
        let unavailable = |why: &str| {
            tracing::error!(agency, why, "the webhooks cannot reach the hub");
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "hub_unavailable",
                msg!("webhook-cannot-take-now"),
            )
        };
        let mut endpoint = Channel::from_shared(self.url.clone())
            .map_err(|_| unavailable("connectors.hub_url is not a URL"))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30));
        if let Some(dir) = &self.certs {
            let read = |name: String| std::fs::read(dir.join(name));
            let (ca, cert, key) = match (
                read("ca.pem".into()),
                read(format!("{agency}.pem")),
                read(format!("{agency}.key")),
            ) {
                (Ok(ca), Ok(cert), Ok(key)) => (ca, cert, key),
                _ => {
                    return Err(unavailable(
                        "the agency's certificate is missing from connectors.client_certs_dir",
                    ))
                }
            };
            let tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca))
                .identity(Identity::from_pem(cert, key));
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|_| unavailable("the agency's certificate is not valid PEM"))?;
        }
        let ch = endpoint.connect_lazy();
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_owned(), ch.clone());
        Ok(ch)
    }

    /// A request as `agency` (the header is replaced by the certificate's proof under TLS).
    pub fn request<T>(&self, agency: &str, msg: T) -> Result<Request<T>, Refusal> {
        let mut r = Request::new(msg);
        let v = MetadataValue::try_from(agency).map_err(|_| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "bad_agency",
                msg!("webhook-agency-id-invalid"),
            )
        })?;
        r.metadata_mut().insert(himaya_gateway::AGENCY_HEADER, v);
        // The webhook's trace goes on into the hub (traces on only).
        if let Some(tp) = himaya_trace::current().and_then(|t| MetadataValue::try_from(t).ok()) {
            r.metadata_mut().insert(himaya_trace::TRACEPARENT, tp);
        }
        if let Ok(lang) = LANG.try_with(|l| *l) {
            r.metadata_mut()
                .insert("accept-language", MetadataValue::from_static(lang.tag()));
        }
        Ok(r)
    }
}

/// The hub's answer as the agency's HTTP status. The hub's messages name fields and
/// rules, never values, and come in the caller's language (the request carried its
/// `accept-language`, see [`HubClient::request`]), so they are passed on as they are.
pub fn refusal(status: &Status) -> Refusal {
    let (http, code) = match status.code() {
        Code::InvalidArgument | Code::OutOfRange => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
        Code::PermissionDenied => (StatusCode::FORBIDDEN, "permission_denied"),
        Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
        Code::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => {
            (StatusCode::CONFLICT, "conflict")
        }
        Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "busy"),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
            (StatusCode::SERVICE_UNAVAILABLE, "hub_unavailable")
        }
        _ => (StatusCode::BAD_GATEWAY, "hub_error"),
    };
    let mut r = if code == "busy" {
        // The hub's words for being overloaded are for its operators, not the agency.
        Refusal::new(http, code, msg!("webhook-hub-busy"))
    } else {
        Refusal::told(http, code, status.message().to_owned())
    };
    use tonic_types::StatusExt;
    if let Some(bad) = status.get_details_bad_request() {
        r.violations = bad
            .field_violations
            .into_iter()
            .map(|v| (v.field, v.description))
            .collect();
    }
    // The hub's retry hint (a busy lane) becomes the agency's `Retry-After`.
    // Whole seconds (RFC 9110), at least one.
    r.retry_after_secs = status
        .get_details_retry_info()
        .and_then(|i| i.retry_delay)
        .or_else(|| (http == StatusCode::SERVICE_UNAVAILABLE).then(|| Duration::from_secs(5)))
        .map(|d| u32::try_from(d.as_millis().div_ceil(1000).max(1)).unwrap_or(u32::MAX));
    if http.is_server_error() {
        tracing::error!(code = ?status.code(), "the hub failed a webhook's call");
        r.message = super::Said::Msg(msg!("webhook-could-not-take"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use himaya_proto::status::Lang;

    #[test]
    fn the_hubs_words_are_passed_on_and_its_failures_told_from_the_catalogue() {
        // Already in the caller's language (the gateway rendered it): as it is.
        let r = refusal(&Status::not_found("لا توجد حالة cas_1"));
        assert_eq!((r.status, r.code), (StatusCode::NOT_FOUND, "not_found"));
        assert_eq!(r.message, crate::Said::Text("لا توجد حالة cas_1".into()));
        assert_eq!(r.message.render(Lang::English), "لا توجد حالة cas_1");
        // The hub's words for being busy or failing are for its operators.
        let r = refusal(&Status::resource_exhausted("queue full: 981 waiting"));
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            r.message.render(Lang::English),
            "the hub is busy; send it again later (same message id)"
        );
        assert_eq!(
            r.message.render(Lang::Arabic),
            "المنصة مشغولة الآن؛ أعد الإرسال لاحقًا بنفس رقم الرسالة"
        );
        let r = refusal(&Status::internal("pool timed out"));
        assert_eq!((r.status, r.code), (StatusCode::BAD_GATEWAY, "hub_error"));
        assert_eq!(
            r.message.render(Lang::English),
            "the hub could not take this now; send it again later (same message id)"
        );
        assert!(!r.message.render(Lang::Arabic).contains("pool"));
    }
}
