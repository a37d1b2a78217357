//! What an operator sees of a running hub on its metrics port: the metrics of a referral
//! that flowed end to end (read by parsing the exposition format, and without a child's
//! data in any label), an agency that is down shown by its open breaker, and readiness
//! (`/readyz` and gRPC health) dropping while the broker is gone and coming back.

use std::collections::BTreeMap;

use crate::helpers::*;
use himaya_proto::v1 as pb;
use pb::intake_client::IntakeClient;
use tonic_health::pb::health_check_response::ServingStatus;

/// One sample of the exposition: its name, labels and value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the OpenMetrics / Prometheus text format: `# TYPE` lines declare the families,
/// every sample belongs to one (counters' `_total` and `_created`, histograms' `_bucket`,
/// `_sum` and `_count`), label values are unescaped (`\\`, `\"`, `\n`), and the text
/// ends with `# EOF`. Panics, naming the line, on anything else.
fn parse(text: &str) -> Vec<Sample> {
    let mut families: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.last(),
        Some(&"# EOF"),
        "the exposition ends with # EOF"
    );
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect(line);
            families.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment: {line}");
        let name_end = line.find(['{', ' ']).expect(line);
        let name = &line[..name_end];
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name {name:?}"
        );
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let consumed;
            loop {
                // label name
                let start = chars.peek().map(|(i, _)| *i).expect(line);
                if body[start..].starts_with('}') {
                    consumed = start + 1;
                    break;
                }
                let eq = body[start..].find('=').expect(line) + start;
                let key = body[start..eq].to_owned();
                assert!(
                    key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "label name {key:?} in {line}"
                );
                while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                    chars.next();
                }
                assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                let mut value = String::new();
                loop {
                    match chars.next().expect(line) {
                        (_, '\\') => match chars.next().expect(line).1 {
                            'n' => value.push('\n'),
                            c @ ('\\' | '"') => value.push(c),
                            c => panic!("bad escape \\{c} in {line}"),
                        },
                        (_, '"') => break,
                        (_, c) => value.push(c),
                    }
                }
                labels.insert(key, value);
                match chars.next().expect(line) {
                    (_, ',') => continue,
                    (i, '}') => {
                        consumed = i + 1;
                        break;
                    }
                    (_, c) => panic!("unexpected {c:?} in {line}"),
                }
            }
            rest = &body[consumed..];
        }
        let value = rest.split_whitespace().next().expect(line);
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("value {v:?} in {line}")),
        };
        let family = families
            .iter()
            .find(|(f, kind)| {
                let suffixes: &[&str] = match kind.as_str() {
                    "counter" => &["_total", "_created"],
                    "histogram" => &["_bucket", "_sum", "_count", "_created"],
                    _ => &[""],
                };
                suffixes
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(f.as_str()))
            })
            .map(|(f, _)| f.clone());
        assert!(family.is_some(), "sample {name} has no # TYPE: {line}");
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    samples
}

async fn scrape(hub: &himaya::hub::Hub) -> Option<Vec<Sample>> {
    let r = http()
        .get(format!("http://{}/metrics", hub.metrics_addr))
        .send()
        .await
        .ok()?;
    assert!(r.status().is_success());
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    Some(parse(&r.text().await.ok()?))
}

/// The value of the sample `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

