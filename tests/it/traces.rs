//! One referral, one trace, across the hub's components run as separate `himaya serve
//! <component>` processes (as in production), each sending its spans over OTLP/HTTP to a
//! real receiver in this test: the caller's `traceparent` is continued by the gRPC
//! server span, every broker hop is a descendant, the call to the agency carries a
//! `traceparent` naming a span of the same trace, and the agency's answer by webhook,
//! echoing it, joins the trace and carries it on into the hub. No span holds the
//! child's name or document number.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::otlp::{OtlpReceiver, ReceivedSpan};
use crate::helpers::*;
use himaya_proto::v1 as pb;
use serde_json::json;
use tonic::transport::Channel;

/// The caller's trace (the school's system) and its span.
const SCHOOL_TRACE: &str = "5b8efff798038103d269b633813fc60c";
const SCHOOL_SPAN: &str = "eee19b7ec3c1b174";
/// The ministry's trace for the service referral it makes, and its span.
const MINISTRY_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const MINISTRY_SPAN: &str = "b7ad6b7169203331";

const CHILD_NAME: &str = "مريم أحمد عبد الله";
const CHILD_NAME_LATIN: &str = "Maryam Ahmad Abd Allah";
const CHILD_DOCUMENT: &str = "29803091234567";
const CHILD_ADDRESS: &str = "١٢ شارع النيل";

fn token(agency: &str) -> String {
    format!("{agency}-webhook-token-traces-0123456789")
}

/// A `himaya serve <component>` process, stopped (SIGTERM, then killed after 10 s)
/// when dropped.
struct Himaya {
    child: Child,
    component: &'static str,
}

impl Himaya {
    /// Starts `component` with the configuration in `dir` and waits (up to 90 s) until
    /// it says it is up.
    fn start(component: &'static str, dir: &Path, grpc_port: u16) -> Himaya {
        let mut child = Command::new(env!("CARGO_BIN_EXE_himaya"))
            .arg("--config")
            .arg(dir.join("traces.toml"))
            .args(["serve", component])
            .env("HIMAYA_CONFIG_DIR", dir)
            .env("HIMAYA_ENV", "traces-test")
            .env("HIMAYA__GRPC__LISTEN", format!("127.0.0.1:{grpc_port}"))
            // Each process its own metrics port (the default is one fixed port).
            .env("HIMAYA__TELEMETRY__METRICS_LISTEN", "127.0.0.1:0")
            .env_remove("RUST_LOG")
            .env_remove("HIMAYA_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the himaya binary starts");
        let stderr = child.stderr.take().expect("its stderr");
        let (up_tx, up_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("himaya is up") {
                    let _ = up_tx.send(());
                }
                eprintln!("[{component}] {line}");
            }
        });
        let mut me = Himaya { child, component };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if up_rx.recv_timeout(Duration::from_millis(200)).is_ok() {
                return me;
            }
            if let Ok(Some(status)) = me.child.try_wait() {
                panic!("himaya serve {component} ended at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "himaya serve {component} did not come up within 90 s"
            );
        }
    }

    /// SIGTERM, and the exit within 10 s (the process flushes its last spans).
    fn stop(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Himaya {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if !self.stop() {
                eprintln!("himaya serve {} had to be killed", self.component);
            }
        }
    }
}

