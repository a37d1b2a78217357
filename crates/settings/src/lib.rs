//! Typed configuration, layered: `config/base.toml` → `config/<HIMAYA_ENV>.toml` (optional)
//! → an explicit file → `HIMAYA__SECTION__KEY` environment variables. Validated at start-up;
//! a bad value stops the hub with a message naming the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use himaya_record::{AgencyType, ServiceType};
use himaya_sharing::SharingPolicy;
use serde::Deserialize;

mod agencies;
mod limits;
pub mod retry;
mod routing;
mod standards;
mod traces;
mod web;
pub use agencies::{Agencies, AgencyMap};
pub use limits::ServerLimits;
pub use routing::Obstacle;
pub use standards::{
    FhirSettings, PrimeroLookups, PrimeroSettings, SpdciSettings, StandardsSettings,
    FHIR_HUB_IDENTIFIERS, PRIMERO_CUSTOM_FIELDS,
};
pub use traces::TraceSettings;
pub use web::{Digits, WebSettings, PERSON_ROLES, WEB_COMPONENT_NAME};

/// A value that must never be printed (URLs with passwords, tokens): its `Debug` says
/// `[REDACTED]`, it has no `Display`, its memory is wiped when dropped, and it is read
/// only through [`ExposeSecret::expose_secret`].
pub use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub grpc: GrpcSettings,
    pub database: DatabaseSettings,
    pub bus: BusSettings,
    pub relay: RelaySettings,
    pub connectors: ConnectorSettings,
    pub telemetry: TelemetrySettings,
    pub lifecycle: LifecycleSettings,
    /// Every agency connected to the hub, by directory id: seeded from here, then
    /// followed from the directory's table while the hub runs (see [`Agencies`]).
    pub agencies: Agencies,
    /// How every process follows the directory's agencies.
    #[serde(default)]
    pub directory: DirectorySettings,
    /// Which agency types may receive which data categories, for which purpose.
    #[serde(default)]
    pub sharing: SharingPolicy,
    /// Age rules for consent and assent.
    pub consent: himaya_record::consent::ConsentRules,
    pub audit: AuditSettings,
    pub break_glass: BreakGlassSettings,
    /// Bounds of the gRPC and webhook servers (timeouts, connection and stream caps).
    #[serde(default)]
    pub limits: ServerLimits,
    /// The places referrals may name (config/gazetteer.toml).
    pub gazetteer: himaya_record::gazetteer::Gazetteer,
    /// The web front people sign in to.
    #[serde(default)]
    pub web: WebSettings,
    /// How the hub speaks the agencies' standards where a deployment chooses (FHIR
    /// identifier systems, the SPDCI search's registry type and locale, each Primero
    /// instance's lookups and custom fields).
    #[serde(default)]
    pub standards: StandardsSettings,
    /// How long personal data of closed cases is kept (`[retention]`).
    #[serde(default)]
    pub retention: RetentionSettings,
}

/// Keeping only what must be kept: closed cases lose their personal data this long after
/// their closure, keeping what statistics count (docs/decisions.md, "Retention").
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// Years after its closure that a closed case is anonymised; 0 switches it off.
    #[serde(default = "default_anonymise_after_years")]
    pub anonymise_after_years: u32,
    /// How often the cases service looks for closed cases past the period.
    #[serde(default = "default_retention_check_interval_ms")]
    pub check_interval_ms: u64,
    /// Cases anonymised per transaction (1 to 1000): a full batch is followed by the
    /// next at once, so a backlog is worked through without one long transaction.
    #[serde(default = "default_retention_batch")]
    pub batch: i64,
    /// Days an agency's refusal is kept in its own words (`connectors.deliveries.reason`,
    /// which may quote the child) for operators to take up with the agency; then it is
    /// emptied, the refusal itself kept (1 to 3650).
    #[serde(default = "default_agency_words_keep_days")]
    pub agency_words_keep_days: u32,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            anonymise_after_years: default_anonymise_after_years(),
            check_interval_ms: default_retention_check_interval_ms(),
            batch: default_retention_batch(),
            agency_words_keep_days: default_agency_words_keep_days(),
        }
    }
}

fn default_anonymise_after_years() -> u32 {
    10
}
fn default_retention_check_interval_ms() -> u64 {
    3_600_000
}
fn default_retention_batch() -> i64 {
    50
}
fn default_agency_words_keep_days() -> u32 {
    30
}

/// Emergency access without consent (break-glass).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassSettings {
    /// Agency types that may break the glass: the emergency line on any case, the
    /// others on high-risk cases only.
    pub agency_types: Vec<AgencyType>,
    /// The reasons a caller must choose from.
    pub reason_codes: Vec<String>,
    /// How long one access lasts.
    pub window_minutes: i64,
    /// The minimal emergency data set, as data categories.
    pub categories: std::collections::BTreeSet<himaya_record::DataCategory>,
}

/// The disclosure log's signed checkpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// The hub's ed25519 signing key (64 hex digits); created if missing (development).
    pub signing_key_file: std::path::PathBuf,
    /// How often the head of the chain is signed (if it moved).
    pub checkpoint_interval_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcSettings {
    /// Where the gRPC server listens; port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// Largest request accepted, in bytes; larger ones are refused before decoding.
    pub max_message_bytes: usize,
    /// Accept the caller's agency from `x-himaya-agency` metadata without proof.
    /// Development only, and only on a loopback address: with `tls` set, the agency's
    /// certificate proves who calls.
    pub dev_identity: bool,
    /// Mutual TLS: every call presents an agency certificate issued by `client_ca_file`.
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    /// The hub's issuing authority: agencies enrol with a one-time code and a certificate
    /// signing request, and renew with their current certificate (`himaya.v1.Enrolment`).
    /// None: certificates are issued outside the hub.
    #[serde(default)]
    pub issuer: Option<IssuerSettings>,
}

