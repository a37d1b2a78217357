//! Starts the real hub against real PostgreSQL and RabbitMQ, each test in its own
//! database and vhost (created here, dropped when the test ends, even on panic), with
//! agencies simulated as real HTTP servers.
#![allow(dead_code)]

pub mod otlp;

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::{Json, Router};
use himaya::hub::{Component, Hub};
use himaya_proto::v1 as pb;
use himaya_settings::{SecretString, Settings};
use sqlx::{Connection, PgConnection, PgPool};
use tonic::transport::Channel;

/// A builder for the tests' own HTTP clients (RabbitMQ's management API, the hub's web
/// front and webhooks, chromedriver). Every test client is built through here: reqwest
/// takes rustls's process-wide provider (it is built with `rustls-no-provider`) and panics
/// without one, so a client built directly would pass or fail by which test ran first.
pub fn http_builder() -> reqwest::ClientBuilder {
    himaya_connect::install_crypto_provider();
    reqwest::Client::builder()
}

/// A plain client from [`http_builder`].
pub fn http() -> reqwest::Client {
    http_builder().build().expect("an HTTP client")
}

/// The body of a GET of `url`, as text.
pub async fn text_of(url: &str) -> String {
    http().get(url).send().await.unwrap().text().await.unwrap()
}

pub fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

fn pg_admin() -> String {
    env_or(
        "HIMAYA_TEST_PG",
        "postgres://postgres:postgres@127.0.0.1:5432/postgres",
    )
}

fn rabbit_api() -> String {
    env_or("HIMAYA_TEST_RABBIT_API", "http://127.0.0.1:15672")
}

fn amqp_base() -> String {
    env_or("HIMAYA_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672")
}

/// One request as the simulated agency saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub content_type: Option<String>,
    pub idempotency_key: Option<String>,
    pub traceparent: Option<String>,
    pub body: serde_json::Value,
    /// When it arrived, for latency figures.
    pub at: Instant,
}

/// How the simulated agency answers one request.
#[derive(Debug, Clone)]
pub enum Step {
    /// Answer this status at once.
    Status(u16),
    /// Answer this status with this JSON body.
    Answer(u16, serde_json::Value),
    /// Answer after this many milliseconds (longer than the connector's timeout: a timeout).
    Slow(u64, u16),
}

/// A simulated agency system: a real HTTP server on a free port that records what it
/// receives on any path and answers with scripted steps (then 201 with a reference).
#[derive(Clone, Default)]
pub struct FakeAgency {
    pub seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<VecDeque<Step>>>,
}

impl FakeAgency {
    pub async fn start(script: &[u16]) -> (FakeAgency, SocketAddr) {
        Self::scripted(script.iter().map(|s| Step::Status(*s)).collect()).await
    }

    pub async fn scripted(script: Vec<Step>) -> (FakeAgency, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let agency = FakeAgency {
            seen: Arc::default(),
            script: Arc::new(Mutex::new(script.into())),
        };
        let addr = agency.clone().serve(listener);
        (agency, addr)
    }

    /// Serves on `listener` until the returned handle is aborted.
    pub fn serve(self, listener: tokio::net::TcpListener) -> SocketAddr {
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(receive).with_state(self);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        addr
    }

