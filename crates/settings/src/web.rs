//! The web front (`[web]`): where it listens and how long a session lives.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::{invalid, SettingsError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSettings {
    /// Where the web front listens (HTTP; put TLS in front of it beyond loopback).
    pub listen: SocketAddr,
    /// A session unused for this long is over (minutes).
    pub session_idle_minutes: i64,
    /// The same for hotline operators, who leave consoles open between calls.
    pub operator_idle_minutes: i64,
    /// Failed sign-ins in a row before an account is locked.
    pub max_failed_signins: i32,
    /// The first lock lasts this long; each further failure doubles it, up to an hour.
    pub lockout_secs: i64,
    /// Cookies carry `Secure` (browsers accept it on http://localhost too). Only a test
    /// speaking plain HTTP to another address turns it off.
    pub secure_cookies: bool,
    /// Under mutual TLS: the web component's own certificate and key, naming
    /// `web.component.himaya`: the one identity the hub lets assert a person.
    pub client_cert_file: PathBuf,
    pub client_key_file: PathBuf,
    /// The hub's gRPC address when the web front runs apart from the cases service;
    /// none: this process's own server.
    pub hub_url: Option<String>,
}

impl Default for WebSettings {
    fn default() -> Self {
        WebSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            session_idle_minutes: 30,
            operator_idle_minutes: 15,
            max_failed_signins: 5,
            lockout_secs: 60,
            secure_cookies: true,
            client_cert_file: PathBuf::from(".himaya/certs/web.pem"),
            client_key_file: PathBuf::from(".himaya/certs/web.key"),
            hub_url: None,
        }
    }
}

/// The certificate name of the web component: the only caller the gateway lets claim
/// any agency of the directory and assert the person acting.
pub const WEB_COMPONENT_NAME: &str = "web.component.himaya";

impl WebSettings {
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        if self.session_idle_minutes < 1 || self.operator_idle_minutes < 1 {
            return Err(invalid("web.session_idle_minutes", "must be at least 1"));
        }
        if self.max_failed_signins < 1 || self.lockout_secs < 1 {
            return Err(invalid(
                "web.max_failed_signins",
                "and web.lockout_secs must be at least 1",
            ));
        }
        Ok(())
    }
}