/// The authority that signs agencies' certificates (its certificate must be one of
/// `grpc.tls.client_ca_file`'s). Its key is provisioned like the audit signing key: a
/// file readable by the directory's process only, never in the repository.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSettings {
    /// The authority's certificate (PEM).
    pub cert_file: PathBuf,
    /// The authority's private key (PEM).
    pub key_file: PathBuf,
    /// How long an issued certificate is valid (days).
    #[serde(default = "default_certificate_days")]
    pub certificate_days: u32,
    /// How long a one-time enrolment code is valid (hours).
    #[serde(default = "default_enrolment_hours")]
    pub enrolment_hours: u32,
}

fn default_certificate_days() -> u32 {
    90
}
fn default_enrolment_hours() -> u32 {
    72
}

/// The hub's TLS identity and the authority that issues agencies' certificates. An
/// agency's certificate names it as `<agency id>.agency.himaya` (a DNS subject
/// alternative name); `himaya dev-certs` makes a development set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The hub's certificate chain (PEM).
    pub cert_file: PathBuf,
    /// The hub's private key (PEM); keep it mode 0600, never in the repository.
    pub key_file: PathBuf,
    /// The certificate authority whose certificates identify agencies (PEM).
    pub client_ca_file: PathBuf,
}

/// A sharing rule as written, before its words are known to be vocabulary.
#[derive(Debug, Deserialize)]
struct RawRule {
    agency_type: Option<String>,
    purpose: Option<String>,
    categories: Option<Vec<String>>,
}

/// Names the first rule of `[[sharing.rules]]` that is not right, and where: an unknown
/// agency type, purpose or category, a missing field, or a second rule for the same
/// agency type and purpose (two rules would leave the effective policy to their order).
fn check_policy(rules: Option<Vec<RawRule>>) -> Result<(), SettingsError> {
    let mut seen: Vec<(String, String, usize)> = Vec::new();
    for (i, r) in rules.unwrap_or_default().iter().enumerate() {
        let key = |f: &str| format!("sharing.rules[{i}].{f}");
        let words = |v: &[&'static str]| v.join(", ");
        let Some(t) = &r.agency_type else {
            return Err(invalid(key("agency_type"), "missing"));
        };
        if AgencyType::parse(t).is_none() {
            let all: Vec<_> = AgencyType::ALL.iter().map(|a| a.as_str()).collect();
            return Err(invalid(
                key("agency_type"),
                format!("`{t}` is not an agency type; one of: {}", words(&all)),
            ));
        }
        let Some(p) = &r.purpose else {
            return Err(invalid(key("purpose"), "missing"));
        };
        if himaya_record::Purpose::parse(p).is_none() {
            let all: Vec<_> = himaya_record::Purpose::ALL
                .iter()
                .map(|a| a.as_str())
                .collect();
            return Err(invalid(
                key("purpose"),
                format!("`{p}` is not a purpose; one of: {}", words(&all)),
            ));
        }
        let Some(categories) = &r.categories else {
            return Err(invalid(
                key("categories"),
                "missing (list the data categories allowed)",
            ));
        };
        for (j, c) in categories.iter().enumerate() {
            if himaya_record::DataCategory::parse(c).is_none() {
                let all: Vec<_> = himaya_record::DataCategory::ALL
                    .iter()
                    .map(|a| a.as_str())
                    .collect();
                return Err(invalid(
                    format!("sharing.rules[{i}].categories[{j}]"),
                    format!("`{c}` is not a data category; one of: {}", words(&all)),
                ));
            }
        }
        if let Some((_, _, first)) = seen.iter().find(|(st, sp, _)| st == t && sp == p) {
            return Err(invalid(
                format!("sharing.rules[{i}]"),
                format!("repeats agency type `{t}` × purpose `{p}` of sharing.rules[{first}]; merge them into one rule"),
            ));
        }
        seen.push((t.clone(), p.clone(), i));
    }
    Ok(())
}

/// The name an agency's certificate must carry.
pub fn agency_certificate_name(agency_id: &str) -> String {
    format!("{agency_id}.agency.himaya")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://user@host:port/database`.
    pub url: SecretString,
    pub max_connections: u32,
    /// The authority (PEM) that issued the database server's certificate. Set, every
    /// connection is TLS with `sslmode=verify-full`: the certificate must chain to it and
    /// name the URL's host, whatever `sslmode` the URL asks.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The hub's own certificate (PEM) for a server that asks for one (`clientcert` in
    /// `pg_hba.conf`); with `client_key_file`.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// The private key (PEM) of `client_cert_file`.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// Connections kept for urgent work alone, apart from `max_connections`, in the
    /// cases service (the urgent intake writer), the router and the connectors (their
    /// urgent lanes): a burst of routine referrals cannot make an urgent one wait for a
    /// connection. Opened as needed, on the urgent runtime (`himaya_bus::urgent`).
    #[serde(default = "default_urgent_connections")]
    pub urgent_connections: u32,
    /// At most this many of the process's routine background transactions run at once:
    /// the consumers' batches (router, answers, disclosure log) and the relays' claims.
    /// Intake, the connectors (their calls and their records: the stage that sets the
    /// hub's ceiling) and the urgent lanes never wait for one, and no transaction waits
    /// more than a second for one (`himaya_bus::TURN_WAIT`). The stages that record
    /// what has already happened (the routine answers, the disclosure log, the
    /// connectors' relay of the answers) take a turn only when no stage on a referral's
    /// way to its agency waits for one (`himaya_bus::Turns`).
    /// On a machine whose cores the pipeline keeps full, a routine referral's statements
    /// otherwise queue for a core behind every background backend (`docs/decisions.md`,
    /// "Background work takes turns" and "The records give way"). 0: no bound.
    #[serde(default = "default_background_transactions")]
    pub background_transactions: u32,
}

fn default_urgent_connections() -> u32 {
    2
}

fn default_background_transactions() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusSettings {
    /// `amqp://user:password@host:port/vhost`; `amqps://` for TLS (port 5671).
    pub url: SecretString,
    /// The authority (PEM) that issued the broker's certificate: an `amqps://` broker's
    /// certificate must chain to it (and to nothing else) and name the URL's host.
    /// Unset, `amqps://` trusts the system's authorities. Set, `url` must be `amqps://`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The hub's own certificate (PEM) for a broker that asks for one
    /// (`ssl_options.fail_if_no_peer_cert`); with `client_key_file`.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// The private key (PEM) of `client_cert_file`.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// The other nodes of the same RabbitMQ cluster, tried in turn after `url` whenever
    /// a connection must be made (at start, and each time one is lost): a process whose
    /// node dies carries on through another. A list in a file; in the environment
    /// (`HIMAYA__BUS__URLS`) comma-separated (a comma inside a password: `%2C`).
    #[serde(default, deserialize_with = "url_list")]
    pub urls: Vec<SecretString>,
    /// Prefix of every exchange and queue name, so hubs can share a broker.
    pub prefix: String,
    /// Unacknowledged messages a consumer holds at once.
    pub prefetch: u16,
}

impl BusSettings {
    /// Every address of the broker, `url` first, each once: the order a connection tries.
    pub fn addresses(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::with_capacity(1 + self.urls.len());
        for u in std::iter::once(&self.url).chain(&self.urls) {
            let u = u.expose_secret().trim();
            if !u.is_empty() && !out.iter().any(|seen| seen == u) {
                out.push(u.to_owned());
            }
        }
        out
    }
}

/// A list of URLs from a TOML array, or from one string with commas (an environment
/// variable holds no array).
fn url_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<SecretString>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<String>),
        One(String),
    }
    let all = match OneOrMany::deserialize(d)? {
        OneOrMany::Many(v) => v,
        OneOrMany::One(s) => s.split(',').map(str::to_owned).collect(),
    };
    Ok(all
        .into_iter()
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .map(SecretString::from)
        .collect())
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySettings {
    /// Fallback poll of the outbox; normally a database notification wakes the relay.
    pub poll_interval_ms: u64,
    /// Outbox rows published per round trip of confirms.
    pub batch_size: i64,
    /// Database connections of each service's relay, a pool of its own: a burst of
    /// intake calls cannot starve the relay of connections, nor the relay the calls.
    #[serde(default = "default_relay_connections")]
    pub connections: u32,
    /// Sent outbox rows are deleted once they are this old (the outbox holds what is
    /// not yet sent, and a short record of what was).
    #[serde(default = "default_keep_sent_secs")]
    pub keep_sent_secs: u64,
    /// A consumer remembers a processed message id this long (its inbox), so a copy
    /// that arrives again within it is dropped. Longer than any redelivery: the broker's
    /// redeliveries come within minutes, a relay's republish after a crash at once.
    #[serde(default = "default_inbox_keep_hours")]
    pub inbox_keep_hours: u64,
    /// A relay leases the rows it claims for this long: no other relay publishes them
    /// meanwhile. Longer than a batch's publish and confirms (milliseconds; seconds on
    /// a slow broker): a relay that died holding a lease delays its rows this long, and
    /// one whose broker does not confirm within it gives the rows up.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
}