/// A configuration folder for the processes: the project's gazetteer and base settings
/// without `[grpc.tls]` (development identity on loopback, as the in-process tests run),
/// and `traces.toml` layered over them with this test's database, vhost, ports, agency
/// and trace receiver.
fn config_dir(
    env: &TestEnv,
    agency: std::net::SocketAddr,
    otlp: std::net::SocketAddr,
    cases_port: u16,
    webhooks_port: u16,
) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{}-config", env.db_name));
    std::fs::create_dir_all(&dir).unwrap();
    let project = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
    std::fs::copy(project.join("gazetteer.toml"), dir.join("gazetteer.toml")).unwrap();
    let base = std::fs::read_to_string(project.join("base.toml")).unwrap();
    let mut kept = Vec::new();
    let mut in_tls = false;
    for line in base.lines() {
        if line.trim_start().starts_with('[') {
            in_tls = line.trim() == "[grpc.tls]";
        }
        if !in_tls {
            kept.push(line);
        }
    }
    std::fs::write(dir.join("base.toml"), kept.join("\n")).unwrap();
    let key = std::env::temp_dir().join(format!("{}.key", env.db_name));
    let overrides = format!(
        r#"
[grpc]
dev_identity = true

[database]
url = "{db}"

[bus]
url = "{bus}"

[relay]
poll_interval_ms = 200

[connectors]
timeout_ms = 2000
webhook_listen = "127.0.0.1:{webhooks_port}"
hub_url = "http://127.0.0.1:{cases_port}"

[web]
listen = "127.0.0.1:0"

[audit]
signing_key_file = "{key}"

[agencies.health-cairo]
endpoint = "http://{agency}/fhir"
protocol = "fhir_r4"
inbound_token = "{token}"

[telemetry]
format = "json"
filter = "info"

[telemetry.traces]
otlp_endpoint = "http://{otlp}"
scheduled_delay_ms = 100
"#,
        db = env.db_url,
        bus = env.amqp_url(),
        key = key.display(),
        token = token("health-cairo"),
    );
    std::fs::write(dir.join("traces.toml"), overrides).unwrap();
    dir
}

fn traceparent(trace: &str, span: &str) -> String {
    format!("00-{trace}-{span}-01")
}

/// (trace id, span id) of a `traceparent`.
fn ids(tp: &str) -> (String, String) {
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "a W3C traceparent: {tp}");
    (parts[1].to_owned(), parts[2].to_owned())
}

/// Waits (up to `secs`) until the trace holds a span `pick` chooses; returns it.
async fn span_where(
    otlp: &OtlpReceiver,
    trace: &str,
    secs: u64,
    what: &str,
    pick: impl Fn(&ReceivedSpan) -> bool,
) -> ReceivedSpan {
    eventually(secs, what, || async {
        otlp.trace(trace).into_iter().find(|s| pick(s))
    })
    .await
}

/// Whether `span` descends from the span `ancestor` within `spans` (by parent ids).
fn descends(spans: &BTreeMap<String, ReceivedSpan>, span: &ReceivedSpan, ancestor: &str) -> bool {
    let mut at = span.parent_span_id.clone();
    for _ in 0..64 {
        if at == ancestor {
            return true;
        }
        match spans.get(&at) {
            Some(parent) => at = parent.parent_span_id.clone(),
            None => return false,
        }
    }
    false
}

/// The trace as a tree on stderr (names, kinds and services: what docs/architecture.md
/// draws).
fn print_tree(spans: &BTreeMap<String, ReceivedSpan>, root: &str, depth: usize) {
    let mut children: Vec<&ReceivedSpan> = spans
        .values()
        .filter(|s| s.parent_span_id == root)
        .collect();
    children.sort_by_key(|s| (s.service.clone(), s.name.clone()));
    for s in children {
        eprintln!(
            "{}{} [{}] kind {}",
            "  ".repeat(depth),
            s.name,
            s.service,
            s.kind
        );
        print_tree(spans, &s.span_id, depth + 1);
    }
}

