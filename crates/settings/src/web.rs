//! The web front (`[web]`): where it listens and how long a session lives, and the
//! ministry's own OpenID Connect provider people may sign in through (`[web.oidc]`).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::{invalid, ExposeSecret, SecretString, SettingsError};

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
    /// Sign-in through a ministry's own OpenID Connect provider; absent: off.
    pub oidc: Option<OidcSettings>,
    /// The digits of numbers and dates on Arabic pages: `latin` (0-9) or `arabic_indic`
    /// (٠-٩). English pages always show Latin digits.
    pub digits: Digits,
    /// The deployment's time as a fixed offset from UTC, `+HH:MM` or `-HH:MM` (`+02:00`:
    /// Egypt's standard time): the pages show times in it. A fixed offset has no summer
    /// time; change it when the clocks change.
    pub time_zone: String,
}

/// Which digits Arabic pages write numbers with (`[web] digits`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Digits {
    /// 0123456789
    #[default]
    Latin,
    /// ٠١٢٣٤٥٦٧٨٩
    ArabicIndic,
}

impl TryFrom<String> for Digits {
    type Error = String;

    fn try_from(s: String) -> Result<Digits, String> {
        match s.as_str() {
            "latin" => Ok(Digits::Latin),
            "arabic_indic" => Ok(Digits::ArabicIndic),
            _ => Err(format!(
                "web.digits: must be \"latin\" or \"arabic_indic\", not {s:?}"
            )),
        }
    }
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
            oidc: None,
            digits: Digits::Latin,
            time_zone: "+02:00".into(),
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
        if let Some(o) = &self.oidc {
            o.validate()?;
        }
        if utc_offset_secs(&self.time_zone).is_none() {
            return Err(invalid(
                "web.time_zone",
                "must be an offset from UTC like \"+02:00\" or \"-03:30\" (at most 14 hours)",
            ));
        }
        Ok(())
    }

    /// `time_zone` in seconds east of UTC (0 if it is not valid, which `validate` refuses).
    pub fn utc_offset_secs(&self) -> i32 {
        utc_offset_secs(&self.time_zone).unwrap_or(0)
    }
}

/// `+HH:MM` or `-HH:MM`, at most 14 hours, in seconds east of UTC.
fn utc_offset_secs(zone: &str) -> Option<i32> {
    let b = zone.as_bytes();
    if b.len() != 6 || b[3] != b':' {
        return None;
    }
    let sign = match b[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let two = |i: usize| -> Option<i32> {
        let (h, l) = (b[i], b[i + 1]);
        (h.is_ascii_digit() && l.is_ascii_digit())
            .then(|| i32::from(h - b'0') * 10 + i32::from(l - b'0'))
    };
    let (hours, minutes) = (two(1)?, two(4)?);
    if minutes >= 60 || hours * 60 + minutes > 14 * 60 {
        return None;
    }
    Some(sign * (hours * 3600 + minutes * 60))
}

/// The roles a person can hold on the web front (`himaya-web`'s `Role`, by name).
pub const PERSON_ROLES: &[&str] = &[
    "school_officer",
    "committee_member",
    "hotline_operator",
    "caseworker",
    "supervisor",
    "agency_staff",
    "auditor",
    "admin",
];

/// One ministry's OpenID Connect provider (`[web.oidc]`): people of `agency_id` sign in
/// there (authorization code flow with PKCE, state and nonce), and its claims name the
/// person and, through `roles`, what they may do here.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    /// The provider's issuer URL, exactly as its ID tokens name it (its discovery
    /// document is at `<issuer>/.well-known/openid-configuration`). https, or http on a
    /// loopback address for development.
    pub issuer: String,
    /// This web front's client at the provider.
    pub client_id: String,
    /// Its secret: best given as `HIMAYA__WEB__OIDC__CLIENT_SECRET`, never in a file
    /// that is committed.
    pub client_secret: Option<SecretString>,
    /// Where the provider sends people back: this web front's `/signin/oidc/callback`,
    /// as the browser reaches it, registered at the provider.
    pub redirect_url: String,
    /// Asked for at the provider; must include `openid`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The agency whose people this provider signs in (an id of `[agencies]`).
    pub agency_id: String,
    /// What the sign-in page's button calls the provider, in Arabic and English; none:
    /// the agency's names.
    pub display_name_ar: Option<String>,
    pub display_name_en: Option<String>,
    /// The claim that is the person's login here (unique across the hub).
    #[serde(default = "default_login_claim")]
    pub login_claim: String,
    /// The claim with the person's name as shown on the pages; none given: the login.
    #[serde(default = "default_name_claim")]
    pub name_claim: String,
    /// The claim carrying the person's groups or roles (a list of strings, or one).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Which value of `roles_claim` gives which Himaya role (`[[web.oidc.roles]]`, a
    /// list rather than a table: table keys lose their case when read). A value may give
    /// more than one role; values not listed give nothing; a person with no listed value
    /// cannot sign in.
    pub roles: Vec<RoleMapping>,
    /// Each call to the provider (discovery, token, keys, user info) ends after this long.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

/// One value of the roles claim and the role it gives.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RoleMapping {
    /// As the provider sends it (case and all).
    pub value: String,
    /// One of [`PERSON_ROLES`].
    pub role: String,
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into()]
}

