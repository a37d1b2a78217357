//! The web front's way into the hub: the same gRPC as every caller. Under mutual TLS it
//! presents its own certificate (`web.component.himaya`), the one identity the gateway
//! lets name the agency a person belongs to and the person acting; in development
//! identity mode the headers say it.

use std::net::SocketAddr;
use std::time::Duration;

use himaya_proto::status::Lang;
use himaya_settings::Settings;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::Request;

use crate::people::Person;
use crate::WebError;

/// The metadata naming the person acting and their roles (kept by the gateway only from
/// the web component).
pub use himaya_proto::status::{PERSON_HEADER, ROLES_HEADER};

#[derive(Clone)]
pub struct Hub {
    channel: Channel,
}

impl Hub {
    /// A lazy channel to the hub's gRPC at `grpc_addr` (this process's own server).
    pub fn new(settings: &Settings, grpc_addr: SocketAddr) -> Result<Hub, WebError> {
        let tls = settings.grpc.tls.as_ref();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = match &settings.web.hub_url {
            Some(u) => u.clone(),
            None => format!("{scheme}://localhost:{}", grpc_addr.port()),
        };
        let mut endpoint = Channel::from_shared(url)
            .map_err(|_| WebError::Internal("the hub's address is not a URL"))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30));
        if let Some(t) = tls {
            let read = |p: &std::path::Path| {
                std::fs::read(p).map_err(|_| WebError::Internal("the web component's certificate files cannot be read (web.client_cert_file, web.client_key_file, grpc.tls.client_ca_file)"))
            };
            let config = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read(&t.client_ca_file)?))
                .identity(Identity::from_pem(
                    read(&settings.web.client_cert_file)?,
                    read(&settings.web.client_key_file)?,
                ))
                .domain_name("localhost");
            endpoint = endpoint.tls_config(config).map_err(|_| {
                WebError::Internal("the web component's certificate is not valid PEM")
            })?;
        }
        Ok(Hub {
            channel: endpoint.connect_lazy(),
        })
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }
}

/// A request made as `person`, of their agency, in `lang`.
pub fn request<T>(person: &Person, lang: Lang, msg: T) -> Result<Request<T>, WebError> {
    let mut r = Request::new(msg);
    let value = |s: &str| {
        MetadataValue::try_from(s).map_err(|_| WebError::Internal("an id is not a header value"))
    };
    let m = r.metadata_mut();
    m.insert("x-himaya-agency", value(&person.agency_id)?);
    m.insert(PERSON_HEADER, value(&person.person_id)?);
    let roles: Vec<&str> = person.roles.iter().map(|r| r.as_str()).collect();
    m.insert(ROLES_HEADER, value(&roles.join(","))?);
    m.insert("accept-language", MetadataValue::from_static(lang.tag()));
    Ok(r)
}
