//! How the bus reaches the broker: plain AMQP, or AMQP over TLS (`amqps://`) with rustls
//! and ring, the broker's certificate checked against the authority of `bus.ca_file`
//! alone (or the system's authorities when none is set) and against the URL's host.
//!
//! lapin's own TLS connector adds a configured authority to the system's store; here the
//! connection is opened through [`Connection::connector`] with a rustls client of our
//! own, so that a configured authority is the only one trusted, the handshake is bounded
//! by [`CONNECT_TIMEOUT`], and a refused certificate is reported naming the setting.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use himaya_settings::{BusSettings, ExposeSecret};
use lapin::tcp::{AMQPUriTcpExt, RustlsConnector, RustlsConnectorConfig};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Connection, ConnectionProperties};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::BusError;

/// The longest a connection may take to open its TCP connection and finish its TLS
/// handshake: a broker that takes no packets fails the start instead of hanging it.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The broker's URL and, for `amqps://`, the TLS client that checks its certificate.
#[derive(Clone)]
pub struct Link {
    url: String,
    tls: Option<Tls>,
}

#[derive(Clone)]
struct Tls {
    connector: RustlsConnector,
    /// Whether the hub presents a certificate of its own (`bus.client_cert_file`).
    client: bool,
    /// `bus.ca_file`, when it is the only authority trusted.
    ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it holds the broker's password.
        f.debug_struct("Link")
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Link {
    /// The link `settings` describe: the authority file and the client certificate are
    /// read now, so a missing or malformed file stops the start naming its key.
    pub fn from_settings(settings: &BusSettings) -> Result<Link, BusError> {
        let client = match (&settings.client_cert_file, &settings.client_key_file) {
            (Some(cert), Some(key)) => Some((
                read_certs(cert, "bus.client_cert_file")?,
                read_key(key, "bus.client_key_file")?,
            )),
            _ => None,
        };
        Link::build(
            settings.url.expose_secret(),
            settings.ca_file.as_deref(),
            client,
        )
    }

    /// One link per address of the broker (`bus.url`, then `bus.urls`), each with the
    /// TLS settings of [`Link::from_settings`].
    pub fn all_from_settings(settings: &BusSettings) -> Result<Vec<Link>, BusError> {
        settings
            .addresses()
            .iter()
            .map(|url| {
                let client = match (&settings.client_cert_file, &settings.client_key_file) {
                    (Some(cert), Some(key)) => Some((
                        read_certs(cert, "bus.client_cert_file")?,
                        read_key(key, "bus.client_key_file")?,
                    )),
                    _ => None,
                };
                Link::build(url, settings.ca_file.as_deref(), client)
            })
            .collect()
    }

    /// A link from a URL alone: `amqps://` trusts the system's authorities.
    pub fn url(url: impl Into<String>) -> Result<Link, BusError> {
        Link::build(&url.into(), None, None)
    }

    fn build(
        url: &str,
        ca_file: Option<&Path>,
        client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<Link, BusError> {
        let scheme = url
            .parse::<AMQPUri>()
            .map_err(|_| setting("bus.url", "is not an amqp:// or amqps:// URL".into()))?
            .scheme;
        if scheme == AMQPScheme::AMQP {
            if ca_file.is_some() || client.is_some() {
                return Err(setting(
                    "bus.url",
                    "must be amqps:// when bus.ca_file or bus.client_cert_file is set".into(),
                ));
            }
            return Ok(Link {
                url: url.to_owned(),
                tls: None,
            });
        }
        let presents = client.is_some();
        let connector = match ca_file {
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in read_certs(path, "bus.ca_file")? {
                    roots.add(cert).map_err(|e| {
                        setting(
                            "bus.ca_file",
                            format!(
                                "{} holds a certificate rustls cannot use: {e}",
                                path.display()
                            ),
                        )
                    })?;
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let builder = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| setting("bus.url", format!("no TLS protocol version: {e}")))?
                    .with_root_certificates(roots);
                let config = match client {
                    Some((chain, key)) => {
                        builder.with_client_auth_cert(chain, key).map_err(|e| {
                            setting(
                                "bus.client_key_file",
                                format!("does not go with bus.client_cert_file: {e}"),
                            )
                        })?
                    }
                    None => builder.with_no_client_auth(),
                };
                RustlsConnector::from(config)
            }
            None => {
                let config = RustlsConnectorConfig::new_with_platform_verifier();
                match client {
                    Some((chain, key)) => config.connector_with_single_cert(chain, key),
                    None => config.connector_with_no_client_auth(),
                }
                .map_err(|e| {
                    setting(
                        "bus.client_cert_file",
                        format!("the TLS client could not be made: {e}"),
                    )
                })?
            }
        };
        Ok(Link {
            url: url.to_owned(),
            tls: Some(Tls {
                connector,
                client: presents,
                ca_file: ca_file.map(Path::to_path_buf),
            }),
        })
    }

    /// A connection that failed, in words: the socket's own error, with the setting to
    /// look at when the broker refused the hub's certificate. Under TLS 1.3 the broker
    /// says so only after the handshake, on the first read of the AMQP exchange.
    pub(crate) fn describe(&self, e: &io::Error) -> String {
        match &self.tls {
            Some(tls) if client_refused(e) => tls.client_advice(e),
            // The broker's alert can be lost when it closes the socket at once with our
            // first AMQP bytes unread: the reset is all that arrives.
            Some(tls) if tls.client && e.kind() == io::ErrorKind::ConnectionReset => format!(
                "the broker closed the connection after the TLS handshake; if it checks \
                 client certificates, bus.client_cert_file must be issued by an authority \
                 it trusts (its ssl_options.cacertfile) and be valid now ({e})"
            ),
            _ => e.to_string(),
        }
    }

    /// Whether the link is encrypted (`amqps://`).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Opens a connection: TCP and the TLS handshake within [`CONNECT_TIMEOUT`], then
    /// the AMQP handshake.
    pub(crate) async fn open(&self, props: ConnectionProperties) -> lapin::Result<Connection> {
        let uri: AMQPUri = self.url.parse().map_err(|_| {
            lapin::Error::from(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bus.url is not an amqp:// or amqps:// URL",
            ))
        })?;
        let runtime = lapin::runtime::default_runtime()?;
        let tls = self.tls.clone();
        let connect = async move |uri: AMQPUri, runtime| {
            let mut tcp = uri.clone();
            tcp.scheme = AMQPScheme::AMQP;
            let open = async {
                let stream = tcp.connect_async(&runtime).await?;
                match (&uri.scheme, &tls) {
                    (AMQPScheme::AMQP, _) => Ok(stream),
                    (AMQPScheme::AMQPS, Some(tls)) => stream
                        .into_rustls(&tls.connector, &uri.authority.host)
                        .await
                        .map_err(|e| tls.explain(e)),
                    (AMQPScheme::AMQPS, None) => Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "bus.url changed to amqps:// without its TLS settings",
                    )),
                }
            };
            match tokio::time::timeout(CONNECT_TIMEOUT, open).await {
                Ok(opened) => opened.map_err(lapin::Error::from),
                Err(_) => Err(lapin::Error::from(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no connection to the broker within {} s (TCP and TLS handshake); \
                         is bus.url's host and port right?",
                        CONNECT_TIMEOUT.as_secs()
                    ),
                ))),
            }
        };
        Connection::connector(uri, runtime, connect, props).await
    }
}

