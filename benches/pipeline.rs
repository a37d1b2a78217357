//! `cargo bench --bench pipeline`: how fast a referral crosses the hub, printed next to
//! what the broker alone does on the same machine in the same run.
//!
//! Baseline: persistent messages to a quorum queue with publisher confirms, consumed with
//! manual acks (lapin directly). Hub: a school referral submitted over gRPC until the
//! simulated health agency receives it over HTTP: three broker hops (each through an
//! outbox), four PostgreSQL transactions, one redaction and one HTTP call.
//! Exits: a case read by an agency (through the gateway, the redactor and the disclosure
//! log) over plain development identity and over mutual TLS, next to PostgreSQL reading
//! the same record; a bulk export next to a raw scan of the same records.
//! Sizes: HIMAYA_BENCH_RAW (default 5000 messages), HIMAYA_BENCH_REFERRALS (default 400).

#[path = "../tests/it/helpers/mod.rs"]
mod helpers;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use helpers::*;
use himaya_proto::v1::intake_client::IntakeClient;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties};

fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
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

async fn hub_pipeline(
    env: &TestEnv,
    agency: &FakeAgency,
    n: usize,
    concurrency: usize,
) -> Vec<Figures> {
    let hub = env.start().await;
    let ch = channel(&hub).await;

    // One referral at a time: the latency a school officer sees end to end. Arrival is
    // the agency's own timestamp, not the moment the benchmark's polling noticed it.
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
    let submit = Figures {
        what: "hub: gRPC submit answered (validated, stored, outboxed)",
        per_sec: 1.0 / (answered.iter().sum::<Duration>().as_secs_f64() / answered.len() as f64),
        p50_ms: percentile(&answered, 0.5),
        p99_ms: percentile(&answered, 0.99),
    };
    let single = Figures {
        what: "hub: one referral gRPC submit → agency HTTP receipt",
        per_sec: 1.0 / (lat.iter().sum::<Duration>().as_secs_f64() / lat.len() as f64),
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
    };

    // Many submitters at once: throughput and latency under load.
    let before = agency.count();
    let started = Instant::now();
    let submits = futures_util::stream::iter(0..n)
        .map(|i| {
            let ch = ch.clone();
            async move {
                let t = Instant::now();
                let r = IntakeClient::new(ch)
                    .submit_school_referral(from_school(school_request(&format!("load-{i}"))))
                    .await
                    .unwrap();
                (r.into_inner().referral_id, t)
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    eventually(300, "every delivery", || async {
        (agency.count() >= before + n).then_some(())
    })
    .await;
    let total = started.elapsed();
    let arrivals: std::collections::HashMap<String, Instant> = agency
        .requests()
        .into_iter()
        .filter_map(|s| s.body["referral_id"].as_str().map(|r| (r.to_owned(), s.at)))
        .collect();
    let mut lat: Vec<Duration> = submits
        .iter()
        .filter_map(|(r, t)| arrivals.get(r).map(|a| a.duration_since(*t)))
        .collect();
    lat.sort();
    hub.stop().await;
    vec![
        submit,
        single,
        Figures {
            what: "hub: referrals end to end, 16 concurrent submitters",
            per_sec: n as f64 / total.as_secs_f64(),
            p50_ms: percentile(&lat, 0.5),
            p99_ms: percentile(&lat, 0.99),
        },
    ]
}

/// Reads of one case by the health agency: p50/p99 and reads per second.
async fn reads(
    ch: &tonic::transport::Channel,
    case_id: &str,
    n: usize,
    what: &'static str,
) -> Figures {
    let mut client = himaya_proto::v1::cases_client::CasesClient::new(ch.clone());
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        client
            .get_case(as_agency(
                "health-cairo",
                himaya_proto::v1::GetCaseRequest {
                    case_id: case_id.into(),
                    purpose: himaya_proto::v1::Purpose::ServiceProvision.into(),
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

/// The exits, on the cases the pipeline left behind (all delivered to health-cairo).
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
    let mut stream = himaya_proto::v1::cases_client::CasesClient::new(ch)
        .export_cases(as_agency(
            "health-cairo",
            himaya_proto::v1::ExportCasesRequest {
                purpose: himaya_proto::v1::Purpose::ServiceProvision.into(),
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
    if let Some(a) = env.settings.agencies.get_mut("school-cairo-alnour") {
        a.protocol = himaya_settings::Protocol::School;
        a.inbound_token = Some(himaya_settings::SecretString::from(token));
    }
    let hub = env.start().await;
    let http = http();
    let hooks = format!(
        "http://{}/agencies/school-cairo-alnour/school/referrals",
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

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
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
        let mut figures =
            raw_broker(&env.amqp_url(), size("HIMAYA_BENCH_RAW", 5000), payload_len).await;
        figures.extend(hub_pipeline(&env, &agency, size("HIMAYA_BENCH_REFERRALS", 400), 16).await);
        figures.extend(exits(&env).await);
        figures.extend(connectors(size("HIMAYA_BENCH_CONNECTORS", 100)).await);
        println!(
            "\nHimaya pipeline benchmark ({payload_len}-byte events; 2-core machine, same run)"
        );
        println!(
            "{:<58} {:>10} {:>9} {:>9}",
            "measure", "per sec", "p50 ms", "p99 ms"
        );
        let ms = |x: f64| {
            if x.is_nan() {
                "-".to_owned()
            } else {
                format!("{x:.1}")
            }
        };
        for f in figures {
            println!(
                "{:<58} {:>10.0} {:>9} {:>9}",
                f.what,
                f.per_sec,
                ms(f.p50_ms),
                ms(f.p99_ms)
            );
        }
    });
}