async fn wait_for(
    hub: &himaya::hub::Hub,
    what: &str,
    name: &str,
    labels: &[(&str, &str)],
    at_least: f64,
) -> Vec<Sample> {
    eventually(60, what, || async {
        let samples = scrape(hub).await?;
        (value(&samples, name, labels)? >= at_least).then_some(samples)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referral_end_to_end_is_counted_without_personal_data_in_labels() {
    let (agency, addr) = FakeAgency::start(&[]).await;
    let mut env = TestEnv::new(Some(addr)).await;
    // The high-risk case's assignment is due at once, so it is missed and escalated.
    env.settings.lifecycle.deadlines.high.assign_within_secs = 1;
    env.settings.lifecycle.deadline_check_interval_ms = 200;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let referral = IntakeClient::new(ch.clone())
        .submit_school_referral(from_school(school_request("sub-metrics")))
        .await
        .unwrap()
        .into_inner();
    eventually(30, "the referral delivered to health-cairo", || async {
        agency.received(&referral.referral_id).then_some(())
    })
    .await;
    // The ministry registers the case: its assignment is due at once, and missed.
    pb::case_work_client::CaseWorkClient::new(ch.clone())
        .decide_acceptance(as_agency("mosa-cairo", register(&referral.case_id, 1)))
        .await
        .unwrap();
    // One refused call too: a referral without its body is invalid.
    let mut invalid = school_request("sub-metrics-invalid");
    invalid.referral = None;
    let refused = IntakeClient::new(ch.clone())
        .submit_school_referral(from_school(invalid))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    let school = [("source_kind", "school")];
    wait_for(
        &hub,
        "the referral counted",
        "himaya_intake_referrals_total",
        &school,
        1.0,
    )
    .await;
    let delivered = [("agency", "health-cairo"), ("outcome", "delivered")];
    wait_for(
        &hub,
        "the delivery counted",
        "himaya_agency_deliveries_total",
        &delivered,
        1.0,
    )
    .await;
    // The lifecycle gauges are sampled from PostgreSQL each second here: the open case
    // by its status, risk and governorate code (Cairo: 01).
    let open = [("status", "registered"), ("governorate", "01")];
    let missed = [("kind", "assignment"), ("risk", "high")];
    wait_for(
        &hub,
        "the missed assignment escalated",
        "himaya_deadlines_escalated_total",
        &missed,
        1.0,
    )
    .await;
    wait_for(
        &hub,
        "the missed assignment sampled",
        "himaya_deadlines_missed",
        &missed,
        1.0,
    )
    .await;
    let samples = wait_for(
        &hub,
        "the open case sampled",
        "himaya_cases_open",
        &open,
        1.0,
    )
    .await;

    let ok = [
        ("service", "himaya.v1.Intake"),
        ("method", "SubmitSchoolReferral"),
        ("code", "OK"),
    ];
    let grpc: Vec<_> = samples
        .iter()
        .filter(|s| s.name == "himaya_grpc_requests_total")
        .collect();
    assert_eq!(
        value(&samples, "himaya_grpc_requests_total", &ok),
        Some(1.0),
        "{grpc:?}"
    );
    let invalid = [
        ("service", "himaya.v1.Intake"),
        ("method", "SubmitSchoolReferral"),
        ("code", "InvalidArgument"),
    ];
    assert_eq!(
        value(&samples, "himaya_grpc_requests_total", &invalid),
        Some(1.0)
    );
    let timed = [
        ("service", "himaya.v1.Intake"),
        ("method", "SubmitSchoolReferral"),
        ("le", "+Inf"),
    ];
    assert_eq!(
        value(
            &samples,
            "himaya_grpc_request_duration_seconds_bucket",
            &timed
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &samples,
            "himaya_intake_refusals_total",
            &[("reason", "invalid")]
        ),
        Some(1.0)
    );
    // The fixture's referral is high risk: it went the urgent lane.
    let routed = [("queue", "router.referral-created"), ("lane", "urgent")];
    let acked: Vec<_> = samples
        .iter()
        .filter(|s| s.name == "himaya_bus_acked_total")
        .collect();
    assert!(
        value(&samples, "himaya_bus_acked_total", &routed).unwrap_or(0.0) >= 1.0,
        "{acked:?}"
    );
    assert!(value(&samples, "himaya_bus_consumed_total", &routed).unwrap_or(0.0) >= 1.0);
    assert!(
        value(
            &samples,
            "himaya_consent_decisions_total",
            &[("agency_type", "health"), ("decision", "permit")]
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    // Whichever published the referral's event (intake's writer, the relay or the
    // urgent relay), its batch is counted.
    let published: Vec<_> = samples
        .iter()
        .filter(|s| s.name == "himaya_outbox_publish_duration_seconds_count")
        .collect();
    assert!(
        value(
            &samples,
            "himaya_outbox_publish_duration_seconds_count",
            &[("outbox", "cases")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{published:?}"
    );
    assert_eq!(
        value(
            &samples,
            "himaya_agency_breaker_state",
            &[("agency", "health-cairo")]
        ),
        Some(0.0)
    );
    for component in ["cases", "router", "connectors", "audit", "directory", "web"] {
        assert_eq!(
            value(&samples, "himaya_ready", &[("component", component)]),
            Some(1.0),
            "{component}"
        );
    }

    // No label carries the child's or the caregiver's data.
    let d = himaya_record::fixtures::details();
    let mut personal: Vec<String> = vec![d.child.name.as_given.clone()];
    personal.extend(d.child.name.transliteration.clone());
    personal.extend(d.child.identity_documents.iter().map(|i| i.number.clone()));
    personal.extend(d.child.address.clone());
    for c in &d.caregivers {
        personal.push(c.name.as_given.clone());
        personal.extend(c.phone.clone());
        personal.extend(c.address.clone());
    }
    personal.push(referral.case_id.clone());
    personal.push(referral.referral_id.clone());
    assert!(personal.len() >= 4, "{personal:?}");
    for s in &samples {
        for v in s.labels.values() {
            for p in &personal {
                assert!(
                    !v.contains(p.as_str()),
                    "{} carries personal data or an id: {v:?}",
                    s.name
                );
            }
        }
    }
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agency_that_is_down_shows_its_breaker_open() {
    // Nothing listens at health-cairo's address: every call is refused.
    let (socket, port) = reserved_port();
    let mut env = TestEnv::new(Some(([127, 0, 0, 1], port).into())).await;
    let c = &mut env.settings.connectors;
    c.attempts = 2;
    c.backoff_ms = 50;
    c.breaker_failures = 3;
    c.breaker_cooldown_ms = 600_000;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    IntakeClient::new(ch)
        .submit_school_referral(from_school(school_request("sub-down")))
        .await
        .unwrap();
    let health = [("agency", "health-cairo")];
    let samples = wait_for(
        &hub,
        "health-cairo's breaker open",
        "himaya_agency_breaker_state",
        &health,
        2.0,
    )
    .await;
    let transient = [("agency", "health-cairo"), ("outcome", "transient")];
    assert!(value(&samples, "himaya_agency_deliveries_total", &transient).unwrap_or(0.0) >= 3.0);
    assert_eq!(
        value(
            &samples,
            "himaya_agency_deliveries_total",
            &[("agency", "health-cairo"), ("outcome", "delivered")]
        ),
        Some(0.0)
    );
    drop(socket);
    hub.stop().await;
}

/// `/readyz`: whether it answered 200, and its body.
async fn readyz(hub: &himaya::hub::Hub) -> Option<(u16, serde_json::Value)> {
    let r = http()
        .get(format!("http://{}/readyz", hub.metrics_addr))
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.ok()?))
}

async fn grpc_health(ch: &tonic::transport::Channel, service: &str) -> Option<i32> {
    tonic_health::pb::health_client::HealthClient::new(ch.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        })
        .await
        .ok()
        .map(|r| r.into_inner().status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_drops_while_the_broker_is_gone_and_comes_back() {
    let env = TestEnv::new(None).await;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let live = http()
        .get(format!("http://{}/livez", hub.metrics_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status().as_u16(), 200);
    eventually(30, "ready", || async {
        (readyz(&hub).await?.0 == 200).then_some(())
    })
    .await;
    assert_eq!(
        grpc_health(&ch, "himaya.v1.Intake").await,
        Some(ServingStatus::Serving as i32)
    );

    // The broker goes away for this hub: its user may no longer open the vhost, and
    // every connection of the vhost is closed, as the reconnect test does.
    let api = env_or("HIMAYA_TEST_RABBIT_API", "http://127.0.0.1:15672");
    let http = http();
    let permissions = format!("{api}/api/permissions/{}/guest", env.vhost);
    let revoked = http
        .delete(&permissions)
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success(), "{}", revoked.status());
    close_connections(&env.vhost).await;
    let (_, body) = eventually(30, "/readyz 503 naming the broker", || async {
        let (status, body) = readyz(&hub).await?;
        (status == 503).then_some((status, body))
    })
    .await;
    assert_eq!(body["ready"], false);
    assert_eq!(body["down"], serde_json::json!(["broker"]), "{body}");
    assert!(
        body["message_en"]
            .as_str()
            .unwrap_or_default()
            .contains("RabbitMQ"),
        "{body}"
    );
    assert!(
        !body["message_ar"].as_str().unwrap_or_default().is_empty(),
        "{body}"
    );
    eventually(30, "gRPC health NOT_SERVING", || async {
        (grpc_health(&ch, "himaya.v1.Intake").await? == ServingStatus::NotServing as i32)
            .then_some(())
    })
    .await;
    let samples = scrape(&hub).await.unwrap();
    assert_eq!(
        value(&samples, "himaya_ready", &[("component", "cases")]),
        Some(0.0)
    );

    // The broker is back.
    let back = http
        .put(&permissions)
        .basic_auth("guest", Some("guest"))
        .json(&serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"}))
        .send()
        .await
        .unwrap();
    assert!(back.status().is_success());
    eventually(60, "/readyz 200 again", || async {
        (readyz(&hub).await?.0 == 200).then_some(())
    })
    .await;
    eventually(30, "gRPC health SERVING again", || async {
        (grpc_health(&ch, "himaya.v1.Intake").await? == ServingStatus::Serving as i32).then_some(())
    })
    .await;
    assert_eq!(
        grpc_health(&ch, "").await,
        Some(ServingStatus::Serving as i32)
    );
    // Each lane lost its channel once, however many times it tried to come back.
    let samples = scrape(&hub).await.unwrap();
    for lane in ["routine", "urgent"] {
        let routed = [("queue", "router.referral-created"), ("lane", lane)];
        assert_eq!(
            value(&samples, "himaya_bus_consumer_restarts_total", &routed),
            Some(1.0),
            "{lane}"
        );
    }
    hub.stop().await;
}

#[test]
fn the_parser_reads_escapes_and_refuses_samples_of_no_family() {
    let text =
        "# HELP a_total x\n# TYPE a counter\na_total{k=\"q\\\"u\\\\o\\nte\",z=\"\"} 3\n# EOF\n";
    let s = parse(text);
    assert_eq!(s[0].labels["k"], "q\"u\\o\nte");
    assert_eq!(s[0].value, 3.0);
    let orphan = std::panic::catch_unwind(|| parse("b 1\n# EOF\n"));
    assert!(orphan.is_err());
}