fn default_relay_connections() -> u32 {
    4
}
fn default_keep_sent_secs() -> u64 {
    3_600
}
fn default_inbox_keep_hours() -> u64 {
    168
}
fn default_lease_secs() -> u64 {
    30
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorSettings {
    /// Timeout of one outbound HTTP call to an agency.
    pub timeout_ms: u64,
    /// Calls per delivery before the message goes back to the bus (which tries again
    /// later): 5xx, 429, 408, timeouts and refused connections are tried again; a 4xx is
    /// the agency's answer and is never repeated.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// First pause between two calls; doubled each time, with jitter (each pause between
    /// half its step and the step, see [`retry`]).
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// Failed calls in a row after which an agency's circuit opens: no call is made to
    /// it until `breaker_cooldown_ms` has passed, then one trial call decides.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    #[serde(default = "default_breaker_cooldown_ms")]
    pub breaker_cooldown_ms: u64,
    /// Largest request body an agency may post to the hub's webhooks.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Deliveries a connector sends to the agency side by side (so also the most calls in
    /// flight to one agency, whatever the path) and whose answers it records in one
    /// transaction. It takes up to this many messages from the agency's queue at once (a
    /// message holds one delivery, or up to 32 one routing transaction sent the agency);
    /// the broker sends up to twice this many messages ahead.
    #[serde(default = "default_connector_batch")]
    pub batch: u16,
    /// Where the agencies' webhooks listen (HTTP); none: no webhooks.
    #[serde(default)]
    pub webhook_listen: Option<std::net::SocketAddr>,
    /// The hub's gRPC address the webhooks call, as the agency that posted; none: the
    /// hub in this same process.
    #[serde(default)]
    pub hub_url: Option<String>,
    /// Under mutual TLS the webhooks call the hub with the posting agency's certificate
    /// from here (`ca.pem`, `<agency>.pem`, `<agency>.key`, as `himaya dev-certs` makes).
    #[serde(default = "default_client_certs_dir")]
    pub client_certs_dir: PathBuf,
}

fn default_client_certs_dir() -> PathBuf {
    PathBuf::from(".himaya/certs")
}

fn default_attempts() -> u32 {
    3
}
fn default_backoff_ms() -> u64 {
    200
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_cooldown_ms() -> u64 {
    30_000
}
fn default_connector_batch() -> u16 {
    64
}
fn default_max_body_bytes() -> usize {
    256 * 1024
}

/// The standard an agency's system speaks; each has its mapping under `connectors/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// The hub's own JSON envelope around the redacted case (`endpoint` is the full URL).
    #[default]
    HimayaJson,
    /// HL7 FHIR R4: a transaction Bundle of Patient + ServiceRequest to the FHIR base URL;
    /// Task status changes back.
    FhirR4,
    /// Primero API v2: `POST {endpoint}/api/v2/cases`, referrals and transfers.
    PrimeroV2,
    /// Justice: the strictest minimal data set, `POST {endpoint}/legal-referrals`.
    JusticeMinimal,
    /// A social-registry search in the style of SPDCI (`POST {endpoint}/registry/sync/search`).
    SpdciRegistry,
    /// A school's system: outcome feedback out, referrals in.
    School,
    /// The social emergency line: assignment acknowledgements out, escalations in.
    EmergencyLine,
}

impl Protocol {
    pub const ALL: &'static [Protocol] = &[
        Protocol::HimayaJson,
        Protocol::FhirR4,
        Protocol::PrimeroV2,
        Protocol::JusticeMinimal,
        Protocol::SpdciRegistry,
        Protocol::School,
        Protocol::EmergencyLine,
    ];

    /// The protocol a stored word names (the directory's table keeps [`Protocol::as_str`]).
    pub fn parse(s: &str) -> Option<Protocol> {
        Protocol::ALL.iter().copied().find(|p| p.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::HimayaJson => "himaya_json",
            Protocol::FhirR4 => "fhir_r4",
            Protocol::PrimeroV2 => "primero_v2",
            Protocol::JusticeMinimal => "justice_minimal",
            Protocol::SpdciRegistry => "spdci_registry",
            Protocol::School => "school",
            Protocol::EmergencyLine => "emergency_line",
        }
    }
}