fn default_login_claim() -> String {
    "preferred_username".into()
}

fn default_name_claim() -> String {
    "name".into()
}

fn default_roles_claim() -> String {
    "groups".into()
}

fn default_timeout_secs() -> u64 {
    10
}

/// Whether `url` is https, or http on a loopback host (development): the provider's
/// answers carry who someone is, so they never travel in clear beyond one machine.
fn secure_url(url: &str) -> bool {
    if url.starts_with("https://") && url.len() > "https://".len() {
        return true;
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match authority.rsplit_once(':') {
        // `[::1]:8080`, `127.0.0.1:8080`, `localhost:8080`; `[::1]` alone has a colon too.
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    host == "localhost"
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl OidcSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        let key = |f: &str| format!("web.oidc.{f}");
        if !secure_url(&self.issuer) {
            return Err(invalid(
                key("issuer"),
                "must be an https:// URL (http:// only on localhost or 127.0.0.1, for development)",
            ));
        }
        if self.issuer.contains(['?', '#']) {
            return Err(invalid(key("issuer"), "must have no query or fragment"));
        }
        if self.client_id.trim().is_empty() {
            return Err(invalid(
                key("client_id"),
                "the client's id at the provider is required",
            ));
        }
        match &self.client_secret {
            Some(s) if !s.expose_secret().is_empty() => {}
            _ => {
                return Err(invalid(
                    key("client_secret"),
                    "the client's secret at the provider is required: set HIMAYA__WEB__OIDC__CLIENT_SECRET",
                ))
            }
        }
        if !secure_url(&self.redirect_url) {
            return Err(invalid(
                key("redirect_url"),
                "must be an https:// URL (http:// only on localhost or 127.0.0.1, for development)",
            ));
        }
        let path = self.redirect_url.split(['?', '#']).next().unwrap_or("");
        if !path.ends_with("/signin/oidc/callback") || path.len() != self.redirect_url.len() {
            return Err(invalid(
                key("redirect_url"),
                "must be this web front's address ending in /signin/oidc/callback, with no query",
            ));
        }
        if !self.scopes.iter().any(|s| s == "openid") {
            return Err(invalid(key("scopes"), "must include \"openid\""));
        }
        if self.scopes.iter().any(|s| {
            s.is_empty()
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        }) {
            return Err(invalid(
                key("scopes"),
                "each scope is one word of printable ASCII, without spaces or quotes",
            ));
        }
        if self.agency_id.trim().is_empty() {
            return Err(invalid(
                key("agency_id"),
                "name the agency (an id of [agencies]) whose people this provider signs in",
            ));
        }
        for (f, v) in [
            ("login_claim", &self.login_claim),
            ("name_claim", &self.name_claim),
            ("roles_claim", &self.roles_claim),
        ] {
            if v.trim().is_empty() {
                return Err(invalid(key(f), "name a claim of the provider's ID token"));
            }
        }
        if self.roles.is_empty() {
            return Err(invalid(
                key("roles"),
                format!(
                    "map at least one value of the `{}` claim to a role ([[web.oidc.roles]] value = \"…\", role = one of {})",
                    self.roles_claim,
                    PERSON_ROLES.join(", ")
                ),
            ));
        }
        for (i, m) in self.roles.iter().enumerate() {
            let role = &m.role;
            if m.value.is_empty() {
                return Err(invalid(
                    format!("web.oidc.roles[{i}].value"),
                    "a claim value must not be empty",
                ));
            }
            if self.roles[..i].contains(m) {
                return Err(invalid(
                    format!("web.oidc.roles[{i}]"),
                    "repeats an earlier mapping",
                ));
            }
            if !PERSON_ROLES.contains(&role.as_str()) {
                return Err(invalid(
                    format!("web.oidc.roles[{i}].role"),
                    format!(
                        "`{role}` is not a role; one of: {}",
                        PERSON_ROLES.join(", ")
                    ),
                ));
            }
        }
        if !(1..=60).contains(&self.timeout_secs) {
            return Err(invalid(key("timeout_secs"), "must be 1 to 60 seconds"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Settings;

    const GOOD: &str = r#"
[web.oidc]
issuer = "https://id.mosa.example/realms/staff"
client_id = "himaya"
client_secret = "s3cret"
redirect_url = "https://himaya.example/signin/oidc/callback"
agency_id = "mosa-cairo"
roles_claim = "groups"

[[web.oidc.roles]]
value = "Himaya-Caseworkers"
role = "caseworker"

[[web.oidc.roles]]
value = "/staff/supervisors"
role = "supervisor"
"#;

    /// Loads the shipped configuration with `extra` on top: the settings, or the error.
    fn load(extra: &str) -> Result<Settings, String> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let stamp: String = format!("{:?}", std::time::SystemTime::now())
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        let file = std::env::temp_dir().join(format!("himaya-oidc-{stamp}.toml"));
        std::fs::write(&file, extra).unwrap();
        let r = Settings::load(&dir, Some(&file)).map_err(|e| e.to_string());
        let _ = std::fs::remove_file(&file);
        r
    }

    #[test]
    fn oidc_is_off_unless_configured_and_loads_with_its_defaults() {
        assert!(load("").unwrap().web.oidc.is_none());
        let s = load(GOOD).unwrap();
        let o = s.web.oidc.unwrap();
        assert_eq!(o.scopes, ["openid", "profile"]);
        assert_eq!(o.login_claim, "preferred_username");
        assert_eq!(o.timeout_secs, 10);
        // Claim values keep their case and their slashes.
        assert_eq!(o.roles[0].value, "Himaya-Caseworkers");
        assert_eq!(o.roles[1].value, "/staff/supervisors");
        assert!(!format!("{o:?}").contains("s3cret"));
    }

    #[test]
    fn bad_oidc_settings_name_their_key() {
        let cases = [
            ("client_secret = \"s3cret\"\n", "", "web.oidc.client_secret"),
            (
                "https://id.mosa.example/realms/staff",
                "http://id.mosa.example",
                "web.oidc.issuer",
            ),
            (
                "https://id.mosa.example/realms/staff",
                "http://127.evil.example",
                "web.oidc.issuer",
            ),
            (
                "/signin/oidc/callback",
                "/callback",
                "web.oidc.redirect_url",
            ),
            (
                "\"caseworker\"",
                "\"social_worker\"",
                "web.oidc.roles[0].role",
            ),
            (
                "/staff/supervisors\"\nrole = \"supervisor\"",
                "Himaya-Caseworkers\"\nrole = \"caseworker\"",
                "web.oidc.roles[1]",
            ),
            (
                "agency_id",
                "scopes = [\"profile\"]\nagency_id",
                "web.oidc.scopes",
            ),
            (
                "agency_id = \"mosa-cairo\"",
                "agency_id = \"\"",
                "web.oidc.agency_id",
            ),
            ("roles_claim", "colour = \"blue\"\nroles_claim", "colour"),
        ];
        for (from, to, key) in cases {
            let e = load(&GOOD.replace(from, to)).unwrap_err();
            assert!(e.contains(key), "{key}: {e}");
        }
    }

    #[test]
    fn digits_and_time_zone_load_and_bad_ones_name_their_key() {
        let s = load("").unwrap();
        assert_eq!(s.web.digits, Digits::Latin);
        assert_eq!(s.web.utc_offset_secs(), 2 * 3600);
        let s = load("[web]\ndigits = \"arabic_indic\"\ntime_zone = \"-03:30\"\n").unwrap();
        assert_eq!(s.web.digits, Digits::ArabicIndic);
        assert_eq!(s.web.utc_offset_secs(), -(3 * 3600 + 30 * 60));
        let e = load("[web]\ndigits = \"roman\"\n").unwrap_err();
        assert!(
            e.contains("web.digits") && e.contains("arabic_indic"),
            "{e}"
        );
        for bad in ["Africa/Cairo", "+2", "+02:60", "+15:00", "02:00", ""] {
            let e = load(&format!("[web]\ntime_zone = \"{bad}\"\n")).unwrap_err();
            assert!(e.contains("web.time_zone"), "{bad}: {e}");
        }
        assert_eq!(utc_offset_secs("+14:00"), Some(14 * 3600));
        assert_eq!(utc_offset_secs("+00:00"), Some(0));
    }

    #[test]
    fn loopback_http_is_allowed_for_development_only() {
        assert!(secure_url("http://127.0.0.1:9000/oidc"));
        assert!(secure_url("http://localhost:9000"));
        assert!(secure_url("http://[::1]:9000/"));
        assert!(secure_url("https://id.example"));
        assert!(!secure_url("http://127.evil.example/"));
        assert!(!secure_url("http://10.0.0.1/"));
        assert!(!secure_url("https://"));
        assert!(!secure_url("ftp://localhost/"));
    }
}