impl Tls {
    /// A failed handshake, said so that the operator knows which setting to look at.
    fn explain(&self, e: io::Error) -> io::Error {
        if client_refused(&e) {
            return io::Error::new(e.kind(), self.client_advice(&e));
        }
        let refused = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
        let advice = match (&self.ca_file, refused) {
            (Some(ca), true) => format!(
                "the broker's certificate was refused: it must be issued by the authority \
                 in bus.ca_file ({}) and name bus.url's host",
                ca.display()
            ),
            (None, true) => "the broker's certificate was refused: it must be issued by an \
                 authority this system trusts and name bus.url's host; set bus.ca_file to \
                 the broker's own authority"
                .to_owned(),
            (_, false) => "the TLS handshake with the broker failed: is bus.url's port the \
                 broker's TLS listener (5671 by default)?"
                .to_owned(),
        };
        io::Error::new(e.kind(), format!("{advice} ({e})"))
    }
}

impl Tls {
    fn client_advice(&self, e: &io::Error) -> String {
        if self.client {
            format!(
                "the broker refused the hub's certificate: bus.client_cert_file must be \
                 issued by an authority the broker trusts (its ssl_options.cacertfile) and \
                 be valid now ({e})"
            )
        } else {
            format!(
                "the broker asks for the hub's certificate: set bus.client_cert_file and \
                 bus.client_key_file ({e})"
            )
        }
    }
}

/// Whether the broker ended the handshake over the hub's own certificate (or its lack).
fn client_refused(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(refuses_our_certificate)
}

/// Whether a server ended a TLS handshake over the client's certificate (or its lack):
/// the alerts a server sends when it checks client certificates. The database's link
/// (crates/store) reads its refusals the same way.
pub fn refuses_our_certificate(e: &rustls::Error) -> bool {
    use rustls::AlertDescription as A;
    matches!(
        e,
        rustls::Error::AlertReceived(
            A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::AccessDenied
                | A::CertificateRequired
        )
    )
}

fn setting(key: &'static str, problem: String) -> BusError {
    BusError::Setting { key, problem }
}

fn read_certs(path: &Path, key: &'static str) -> Result<Vec<CertificateDer<'static>>, BusError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            setting(
                key,
                format!(
                    "{} is not a readable PEM certificate file: {e}",
                    path.display()
                ),
            )
        })?;
    if certs.is_empty() {
        return Err(setting(
            key,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(certs)
}

fn read_key(path: &Path, key: &'static str) -> Result<PrivateKeyDer<'static>, BusError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        setting(
            key,
            format!("{} is not a readable PEM private key: {e}", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_tls_links() {
        assert!(!Link::url("amqp://guest:guest@127.0.0.1:5672/%2f")
            .unwrap()
            .is_tls());
        assert!(Link::url("amqps://guest:guest@127.0.0.1:5671/%2f")
            .unwrap()
            .is_tls());
        let e = Link::build("amqp://127.0.0.1", Some(Path::new("ca.pem")), None).unwrap_err();
        assert!(e.to_string().contains("bus.url"), "{e}");
    }

    #[test]
    fn a_missing_authority_is_named() {
        let e = Link::build(
            "amqps://127.0.0.1",
            Some(Path::new("/nonexistent/ca.pem")),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("bus.ca_file") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
    }

    #[test]
    fn the_url_is_never_printed() {
        let link = Link::url("amqps://hub:secret-4711@127.0.0.1:5671/%2f").unwrap();
        assert!(!format!("{link:?}").contains("secret-4711"));
    }
}