/// The case lifecycle's rules from the field (docs/domain.md, "Rules and figures"), as
/// configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleSettings {
    /// Open cases one caseworker may hold (the seeds: 25).
    pub max_cases_per_caseworker: i64,
    /// Caseworkers one supervisor may oversee (the seeds: 5).
    pub max_caseworkers_per_supervisor: i64,
    /// How often the deadline engine looks for missed deadlines.
    pub deadline_check_interval_ms: u64,
    /// Vulnerability criteria an assessment may record.
    pub vulnerability_criteria: Vec<String>,
    /// Target groups a case may be classed in (the field: care institution, foster
    /// family, cash-transfer household, family affected by violence).
    pub target_groups: Vec<String>,
    /// Criteria that are material need only: alone they never qualify for registration.
    pub material_need_criteria: Vec<String>,
    /// Where material-need-only referrals are referred on to (a cash-assistance agency).
    pub relief_agency: String,
    /// Days before a child's 18th birthday that a `turns_18_soon` deadline falls due, so
    /// the closure or the move to adult services is planned ahead (1 to 365).
    pub turns_18_warning_days: i64,
    pub deadlines: RiskDeadlineSettings,
}

/// Deadlines per risk level.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskDeadlineSettings {
    pub high: DeadlineSettings,
    pub medium: DeadlineSettings,
    pub low: DeadlineSettings,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadlineSettings {
    /// From registration to a caseworker assigned.
    pub assign_within_secs: i64,
    /// From assignment to the child seen.
    pub first_contact_within_secs: i64,
    /// Between reviews.
    pub review_every_secs: i64,
    /// From a service referral sent to the receiving agency accepting or rejecting it.
    pub service_referral_answer_within_secs: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// `pretty` for people, `json` for log collectors.
    pub format: LogFormat,
    /// `tracing` filter, e.g. `info,himaya=debug`.
    pub filter: String,
    /// Where each process serves `GET /metrics` (Prometheus), `/livez` and `/readyz`:
    /// plain HTTP, apart from the mutual-TLS gRPC port (port 0: any free port).
    #[serde(default = "default_metrics_listen")]
    pub metrics_listen: SocketAddr,
    /// How often the gauges read from PostgreSQL (cases, deadlines, caseloads, the
    /// disclosure log, outboxes) and the broker (queue depths) are sampled: never per
    /// scrape.
    #[serde(default = "default_sample_interval_ms")]
    pub sample_interval_ms: u64,
    /// The statement timeout of one sample's queries.
    #[serde(default = "default_sample_timeout_ms")]
    pub sample_timeout_ms: u64,
    /// How often readiness checks that PostgreSQL and RabbitMQ answer.
    #[serde(default = "default_probe_interval_ms")]
    pub probe_interval_ms: u64,
    /// OpenTelemetry traces (`[telemetry.traces]`); off unless an endpoint is set.
    #[serde(default)]
    pub traces: TraceSettings,
}

fn default_metrics_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

fn default_sample_interval_ms() -> u64 {
    15_000
}

fn default_sample_timeout_ms() -> u64 {
    5_000
}

fn default_probe_interval_ms() -> u64 {
    2_000
}

impl TelemetrySettings {
    pub fn sample_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.sample_interval_ms.max(100))
    }

    pub fn sample_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.sample_timeout_ms.max(10))
    }

    pub fn probe_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.probe_interval_ms.max(50))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// How every process follows the directory's table of agencies.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectorySettings {
    /// How often each process looks for a change of the agencies (one indexed statement):
    /// the most an added, changed or suspended agency waits to take effect everywhere.
    pub follow_ms: u64,
}

