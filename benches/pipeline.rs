//! `cargo bench --bench pipeline`: how many referrals a second the hub carries end to end,
//! and how long each waits, measured open loop, next to what the broker and PostgreSQL
//! alone do on the same machine in the same run.
//!
//! Open loop: for each target rate the send times are fixed in advance (t0 + i/rate); each
//! request is sent at its time by a task of its own, whatever the earlier ones are doing,
//! and every latency runs from the *scheduled* time, so a hub that falls behind shows its
//! queue in the figures instead of slowing the generator down (a closed loop of N
//! submitters hides it). Each rate runs on a fresh database and vhost with every component
//! of the hub in this process, over mutual TLS, delivering to a simulated agency (an HTTP
//! server that answers 201 at once and notes when each referral arrived). Beside the
//! routine school referrals, a hotline escalation every 200 ms (the urgent probe), timed
//! separately. After the send window the run drains: it waits until every accepted
//! referral reached the agency, its answer is recorded on the case and no outbox holds an
//! unsent row (bounded); accepted but never delivered is lost, delivered twice is a
//! duplicate. RESOURCE_EXHAUSTED and UNAVAILABLE answers are counted as shed, not lost.
//!
//! The routine load generator, the hotline probe and the simulated agency each run on a
//! thread of their own (since 2026-12-03, afternoon; before, one thread ran all three and
//! an escalation could wait there behind routine sends), as the systems they stand for
//! are apart from the hub.
//!
//! CPU per referral: utime+stime of this process (the hub runs in it; the load generator,
//! the probe and the simulated agency run on threads named `bench-load`, counted apart) and of every
//! `postgres` and `beam.smp` process, from /proc, before and after each rate (send window
//! and drain), divided by the referrals delivered. The machine is shared: "pg all" and
//! "broker" count everything those servers did meanwhile; "pg own" only the backends
//! connected to this rate's database.
//!
//! Baselines in the same run: the raw broker (persistent messages to a quorum queue with
//! publisher confirms in batches of 100, then consumed with manual acks; lapin directly),
//! raw PostgreSQL (single-row INSERT transactions, each committed, over 1 and over 16
//! connections), and one-at-a-time latencies of the hub, its exits and its connectors.
//! Each rate's delivered referrals/s is printed as a share of the raw publish rate.
//!
//! Knobs (environment variables; every one has a default, so no argument is needed):
//! - HIMAYA_BENCH_RATES: target rates, referrals/s (default 50,100,150,200,300)
//! - HIMAYA_BENCH_SECS: send window per rate, seconds (default 20)
//! - HIMAYA_BENCH_DRAIN_SECS: the longest wait for the backlog after a window (default 60)
//! - HIMAYA_BENCH_MAX_IN_FLIGHT: requests outstanding at once; past it a scheduled request
//!   is counted as not sent (default 20000, far above what the rates need)
//! - HIMAYA_BENCH_CONNECTIONS: gRPC connections the routine load spreads over (default 8;
//!   the hub allows 64 concurrent calls per connection)
//! - HIMAYA_BENCH_TLS: 0 for development identity over plain HTTP/2 (default 1: mutual TLS)
//! - HIMAYA_BENCH_RAW: raw broker messages (default 5000)
//! - HIMAYA_BENCH_PG_SECS: seconds per raw PostgreSQL measure (default 3)
//! - HIMAYA_BENCH_REFERRALS: cases made for the exits' figures (default 400)
//! - HIMAYA_BENCH_CONNECTORS: webhook referrals one at a time (default 100)
//! - HIMAYA_BENCH_ONE_AT_A_TIME: 0 skips the one-at-a-time, exits and connectors rows
//! - HIMAYA_BENCH_OTLP: 1 runs every rate twice in this same run, first without traces,
//!   then with the hub's OpenTelemetry traces exported over OTLP/HTTP (default batch
//!   settings of `[telemetry.traces]`, every trace sampled) to a receiver on the load
//!   thread that decodes each export as a collector would; a "Trace cost" table compares
//!   the two (default 0: no traces, as before). The exporter's own thread counts as the
//!   hub's CPU, the receiver's as the load's. The rows without traces run with the trace
//!   layer installed but gated off: each span asks the gate and is not made. The traced
//!   run of each rate also prints where a referral's time goes: for escalations and
//!   routine referrals apart, when each kind of span (the intake call, each consumer's
//!   batch, routing, the agency call, the answer recorded) starts and ends after the
//!   intake call started, p50 and p99.

#[path = "../tests/it/helpers/mod.rs"]
mod helpers;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use helpers::*;
use himaya_proto::v1 as pb;
use himaya_proto::v1::intake_client::IntakeClient;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use tonic::transport::Channel;

const SCHOOL: &str = "school-cairo-alnour";
const HOTLINE: &str = "hotline-16000";
/// The urgent probe's period: one hotline escalation every 200 ms.
const PROBE_EVERY: Duration = Duration::from_millis(200);
/// What a request may take before the generator gives up on it (the hub's own request
/// timeout is 30 s too).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Linux reports utime and stime in USER_HZ, 100 on every architecture it runs on here.
const TICK_MS: f64 = 10.0;
/// The load generator's and the simulated agency's threads.
const LOAD_THREAD: &str = "bench-load";

fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rates() -> Vec<f64> {
    std::env::var("HIMAYA_BENCH_RATES")
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|r| r.trim().parse::<f64>().ok())
                .filter(|r| *r > 0.0)
                .collect::<Vec<_>>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| vec![50.0, 100.0, 150.0, 200.0, 300.0])
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Milliseconds, or "-" when there was nothing to measure.
fn ms(x: f64) -> String {
    if x.is_nan() {
        "-".to_owned()
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

struct Figures {
    what: &'static str,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn raw_broker(amqp: &str, n: usize, payload_len: usize) -> Vec<Figures> {
    let conn = Connection::connect(amqp, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    ch.queue_declare(
        "bench.raw".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .unwrap();
    let payload = vec![7u8; payload_len];
    let props = BasicProperties::default().with_delivery_mode(2);

    // Throughput: batches of 100 publishes, then their confirms (as the outbox relay does).
    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let mut confirms = Vec::with_capacity(chunk.len());
        for _ in chunk {
            confirms.push(
                ch.basic_publish(
                    "".into(),
                    "bench.raw".into(),
                    BasicPublishOptions::default(),
                    &payload,
                    props.clone(),
                )
                .await
                .unwrap(),
            );
        }
        for c in confirms {
            c.await.unwrap();
        }
    }
    let publish = n as f64 / started.elapsed().as_secs_f64();
    ch.basic_qos(32, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(
            "bench.raw".into(),
            "bench".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    for _ in 0..n {
        let d = consumer.next().await.unwrap().unwrap();
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    let consume = n as f64 / started.elapsed().as_secs_f64();

    // Latency: one message at a time, publish → confirm → delivered → acked.
    let mut lat = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        ch.basic_publish(
            "".into(),
            "bench.raw".into(),
            BasicPublishOptions::default(),
            &payload,
            props.clone(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
        let d = consumer.next().await.unwrap().unwrap();
        d.ack(BasicAckOptions::default()).await.unwrap();
        lat.push(t.elapsed());
    }
    lat.sort();
    let _ = conn.close(200, "bench done".into()).await;
    vec![
        Figures {
            what: "raw broker: publish + confirm (batches of 100)",
            per_sec: publish,
            p50_ms: f64::NAN,
            p99_ms: f64::NAN,
        },
        Figures {
            what: "raw broker: consume + manual ack",
            per_sec: consume,
            p50_ms: f64::NAN,
            p99_ms: f64::NAN,
        },
        Figures {
            what: "raw broker: one message publish→confirm→consume→ack",
            per_sec: 1.0 / (lat.iter().sum::<Duration>().as_secs_f64() / lat.len() as f64),
            p50_ms: percentile(&lat, 0.5),
            p99_ms: percentile(&lat, 0.99),
        },
    ]
}

/// Raw PostgreSQL: single-row INSERT transactions of `payload_len` bytes, each committed
/// (so each waits for its WAL flush, as every hub transaction does), by `connections`
/// clients at once for `secs` seconds; transactions per second and their p50/p99.
async fn raw_postgres(
    env: &TestEnv,
    payload_len: usize,
    connections: u32,
    secs: u64,
    what: &'static str,
) -> Figures {
    // The hub's own link to the database (TLS only if configured), not sqlx's default.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(connections)
        .min_connections(connections)
        .connect_with(himaya_store::connect_options(&env.settings.database).unwrap())
        .await
        .unwrap();
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_raw (id BIGSERIAL PRIMARY KEY, body BYTEA NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let payload = Arc::new(vec![7u8; payload_len]);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let workers = (0..connections).map(|_| {
        let (pool, payload) = (pool.clone(), payload.clone());
        tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                sqlx::query("INSERT INTO bench_raw (body) VALUES ($1)")
                    .bind(payload.as_slice())
                    .execute(&pool)
                    .await
                    .unwrap();
                lat.push(t.elapsed());
            }
            lat
        })
    });
    let mut lat = Vec::new();
    for w in futures_util::future::join_all(workers).await {
        lat.extend(w.unwrap());
    }
    let elapsed = started.elapsed();
    lat.sort();
    pool.close().await;
    Figures {
        what,
        per_sec: lat.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
    }
}

/// One referral at a time: the latency a school officer sees when the hub is idle. Then
/// `seed` more cases (not measured) for the exits' figures.
async fn one_at_a_time(env: &TestEnv, agency: &FakeAgency, seed: usize) -> Vec<Figures> {
    let hub = env.start().await;
    let ch = channel(&hub).await;

    // Arrival is the agency's own timestamp, not the moment the polling noticed it.
    let mut lat = Vec::new();
    let mut answered = Vec::new();
    let mut client = IntakeClient::new(ch.clone());
    for i in 0..50 {
        let before = agency.count();
        let t = Instant::now();
        client
            .submit_school_referral(from_school(school_request(&format!("seq-{i}"))))
            .await
            .unwrap();
        answered.push(t.elapsed());
        let at = eventually(30, "sequential delivery", || async {
            agency.requests().get(before).map(|s| s.at)
        })
        .await;
        lat.push(at.duration_since(t));
    }
    lat.sort();
    answered.sort();
    let before = agency.count();
    futures_util::stream::iter(0..seed)
        .map(|i| {
            let ch = ch.clone();
            async move {
                IntakeClient::new(ch)
                    .submit_school_referral(from_school(school_request(&format!("seed-{i}"))))
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    eventually(300, "every seeded delivery", || async {
        (agency.count() >= before + seed).then_some(())
    })
    .await;
    hub.stop().await;
    vec![
        Figures {
            what: "hub: gRPC submit answered (validated, stored, outboxed)",
            per_sec: 1.0
                / (answered.iter().sum::<Duration>().as_secs_f64() / answered.len() as f64),
            p50_ms: percentile(&answered, 0.5),
            p99_ms: percentile(&answered, 0.99),
        },
        Figures {
            what: "hub: one referral gRPC submit → agency HTTP receipt",
            per_sec: 1.0 / (lat.iter().sum::<Duration>().as_secs_f64() / lat.len() as f64),
            p50_ms: percentile(&lat, 0.5),
            p99_ms: percentile(&lat, 0.99),
        },
    ]
}

/// Reads of one case by the health agency: p50/p99 and reads per second.
async fn reads(ch: &Channel, case_id: &str, n: usize, what: &'static str) -> Figures {
    let mut client = pb::cases_client::CasesClient::new(ch.clone());
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        client
            .get_case(as_agency(
                "health-cairo",
                pb::GetCaseRequest {
                    case_id: case_id.into(),
                    purpose: pb::Purpose::ServiceProvision.into(),
                },
            ))
            .await
            .unwrap();
        lat.push(t.elapsed());
    }
    lat.sort();
    Figures {
        what,
        per_sec: 1.0 / (lat.iter().sum::<Duration>().as_secs_f64() / lat.len() as f64),
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
    }
}

/// The exits, on the cases [`one_at_a_time`] left behind (all delivered to health-cairo).
async fn exits(env: &TestEnv) -> Vec<Figures> {
    let pool = env.pool().await;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let cases = count(&pool, "SELECT count(*) FROM cases.cases").await;
    eventually(60, "every delivery's answer recorded", || async {
        (count(&pool, "SELECT count(*) FROM cases.referral_deliveries").await >= cases)
            .then_some(())
    })
    .await;
    let ids: Vec<String> = sqlx::query_scalar("SELECT case_id FROM cases.cases ORDER BY case_id")
        .fetch_all(&pool)
        .await
        .unwrap();
    let case_id = ids[0].clone();

    // Raw baseline: PostgreSQL returning and parsing the record, nothing else.
    let mut lat = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let json: serde_json::Value =
            sqlx::query_scalar("SELECT record FROM cases.cases WHERE case_id = $1")
                .bind(&case_id)
                .fetch_one(&pool)
                .await
                .unwrap();
        std::hint::black_box(serde_json::from_value::<himaya_record::CaseRecord>(json).unwrap());
        lat.push(t.elapsed());
    }
    lat.sort();
    let mut out = vec![Figures {
        what: "raw PostgreSQL: one case record read and parsed",
        per_sec: 1.0 / (lat.iter().sum::<Duration>().as_secs_f64() / lat.len() as f64),
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
    }];
    let started = Instant::now();
    let rows: Vec<serde_json::Value> =
        sqlx::query_scalar("SELECT record FROM cases.cases ORDER BY case_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    for r in rows {
        std::hint::black_box(serde_json::from_value::<himaya_record::CaseRecord>(r).unwrap());
    }
    out.push(Figures {
        what: "raw PostgreSQL: every case record scanned and parsed",
        per_sec: ids.len() as f64 / started.elapsed().as_secs_f64(),
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
    });

    out.push(
        reads(
            &ch,
            &case_id,
            200,
            "hub: case read by an agency (dev identity)",
        )
        .await,
    );
    let started = Instant::now();
    let mut stream = pb::cases_client::CasesClient::new(ch)
        .export_cases(as_agency(
            "health-cairo",
            pb::ExportCasesRequest {
                purpose: pb::Purpose::ServiceProvision.into(),
                after_case_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut exported = 0;
    while stream.message().await.unwrap().is_some() {
        exported += 1;
    }
    assert_eq!(
        exported,
        ids.len(),
        "every case was delivered to health-cairo"
    );
    out.push(Figures {
        what: "hub: export, each case redacted and logged",
        per_sec: exported as f64 / started.elapsed().as_secs_f64(),
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
    });
    hub.stop().await;

    let mut settings = env.settings.clone();
    let dir = std::env::temp_dir().join(format!("{}-bench-certs", env.db_name));
    let certs = secure(&mut settings, &dir);
    let hub = himaya::hub::Hub::start(settings, &himaya::hub::Component::ALL)
        .await
        .unwrap();
    let ch = tls_channel(hub.grpc_addr, &certs, &certs, Some("health-cairo"))
        .await
        .unwrap();
    out.push(
        reads(
            &ch,
            &case_id,
            200,
            "hub: case read by an agency (mutual TLS)",
        )
        .await,
    );
    hub.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// The connectors: a raw HTTP POST to the simulated agency (the baseline), a school
/// system's referral through the webhook (answered, then arrived at the health agency as
/// a FHIR Bundle), sequentially, on a hub whose health agency speaks FHIR R4.
async fn connectors(n: usize) -> Vec<Figures> {
    let (agency, addr) = FakeAgency::start(&[]).await;
    let mut env = TestEnv::new(Some(addr)).await;
    let token = "school-bench-token-0123456789abcdef";
    if let Some(a) = env.settings.agencies.get_mut("health-cairo") {
        a.protocol = himaya_settings::Protocol::FhirR4;
    }
    if let Some(a) = env.settings.agencies.get_mut(SCHOOL) {
        a.protocol = himaya_settings::Protocol::School;
        a.inbound_token = Some(himaya_settings::SecretString::from(token));
    }
    let hub = env.start().await;
    let http = http();
    let hooks = format!(
        "http://{}/agencies/{SCHOOL}/school/referrals",
        hub.webhook_addr.unwrap()
    );
    let mut body: serde_json::Value = serde_json::from_str(include_str!(
        "../connectors/schools/fixtures/referral_in.json"
    ))
    .unwrap();
    let mut raw = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let r = http
            .post(format!("http://{addr}/baseline"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        raw.push(t.elapsed());
    }
    let (mut answered, mut arrived) = (Vec::new(), Vec::new());
    for i in 0..n {
        body["message_id"] = format!("bench-{i}").into();
        let before = agency.count();
        let t = Instant::now();
        let r = http
            .post(&hooks)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        answered.push(t.elapsed());
        let at = eventually(30, "the FHIR bundle", || async {
            agency.requests().get(before).map(|s| s.at)
        })
        .await;
        arrived.push(at.duration_since(t));
    }
    hub.stop().await;
    let fig = |what: &'static str, mut v: Vec<Duration>| {
        v.sort();
        Figures {
            what,
            per_sec: 1.0 / (v.iter().sum::<Duration>().as_secs_f64() / v.len() as f64),
            p50_ms: percentile(&v, 0.5),
            p99_ms: percentile(&v, 0.99),
        }
    };
    vec![
        fig("raw HTTP: one POST to the agency's server answered", raw),
        fig(
            "hub: school webhook referral answered (→ gRPC intake)",
            answered,
        ),
        fig("hub: webhook referral → FHIR Bundle at the agency", arrived),
    ]
}

// ---- Open loop --------------------------------------------------------------------------

/// The simulated agency of the open-loop runs: answers 201 at once and keeps, per
/// referral id, when it first arrived and how many times. Leaner than the tests'
/// `FakeAgency` (which keeps every body) so that its own cost stays small at high rates.
#[derive(Clone, Default)]
struct Sink {
    seen: Arc<Mutex<HashMap<String, (Instant, u32)>>>,
}

#[derive(serde::Deserialize)]
struct Delivered {
    referral_id: Option<String>,
}

const SINK_ANSWER: &str = r#"{"reference":"SIM-1","id":"SIM-1"}"#;

async fn sink_receive(
    axum::extract::State(s): axum::extract::State<Sink>,
    body: axum::body::Bytes,
) -> (
    axum::http::StatusCode,
    [(axum::http::header::HeaderName, &'static str); 1],
    &'static str,
) {
    let at = Instant::now();
    if let Ok(Delivered {
        referral_id: Some(id),
    }) = serde_json::from_slice(&body)
    {
        let mut seen = s.seen.lock().unwrap();
        seen.entry(id).or_insert((at, 0)).1 += 1;
    }
    (
        axum::http::StatusCode::CREATED,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        SINK_ANSWER,
    )
}

impl Sink {
    /// Serves on a free loopback port of the current runtime until the handle is aborted.
    async fn start() -> (Sink, SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sink = Sink::default();
        let app = axum::Router::new()
            .fallback(sink_receive)
            .with_state(sink.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (sink, addr, server)
    }

    fn has(&self, id: &str) -> bool {
        self.seen.lock().unwrap().contains_key(id)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Routine,
    Urgent,
}

/// One scheduled request and what became of it.
struct Outcome {
    kind: Kind,
    scheduled: Instant,
    answered: Instant,
    /// The referral id when accepted, the gRPC code otherwise.
    result: Result<String, tonic::Code>,
}

struct Schedule {
    kind: Kind,
    rate: f64,
    channels: Vec<Channel>,
    prefix: String,
}

/// A routine school referral: the fixture's, at medium risk (at high risk a referral is
/// urgent, and the routine load would share the urgent lanes with the probe).
fn routine_request(submission_id: &str) -> pb::SchoolReferralRequest {
    let mut r = school_request(submission_id);
    if let Some(details) = r.referral.as_mut() {
        details.risk_level = pb::RiskLevel::Medium.into();
    }
    r
}

fn escalation(submission_id: &str) -> pb::HotlineEscalationRequest {
    pb::HotlineEscalationRequest {
        submission_id: submission_id.into(),
        call_ref: submission_id.into(),
        operator_ref: "op-3".into(),
        referral: school_request(submission_id).referral,
        hotline_agency_id: HOTLINE.into(),
    }
}

async fn send(kind: Kind, ch: Channel, submission_id: String) -> Result<String, tonic::Code> {
    let mut client = IntakeClient::new(ch);
    let answer = match kind {
        Kind::Routine => {
            let mut r = as_agency(SCHOOL, routine_request(&submission_id));
            r.set_timeout(REQUEST_TIMEOUT);
            client.submit_school_referral(r).await
        }
        Kind::Urgent => {
            let mut r = as_agency(HOTLINE, escalation(&submission_id));
            r.set_timeout(REQUEST_TIMEOUT);
            client.escalate_hotline_call(r).await
        }
    };
    answer
        .map(|a| a.into_inner().referral_id)
        .map_err(|s| s.code())
}

/// Sends at t0 + i/rate until `until`, each request in a task of its own; a request the
/// in-flight bound refuses is counted as not sent. Returns once every sent one answered.
async fn run_schedule(
    s: Schedule,
    t0: Instant,
    until: Instant,
    bound: Arc<tokio::sync::Semaphore>,
) -> (Vec<Outcome>, usize) {
    let mut tasks = tokio::task::JoinSet::new();
    let mut not_sent = 0;
    for i in 0u64.. {
        let scheduled = t0 + Duration::from_secs_f64(i as f64 / s.rate);
        if scheduled >= until {
            break;
        }
        tokio::time::sleep_until(scheduled.into()).await;
        let Ok(permit) = bound.clone().try_acquire_owned() else {
            not_sent += 1;
            continue;
        };
        let ch = s.channels[i as usize % s.channels.len()].clone();
        let (kind, id) = (s.kind, format!("{}-{i}", s.prefix));
        tasks.spawn(async move {
            let result = send(kind, ch, id).await;
            drop(permit);
            Outcome {
                kind,
                scheduled,
                answered: Instant::now(),
                result,
            }
        });
    }
    let mut out = Vec::with_capacity(tasks.len());
    while let Some(o) = tasks.join_next().await {
        out.push(o.unwrap());
    }
    (out, not_sent)
}

/// utime+stime, in ticks, of this process, of its load threads, and of every `postgres`
/// and `beam.smp` process by pid.
#[derive(Default)]
struct Cpu {
    process: u64,
    load: u64,
    postgres: HashMap<u32, u64>,
    broker: HashMap<u32, u64>,
}

/// `(comm, utime + stime)` from a /proc stat line; comm may hold spaces and parentheses.
fn stat_ticks(stat: &str) -> Option<(&str, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = &stat[open + 1..close];
    let mut rest = stat[close + 1..].split_whitespace();
    // After the comm: state is field 3; utime and stime are fields 14 and 15.
    let utime: u64 = rest.nth(11)?.parse().ok()?;
    let stime: u64 = rest.next()?.parse().ok()?;
    Some((comm, utime + stime))
}

impl Cpu {
    fn sample() -> Cpu {
        let mut cpu = Cpu::default();
        let read = |p: std::path::PathBuf| std::fs::read_to_string(p).ok();
        if let Some((_, t)) = read("/proc/self/stat".into())
            .as_deref()
            .and_then(stat_ticks)
        {
            cpu.process = t;
        }
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for t in tasks.flatten() {
                if let Some((comm, ticks)) =
                    read(t.path().join("stat")).as_deref().and_then(stat_ticks)
                {
                    if comm == LOAD_THREAD {
                        cpu.load += ticks;
                    }
                }
            }
        }
        if let Ok(procs) = std::fs::read_dir("/proc") {
            for p in procs.flatten() {
                let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                    continue;
                };
                if let Some((comm, ticks)) =
                    read(p.path().join("stat")).as_deref().and_then(stat_ticks)
                {
                    match comm {
                        "postgres" => {
                            cpu.postgres.insert(pid, ticks);
                        }
                        "beam.smp" => {
                            cpu.broker.insert(pid, ticks);
                        }
                        _ => {}
                    }
                }
            }
        }
        cpu
    }
}

/// Ticks spent between `before` and `after` by the processes of `after` (those in
/// `only`, when given); a process started meanwhile counts whole, one that ended is lost.
fn spent(
    before: &HashMap<u32, u64>,
    after: &HashMap<u32, u64>,
    only: Option<&HashSet<u32>>,
) -> u64 {
    after
        .iter()
        .filter(|(pid, _)| only.is_none_or(|o| o.contains(pid)))
        .map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0)))
        .sum()
}

/// What one rate measured.
struct Row {
    offered: f64,
    sent: usize,
    not_sent: usize,
    accepted: usize,
    intake_per_sec: f64,
    intake: Vec<Duration>,
    delivered_per_sec: f64,
    delivery: Vec<Duration>,
    urgent_sent: usize,
    urgent: Vec<Duration>,
    urgent_lost: usize,
    shed: usize,
    errors: BTreeMap<String, usize>,
    lost: usize,
    duplicated: usize,
    drain: Duration,
    drain_bound_hit: bool,
    outbox_backlog: i64,
    delivered: usize,
    /// CPU ms per delivered referral: hub, load generator + agency, PostgreSQL backends
    /// of this database, every PostgreSQL process, the broker.
    cpu: [f64; 5],
}

/// The sum of every schema's unsent outbox rows: the hub's own backlog.
async fn unsent(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, Option<i64>>(sql)
        .fetch_one(pool)
        .await
        .ok()
        .flatten()
        .unwrap_or(-1)
}

/// Connections to the hub, made on the load runtime (a channel's connection task lives
/// on the runtime that made it).
async fn connect(
    load: &tokio::runtime::Handle,
    addr: SocketAddr,
    certs: Option<himaya::dev_certs::DevCerts>,
    agency: &'static str,
    n: usize,
) -> Vec<Channel> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let certs = certs.clone();
        let ch = load
            .spawn(async move {
                match certs {
                    Some(c) => tls_channel(addr, &c, &c, Some(agency)).await.unwrap(),
                    None => Channel::from_shared(format!("http://{addr}"))
                        .unwrap()
                        .connect()
                        .await
                        .unwrap(),
                }
            })
            .await
            .unwrap();
        out.push(ch);
    }
    out
}

/// The benchmark's own threads, apart from the hub's: the routine load generator, the
/// hotline probe and the simulated agency each on a thread of its own (as they are
/// systems of their own), so that an escalation is neither sent nor received late for
/// waiting behind the routine load's sends on the benchmark's side.
struct Sides {
    load: tokio::runtime::Runtime,
    probe: tokio::runtime::Runtime,
    agency: tokio::runtime::Runtime,
}

impl Sides {
    fn new() -> Sides {
        // One name for all three: their CPU is counted together, as the load's.
        let one = || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name(LOAD_THREAD)
                .enable_all()
                .build()
                .unwrap()
        };
        Sides {
            load: one(),
            probe: one(),
            agency: one(),
        }
    }
}

async fn open_loop(sides: &Sides, rate: f64, secs: u64, drain_secs: u64) -> Row {
    let (load, probe) = (sides.load.handle(), sides.probe.handle());
    let (sink, addr, server) = sides.agency.spawn(Sink::start()).await.unwrap();
    let env = TestEnv::new(Some(addr)).await;
    let mut settings = env.settings.clone();
    // Metrics sampled and readiness probed as deployed (the tests' settings ask far more
    // often, to see changes quickly).
    let deployed = himaya_settings::Settings::load(
        &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config"),
        None,
    )
    .unwrap();
    settings.telemetry.sample_interval_ms = deployed.telemetry.sample_interval_ms;
    settings.telemetry.probe_interval_ms = deployed.telemetry.probe_interval_ms;
    let dir = std::env::temp_dir().join(format!("{}-bench-certs", env.db_name));
    let certs = (size("HIMAYA_BENCH_TLS", 1) != 0).then(|| secure(&mut settings, &dir));
    let hub = himaya::hub::Hub::start(settings, &himaya::hub::Component::ALL)
        .await
        .unwrap();
    let routine = connect(
        load,
        hub.grpc_addr,
        certs.clone(),
        SCHOOL,
        size("HIMAYA_BENCH_CONNECTIONS", 8).max(1),
    )
    .await;
    let hotline = connect(probe, hub.grpc_addr, certs.clone(), HOTLINE, 1).await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(himaya_store::connect_options(&env.settings.database).unwrap())
        .await
        .unwrap();
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT table_schema::text FROM information_schema.tables WHERE table_name = 'outbox'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let unsent_sql = format!(
        "SELECT {}",
        schemas
            .iter()
            .map(|s| format!("(SELECT count(*) FROM {s}.outbox WHERE sent_at IS NULL)"))
            .collect::<Vec<_>>()
            .join(" + ")
    );

    // Warm-up, not measured: connections opened, statements prepared, both paths taken.
    let mut warm = Vec::new();
    for i in 0..20 {
        let kind = if i % 5 == 0 {
            Kind::Urgent
        } else {
            Kind::Routine
        };
        let (side, ch) = if kind == Kind::Urgent {
            (probe, &hotline[0])
        } else {
            (load, &routine[0])
        };
        let id = side
            .spawn(send(kind, ch.clone(), format!("warm-{i}")))
            .await
            .unwrap()
            .unwrap_or_else(|c| panic!("warm-up referral refused: {c:?}"));
        warm.push(id);
    }
    eventually(60, "the warm-up referrals delivered", || async {
        warm.iter().all(|id| sink.has(id)).then_some(())
    })
    .await;

    let before = Cpu::sample();
    let bound = Arc::new(tokio::sync::Semaphore::new(size(
        "HIMAYA_BENCH_MAX_IN_FLIGHT",
        20_000,
    )));
    // Starts a little ahead so that the first send times are not already past.
    let t0 = Instant::now() + Duration::from_millis(50);
    let window = Duration::from_secs(secs);
    let until = t0 + window;
    let tag = format!("r{rate}");
    let routine_run = load.spawn(run_schedule(
        Schedule {
            kind: Kind::Routine,
            rate,
            channels: routine,
            prefix: format!("{tag}-school"),
        },
        t0,
        until,
        bound.clone(),
    ));
    let urgent_run = probe.spawn(run_schedule(
        Schedule {
            kind: Kind::Urgent,
            rate: 1.0 / PROBE_EVERY.as_secs_f64(),
            channels: hotline,
            prefix: format!("{tag}-call"),
        },
        t0,
        until,
        bound,
    ));
    tokio::time::sleep_until(until.into()).await;
    let outbox_backlog = unsent(&pool, &unsent_sql).await;
    let (mut outcomes, mut not_sent) = routine_run.await.unwrap();
    let (urgent_outcomes, urgent_not_sent) = urgent_run.await.unwrap();
    let urgent_sent = urgent_outcomes.len();
    outcomes.extend(urgent_outcomes);
    not_sent += urgent_not_sent;

    // Drain: every accepted referral at the agency, its answer recorded on the case, no
    // outbox row unsent; bounded.
    let accepted: Vec<(&str, Instant, Kind)> = outcomes
        .iter()
        .filter_map(|o| {
            o.result
                .as_ref()
                .ok()
                .map(|id| (id.as_str(), o.scheduled, o.kind))
        })
        .collect();
    let drain_started = Instant::now();
    let drain_deadline = drain_started.max(until) + Duration::from_secs(drain_secs);
    let drain_bound_hit = loop {
        if accepted.iter().all(|(id, _, _)| sink.has(id)) {
            let arrived = sink.seen.lock().unwrap().len() as i64;
            let recorded = count(&pool, "SELECT count(*) FROM cases.referral_deliveries").await;
            if recorded >= arrived && unsent(&pool, &unsent_sql).await == 0 {
                break false;
            }
        }
        if Instant::now() >= drain_deadline {
            break true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let drain = drain_started.elapsed();
    let own_backends: HashSet<u32> = sqlx::query_scalar::<_, i32>(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()",
    )
    .fetch_all(&pool)
    .await
    .unwrap_or_default()
    .into_iter()
    .map(|p| p as u32)
    .collect();
    let after = Cpu::sample();

    let seen = sink.seen.lock().unwrap().clone();
    let mut row = Row {
        offered: rate,
        sent: outcomes.len(),
        not_sent,
        accepted: accepted.len(),
        intake_per_sec: 0.0,
        intake: Vec::new(),
        delivered_per_sec: 0.0,
        delivery: Vec::new(),
        urgent_sent,
        urgent: Vec::new(),
        urgent_lost: 0,
        shed: 0,
        errors: BTreeMap::new(),
        lost: 0,
        duplicated: seen.values().filter(|(_, n)| *n > 1).count(),
        drain,
        drain_bound_hit,
        outbox_backlog,
        delivered: 0,
        cpu: [f64::NAN; 5],
    };
    let in_window = |at: Instant| at >= t0 && at < until;
    let mut intake_in_window = 0;
    for o in &outcomes {
        match &o.result {
            Ok(_) => {
                if o.kind == Kind::Routine {
                    row.intake.push(o.answered.duration_since(o.scheduled));
                }
                if o.kind == Kind::Routine {
                    intake_in_window += usize::from(in_window(o.answered));
                }
            }
            Err(tonic::Code::ResourceExhausted | tonic::Code::Unavailable) => row.shed += 1,
            Err(code) => *row.errors.entry(format!("{code:?}")).or_default() += 1,
        }
    }
    let mut delivered_in_window = 0;
    for (id, scheduled, kind) in &accepted {
        match seen.get(*id) {
            Some((at, _)) => {
                row.delivered += 1;
                if *kind == Kind::Routine {
                    delivered_in_window += usize::from(in_window(*at));
                }
                let lat = at.saturating_duration_since(*scheduled);
                match kind {
                    Kind::Routine => row.delivery.push(lat),
                    Kind::Urgent => row.urgent.push(lat),
                }
            }
            None => {
                row.lost += 1;
                row.urgent_lost += usize::from(*kind == Kind::Urgent);
            }
        }
    }
    row.intake_per_sec = intake_in_window as f64 / window.as_secs_f64();
    row.delivered_per_sec = delivered_in_window as f64 / window.as_secs_f64();
    row.intake.sort();
    row.delivery.sort();
    row.urgent.sort();
    if row.delivered > 0 {
        let per = |ticks: u64| ticks as f64 * TICK_MS / row.delivered as f64;
        let load_ticks = after.load.saturating_sub(before.load);
        let process = after.process.saturating_sub(before.process);
        row.cpu = [
            per(process.saturating_sub(load_ticks)),
            per(load_ticks),
            per(spent(
                &before.postgres,
                &after.postgres,
                Some(&own_backends),
            )),
            per(spent(&before.postgres, &after.postgres, None)),
            per(spent(&before.broker, &after.broker, None)),
        ];
    }
    pool.close().await;
    hub.stop().await;
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
    drop(env);
    row
}

fn print_open_loop(rows: &[Row], raw_publish: f64, secs: u64, drain_secs: u64) {
    let tls = if size("HIMAYA_BENCH_TLS", 1) != 0 {
        "mutual TLS"
    } else {
        "development identity, plain HTTP/2"
    };
    println!(
        "\nOpen loop ({secs} s per rate, {tls}, a hotline escalation every {} ms beside; \
         latency from the scheduled send; ms)",
        PROBE_EVERY.as_millis()
    );
    println!(
        "{:>9} {:>8} {:>10} {:>8} {:>8} {:>9} {:>9} {:>9} {:>10} {:>8} {:>9} {:>8} {:>8}",
        "offered/s",
        "intake/s",
        "intake p50",
        "p99",
        "p99.9",
        "deliv/s",
        "deliv p50",
        "p99",
        "urgent p50",
        "p99",
        "of broker",
        "shed",
        "errors",
    );
    for r in rows {
        println!(
            "{:>9.0} {:>8.1} {:>10} {:>8} {:>8} {:>9.1} {:>9} {:>9} {:>10} {:>8} {:>8.2}% {:>8} {:>8}",
            r.offered,
            r.intake_per_sec,
            ms(percentile(&r.intake, 0.5)),
            ms(percentile(&r.intake, 0.99)),
            ms(percentile(&r.intake, 0.999)),
            r.delivered_per_sec,
            ms(percentile(&r.delivery, 0.5)),
            ms(percentile(&r.delivery, 0.99)),
            ms(percentile(&r.urgent, 0.5)),
            ms(percentile(&r.urgent, 0.99)),
            100.0 * r.delivered_per_sec / raw_publish,
            r.shed,
            r.errors.values().sum::<usize>(),
        );
    }
    println!(
        "\nAfter the drain (at most {drain_secs} s): counts, and CPU ms per delivered referral"
    );
    println!(
        "{:>9} {:>7} {:>8} {:>8} {:>8} {:>6} {:>4} {:>8} {:>9} {:>6} {:>6} {:>6} {:>6} {:>6}",
        "offered/s",
        "sent",
        "not sent",
        "accepted",
        "urgent",
        "lost",
        "dup",
        "drain s",
        "backlog",
        "hub",
        "pg own",
        "pg all",
        "broker",
        "load",
    );
    for r in rows {
        let drain = format!(
            "{}{:.1}",
            if r.drain_bound_hit { ">" } else { "" },
            r.drain.as_secs_f64()
        );
        let cpu = |x: f64| {
            if x.is_nan() {
                "-".to_owned()
            } else {
                format!("{x:.2}")
            }
        };
        println!(
            "{:>9.0} {:>7} {:>8} {:>8} {:>8} {:>6} {:>4} {:>8} {:>9} {:>6} {:>6} {:>6} {:>6} {:>6}",
            r.offered,
            r.sent,
            r.not_sent,
            r.accepted,
            format!("{}/{}", r.urgent.len(), r.urgent_sent),
            r.lost,
            r.duplicated,
            drain,
            r.outbox_backlog,
            cpu(r.cpu[0]),
            cpu(r.cpu[2]),
            cpu(r.cpu[3]),
            cpu(r.cpu[4]),
            cpu(r.cpu[1]),
        );
    }
    println!(
        "offered, intake/s, deliv/s: routine school referrals (the probe adds {}/s); of broker: \
         deliv/s as a share of the raw publish + confirm rate; urgent: escalations delivered/sent; \
         backlog: unsent outbox rows when the window closed; drain \">\": bound hit, so \"lost\" \
         may yet arrive; CPU: hub = this process less the load generator and agency (\"load\")",
        1000 / PROBE_EVERY.as_millis()
    );
    for r in rows.iter().filter(|r| !r.errors.is_empty()) {
        println!("errors at {:.0}/s: {:?}", r.offered, r.errors);
    }
    for r in rows.iter().filter(|r| r.urgent_lost > 0) {
        println!(
            "escalations accepted but not delivered at {:.0}/s: {}",
            r.offered, r.urgent_lost
        );
    }
}

fn print_figures(title: &str, figures: &[Figures]) {
    println!("\n{title}");
    println!(
        "{:<58} {:>10} {:>9} {:>9}",
        "measure", "per sec", "p50 ms", "p99 ms"
    );
    for f in figures {
        println!(
            "{:<58} {:>10.0} {:>9} {:>9}",
            f.what,
            f.per_sec,
            ms(f.p50_ms),
            ms(f.p99_ms)
        );
    }
}

fn main() {
    // The hub runs on this runtime (two workers on two cores, as `himaya` runs it; its
    // urgent work on a thread of its own); the load generator, the hotline probe and
    // the simulated agency on threads of their own (`Sides`), so that their timers fire
    // while the hub is saturated and their CPU can be told apart.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let sides = Sides::new();
    let load = &sides.load;
    let secs = size("HIMAYA_BENCH_SECS", 20) as u64;
    let drain_secs = size("HIMAYA_BENCH_DRAIN_SECS", 60) as u64;
    rt.block_on(async {
        let (agency, addr) = FakeAgency::start(&[]).await;
        let env = TestEnv::new(Some(addr)).await;
        let payload_len = himaya_events::encode(&himaya_events::ReferralCreated {
            message_id: "msg_x".into(),
            occurred_at: "2026-11-22T00:00:00Z".into(),
            case: himaya_record::fixtures::record(),
            service_request: None,
        })
        .map(|b| b.len())
        .unwrap_or(1500);
        let mut baselines =
            raw_broker(&env.amqp_url(), size("HIMAYA_BENCH_RAW", 5000), payload_len).await;
        let raw_publish = baselines[0].per_sec;
        let pg_secs = size("HIMAYA_BENCH_PG_SECS", 3) as u64;
        baselines.push(
            raw_postgres(
                &env,
                payload_len,
                1,
                pg_secs,
                "raw PostgreSQL: INSERT + commit, 1 connection",
            )
            .await,
        );
        baselines.push(
            raw_postgres(
                &env,
                payload_len,
                16,
                pg_secs,
                "raw PostgreSQL: INSERT + commit, 16 connections",
            )
            .await,
        );
        let mut one = Vec::new();
        let mut hooks = Vec::new();
        if size("HIMAYA_BENCH_ONE_AT_A_TIME", 1) != 0 {
            one.extend(one_at_a_time(&env, &agency, size("HIMAYA_BENCH_REFERRALS", 400)).await);
            one.extend(exits(&env).await);
            hooks = connectors(size("HIMAYA_BENCH_CONNECTORS", 100)).await;
        }
        drop(env);
        let traces = match size("HIMAYA_BENCH_OTLP", 0) {
            0 => None,
            _ => Some(BenchTraces::start(load.handle()).await),
        };
        let mut rows = Vec::new();
        let mut costs = Vec::new();
        let mut hops = Vec::new();
        for rate in rates() {
            let row = open_loop(&sides, rate, secs, drain_secs).await;
            eprintln!(
                "{rate}/s: {:.1} delivered/s, delivery p99 {} ms",
                row.delivered_per_sec,
                ms(percentile(&row.delivery, 0.99))
            );
            if let Some(t) = &traces {
                let spans_before = t.receiver.count();
                t.gate.store(true, std::sync::atomic::Ordering::Relaxed);
                let traced = open_loop(&sides, rate, secs, drain_secs).await;
                t.gate.store(false, std::sync::atomic::Ordering::Relaxed);
                // What the batch still holds reaches the receiver before it is counted.
                let _ = t.provider.force_flush();
                let spans = t.receiver.count() - spans_before;
                eprintln!(
                    "{rate}/s traced: {:.1} delivered/s, delivery p99 {} ms, {spans} spans",
                    traced.delivered_per_sec,
                    ms(percentile(&traced.delivery, 0.99))
                );
                let received = t.receiver.spans();
                hops.push(where_time_goes(
                    rate,
                    &received[spans_before.min(received.len())..],
                ));
                costs.push(TraceCost::of(&row, &traced, spans));
                rows.push(row);
                rows.push(traced);
            } else {
                rows.push(row);
            }
        }

        println!(
            "\nHimaya pipeline benchmark ({payload_len}-byte events; {} cores, same run)",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        print_figures("Baselines", &baselines);
        if !one.is_empty() {
            print_figures("One at a time (the hub idle otherwise)", &one);
            print_figures("Connectors, one at a time", &hooks);
        }
        print_open_loop(&rows, raw_publish, secs, drain_secs);
        if let Some(t) = traces {
            print_trace_cost(&costs, &t);
            for h in &hops {
                print!("{h}");
            }
            let _ = t.provider.shutdown();
        }
    });
}

/// The hub's traces for the benchmark: a real OTLP/HTTP receiver on the load runtime,
/// the hub's exporter (its batch span processor, as `[telemetry.traces]` configures it
/// by default) installed as this process's subscriber, on only while `gate` is set.
struct BenchTraces {
    receiver: helpers::otlp::OtlpReceiver,
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
    gate: Arc<std::sync::atomic::AtomicBool>,
    settings: himaya_settings::TraceSettings,
}

impl BenchTraces {
    async fn start(load: &tokio::runtime::Handle) -> BenchTraces {
        use tracing_subscriber::filter::FilterExt as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        use tracing_subscriber::Layer as _;
        let (receiver, addr) = load
            .spawn(helpers::otlp::OtlpReceiver::start())
            .await
            .unwrap();
        let settings = himaya_settings::TraceSettings {
            otlp_endpoint: format!("http://{addr}"),
            ..Default::default()
        };
        let provider = himaya::telemetry::provider(&settings, "himaya-bench").unwrap();
        let gate = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let on = gate.clone();
        // Asked at every span (a plain `filter_fn` would be cached per call site).
        let only_when_on = tracing_subscriber::filter::dynamic_filter_fn(move |_, _| {
            on.load(std::sync::atomic::Ordering::Relaxed)
        });
        tracing_subscriber::registry()
            .with(
                himaya::telemetry::trace_layer(&provider)
                    .with_filter(himaya::telemetry::trace_targets().and(only_when_on)),
            )
            .try_init()
            .unwrap();
        BenchTraces {
            receiver,
            provider,
            gate,
            settings,
        }
    }
}

/// One rate without and with traces.
struct TraceCost {
    offered: f64,
    delivered_per_sec: [f64; 2],
    delivery_p50: [f64; 2],
    delivery_p99: [f64; 2],
    hub_cpu: [f64; 2],
    spans: usize,
    delivered: usize,
}

impl TraceCost {
    fn of(off: &Row, on: &Row, spans: usize) -> TraceCost {
        TraceCost {
            offered: off.offered,
            delivered_per_sec: [off.delivered_per_sec, on.delivered_per_sec],
            delivery_p50: [
                percentile(&off.delivery, 0.5),
                percentile(&on.delivery, 0.5),
            ],
            delivery_p99: [
                percentile(&off.delivery, 0.99),
                percentile(&on.delivery, 0.99),
            ],
            hub_cpu: [off.cpu[0], on.cpu[0]],
            spans,
            delivered: on.delivered,
        }
    }
}

fn print_trace_cost(costs: &[TraceCost], t: &BenchTraces) {
    println!(
        "\nTrace cost (each rate above has two rows: without, then with traces; batch of {}, \
         queue {}, every {} ms; {} spans in {} exports received)",
        t.settings.max_export_batch_size,
        t.settings.max_queue_size,
        t.settings.scheduled_delay_ms,
        t.receiver.count(),
        t.receiver.requests(),
    );
    println!(
        "{:>9} {:>9} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>7} {:>9}",
        "offered/s",
        "deliv/s",
        "+traces",
        "change",
        "p50",
        "+traces",
        "p99",
        "+traces",
        "hub cpu",
        "+traces",
        "change",
        "spans/ref",
    );
    let change = |a: f64, b: f64| {
        if a > 0.0 && b.is_finite() {
            format!("{:+.1}%", 100.0 * (b - a) / a)
        } else {
            "-".to_owned()
        }
    };
    for c in costs {
        println!(
            "{:>9.0} {:>9.1} {:>9.1} {:>7} {:>9} {:>9} {:>9} {:>9} {:>8.2} {:>8.2} {:>7} {:>9.1}",
            c.offered,
            c.delivered_per_sec[0],
            c.delivered_per_sec[1],
            change(c.delivered_per_sec[0], c.delivered_per_sec[1]),
            ms(c.delivery_p50[0]),
            ms(c.delivery_p50[1]),
            ms(c.delivery_p99[0]),
            ms(c.delivery_p99[1]),
            c.hub_cpu[0],
            c.hub_cpu[1],
            change(c.hub_cpu[0], c.hub_cpu[1]),
            c.spans as f64 / c.delivered.max(1) as f64,
        );
    }
}

/// Starts and ends of one kind of span, ms after its trace's intake call started.
type Offsets = (Vec<f64>, Vec<f64>);

/// Where a referral's time goes, from its traced spans: for escalations and for routine
/// referrals apart, each kind of span's start and end after the intake call's start
/// (p50 / p99, ms), in the order they start. A consumer's batch span is in the trace of
/// the batch's first message only; a trace without an intake call is left out.
fn where_time_goes(rate: f64, spans: &[helpers::otlp::ReceivedSpan]) -> String {
    use std::fmt::Write as _;
    let mut traces: HashMap<&str, Vec<&helpers::otlp::ReceivedSpan>> = HashMap::new();
    for s in spans {
        traces.entry(s.trace_id.as_str()).or_default().push(s);
    }
    // (class, span name) -> its start and end offsets, ms
    let mut at: BTreeMap<(&str, &str), Offsets> = BTreeMap::new();
    for trace in traces.values() {
        let Some(root) = trace
            .iter()
            .find(|s| s.kind == 2 && s.name.starts_with("himaya.v1.Intake/"))
        else {
            continue;
        };
        let class = if root.name.ends_with("EscalateHotlineCall") {
            "urgent"
        } else {
            "routine"
        };
        for s in trace {
            let since = |ns: u64| ns.saturating_sub(root.start_ns) as f64 / 1e6;
            let e = at.entry((class, s.name.as_str())).or_default();
            e.0.push(since(s.start_ns));
            e.1.push(since(s.end_ns));
        }
    }
    let p = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(f64::total_cmp);
        v.get(((v.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nWhere the time goes at {rate}/s (traced run; ms after the intake call started)"
    );
    let _ = writeln!(
        out,
        "{:<8} {:<58} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "class", "span", "n", "start p50", "p99", "end p50", "p99"
    );
    let mut rows: Vec<(&str, &str, usize, [f64; 4])> = at
        .into_iter()
        .map(|((class, name), (mut a, mut b))| {
            let n = a.len();
            (
                class,
                name,
                n,
                [
                    p(&mut a, 0.5),
                    p(&mut a, 0.99),
                    p(&mut b, 0.5),
                    p(&mut b, 0.99),
                ],
            )
        })
        .collect();
    rows.sort_by(|x, y| x.0.cmp(y.0).then(x.3[0].total_cmp(&y.3[0])));
    for (class, name, n, f) in rows {
        let _ = writeln!(
            out,
            "{class:<8} {name:<58} {n:>7} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            f[0], f[1], f[2], f[3]
        );
    }
    out
}