fn by_id(spans: Vec<ReceivedSpan>) -> BTreeMap<String, ReceivedSpan> {
    spans.into_iter().map(|s| (s.span_id.clone(), s)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_referral_is_one_trace_across_the_components_and_the_agency() {
    let (otlp, otlp_addr) = OtlpReceiver::start().await;
    let (agency, agency_addr) = FakeAgency::start(&[]).await;
    let env = TestEnv::new(Some(agency_addr)).await;
    let (cases_socket, cases_port) = reserved_port();
    let (hooks_socket, hooks_port) = reserved_port();
    let dir = config_dir(&env, agency_addr, otlp_addr, cases_port, hooks_port);
    // One process per component, as deployed; cases first (it owns the intake).
    let mut procs = Vec::new();
    procs.push(Himaya::start("cases", &dir, cases_port));
    drop(cases_socket);
    for component in ["directory", "router", "audit"] {
        let (socket, port) = reserved_port();
        procs.push(Himaya::start(component, &dir, port));
        drop(socket);
    }
    let (socket, port) = reserved_port();
    procs.push(Himaya::start("connectors", &dir, port));
    drop((socket, hooks_socket));

    let ch = Channel::from_shared(format!("http://127.0.0.1:{cases_port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();

    // 1. A school's referral, sent within the school system's own trace.
    let mut req = from_school(school_request("traces-1"));
    req.metadata_mut().insert(
        "traceparent",
        traceparent(SCHOOL_TRACE, SCHOOL_SPAN).parse().unwrap(),
    );
    let accepted = pb::intake_client::IntakeClient::new(ch.clone())
        .submit_school_referral(req)
        .await
        .unwrap()
        .into_inner();
    let delivered = eventually(60, "the referral at the health agency", || async {
        agency.requests().into_iter().next()
    })
    .await;
    let sent = delivered
        .traceparent
        .clone()
        .expect("the delivery carries a traceparent");
    let (sent_trace, sent_span) = ids(&sent);
    assert_eq!(
        sent_trace, SCHOOL_TRACE,
        "the agency is called within the referral's trace"
    );
    assert_ne!(
        sent_span, SCHOOL_SPAN,
        "a fresh span of the hub's, not the caller's"
    );

    let intake = span_where(&otlp, SCHOOL_TRACE, 30, "the intake's server span", |s| {
        s.name == "himaya.v1.Intake/SubmitSchoolReferral"
    })
    .await;
    assert_eq!(
        intake.parent_span_id, SCHOOL_SPAN,
        "the intake continues the caller's span"
    );
    assert_eq!(intake.service, "himaya-cases");
    assert_eq!(intake.kind, 2, "a server span");
    let handler = span_where(&otlp, SCHOOL_TRACE, 30, "the intake handler's span", |s| {
        s.name == "submit_school_referral"
    })
    .await;
    assert_eq!(handler.parent_span_id, intake.span_id);
    assert_eq!(
        handler.attributes.get("referral_id"),
        Some(&accepted.referral_id)
    );
    assert_eq!(handler.attributes.get("case_id"), Some(&accepted.case_id));
    let call = span_where(&otlp, SCHOOL_TRACE, 30, "the agency call's span", |s| {
        s.span_id == sent_span
    })
    .await;
    assert_eq!(call.service, "himaya-connectors");
    assert_eq!(call.kind, 3, "a client span");
    assert_eq!(
        call.attributes.get("agency_id").map(String::as_str),
        Some("health-cairo")
    );
    assert_eq!(
        call.attributes
            .get("http.response.status_code")
            .map(String::as_str),
        Some("201")
    );
    // The agency's answer recorded on the case: the last broker hop, back in cases.
    span_where(
        &otlp,
        SCHOOL_TRACE,
        30,
        "the answer consumed by cases",
        |s| s.service == "himaya-cases" && s.kind == 5,
    )
    .await;
    // Each process exports its spans in batches (every 2 s), a consumer's span when its
    // whole batch is acknowledged: wait (bounded) until the tree is whole.
    let deadline = Instant::now() + Duration::from_secs(15);
    let spans = loop {
        let spans = by_id(otlp.trace(SCHOOL_TRACE));
        let whole = spans
            .values()
            .filter(|s| s.span_id != intake.span_id)
            .all(|s| descends(&spans, s, &intake.span_id));
        if whole || Instant::now() > deadline {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for s in spans.values().filter(|s| s.span_id != intake.span_id) {
        assert!(
            descends(&spans, s, &intake.span_id),
            "{} ({}) is not below the intake's span: {spans:#?}",
            s.name,
            s.service
        );
    }
    let services: BTreeSet<&str> = spans.values().map(|s| s.service.as_str()).collect();
    for service in ["himaya-cases", "himaya-router", "himaya-connectors"] {
        assert!(
            services.contains(service),
            "{service} is in the trace: {services:?}"
        );
    }
    let hops: Vec<&ReceivedSpan> = spans.values().filter(|s| s.kind == 5).collect();
    assert!(
        hops.len() >= 3,
        "router, connector and the answer's consumer each continue the trace: {hops:#?}"
    );
    assert!(
        hops.iter()
            .all(|h| h.attributes.contains_key("messaging.destination.name")),
        "each broker hop names its queue"
    );
    assert!(descends(&spans, &call, &intake.span_id));

    // 2. The ministry refers the planned health action within its own trace; the agency
    //    answers with a FHIR Task, echoing the traceparent it received.
    plan_health_action(&ch, &accepted.case_id).await;
    let mut req = as_agency(
        "mosa-cairo",
        pb::CreateServiceReferralRequest {
            case_id: accepted.case_id.clone(),
            action_id: "a1".into(),
            actor: "sw-1".into(),
            ability_to_pay: pb::AbilityToPay::None.into(),
        },
    );
    req.metadata_mut().insert(
        "traceparent",
        traceparent(MINISTRY_TRACE, MINISTRY_SPAN).parse().unwrap(),
    );
    let srv = pb::service_referrals_client::ServiceReferralsClient::new(ch.clone())
        .create_service_referral(req)
        .await
        .unwrap()
        .into_inner()
        .service_referral_id;
    let request = eventually(60, "the service referral at the health agency", || async {
        agency.requests().into_iter().find(|s| {
            s.traceparent
                .as_deref()
                .is_some_and(|t| t.contains(MINISTRY_TRACE))
        })
    })
    .await;
    let echoed = request.traceparent.expect("a traceparent");
    let (_, agency_span) = ids(&echoed);
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("connectors/health/fixtures/task_accepted.json");
    let mut task: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    task["basedOn"][0]["identifier"]["value"] = json!(srv);
    let answer = http()
        .post(format!(
            "http://127.0.0.1:{hooks_port}/agencies/health-cairo/fhir/Task"
        ))
        .bearer_auth(token("health-cairo"))
        .header("content-type", "application/fhir+json")
        .header("traceparent", &echoed)
        .body(task.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::CREATED);

    let created = span_where(
        &otlp,
        MINISTRY_TRACE,
        30,
        "the service referral's span",
        |s| s.name == "himaya.v1.ServiceReferrals/CreateServiceReferral",
    )
    .await;
    assert_eq!(created.parent_span_id, MINISTRY_SPAN);
    let hook = span_where(&otlp, MINISTRY_TRACE, 30, "the webhook's span", |s| {
        s.service == "himaya-connectors" && s.kind == 2
    })
    .await;
    assert_eq!(
        hook.parent_span_id, agency_span,
        "the answer continues the span the agency was called from"
    );
    let update = span_where(
        &otlp,
        MINISTRY_TRACE,
        30,
        "the hub's span for the answer",
        |s| s.name == "himaya.v1.ServiceReferrals/UpdateServiceReferral",
    )
    .await;
    assert_eq!(update.service, "himaya-cases");
    assert_eq!(
        update.parent_span_id, hook.span_id,
        "the webhook passes the trace on"
    );
    let spans = by_id(otlp.trace(MINISTRY_TRACE));
    assert!(descends(&spans, &spans[&agency_span], &created.span_id));
    assert!(descends(&spans, &update, &created.span_id));

    eprintln!("the school's referral:");
    print_tree(&by_id(otlp.trace(SCHOOL_TRACE)), SCHOOL_SPAN, 1);
    eprintln!("the ministry's service referral:");
    print_tree(&by_id(otlp.trace(MINISTRY_TRACE)), MINISTRY_SPAN, 1);

    // Stopped by SIGTERM, each process exits and flushes what it still held.
    for p in procs.iter_mut() {
        assert!(p.stop(), "himaya serve {} stops on SIGTERM", p.component);
    }

    // Ids and counts only: nothing of the child anywhere in what was exported.
    let all = otlp.spans();
    assert!(all.len() >= 10, "spans arrived: {}", all.len());
    for s in &all {
        for (k, v) in s
            .attributes
            .iter()
            .chain(s.event_attributes.iter().map(|(k, v)| (k, v)))
        {
            for secret in [CHILD_NAME, CHILD_NAME_LATIN, CHILD_DOCUMENT, CHILD_ADDRESS] {
                assert!(
                    !v.contains(secret),
                    "{} ({}) has {k} = {v}",
                    s.name,
                    s.service
                );
            }
        }
    }
    for body in otlp.raw() {
        let text = String::from_utf8_lossy(&body);
        for secret in [CHILD_NAME, CHILD_NAME_LATIN, CHILD_DOCUMENT, CHILD_ADDRESS] {
            assert!(!text.contains(secret), "an export holds personal data");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