impl Default for DirectorySettings {
    fn default() -> DirectorySettings {
        DirectorySettings { follow_ms: 1_000 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgencySettings {
    pub agency_type: AgencyType,
    pub name_ar: String,
    pub name_en: String,
    #[serde(default)]
    pub services: Vec<ServiceType>,
    /// Governorates served; `*` for everywhere.
    #[serde(default)]
    pub governorates: Vec<String>,
    /// Where the agency's system receives deliveries (HTTP POST); none: not yet connected.
    pub endpoint: Option<String>,
    /// The standard its system speaks (default: the hub's own JSON envelope).
    #[serde(default)]
    pub protocol: Protocol,
    /// The bearer token the agency's system presents on the hub's webhooks
    /// (`HIMAYA__AGENCIES__<ID>__INBOUND_TOKEN`); none: it cannot post to them.
    #[serde(default)]
    pub inbound_token: Option<SecretString>,
    /// The credential the agency's system asks of the hub on every delivery and poll
    /// (`Authorization: Bearer`; `HIMAYA__AGENCIES__<ID>__OUTBOUND_TOKEN`).
    #[serde(default)]
    pub outbound_token: Option<SecretString>,
    /// Primero only, instead of `outbound_token`: the Primero user the hub logs in as
    /// (`POST {endpoint}/api/v2/tokens`). The JWT it is given is used until shortly
    /// before it expires, and renewed at once when Primero answers 401.
    #[serde(default)]
    pub login_user: Option<String>,
    /// That user's password (`HIMAYA__AGENCIES__<ID>__LOGIN_PASSWORD`).
    #[serde(default)]
    pub login_password: Option<SecretString>,
    /// The agency's own codes for the governorates the hub names (`"القاهرة" = "EG01"`,
    /// Primero's location codes): deliveries carry the code, and a code the agency sends
    /// is read back as the name. A governorate without a code goes by its name.
    #[serde(default)]
    pub place_codes: BTreeMap<String, String>,
    /// Primero only: pull changed cases every this many milliseconds (for a directorate
    /// whose Primero cannot push); none: it pushes to the webhook.
    #[serde(default)]
    pub poll_interval_ms: Option<u64>,
    /// Cut off by an administrator (the directory's `SetAgencyStatus`): its calls and
    /// webhook posts are refused as unauthenticated and the router sends it nothing new.
    /// Never set in a configuration file (it seeds active agencies).
    #[serde(default, skip_deserializing)]
    pub suspended: bool,
}

impl AgencySettings {
    /// The agency's code for a governorate the hub names, or the name itself.
    pub fn place_code<'a>(&'a self, governorate: &'a str) -> &'a str {
        self.place_codes
            .get(governorate)
            .map_or(governorate, String::as_str)
    }

    /// The governorate a code the agency sent stands for, or the text itself.
    pub fn place_named<'a>(&'a self, code: &'a str) -> &'a str {
        self.place_codes
            .iter()
            .find(|(_, c)| c.as_str() == code)
            .map_or(code, |(name, _)| name.as_str())
    }

    /// Whether it serves every governorate (`*`).
    pub fn covers_everywhere(&self) -> bool {
        self.governorates.iter().any(|g| g == "*")
    }

    pub fn covers(&self, governorate: &str) -> bool {
        self.governorates
            .iter()
            .any(|g| g == "*" || g == governorate)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration could not be read: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration key `{key}`: {problem}")]
    Invalid { key: String, problem: String },
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

impl Settings {
    /// Loads the layers from `config_dir` (and `extra`, a file given on the command line).
    pub fn load(config_dir: &Path, extra: Option<&Path>) -> Result<Settings, SettingsError> {
        let env = std::env::var("HIMAYA_ENV").unwrap_or_else(|_| "local".into());
        let mut b = config::Config::builder()
            .add_source(config::File::from(config_dir.join("gazetteer.toml")))
            .add_source(config::File::from(config_dir.join("base.toml")))
            .add_source(config::File::from(config_dir.join(format!("{env}.toml"))).required(false));
        if let Some(path) = extra {
            b = b.add_source(config::File::from(PathBuf::from(path)));
        }
        let layered = b
            .add_source(
                config::Environment::with_prefix("HIMAYA")
                    .prefix_separator("__")
                    .separator("__"),
            )
            .build()?;
        // The sharing policy is checked rule by rule first, so a mistake is named by its
        // place (`sharing.rules[2].categories`), not only by the bad word.
        check_policy(
            layered
                .get::<Option<Vec<RawRule>>>("sharing.rules")
                .ok()
                .flatten(),
        )?;
        let mut settings: Settings = layered.try_deserialize()?;
        settings.place_agencies()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Writes every agency's governorates under their official names (so "القاهره" in a
    /// configuration covers the children of "القاهرة"); an unknown one is refused by key.
    fn place_agencies(&mut self) -> Result<(), SettingsError> {
        if self.gazetteer.governorates.is_empty() {
            return Err(invalid(
                "gazetteer.governorates",
                "the gazetteer has no governorate (config/gazetteer.toml)",
            ));
        }
        for (id, a) in self.agencies.iter_mut() {
            for g in a.governorates.iter_mut().filter(|g| *g != "*") {
                let Some(known) = self.gazetteer.governorate(g) else {
                    return Err(invalid(
                        format!("agencies.{id}.governorates"),
                        format!(
                            "names a governorate that is not in the gazetteer; one of: {}",
                            self.gazetteer.choices()
                        ),
                    ));
                };
                *g = known.name_ar.clone();
            }
        }
        Ok(())
    }

    /// Checks what serde cannot: names, URLs, limits.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if let Some(i) = &self.grpc.issuer {
            if !(1..=397).contains(&i.certificate_days) {
                return Err(invalid(
                    "grpc.issuer.certificate_days",
                    "must be between 1 and 397 days (90 is usual)",
                ));
            }
            if !(1..=720).contains(&i.enrolment_hours) {
                return Err(invalid(
                    "grpc.issuer.enrolment_hours",
                    "must be between 1 and 720 hours",
                ));
            }
            if self.grpc.tls.is_none() {
                return Err(invalid(
                    "grpc.issuer",
                    "needs grpc.tls: the certificates it issues identify agencies over mutual TLS",
                ));
            }
        }
        if !(50..=60_000).contains(&self.directory.follow_ms) {
            return Err(invalid(
                "directory.follow_ms",
                "must be between 50 and 60000 (milliseconds)",
            ));
        }
        if self.grpc.max_message_bytes < 1024 {
            return Err(invalid("grpc.max_message_bytes", "must be at least 1024"));
        }
        match (&self.grpc.tls, self.grpc.dev_identity) {
            (Some(_), true) => {
                return Err(invalid(
                    "grpc.dev_identity",
                    "must be false when grpc.tls is set: the agency's certificate is its identity",
                ))
            }
            (None, true) if !self.grpc.listen.ip().is_loopback() => {
                return Err(invalid(
                    "grpc.dev_identity",
                    "trusts an unproven header, so it is allowed only on a loopback grpc.listen; \
                     set grpc.tls (mutual TLS with agency certificates) to listen elsewhere",
                ))
            }
            (None, false) => {
                return Err(invalid(
                    "grpc.tls",
                    "no agency could be identified: set grpc.tls (agency certificates), \
                     or grpc.dev_identity = true on a development machine",
                ))
            }
            _ => {}
        }
        self.limits.validate()?;
        self.web.validate()?;
        self.standards.validate()?;
        self.telemetry.traces.validate()?;
        for id in self.standards.primero.keys() {
            if self.agencies.get(id).map(|a| a.protocol) != Some(Protocol::PrimeroV2) {
                return Err(invalid(
                    format!("standards.primero.{id}"),
                    "names no agency speaking Primero (protocol = \"primero_v2\")",
                ));
            }
        }
        self.check_links()?;
        if self.bus.prefetch == 0 {
            return Err(invalid("bus.prefetch", "must be at least 1"));
        }
        if !(1..=1000).contains(&self.connectors.batch) {
            return Err(invalid("connectors.batch", "must be from 1 to 1000"));
        }
        if self.relay.connections < 4 {
            return Err(invalid(
                "relay.connections",
                "must be at least 4 (one listens for notifications, one claims rows, one claims urgent rows, one prunes and vacuums the outbox)",
            ));
        }
        if self.relay.keep_sent_secs == 0 || self.relay.inbox_keep_hours == 0 {
            return Err(invalid(
                "relay.keep_sent_secs",
                "relay.keep_sent_secs and relay.inbox_keep_hours must be greater than 0",
            ));
        }
        if !(1..=1000).contains(&self.retention.batch) {
            return Err(invalid("retention.batch", "must be from 1 to 1000"));
        }
        if self.retention.check_interval_ms == 0 {
            return Err(invalid("retention.check_interval_ms", "must be at least 1"));
        }
        if !(1..=3650).contains(&self.retention.agency_words_keep_days) {
            return Err(invalid(
                "retention.agency_words_keep_days",
                "must be from 1 to 3650",
            ));
        }
        if self.retention.anonymise_after_years > 100 {
            return Err(invalid(
                "retention.anonymise_after_years",
                "must be from 0 (off) to 100",
            ));
        }
        if self.relay.lease_secs == 0 {
            return Err(invalid("relay.lease_secs", "must be at least 1"));
        }
        if self.relay.batch_size < 1 {
            return Err(invalid("relay.batch_size", "must be at least 1"));
        }
        let l = &self.lifecycle;
        if l.max_cases_per_caseworker < 1 || l.max_caseworkers_per_supervisor < 1 {
            return Err(invalid(
                "lifecycle.max_cases_per_caseworker",
                "caseload limits must be at least 1",
            ));
        }
        if let Some(bad) = l
            .target_groups
            .iter()
            .find(|g| g.is_empty() || !g.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        {
            return Err(invalid(
                "lifecycle.target_groups",
                format!("`{bad}` is not a code (lower case letters and _)"),
            ));
        }
        if l.vulnerability_criteria.is_empty() {
            return Err(invalid(
                "lifecycle.vulnerability_criteria",
                "list at least one criterion",
            ));
        }
        if let Some(dup) = l
            .material_need_criteria
            .iter()
            .find(|c| l.vulnerability_criteria.contains(c))
        {
            return Err(invalid(
                "lifecycle.material_need_criteria",
                format!("`{dup}` is also a vulnerability criterion"),
            ));
        }
        match self.agencies.get(&l.relief_agency) {
            Some(a) if a.agency_type == AgencyType::CashAssistance => {}
            _ => {
                return Err(invalid(
                    "lifecycle.relief_agency",
                    "must name a cash_assistance agency in [agencies]",
                ))
            }
        }
        if !(1..=365).contains(&l.turns_18_warning_days) {
            return Err(invalid(
                "lifecycle.turns_18_warning_days",
                "must be a number of days from 1 to 365",
            ));
        }
        for (risk, d) in [
            ("high", &l.deadlines.high),
            ("medium", &l.deadlines.medium),
            ("low", &l.deadlines.low),
        ] {
            if d.assign_within_secs < 1
                || d.first_contact_within_secs < 1
                || d.review_every_secs < 1
                || d.service_referral_answer_within_secs < 1
            {
                return Err(invalid(
                    format!("lifecycle.deadlines.{risk}"),
                    "every deadline must be at least 1 second",
                ));
            }
        }
        let b = &self.break_glass;
        if b.reason_codes.is_empty() || !(1..=1440).contains(&b.window_minutes) {
            return Err(invalid(
                "break_glass",
                "list at least one reason code; window_minutes must be 1 to 1440",
            ));
        }
        let c = &self.consent;
        if !(0..=18).contains(&c.assent_from_age)
            || !(c.assent_from_age..=18).contains(&c.own_consent_from_age)
        {
            return Err(invalid(
                "consent",
                "ages must satisfy 0 <= assent_from_age <= own_consent_from_age <= 18",
            ));
        }
        if self.agencies.is_empty() {
            return Err(invalid(
                "agencies",
                "at least one agency must be configured",
            ));
        }
        for (id, a) in self.agencies.snapshot().iter() {
            let key = |f: &str| format!("agencies.{id}.{f}");
            // An agency id is a DNS label: its certificate names it `<id>.agency.himaya`.
            if id.is_empty()
                || id.len() > 63
                || id.starts_with('-')
                || id.ends_with('-')
                || !id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                return Err(invalid(
                    format!("agencies.{id}"),
                    "agency ids are 1-63 characters of a-z, 0-9 and -, not starting or ending with -",
                ));
            }
            if a.name_ar.trim().is_empty() || a.name_en.trim().is_empty() {
                return Err(invalid(
                    key("name_ar"),
                    "both name_ar and name_en are required",
                ));
            }
            if a.governorates.is_empty() {
                return Err(invalid(
                    key("governorates"),
                    "list the governorates served, or \"*\"",
                ));
            }
            if let Some(t) = &a.inbound_token {
                if t.expose_secret().len() < 24 {
                    return Err(invalid(
                        key("inbound_token"),
                        "a webhook token must be at least 24 characters (e.g. `openssl rand -hex 24`)",
                    ));
                }
            }
            match (&a.login_user, &a.login_password) {
                (None, None) => {}
                (Some(_), None) | (None, Some(_)) => {
                    return Err(invalid(
                        key("login_user"),
                        "a login needs both login_user and login_password",
                    ))
                }
                (Some(_), Some(_)) if a.protocol != Protocol::PrimeroV2 => {
                    return Err(invalid(
                        key("login_user"),
                        "only a Primero (protocol = \"primero_v2\") is logged in to; others take outbound_token",
                    ))
                }
                (Some(_), Some(_)) if a.outbound_token.is_some() => {
                    return Err(invalid(
                        key("login_user"),
                        "give either outbound_token or a login, not both",
                    ))
                }
                (Some(_), Some(_)) => {}
            }
            let mut codes = std::collections::BTreeSet::new();
            for (name, code) in &a.place_codes {
                if name.trim().is_empty() || code.trim().is_empty() || code.len() > 64 {
                    return Err(invalid(
                        key("place_codes"),
                        "each governorate name needs a code of 1-64 characters",
                    ));
                }
                if !codes.insert(code) {
                    return Err(invalid(
                        key("place_codes"),
                        "two governorates have the same code, so it could not be read back",
                    ));
                }
            }
            if let Some(e) = &a.endpoint {
                if !(e.starts_with("http://") || e.starts_with("https://")) {
                    return Err(invalid(
                        key("endpoint"),
                        "must be an http:// or https:// URL",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The encrypted links' settings: a client certificate comes with its key, a CA file
    /// on the bus asks for `amqps://` (plain AMQP would ignore it).
    fn check_links(&self) -> Result<(), SettingsError> {
        for (section, cert, key) in [
            (
                "database",
                &self.database.client_cert_file,
                &self.database.client_key_file,
            ),
            ("bus", &self.bus.client_cert_file, &self.bus.client_key_file),
        ] {
            if cert.is_some() != key.is_some() {
                return Err(invalid(
                    format!("{section}.client_cert_file"),
                    format!("{section}.client_cert_file and {section}.client_key_file go together"),
                ));
            }
        }
        let amqps = self
            .bus
            .url
            .expose_secret()
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("amqps://"));
        if !amqps && (self.bus.ca_file.is_some() || self.bus.client_cert_file.is_some()) {
            return Err(invalid(
                "bus.url",
                "must be an amqps:// URL when bus.ca_file or bus.client_cert_file is set \
                 (the broker's TLS port, 5671 by default)",
            ));
        }
        Ok(())
    }

    /// The path of the project's `config/` directory: `HIMAYA_CONFIG_DIR`, else `./config`.
    pub fn default_dir() -> PathBuf {
        std::env::var_os("HIMAYA_CONFIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("config"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config")
    }

    #[test]
    fn the_shipped_configuration_loads() {
        let s = Settings::load(&dir(), None).unwrap();
        assert!(s
            .agencies
            .snapshot()
            .values()
            .any(|a| a.agency_type == AgencyType::Health));
        assert!(!format!("{s:?}").contains("guest:guest"));
    }

    /// The bus's addresses: `url` first, then `urls` from a TOML list or a comma-separated
    /// string (how an environment variable gives it), each once.
    #[test]
    fn bus_urls_come_as_a_list_or_with_commas_and_follow_bus_url() {
        let shipped = Settings::load(&dir(), None).unwrap();
        assert_eq!(
            shipped.bus.addresses(),
            ["amqp://guest:guest@127.0.0.1:5672/%2f"]
        );
        let from = |v: config::Value| -> BusSettings {
            config::Config::builder()
                .set_override("url", "amqp://u:p@n1:5672/%2f")
                .unwrap()
                .set_override("prefix", "")
                .unwrap()
                .set_override("prefetch", 8)
                .unwrap()
                .set_override("urls", v)
                .unwrap()
                .build()
                .unwrap()
                .try_deserialize()
                .unwrap()
        };
        let want = [
            "amqp://u:p@n1:5672/%2f",
            "amqp://u:p@n2:5672/%2f",
            "amqp://u:p@n3:5672/%2f",
        ];
        // As HIMAYA__BUS__URLS gives it: one string, commas, spaces, the first repeated.
        let env =
            from(" amqp://u:p@n2:5672/%2f, amqp://u:p@n3:5672/%2f,amqp://u:p@n1:5672/%2f ,".into());
        assert_eq!(env.addresses(), want);
        let list = from(config::Value::from(vec![
            "amqp://u:p@n2:5672/%2f",
            "amqp://u:p@n3:5672/%2f",
        ]));
        assert_eq!(list.addresses(), want);
        // Never printed: the URLs hold the broker's password.
        assert!(!format!("{list:?}").contains("u:p@"));
    }

    #[test]
    fn secrets_are_read_from_the_configuration_and_never_printed() {
        let mut s = Settings::load(&dir(), None).unwrap();
        assert!(s.bus.url.expose_secret().contains("guest:guest"));
        s.database.url = SecretString::from("postgres://hub:db-pass-4711@db/himaya");
        for a in s.agencies.values_mut() {
            a.inbound_token = Some(SecretString::from("inbound-token-0123456789abcdef"));
            a.outbound_token = Some(SecretString::from("outbound-token-4711"));
            a.login_password = Some(SecretString::from("login-pass-4711"));
        }
        let printed = format!("{s:?}");
        for secret in [
            "db-pass-4711",
            "inbound-token",
            "outbound-token",
            "login-pass",
            "guest",
        ] {
            assert!(!printed.contains(secret), "{secret} printed");
        }
        assert!(printed.contains("[REDACTED]"));
        let clone = s.database.url.clone();
        assert_eq!(
            clone.expose_secret(),
            "postgres://hub:db-pass-4711@db/himaya"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut s = Settings::load(&dir(), None).unwrap();
        s.agencies
            .values_mut()
            .for_each(|a| a.endpoint = Some("ftp://x".into()));
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("agencies.") && e.contains("endpoint"), "{e}");
    }

    #[test]
    fn the_turns_18_warning_is_a_lead_time_in_days() {
        let mut s = Settings::load(&dir(), None).unwrap();
        assert_eq!(s.lifecycle.turns_18_warning_days, 90);
        for bad in [0, -1, 366] {
            s.lifecycle.turns_18_warning_days = bad;
            let e = s.validate().unwrap_err().to_string();
            assert!(
                e.contains("lifecycle.turns_18_warning_days") && e.contains("1 to 365"),
                "{e}"
            );
        }
        s.lifecycle.turns_18_warning_days = 365;
        s.validate().unwrap();
    }

    #[test]
    fn retention_has_sane_defaults_and_bounds_named_by_key() {
        let base = Settings::load(&dir(), None).unwrap();
        let r = base.retention;
        assert_eq!(
            (
                r.anonymise_after_years,
                r.check_interval_ms,
                r.batch,
                r.agency_words_keep_days
            ),
            (10, 3_600_000, 50, 30)
        );
        let refused = |f: &dyn Fn(&mut RetentionSettings), key: &str| {
            let mut s = base.clone();
            f(&mut s.retention);
            let e = s.validate().unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        };
        refused(&|r| r.batch = 0, "retention.batch");
        refused(&|r| r.batch = 1001, "retention.batch");
        refused(&|r| r.check_interval_ms = 0, "retention.check_interval_ms");
        refused(
            &|r| r.anonymise_after_years = 101,
            "retention.anonymise_after_years",
        );
        refused(
            &|r| r.agency_words_keep_days = 0,
            "retention.agency_words_keep_days",
        );
        // 0 years: the policy is off, which is allowed.
        let mut off = base.clone();
        off.retention.anonymise_after_years = 0;
        off.validate().unwrap();
    }

    #[test]
    fn a_login_is_whole_for_a_primero_and_alone_and_place_codes_read_back() {
        let base = Settings::load(&dir(), None).unwrap();
        let check = |f: &dyn Fn(&mut AgencySettings)| {
            let mut s = base.clone();
            if let Some(a) = s.agencies.get_mut("mosa-cairo") {
                f(a);
            }
            s.validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let primero_login = |a: &mut AgencySettings| {
            a.protocol = Protocol::PrimeroV2;
            a.login_user = Some("himaya".into());
            a.login_password = Some(SecretString::from("pw"));
        };
        assert_eq!(check(&primero_login), "");
        let e = check(&|a| a.login_user = Some("himaya".into()));
        assert!(
            e.contains("agencies.mosa-cairo.login_user") && e.contains("both"),
            "{e}"
        );
        let e = check(&|a| {
            primero_login(a);
            a.protocol = Protocol::FhirR4;
        });
        assert!(e.contains("only a Primero"), "{e}");
        let e = check(&|a| {
            primero_login(a);
            a.outbound_token = Some(SecretString::from("t"));
        });
        assert!(e.contains("not both"), "{e}");
        let e = check(&|a| {
            a.place_codes.insert("القاهرة".into(), "EG01".into());
            a.place_codes.insert("الجيزة".into(), "EG01".into());
        });
        assert!(e.contains("place_codes") && e.contains("same code"), "{e}");
        let mut cairo = base
            .agencies
            .get("mosa-cairo")
            .map(|a| (*a).clone())
            .unwrap();
        cairo.place_codes.insert("القاهرة".into(), "EG01".into());
        assert_eq!(cairo.place_code("القاهرة"), "EG01");
        assert_eq!(cairo.place_code("الجيزة"), "الجيزة");
        assert_eq!(cairo.place_named("EG01"), "القاهرة");
        assert_eq!(cairo.place_named("الجيزة"), "الجيزة");
    }

    fn policy(text: &str) -> String {
        let extra = std::env::temp_dir().join(format!("himaya-policy-{}.toml", uuid_like()));
        std::fs::write(&extra, text).unwrap();
        let e = Settings::load(&dir(), Some(&extra))
            .unwrap_err()
            .to_string();
        let _ = std::fs::remove_file(&extra);
        e
    }

    fn uuid_like() -> String {
        format!("{:?}", std::time::SystemTime::now())
            .chars()
            .filter(char::is_ascii_digit)
            .collect()
    }

    #[test]
    fn a_bad_policy_is_refused_naming_its_place() {
        let e = policy("[[sharing.rules]]\nagency_type = \"health\"\npurpose = \"statistics\"\ncategories = [\"reference\", \"medical_secrets\"]\n");
        assert!(
            e.contains("sharing.rules[")
                && e.contains("].categories[1]")
                && e.contains("medical_secrets"),
            "{e}"
        );
        let e = policy("[[sharing.rules]]\nagency_type = \"healthy\"\npurpose = \"statistics\"\ncategories = []\n");
        assert!(
            e.contains("].agency_type") && e.contains("`healthy` is not an agency type"),
            "{e}"
        );
        // A layer's rules replace the base's whole policy; two for one pair are refused.
        let rule = "[[sharing.rules]]\nagency_type = \"health\"\npurpose = \"service_provision\"\ncategories = [\"reference\"]\n";
        let e = policy(&format!("{rule}{rule}"));
        assert!(
            e.contains("sharing.rules[1]")
                && e.contains("repeats agency type `health`")
                && e.contains("sharing.rules[0]"),
            "{e}"
        );
    }

    #[test]
    fn an_unproven_identity_is_refused_off_loopback_and_beside_tls() {
        let mut s = Settings::load(&dir(), None).unwrap();
        assert!(
            s.grpc.tls.is_some() && !s.grpc.dev_identity,
            "mutual TLS by default"
        );
        s.grpc.dev_identity = true;
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("must be false when grpc.tls"), "{e}");
        s.grpc.tls = None;
        s.validate().unwrap();
        s.grpc.listen = "0.0.0.0:50051".parse().unwrap();
        let e = s.validate().unwrap_err().to_string();
        assert!(
            e.contains("grpc.dev_identity") && e.contains("loopback"),
            "{e}"
        );
        s.grpc.dev_identity = false;
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("no agency could be identified"), "{e}");
    }

    #[test]
    fn encrypted_links_are_whole() {
        let base = Settings::load(&dir(), None).unwrap();
        let mut s = base.clone();
        s.bus.ca_file = Some("ca.pem".into());
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("`bus.url`") && e.contains("amqps://"), "{e}");
        s.bus.url = SecretString::from("amqps://hub:pw@broker:5671/%2f");
        s.validate().unwrap();
        s.bus.client_cert_file = Some("hub.pem".into());
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("bus.client_cert_file"), "{e}");
        s.bus.client_key_file = Some("hub.key".into());
        s.validate().unwrap();
        let mut s = base;
        s.database.client_key_file = Some("hub.key".into());
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("database.client_cert_file"), "{e}");
        s.database.client_cert_file = Some("hub.pem".into());
        s.database.ca_file = Some("ca.pem".into());
        s.validate().unwrap();
    }
}