    /// Adds steps to the script.
    pub fn then(&self, steps: impl IntoIterator<Item = Step>) {
        self.script.lock().unwrap().extend(steps);
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Whether a delivery of `referral_id` (the hub's envelope) has arrived.
    pub fn received(&self, referral_id: &str) -> bool {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.body["referral_id"] == referral_id)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn receive(
    State(a): State<FakeAgency>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, Json<serde_json::Value>) {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    a.seen.lock().unwrap().push(Seen {
        path: uri.path().to_owned(),
        content_type: h("content-type"),
        idempotency_key: h("idempotency-key"),
        traceparent: h("traceparent"),
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        at: Instant::now(),
    });
    let step = a.script.lock().unwrap().pop_front();
    // An answer every standard reads a reference from (its own shape, the hub's, FHIR's, Primero's).
    let ok = || {
        serde_json::json!({"reference": "SIM-1", "id": "SIM-1", "data": {"id": "SIM-1"},
            "message": {"search_response": [{"status": "succ", "data": {"reg_records": [{"household_id": "SIM-1"}]}}]}})
    };
    let (status, answer) = match step {
        None => (201, ok()),
        Some(Step::Status(s)) => (s, ok()),
        Some(Step::Answer(s, body)) => (s, body),
        Some(Step::Slow(ms, s)) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            (s, ok())
        }
    };
    (StatusCode::from_u16(status).unwrap(), Json(answer))
}

/// The isolated environment of one test.
pub struct TestEnv {
    pub db_name: String,
    pub vhost: String,
    pub db_url: String,
    pub settings: Settings,
}

impl TestEnv {
    /// A fresh database and vhost; `health_endpoint` is where health-cairo delivers.
    pub async fn new(health_endpoint: Option<SocketAddr>) -> TestEnv {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let db_name = format!("himaya_t_{}", &id[..16]);
        let vhost = format!("himaya_t_{}", &id[..16]);
        let mut admin = PgConnection::connect(&pg_admin())
            .await
            .expect("PostgreSQL must run (scripts/setup starts it)");
        sqlx::query(&format!("CREATE DATABASE {db_name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let api = rabbit_api();
        let http = http();
        let put = http
            .put(format!("{api}/api/vhosts/{vhost}"))
            .basic_auth("guest", Some("guest"))
            .send()
            .await;
        assert!(
            put.map(|r| r.status().is_success()).unwrap_or(false),
            "the RabbitMQ management API must be on (scripts/setup enables it)"
        );
        let perm = http
            .put(format!("{api}/api/permissions/{vhost}/guest"))
            .basic_auth("guest", Some("guest"))
            .json(&serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"}))
            .send()
            .await
            .unwrap();
        assert!(perm.status().is_success());
        let config_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut settings = Settings::load(&config_dir, None).unwrap();
        let db_url = pg_admin()
            .rsplit_once('/')
            .map(|(base, _)| format!("{base}/{db_name}"))
            .unwrap();
        settings.database.url = SecretString::from(db_url.clone());
        settings.bus.url = SecretString::from(format!("{}/{vhost}", amqp_base()));
        settings.grpc.listen = "127.0.0.1:0".parse().unwrap();
        // Development identity on loopback; tests/identity.rs runs mutual TLS instead.
        settings.grpc.tls = None;
        settings.grpc.dev_identity = true;
        settings.relay.poll_interval_ms = 200;
        settings.directory.follow_ms = 250;
        settings.connectors.timeout_ms = 2000;
        // Each test's own port for the webhooks and the web front (base.toml's fixed
        // ports would collide).
        settings.connectors.webhook_listen = Some("127.0.0.1:0".parse().unwrap());
        settings.web.listen = "127.0.0.1:0".parse().unwrap();
        // And for the metrics port; readiness probed often enough for a test to see it
        // change, the SQL gauges sampled each second.
        settings.telemetry.metrics_listen = "127.0.0.1:0".parse().unwrap();
        settings.telemetry.probe_interval_ms = 250;
        settings.telemetry.sample_interval_ms = 1000;
        settings.audit.signing_key_file = std::env::temp_dir().join(format!("{db_name}.key"));
        if let Some(a) = settings.agencies.get_mut("health-cairo") {
            a.endpoint = health_endpoint.map(|addr| format!("http://{addr}/referrals"));
        }
        TestEnv {
            db_name,
            vhost,
            db_url,
            settings,
        }
    }

    pub async fn start(&self) -> Hub {
        Hub::start(self.settings.clone(), &Component::ALL)
            .await
            .expect("hub starts")
    }

    /// A pool on the cases service's schema, its migrations run, and no hub: for the
    /// service's functions called directly.
    pub async fn cases_schema(&self) -> PgPool {
        let pool = himaya_store::connect(&self.db_url, "cases", 2)
            .await
            .unwrap();
        sqlx::migrate!("./services/cases/migrations")
            .run(&pool)
            .await
            .unwrap();
        pool
    }

    pub async fn pool(&self) -> PgPool {
        PgPool::connect(&self.db_url).await.unwrap()
    }

    pub fn amqp_url(&self) -> String {
        format!("{}/{}", amqp_base(), self.vhost)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.settings.audit.signing_key_file);
        let db = self.db_name.clone();
        let vhost = self.vhost.clone();
        // Cleanup must happen even when the test panicked, and Drop cannot await: a
        // short-lived runtime on its own thread does the work.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let http = http();
                let _ = http
                    .delete(format!("{}/api/vhosts/{vhost}", rabbit_api()))
                    .basic_auth("guest", Some("guest"))
                    .send()
                    .await;
                if let Ok(mut admin) = PgConnection::connect(&pg_admin()).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await;
                }
            });
        })
        .join();
    }
}

