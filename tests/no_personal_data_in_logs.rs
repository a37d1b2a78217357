//! Canary values (a unique name, identity number, address and case note) go through the
//! whole hub — intake, routing, a delivery that fails once and is retried, reads allowed
//! and refused, a refused submission that names the bad field, a decision with a note —
//! with every component logging at trace level and tracing every span; the test fails if
//! a canary appears in any captured log line, error message or panic, or in any span,
//! span event or OTLP export a real receiver got.

#[path = "it/helpers/mod.rs"]
mod helpers;

use std::io::Write;
use std::sync::{Arc, Mutex};

use helpers::*;
use himaya_proto::v1 as pb;
use pb::case_work_client::CaseWorkClient;
use pb::cases_client::CasesClient;
use pb::intake_client::IntakeClient;
use tonic::Request;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

const NAME: &str = "زمردة قنطرة الكناري";
const LATIN: &str = "Zumurruda Qantara Alkanari";
const ID_NUMBER: &str = "99887766554433";
const ADDRESS: &str = "٧٧ درب الكناري العتيق";
const NOTE: &str = "ملاحظة كناري سرية";

fn as_agency<T>(agency: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("x-himaya-agency", agency.parse().unwrap());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_canary_reaches_a_log_an_error_or_a_panic() {
    let logs = Captured::default();
    let filter = "info,himaya=trace,himaya_cases=trace,himaya_router=trace,himaya_bus=trace,\
                  himaya_store=trace,himaya_audit=trace,himaya_directory=trace,\
                  himaya_connect=trace,himaya_connector_health=trace,himaya_connector_justice=trace,\
                  himaya_connector_schools=trace,himaya_connector_social_affairs=trace";
    // Traces too: every span of the hub and every event inside one (trace level), sent
    // over OTLP/HTTP to a receiver whose exports are searched like the logs.
    let (otlp, otlp_addr) = helpers::otlp::OtlpReceiver::start().await;
    let traces = himaya_settings::TraceSettings {
        otlp_endpoint: format!("http://{otlp_addr}"),
        scheduled_delay_ms: 100,
        ..Default::default()
    };
    let provider = himaya::telemetry::provider(&traces, "himaya-canary").unwrap();
    {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        use tracing_subscriber::Layer as _;
        let every_span = tracing_subscriber::filter::Targets::new()
            .with_target("himaya", tracing_subscriber::filter::LevelFilter::TRACE);
        tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(logs.clone())
                    .with_ansi(false)
                    .with_filter(tracing_subscriber::EnvFilter::new(filter)),
            )
            .with(himaya::telemetry::trace_layer(&provider).with_filter(every_span))
            .init();
    }
    let panics = Captured::default();
    let sink = panics.clone();
    std::panic::set_hook(Box::new(move |info| {
        let _ = writeln!(sink.clone(), "{info}");
        eprintln!("{info}");
    }));

    // The agency fails once (5xx) so the retry path logs too.
    let (agency, addr) = FakeAgency::start(&[503]).await;
    let mut env = TestEnv::new(Some(addr)).await;
    // The webhooks too: each agency below posts with its own token, in its own standard.
    for (id, protocol) in [
        ("school-cairo-alnour", himaya_settings::Protocol::School),
        ("health-cairo", himaya_settings::Protocol::FhirR4),
        ("legal-aid-cairo", himaya_settings::Protocol::JusticeMinimal),
    ] {
        let a = env.settings.agencies.get_mut(id).unwrap();
        a.protocol = protocol;
        a.inbound_token = Some(himaya_settings::SecretString::from(format!(
            "{id}-token-0123456789abcdef"
        )));
    }
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let mut errors: Vec<String> = Vec::new();

    let mut req = school_request("canary");
    {
        let child = req.referral.as_mut().unwrap().child.as_mut().unwrap();
        let name = child.name.as_mut().unwrap();
        name.as_given = NAME.into();
        name.transliteration = Some(LATIN.into());
        child.identity_documents[0].number = ID_NUMBER.into();
        child.address = Some(ADDRESS.into());
    }
    let mut intake = IntakeClient::new(ch.clone());
    let case = intake
        .submit_school_referral(from_school(req.clone()))
        .await
        .unwrap()
        .into_inner()
        .case_id;
    eventually(30, "the delivery after one 503", || async {
        (agency.count() == 2).then_some(())
    })
    .await;

    // Refused input that contains the canaries: the error names fields, never values.
    let mut bad = req.clone();
    bad.submission_id = "canary-bad".into();
    {
        let child = bad.referral.as_mut().unwrap().child.as_mut().unwrap();
        child.name.as_mut().unwrap().transliteration = Some(NAME.into());
        child.identity_documents[0].kind = 99;
    }
    let e = intake
        .submit_school_referral(from_school(bad))
        .await
        .unwrap_err();
    errors.push(format!("{e:?}"));

    // Webhooks: a school system's referral carrying the canaries (accepted, then its
    // FHIR delivery), and hostile payloads carrying them where they do not belong.
    let hooks = format!("http://{}", hub.webhook_addr.unwrap());
    let http = http();
    let post = |agency: &'static str, path: &'static str, body: serde_json::Value| {
        let req = http
            .post(format!("{hooks}/agencies/{agency}/{path}"))
            .bearer_auth(format!("{agency}-token-0123456789abcdef"))
            .body(body.to_string());
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let mut school: serde_json::Value = serde_json::from_str(include_str!(
        "../connectors/schools/fixtures/referral_in.json"
    ))
    .unwrap();
    school["message_id"] = "canary-webhook".into();
    school["referral"]["child"]["name"]["as_given"] = NAME.into();
    school["referral"]["child"]["address"] = ADDRESS.into();
    school["referral"]["narrative"] = NOTE.into();
    let (status, body) = post("school-cairo-alnour", "school/referrals", school.clone()).await;
    assert_eq!(status, 201, "{body}");
    let mut hostile = school.clone();
    hostile["message_id"] = "canary-hostile".into();
    hostile["referral"]["child"]["sex"] = NAME.into();
    hostile["referral"]["child"]["estimated_age_years"] = ID_NUMBER.into();
    let mut hostile_refusals = vec![post("school-cairo-alnour", "school/referrals", hostile).await];
    hostile_refusals.push(
        post(
            "health-cairo",
            "fhir/Task",
            serde_json::json!({"resourceType": NAME, "id": ID_NUMBER}),
        )
        .await,
    );
    hostile_refusals.push(
        post(
            "legal-aid-cairo",
            "justice/status",
            serde_json::json!({"message_id": "m1", "referral_ref": "srv_x", "status": "hearing_held", "hearing": {"outcome": NAME, "date": ADDRESS}}),
        )
        .await,
    );
    for (status, body) in hostile_refusals {
        assert!((400..500).contains(&status), "{status} {body}");
        errors.push(body);
    }
    eventually(30, "the webhook's referral delivered", || async {
        (agency.count() >= 3).then_some(())
    })
    .await;

    // Reads: allowed, refused for having no part, refused for a malformed id.
    let mut cases = CasesClient::new(ch.clone());
    let read = |agency: &str, id: &str| {
        as_agency(
            agency,
            pb::GetCaseRequest {
                case_id: id.into(),
                purpose: pb::Purpose::ServiceProvision.into(),
            },
        )
    };
    cases.get_case(read("mosa-cairo", &case)).await.unwrap();
    for r in [read("hotline-16000", &case), read("mosa-cairo", NAME)] {
        errors.push(format!("{:?}", cases.get_case(r).await.unwrap_err()));
    }

    // The bulk exit: an export as the ministry, and one refused for its purpose.
    let mut exported = cases
        .export_cases(as_agency(
            "mosa-cairo",
            pb::ExportCasesRequest {
                purpose: pb::Purpose::ServiceProvision.into(),
                after_case_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while exported.message().await.unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 2, "the canary cases (gRPC and webhook), exported");
    let refused = cases
        .export_cases(as_agency(
            "mosa-cairo",
            pb::ExportCasesRequest {
                purpose: pb::Purpose::Statistics.into(),
                after_case_id: NAME.into(),
            },
        ))
        .await;
    errors.push(format!("{:?}", refused.map(|_| ()).unwrap_err()));

    // A decision whose reason is a case note; then a move that is refused.
    let mut work = CaseWorkClient::new(ch);
    let decline = |version: i64| pb::DecideAcceptanceRequest {
        case_id: case.clone(),
        expected_version: version,
        actor: "sw-lead".into(),
        decision: pb::AcceptanceDecision::Decline.into(),
        vulnerability_criteria: vec![],
        reason: Some(NOTE.into()),
        referred_on_to: None,
        target_groups: vec![],
    };
    work.decide_acceptance(as_agency("mosa-cairo", decline(1)))
        .await
        .unwrap();
    errors.push(format!(
        "{:?}",
        work.decide_acceptance(as_agency("mosa-cairo", decline(2)))
            .await
            .unwrap_err()
    ));
    let db = env.pool().await;
    eventually(20, "the decisions in the disclosure log", || async {
        (count(&db, "SELECT count(*) FROM audit.log").await >= 3).then_some(())
    })
    .await;
    hub.stop().await;
    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .unwrap()
        .unwrap();
    let spans = otlp.spans();
    assert!(
        spans
            .iter()
            .any(|s| s.name == "himaya.v1.Intake/SubmitSchoolReferral"),
        "the receiver must see the hub's spans: {} spans",
        spans.len()
    );
    let exports: Vec<String> = otlp
        .raw()
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();

    let logs = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    let panics = String::from_utf8_lossy(&panics.0.lock().unwrap()).into_owned();
    assert!(
        logs.lines().count() > 20,
        "the capture must see the hub's logs: {} lines",
        logs.lines().count()
    );
    assert!(logs.contains(&case), "ids are logged, so the capture works");
    for canary in [NAME, LATIN, ID_NUMBER, ADDRESS, NOTE, "قنطرة", "Qantara"] {
        for (what, text) in [("logs", &logs), ("panics", &panics)] {
            if let Some(line) = text.lines().find(|l| l.contains(canary)) {
                panic!("canary in {what}: {line}");
            }
        }
        for e in &errors {
            assert!(!e.contains(canary), "canary in an error: {e}");
        }
        for s in &spans {
            for (k, v) in s
                .attributes
                .iter()
                .chain(s.event_attributes.iter().map(|(k, v)| (k, v)))
            {
                assert!(!v.contains(canary), "canary in span {} ({k} = {v})", s.name);
            }
        }
        assert!(
            !exports.iter().any(|e| e.contains(canary)),
            "canary in an OTLP export"
        );
    }
}