pub async fn channel(hub: &Hub) -> Channel {
    Channel::from_shared(format!("http://{}", hub.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// The agency an administrator adds while the hub runs: its certificate is issued with
/// the others by [`secure`], the directory knows it only once it is added.
pub const NEW_AGENCY: &str = "clinic-new";

/// Development certificates for every agency of `settings`, in `dir`, and the hub
/// switched to mutual TLS with them. Two more, from the same authority, that it should
/// never issue: `wildcard` (`*.agency.himaya`) and `twin` (two agencies' names).
pub fn secure(settings: &mut Settings, dir: &std::path::Path) -> himaya::dev_certs::DevCerts {
    let ids = settings.agencies.ids();
    let certs = himaya::dev_certs::generate_with(
        dir,
        ids.iter().map(String::as_str),
        1,
        &[
            ("wildcard", &["*.agency.himaya"]),
            (
                "twin",
                &["health-cairo.agency.himaya", "mosa-cairo.agency.himaya"],
            ),
            // An agency the directory gains while the hub runs (tests/it/directory.rs).
            (NEW_AGENCY, &["clinic-new.agency.himaya"]),
        ],
    )
    .expect("development certificates");
    settings.grpc.tls = Some(certs.hub_tls());
    settings.grpc.dev_identity = false;
    let (web_cert, web_key) = certs.pair("web");
    settings.web.client_cert_file = web_cert;
    settings.web.client_key_file = web_key;
    settings
        .validate()
        .expect("a valid mutual TLS configuration");
    certs
}

/// A mutual TLS channel to `addr` trusting `trusted`'s CA and presenting `agency`'s
/// certificate from `client` (none: no client certificate).
pub async fn tls_channel(
    addr: SocketAddr,
    trusted: &himaya::dev_certs::DevCerts,
    client: &himaya::dev_certs::DevCerts,
    agency: Option<&str>,
) -> Result<Channel, tonic::transport::Error> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let read = |p: PathBuf| std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(trusted.ca())))
        .domain_name("localhost");
    if let Some(a) = agency {
        let (cert, key) = client.pair(a);
        config = config.identity(Identity::from_pem(read(cert), read(key)));
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(config)?
        // A handshake the server never finishes fails the test instead of stalling it.
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
}

/// Polls `check` until it returns `Some`, or fails after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits up to `secs` for `sql` (a `count(*)`) to give `n`.
pub async fn wait_count(pool: &PgPool, sql: &str, n: i64, secs: u64, what: &str) {
    eventually(secs, what, || async {
        (count(pool, sql).await == n).then_some(())
    })
    .await
}

pub fn school_request(submission_id: &str) -> pb::SchoolReferralRequest {
    pb::SchoolReferralRequest {
        submission_id: submission_id.into(),
        school_agency_id: "school-cairo-alnour".into(),
        officer_ref: "officer-17".into(),
        referral: Some(himaya_proto::convert::referral_details_to_pb(
            &himaya_record::fixtures::details(),
        )),
    }
}

/// Submits the fixture's school referral as the school; the new case's id.
pub async fn submit_school(ch: &Channel, submission_id: &str) -> String {
    himaya_proto::v1::intake_client::IntakeClient::new(ch.clone())
        .submit_school_referral(from_school(school_request(submission_id)))
        .await
        .unwrap()
        .into_inner()
        .case_id
}

/// The ministry's decision to register `case_id` (at `version`) as a child-labour case:
/// the first step of case work most tests take.
pub fn register(case_id: &str, version: i64) -> pb::DecideAcceptanceRequest {
    pb::DecideAcceptanceRequest {
        case_id: case_id.into(),
        expected_version: version,
        actor: "sw-lead".into(),
        decision: pb::AcceptanceDecision::Register.into(),
        vulnerability_criteria: vec!["exploitative_labour".into()],
        reason: None,
        referred_on_to: None,
        target_groups: vec![],
    }
}

/// A request made as the fixture's school (`school-cairo-alnour`), in development
/// identity mode.
pub fn from_school<T>(msg: T) -> tonic::Request<T> {
    as_agency("school-cairo-alnour", msg)
}

/// A request made as `agency`, in development identity mode.
pub fn as_agency<T>(agency: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("x-himaya-agency", agency.parse().unwrap());
    r
}

/// The ministry withdraws the demo consent (`cns_demo`) of a case at its first version.
pub async fn withdraw_demo_consent(ch: &tonic::transport::Channel, case: &str) {
    use himaya_proto::v1 as pb;
    pb::consents_client::ConsentsClient::new(ch.clone())
        .withdraw_consent(as_agency(
            "mosa-cairo",
            pb::WithdrawConsentRequest {
                case_id: case.into(),
                expected_version: 1,
                actor: "sw-1".into(),
                consent_id: "cns_demo".into(),
            },
        ))
        .await
        .unwrap();
}

pub async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// Registers `case` (version 1) for `criterion` and assigns it to caseworker `sw-1`
/// under supervisor `sup-1` (both added), as the case-owning ministry (`mosa-cairo`).
/// The case is then at version 3.
pub async fn register_and_assign(ch: &Channel, case: &str, criterion: &str) {
    register_and_assign_to(ch, case, criterion, "sw-1").await
}

/// [`register_and_assign`] to the caseworker `caseworker` (a person's id, say).
pub async fn register_and_assign_to(ch: &Channel, case: &str, criterion: &str, caseworker: &str) {
    use himaya_proto::v1::case_work_client::CaseWorkClient;
    let mut work = CaseWorkClient::new(ch.clone());
    let mut staff = pb::staff_client::StaffClient::new(ch.clone());
    for (id, role, sup) in [
        ("sup-1", pb::StaffRole::Supervisor, None),
        (caseworker, pb::StaffRole::Caseworker, Some("sup-1")),
    ] {
        staff
            .add_staff(as_agency(
                "mosa-cairo",
                pb::AddStaffRequest {
                    staff_id: id.into(),
                    role: role.into(),
                    supervisor_id: sup.map(str::to_owned),
                },
            ))
            .await
            .unwrap();
    }
    work.decide_acceptance(as_agency(
        "mosa-cairo",
        pb::DecideAcceptanceRequest {
            case_id: case.to_owned(),
            expected_version: 1,
            actor: "sw-lead".into(),
            decision: pb::AcceptanceDecision::Register.into(),
            vulnerability_criteria: vec![criterion.into()],
            reason: None,
            referred_on_to: None,
            target_groups: vec![],
        },
    ))
    .await
    .unwrap();
    work.assign_case(as_agency(
        "mosa-cairo",
        pb::AssignCaseRequest {
            case_id: case.to_owned(),
            expected_version: 2,
            actor: "sup-1".into(),
            caseworker_id: caseworker.into(),
        },
    ))
    .await
    .unwrap();
}

/// A registered, assigned and assessed case of the fixture with a plan whose action `a1`
/// is health-cairo's, made as the case-owning ministry (`mosa-cairo`, the claim its
/// certificate proves under mutual TLS). Returns the case's version after the plan.
/// The ministry refers the planned health action (`a1`) to the health agency.
pub async fn refer_health_action(ch: &Channel, case: &str) -> pb::ServiceReferral {
    pb::service_referrals_client::ServiceReferralsClient::new(ch.clone())
        .create_service_referral(as_agency(
            "mosa-cairo",
            pb::CreateServiceReferralRequest {
                case_id: case.into(),
                action_id: "a1".into(),
                actor: "sw-1".into(),
                ability_to_pay: pb::AbilityToPay::None.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

pub async fn plan_health_action(ch: &Channel, case: &str) -> i64 {
    use himaya_proto::v1::case_work_client::CaseWorkClient;
    register_and_assign(ch, case, "exploitative_labour").await;
    let mut work = CaseWorkClient::new(ch.clone());
    work.record_assessment(as_agency(
        "mosa-cairo",
        pb::RecordAssessmentRequest {
            case_id: case.to_owned(),
            expected_version: 3,
            actor: "sw-1".into(),
            risk_factors: vec!["عمل في ورشة".into()],
            protective_factors: vec![],
            needs: vec![pb::NeedInput {
                domain: pb::NeedDomain::Health.into(),
                description: "فحص السمع".into(),
            }],
        },
    ))
    .await
    .unwrap();
    let due = (chrono::Utc::now().date_naive() + chrono::Duration::days(14))
        .format("%Y-%m-%d")
        .to_string();
    let planned = work
        .set_plan(as_agency(
            "mosa-cairo",
            pb::SetPlanRequest {
                case_id: case.to_owned(),
                expected_version: 4,
                actor: "sw-1".into(),
                goals: vec![pb::GoalInput {
                    description: "الصحة".into(),
                    actions: vec![pb::ActionInput {
                        description: "فحص".into(),
                        responsible_agency: "health-cairo".into(),
                        service_type: pb::ServiceType::Health.into(),
                        due_on: due,
                    }],
                }],
            },
        ))
        .await
        .unwrap()
        .into_inner();
    planned.version
}

/// The reasons of the next `n` messages in the parking queue of the vhost at `amqp_url`,
/// by message id (waits up to 5 s for them; they stay parked).
pub async fn parked_reasons(
    amqp_url: &str,
    n: usize,
) -> std::collections::BTreeMap<String, String> {
    let bus = himaya_bus::Bus::connect(amqp_url, himaya_bus::Topology::new(""))
        .await
        .unwrap();
    let mut reasons = std::collections::BTreeMap::new();
    for _ in 0..100 {
        reasons = bus
            .parked(usize::MAX)
            .await
            .unwrap()
            .into_iter()
            .map(|p| (p.message_id, p.reason))
            .collect();
        if reasons.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bus.close().await;
    reasons
}

/// A loopback port reserved for a server the test starts later by its address (the web
/// front, whose port an OIDC provider must know before the hub starts): bound with
/// `SO_REUSEADDR` and never listening, so the kernel hands it to nobody else, while the
/// server can still bind it (Linux lets a socket bind beside bound sockets that do not
/// listen). Keep the socket until the server is up, then drop it.
pub fn reserved_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

/// Messages on `queue`, delivered or not: once its consumer has stopped, what was never
/// acknowledged.
pub async fn left_on_queue(bus: &himaya_bus::Bus, queue: &str) -> u32 {
    let ch = bus.channel().await.unwrap();
    let q = ch
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    q.message_count()
}

/// Asserts that the `n` rows `rows` selects (`FROM … WHERE …`) were written in fewer
/// than `n / 2` transactions: rows written together share their `xmin`.
pub async fn assert_batched(pool: &PgPool, rows: &str, n: usize, what: &str) {
    let transactions = count(pool, &format!("SELECT count(DISTINCT xmin::text) {rows}")).await;
    assert!(
        transactions < n as i64 / 2,
        "{transactions} transactions for {n} {what}"
    );
}

/// Publishes `msgs` with confirms, 500 at a time.
pub async fn publish_all(bus: &himaya_bus::Bus, msgs: &[himaya_bus::Outgoing]) {
    for chunk in msgs.chunks(500) {
        for sent in bus.publish_batch(chunk).await.unwrap() {
            sent.unwrap();
        }
    }
}

/// Closes every broker connection of `vhost` through the management API, as a broker
/// restart would (waiting, bounded, until there is one to close).
pub async fn close_connections(vhost: &str) {
    let api = env_or("HIMAYA_TEST_RABBIT_API", "http://127.0.0.1:15672");
    let http = http();
    let names: Vec<String> = eventually(30, "the hub's connections listed", || async {
        let list: serde_json::Value = http
            .get(format!("{api}/api/vhosts/{vhost}/connections"))
            .basic_auth("guest", Some("guest"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let names: Vec<String> = list
            .as_array()?
            .iter()
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect();
        (!names.is_empty()).then_some(names)
    })
    .await;
    for n in &names {
        let url = reqwest::Url::parse(&format!("{api}/api/connections/"))
            .unwrap()
            .join(&urlencode(n))
            .unwrap();
        http.delete(url)
            .basic_auth("guest", Some("guest"))
            .send()
            .await
            .unwrap();
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
