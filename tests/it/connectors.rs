//! Every connector end to end against a simulated agency system (a real HTTP server): a
//! school's referral crosses the real hub and reaches the agency in its own standard.
//! For each protocol, in one hub: the agency down for a while then back (nothing lost),
//! success, rejection (recorded, never repeated), 5xx then success and a timeout then
//! success (one effect each). And a slow agency delays only itself.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::helpers::*;
use himaya_proto::v1 as pb;
use himaya_record::ServiceType;
use himaya_settings::Protocol;
use pb::intake_client::IntakeClient;
use serde_json::json;
use sqlx::PgPool;
use tonic::transport::Channel;

/// An agency under test: who it is, the standard it speaks, a service only it offers.
struct Target {
    agency: &'static str,
    protocol: Protocol,
    service: ServiceType,
    path: &'static str,
    content_type: &'static str,
    /// What the request body must show (a protocol-specific look at the redacted case).
    check: fn(&serde_json::Value, &str),
    /// A rejection in the agency's own error shape, and the reason the hub must record.
    rejection: fn() -> (serde_json::Value, &'static str),
}

fn fhir() -> Target {
    Target {
        agency: "health-cairo",
        protocol: Protocol::FhirR4,
        service: ServiceType::Health,
        path: "/fhir",
        content_type: "application/fhir+json",
        check: |b, referral| {
            assert_eq!(b["resourceType"], "Bundle");
            assert_eq!(b["type"], "transaction");
            let sr = &b["entry"].as_array().unwrap().last().unwrap()["resource"];
            assert_eq!(sr["resourceType"], "ServiceRequest");
            assert_eq!(sr["identifier"][0]["value"], referral);
            // The fixture's risk is high and it came from a school: asap.
            assert_eq!(sr["priority"], "asap");
            let patient = &b["entry"][0]["resource"];
            assert_eq!(patient["resourceType"], "Patient");
            assert!(
                !b.to_string().contains("income"),
                "economic data left for health"
            );
            // What the agency received is valid FHIR R4, to two independent validators.
            let errors =
                himaya_connect::testing::fhir_r4_errors(&[("delivered Bundle".into(), b.clone())]);
            assert!(errors.is_empty(), "{errors:#?}");
        },
        rejection: || {
            (
                json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "business-rule", "diagnostics": "no paediatric capacity"}]}),
                "no paediatric capacity",
            )
        },
    }
}

fn primero() -> Target {
    Target {
        agency: "mosa-cairo",
        protocol: Protocol::PrimeroV2,
        service: ServiceType::CaseManagement,
        path: "/primero/api/v2/cases",
        content_type: "application/json",
        check: |b, referral| {
            assert_eq!(b["data"]["module_id"], "primeromodule-cp");
            // A custom field this instance declares (`[standards.primero.mosa-cairo]`).
            assert_eq!(b["data"]["himaya_referral_id"], referral);
            // The name in the form's fields; `name`, `case_id_display` and `status` are
            // Primero's own to set.
            assert!(b["data"]["name_first"].is_string());
            for derived in ["name", "case_id_display", "status"] {
                assert!(b["data"].get(derived).is_none(), "{derived} sent");
            }
        },
        rejection: || {
            (
                json!({"errors": [{"status": 422, "resource": "/api/v2/cases", "message": "errors.models.case.duplicate"}]}),
                "errors.models.case.duplicate",
            )
        },
    }
}

fn justice() -> Target {
    Target {
        agency: "legal-aid-cairo",
        protocol: Protocol::JusticeMinimal,
        service: ServiceType::Legal,
        path: "/moj/legal-referrals",
        content_type: "application/json",
        check: |b, referral| {
            assert_eq!(b["referral_ref"], referral);
            let text = b.to_string();
            for never in [
                "address",
                "phone",
                "caregiver",
                "disability",
                "narrative",
                "date_of_birth",
            ] {
                assert!(!text.contains(never), "{never} left for justice");
            }
        },
        rejection: || {
            (
                json!({"reason": "outside our jurisdiction"}),
                "outside our jurisdiction",
            )
        },
    }
}

fn spdci() -> Target {
    Target {
        agency: "takaful-cairo",
        protocol: Protocol::SpdciRegistry,
        service: ServiceType::Economic,
        path: "/registry/sync/search",
        content_type: "application/json",
        check: |b, referral| {
            assert_eq!(b["header"]["action"], "search");
            assert_eq!(b["message"]["transaction_id"], referral);
            // The search rests on the case's consent, as the specification's object.
            let request = &b["message"]["search_request"][0];
            let consent = &request["search_criteria"]["consent"];
            assert_eq!(consent["@type"], "Consent", "{b}");
            assert_eq!(consent["purpose"]["code"], "service_provision");
            assert!(consent["ts"].is_string());
            assert_eq!(request["locale"], "ara");
            assert!(
                !b.to_string().contains("exploitative_labour"),
                "a concern left for cash assistance"
            );
        },
        // The registry refuses inside a 200, as SPDCI does.
        rejection: || {
            (
                json!({"message": {"search_response": [{"status": "rjct", "status_reason_code": "rjct.reference_id.invalid", "status_reason_message": "household registry closed for this governorate"}]}}),
                "household registry closed for this governorate",
            )
        },
    }
}

fn envelope() -> Target {
    Target {
        agency: "health-cairo",
        protocol: Protocol::HimayaJson,
        service: ServiceType::Health,
        path: "/referrals",
        content_type: "application/json",
        check: |b, referral| assert_eq!(b["referral_id"], referral),
        rejection: || (json!({"reason": "unknown child"}), "unknown child"),
    }
}

/// Accepts and closes `n` connections (an agency whose service is down), then gives the
/// listener back to serve the agency on.
async fn close_connections(listener: tokio::net::TcpListener, n: usize) -> tokio::net::TcpListener {
    let mut closed = 0;
    while closed < n {
        if let Ok((conn, _)) = listener.accept().await {
            drop(conn);
            closed += 1;
        }
    }
    listener
}

/// A local port held but not listening: the agency is "down" (connections are refused)
/// until the test listens on the same socket. Nothing else can take the port meanwhile.
fn down_agency() -> (tokio::net::TcpSocket, SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

fn env_for(t: &Target, addr: SocketAddr, env: &mut TestEnv) {
    let base = t
        .path
        .trim_end_matches("/registry/sync/search")
        .trim_end_matches("/legal-referrals")
        .trim_end_matches("/api/v2/cases");
    let base = if t.protocol == Protocol::HimayaJson {
        t.path
    } else {
        base
    };
    for (id, a) in env.settings.agencies.iter_mut() {
        a.endpoint = None;
        if id == t.agency {
            a.endpoint = Some(format!("http://{addr}{base}"));
            a.protocol = t.protocol;
        }
    }
    let c = &mut env.settings.connectors;
    c.timeout_ms = 400;
    c.attempts = 2;
    c.backoff_ms = 50;
    c.breaker_failures = 3;
    c.breaker_cooldown_ms = 300;
}

/// Submits a school referral asking for `service`; its referral id.
async fn refer(ch: &Channel, submission: &str, service: ServiceType) -> String {
    let mut details = himaya_record::fixtures::details();
    details.requested_services = vec![service];
    let mut req = school_request(submission);
    req.referral = Some(himaya_proto::convert::referral_details_to_pb(&details));
    let mut req = from_school(req);
    req.metadata_mut().insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    IntakeClient::new(ch.clone())
        .submit_school_referral(req)
        .await
        .unwrap()
        .into_inner()
        .referral_id
}

/// The connector's record of a referral: (outcome, reference, reason, attempts).
async fn recorded(
    pool: &PgPool,
    referral: &str,
) -> Option<(String, Option<String>, Option<String>, i32)> {
    sqlx::query_as(
        "SELECT outcome, agency_reference, reason, attempts FROM connectors.deliveries WHERE referral_id = $1",
    )
    .bind(referral)
    .fetch_optional(pool)
    .await
    .unwrap()
}

async fn wait_recorded(
    pool: &PgPool,
    referral: &str,
) -> (String, Option<String>, Option<String>, i32) {
    eventually(30, "the agency's answer recorded", || {
        recorded(pool, referral)
    })
    .await
}

/// Exactly one effect: one connector record and one case-side record of the answer.
async fn assert_one_effect(pool: &PgPool, referral: &str) {
    wait_count(
        pool,
        &format!("SELECT count(*) FROM cases.referral_deliveries WHERE referral_id = '{referral}'"),
        1,
        10,
        "the case records the answer",
    )
    .await;
    assert_eq!(
        count(
            pool,
            &format!("SELECT count(*) FROM connectors.deliveries WHERE referral_id = '{referral}'")
        )
        .await,
        1
    );
}

fn seen_for(agency: &FakeAgency, key: &str) -> Vec<Seen> {
    agency
        .requests()
        .into_iter()
        .filter(|s| s.idempotency_key.as_deref() == Some(key))
        .collect()
}

async fn run(t: Target) {
    // The agency's host answers, its service does not: each connection is closed at once.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let refusing = tokio::spawn(close_connections(listener, 3));
    let mut env = TestEnv::new(None).await;
    env_for(&t, addr, &mut env);
    if let Some(a) = env.settings.agencies.get_mut("mosa-cairo") {
        // Primero names places by its own location codes.
        a.place_codes.insert("القاهرة".into(), "EG01".into());
    }
    // This Primero added a field for the hub's referral id to its case form.
    let mut form = himaya_settings::PrimeroSettings::default();
    form.custom_fields.insert("himaya_referral_id".into());
    env.settings
        .standards
        .primero
        .insert("mosa-cairo".into(), form);
    let hub = env.start().await;
    let pool = env.pool().await;
    let ch = channel(&hub).await;
    let key = |r: &str| format!("{r}:{}", t.agency);

    // Down for a while, then back: nothing lost, each delivered once.
    let mut waiting = Vec::new();
    for i in 0..3 {
        waiting.push(refer(&ch, &format!("down-{i}"), t.service).await);
    }
    // The barrier: the hub has tried the agency (three connections closed on it), so
    // the deliveries were handled and held back, not merely not reached yet.
    let listener = tokio::time::timeout(Duration::from_secs(60), refusing)
        .await
        .expect("the hub tried the agency within 60 s")
        .unwrap();
    for r in &waiting {
        assert!(
            recorded(&pool, r).await.is_none(),
            "nothing can be recorded while the agency is down"
        );
    }
    let agency = FakeAgency::default();
    agency.clone().serve(listener);
    for r in &waiting {
        let (outcome, reference, _, _) = wait_recorded(&pool, r).await;
        assert_eq!(outcome, "delivered");
        assert!(reference.is_some(), "the agency's reference is kept");
        assert_one_effect(&pool, r).await;
        assert_eq!(
            seen_for(&agency, &key(r)).len(),
            1,
            "delivered once after the agency came back"
        );
    }

    // Success, in the agency's standard.
    let r = refer(&ch, "ok", t.service).await;
    wait_recorded(&pool, &r).await;
    let seen = seen_for(&agency, &key(&r));
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, t.path);
    assert_eq!(seen[0].content_type.as_deref(), Some(t.content_type));
    assert!(seen[0]
        .traceparent
        .as_deref()
        .is_some_and(|tp| tp.contains("4bf92f3577b34da6a3ce929d0e0e4736")));
    (t.check)(&seen[0].body, &r);

    // Rejection: recorded with the agency's reason, never repeated.
    let (body, reason) = (t.rejection)();
    let status = if t.protocol == Protocol::SpdciRegistry {
        200
    } else {
        422
    };
    agency.then([Step::Answer(status, body)]);
    let r = refer(&ch, "no", t.service).await;
    let (outcome, _, got_reason, attempts) = wait_recorded(&pool, &r).await;
    assert_eq!(
        (outcome.as_str(), got_reason.as_deref(), attempts),
        ("rejected", Some(reason), 1)
    );
    assert_one_effect(&pool, &r).await;
    let refused = r;

    // 5xx, then success: two calls with one key, one effect.
    agency.then([Step::Status(503)]);
    let r = refer(&ch, "flaky", t.service).await;
    let (outcome, _, _, attempts) = wait_recorded(&pool, &r).await;
    assert_eq!((outcome.as_str(), attempts), ("delivered", 2));
    assert_one_effect(&pool, &r).await;
    assert_eq!(seen_for(&agency, &key(&r)).len(), 2);
    // The barrier for the refusal above: a later delivery on the agency's queue went
    // through, and the refused one was still asked only once.
    assert_eq!(
        seen_for(&agency, &key(&refused)).len(),
        1,
        "a refusal is not asked again"
    );

    // A timeout, then success: one effect.
    agency.then([Step::Slow(900, 201)]);
    let r = refer(&ch, "slow", t.service).await;
    let (outcome, _, _, _) = wait_recorded(&pool, &r).await;
    assert_eq!(outcome, "delivered");
    assert_one_effect(&pool, &r).await;
    assert_eq!(seen_for(&agency, &key(&r)).len(), 2);

    if t.protocol == Protocol::PrimeroV2 {
        // Primero made the case but its answer was lost (a timeout); the second attempt
        // names the same record id and Primero answers 409: already there, so delivered,
        // with that id as the reference, and no second case.
        agency.then([
            Step::Slow(900, 204),
            Step::Answer(
                409,
                json!({"errors": [{"code": 409, "resource": "/api/v2/cases", "message": "Conflict"}]}),
            ),
        ]);
        let r = refer(&ch, "lost-answer", t.service).await;
        let (outcome, reference, reason, attempts) = wait_recorded(&pool, &r).await;
        assert_eq!((outcome.as_str(), attempts, reason), ("delivered", 2, None));
        assert_one_effect(&pool, &r).await;
        let seen = seen_for(&agency, &key(&r));
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].body["data"]["id"], seen[1].body["data"]["id"]);
        assert_eq!(seen[0].body["data"]["location_current"], "EG01");
        assert_eq!(
            reference.as_deref(),
            seen[0].body["data"]["id"].as_str(),
            "the record id the hub chose is the reference"
        );

        // Consent withdrawn: the notice is a flag on the record the hub made there.
        let case: String =
            sqlx::query_scalar("SELECT case_id FROM connectors.deliveries WHERE referral_id = $1")
                .bind(&r)
                .fetch_one(&pool)
                .await
                .unwrap();
        withdraw_demo_consent(&ch, &case).await;
        let flag = eventually(20, "the notice flags the record", || async {
            agency
                .requests()
                .into_iter()
                .find(|s| s.path.ends_with("/api/v2/cases/flags"))
        })
        .await;
        assert_eq!(
            flag.body["data"]["ids"],
            json!([reference]),
            "{}",
            flag.body
        );
        assert!(flag.body["data"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("cns_demo")));
    }

    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_over_fhir_r4() {
    run(fhir()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn social_affairs_over_primero_v2() {
    run(primero()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn justice_over_its_minimal_set() {
    run(justice()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cash_assistance_over_an_spdci_registry_search() {
    run(spdci()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_agency_over_the_hub_envelope() {
    run(envelope()).await;
}

/// A dead agency (every call times out) does not hold up a healthy one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_agency_delays_only_itself() {
    let (slow, slow_addr) = FakeAgency::scripted(vec![Step::Slow(2_000, 201); 50]).await;
    let (fast, fast_addr) = FakeAgency::start(&[]).await;
    let mut env = TestEnv::new(None).await;
    env_for(&fhir(), slow_addr, &mut env);
    if let Some(a) = env.settings.agencies.get_mut("legal-aid-cairo") {
        a.endpoint = Some(format!("http://{fast_addr}/moj"));
    }
    let hub = env.start().await;
    let pool = env.pool().await;
    let ch = channel(&hub).await;
    // Ten referrals pile up behind the slow agency first.
    for i in 0..10 {
        refer(&ch, &format!("stuck-{i}"), ServiceType::Health).await;
    }
    let started = Instant::now();
    let r = refer(&ch, "legal", ServiceType::Legal).await;
    wait_recorded(&pool, &r).await;
    let took = started.elapsed();
    assert_eq!(fast.count(), 1);
    assert!(
        took < Duration::from_secs(3),
        "the healthy agency waited {took:?}"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM connectors.deliveries WHERE agency_id = 'health-cairo'"
        )
        .await,
        0
    );
    assert!(slow.count() >= 1);
    hub.stop().await;
}

/// An agency that does not answer does not hold up the hub's stop: a delivery waiting
/// for it gives its message back at once (the call in flight included), and no retry is
/// made while stopping. The referral is delivered once the hub is back and the agency
/// answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_stops_at_once_while_a_delivery_waits_for_its_agency() {
    let (slow, slow_addr) = FakeAgency::scripted(vec![Step::Slow(2_000, 201); 50]).await;
    let mut env = TestEnv::new(None).await;
    env_for(&fhir(), slow_addr, &mut env);
    let hub = env.start().await;
    let pool = env.pool().await;
    let ch = channel(&hub).await;
    let r = refer(&ch, "waiting", ServiceType::Health).await;
    // Called more than once: the delivery waits in place for its agency.
    eventually(30, "the delivery waiting for its agency", || async {
        (slow.count() >= 3).then_some(())
    })
    .await;
    let started = Instant::now();
    hub.stop().await;
    let took = started.elapsed();
    println!("stopped in {took:?} while a delivery waited for its agency");
    assert!(
        took < Duration::from_secs(1),
        "the hub took {took:?} to stop"
    );
    let (fast, fast_addr) = FakeAgency::start(&[]).await;
    env_for(&fhir(), fast_addr, &mut env);
    let hub = env.start().await;
    wait_recorded(&pool, &r).await;
    assert_eq!(fast.count(), 1);
    hub.stop().await;
}

/// Referrals for enrolment leave as an Avro file, through the same exit: the programme
/// gets the cases it has a part in, as the consent layer discloses them to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrals_for_enrolment_export_as_avro_through_the_consent_layer() {
    let t = spdci();
    let (_registry, addr) = FakeAgency::start(&[]).await;
    let mut env = TestEnv::new(None).await;
    env_for(&t, addr, &mut env);
    let hub = env.start().await;
    let pool = env.pool().await;
    let ch = channel(&hub).await;
    let r = refer(&ch, "enrol", t.service).await;
    wait_recorded(&pool, &r).await;
    // The programme's part in the case is the answer recorded on the case, a hop after
    // the connector's own record.
    wait_count(
        &pool,
        &format!("SELECT count(*) FROM cases.referral_deliveries WHERE referral_id = '{r}' AND outcome = 'delivered'"),
        1,
        20,
        "the delivery recorded on the case",
    )
    .await;
    refer(&ch, "not-for-cash", ServiceType::Health).await;
    let out = std::env::temp_dir().join(format!("{}-enrol.avro", env.db_name));
    let who = himaya::cli::casework::Who {
        agency: "takaful-cairo".into(),
        actor: "operator".into(),
        client: himaya::cli::ClientArgs {
            server: format!("http://{}", hub.grpc_addr),
            lang: himaya::client::Lang::En,
            certs: std::env::temp_dir(),
        },
    };
    himaya::cli::cash::run(
        himaya::cli::cash::CashCommand::Export {
            out: out.clone(),
            after: None,
            who,
        },
        || anyhow::bail!("the export needs no settings"),
    )
    .await
    .unwrap();
    let bytes = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    let rows: Vec<_> = apache_avro::Reader::new(&bytes[..])
        .unwrap()
        .map(|v| v.unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "only the case referred to the programme");
    let apache_avro::types::Value::Record(fields) = &rows[0] else {
        panic!("a record")
    };
    let get = |k: &str| {
        fields
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let some = |v: apache_avro::types::Value| !matches!(v, apache_avro::types::Value::Union(0, _));
    assert!(
        some(get("name_ar")) && some(get("governorate")),
        "identity and location are the programme's"
    );
    // The export is in the disclosure log like any exit.
    wait_count(&pool, "SELECT count(*) FROM audit.log WHERE channel = 'export' AND decision = 'permit' AND recipient = 'takaful-cairo'", 1, 10, "the export's permit in the disclosure log").await;
    hub.stop().await;
}

/// Deliveries a connector cannot make (a corrupt document, an unknown kind, another
/// agency's delivery on this agency's queue) are parked with a reason an operator can
/// read, and the agency's next delivery still goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deliveries_are_parked_and_do_not_block_the_agency() {
    use himaya_bus::{Bus, Exchange, Outgoing, Topology};
    use himaya_events::{encode, DeliveryRequested, Event};

    let t = fhir();
    let (agency, addr) = FakeAgency::start(&[]).await;
    let mut env = TestEnv::new(None).await;
    env_for(&t, addr, &mut env);
    env.settings.bus.prefetch = 1;
    let hub = env.start().await;
    let pool = env.pool().await;
    let bus = Bus::connect(env.amqp_url(), Topology::new(""))
        .await
        .unwrap();
    let delivery = |id: &str, agency_id: &str, doc: &str, kind: &str| DeliveryRequested {
        message_id: id.into(),
        occurred_at: "2026-11-24T08:00:00+00:00".into(),
        agency_id: agency_id.into(),
        case_id: "case_x".into(),
        referral_id: format!("ref_{id}"),
        purpose: "service_provision".into(),
        priority: "routine".into(),
        idempotency_key: format!("ref_{id}:{agency_id}"),
        categories: vec!["reference".into()],
        document_json: doc.into(),
        service_type: None,
        kind: kind.into(),
        medical_coverage: None,
    };
    for d in [
        delivery(
            "msg_corrupt",
            "health-cairo",
            "{\"child\": {\"sex\": \"قنطرة\"",
            "referral",
        ),
        delivery("msg_kind", "health-cairo", "{}", "gossip"),
        delivery("msg_stray", "legal-aid-cairo", "{}", "referral"),
    ] {
        bus.publish(&Outgoing {
            exchange: Exchange::Delivery,
            routing_key: "health-cairo".into(),
            payload: encode(&d).unwrap(),
            message_id: d.message_id.clone(),
            event_type: DeliveryRequested::NAME.into(),
            priority: 1,
            headers: Default::default(),
        })
        .await
        .unwrap();
    }
    let ch = channel(&hub).await;
    let r = refer(&ch, "after-the-bad-ones", t.service).await;
    assert_eq!(wait_recorded(&pool, &r).await.0, "delivered");
    assert_eq!(
        agency.count(),
        1,
        "nothing of the bad ones reached the agency"
    );

    let reasons = parked_reasons(&env.amqp_url(), 3).await;
    assert!(
        reasons["msg_corrupt"].contains("not a case the connector can read"),
        "{reasons:?}"
    );
    assert!(
        !reasons["msg_corrupt"].contains("قنطرة"),
        "a value in a park reason: {reasons:?}"
    );
    assert!(
        reasons["msg_kind"].contains("does not support `gossip`"),
        "{reasons:?}"
    );
    assert!(
        reasons["msg_stray"].contains("arrived on the queue of"),
        "{reasons:?}"
    );
    hub.stop().await;
}

/// Material need alone refers a case on to relief; for a programme speaking the SPDCI
/// registry standard, that referral is the search of its registry for the household,
/// whose id comes back onto the case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_material_need_case_is_searched_for_in_the_programmes_registry() {
    use pb::case_work_client::CaseWorkClient;
    let t = spdci();
    let (registry, addr) = FakeAgency::start(&[]).await;
    let mut env = TestEnv::new(None).await;
    env_for(&t, addr, &mut env);
    let hub = env.start().await;
    let pool = env.pool().await;
    let ch = channel(&hub).await;
    let r = refer(&ch, "poverty", ServiceType::Health).await;
    let case: String = sqlx::query_scalar("SELECT case_id FROM cases.cases")
        .fetch_one(&pool)
        .await
        .unwrap();
    let reply = CaseWorkClient::new(ch)
        .decide_acceptance(as_agency(
            "mosa-cairo",
            pb::DecideAcceptanceRequest {
                case_id: case.clone(),
                expected_version: 1,
                actor: "sw-lead".into(),
                decision: pb::AcceptanceDecision::Register.into(),
                vulnerability_criteria: vec!["poverty".into()],
                reason: None,
                referred_on_to: None,
                target_groups: vec![],
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.status(), pb::CaseStatus::ReferredOn);
    let (outcome, reference, _, _) = wait_recorded(&pool, &r).await;
    assert_eq!(
        (outcome.as_str(), reference.as_deref()),
        ("delivered", Some("SIM-1"))
    );
    let search = &registry.requests()[0];
    assert_eq!(search.path, "/registry/sync/search");
    assert_eq!(
        search.body["message"]["search_request"][0]["reference_id"],
        r.as_str()
    );
    eventually(10, "the household reference on the case", || async {
        let got: Option<Option<String>> = sqlx::query_scalar(
            "SELECT agency_reference FROM cases.referral_deliveries WHERE agency_id = 'takaful-cairo'",
        )
        .fetch_optional(&pool)
        .await
        .unwrap();
        got.flatten().filter(|r| r == "SIM-1")
    })
    .await;
    hub.stop().await;
}

/// An agency down for longer than its queue's delivery limit would allow if deliveries
/// were requeued (20 deliveries of ~1.4 s of retries each): nothing is parked, and
/// everything arrives once when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_parks_nothing() {
    let t = fhir();
    let (socket, addr) = down_agency();
    let mut env = TestEnv::new(None).await;
    env_for(&t, addr, &mut env);
    let hub = env.start().await;
    let pool = env.pool().await;
    let ch = channel(&hub).await;
    let mut waiting = Vec::new();
    for i in 0..3 {
        waiting.push(refer(&ch, &format!("outage-{i}"), t.service).await);
    }
    tokio::time::sleep(Duration::from_secs(35)).await;
    let agency = FakeAgency::default();
    agency.clone().serve(socket.listen(1024).unwrap());
    for r in &waiting {
        assert_eq!(wait_recorded(&pool, r).await.0, "delivered");
        assert_eq!(seen_for(&agency, &format!("{r}:{}", t.agency)).len(), 1);
    }
    let parked = parked_reasons(&env.amqp_url(), 1).await;
    assert!(
        parked.is_empty(),
        "a delivery was parked during the outage: {parked:?}"
    );
    hub.stop().await;
}

/// A simulated Primero that asks for a login: `POST /api/v2/tokens` with the right user and
/// password answers a new JWT in the `Authorization` header; a case is taken (204) only
/// with the token issued last. `expire()` stands for the hour after which Primero's
/// tokens expire.
#[derive(Clone, Default)]
struct LoginPrimero {
    state: std::sync::Arc<std::sync::Mutex<LoginState>>,
}

#[derive(Default)]
struct LoginState {
    password: String,
    logins: usize,
    valid: Option<String>,
    /// The Authorization header of each case taken.
    cases: Vec<String>,
    refused: usize,
    /// Logins refused for a wrong password.
    bad_logins: usize,
}

impl LoginPrimero {
    async fn start(password: &str) -> (LoginPrimero, SocketAddr) {
        use axum::http::{HeaderMap, StatusCode};
        use axum::response::IntoResponse;
        use axum::routing::post;
        let p = LoginPrimero::default();
        p.state.lock().unwrap().password = password.into();
        let (tokens, cases) = (p.clone(), p.clone());
        let app = axum::Router::new()
            .route(
                "/api/v2/tokens",
                post(move |body: axum::Json<serde_json::Value>| async move {
                    let mut s = tokens.state.lock().unwrap();
                    if body.0["user"]["user_name"] != "himaya"
                        || body.0["user"]["password"] != s.password.as_str()
                    {
                        s.bad_logins += 1;
                        return (
                            StatusCode::UNAUTHORIZED,
                            axum::Json(json!({"error": "Invalid User name or password."})),
                        )
                            .into_response();
                    }
                    s.logins += 1;
                    let token = format!("Bearer jwt-{}", s.logins);
                    s.valid = Some(token.clone());
                    (
                        StatusCode::OK,
                        [("authorization", token)],
                        axum::Json(json!({"user_name": "himaya"})),
                    )
                        .into_response()
                }),
            )
            .route(
                "/api/v2/cases",
                post(move |headers: HeaderMap| async move {
                    let mut s = cases.state.lock().unwrap();
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    if auth.is_none() || auth != s.valid {
                        s.refused += 1;
                        return StatusCode::UNAUTHORIZED;
                    }
                    s.cases.push(auth.unwrap_or_default());
                    StatusCode::NO_CONTENT
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (p, addr)
    }

    fn expire(&self) {
        self.state.lock().unwrap().valid = None;
    }
}

/// Primero's JWTs expire: the hub logs in, reuses the token, logs in again when Primero
/// answers 401, and a login Primero refuses holds deliveries back (never recorded as the
/// agency refusing the child) until the password is right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_logs_in_to_primero_and_renews_an_expired_token() {
    let (server, addr) = LoginPrimero::start("pw-123").await;
    let mut env = TestEnv::new(None).await;
    env_for(&primero(), addr, &mut env);
    if let Some(a) = env.settings.agencies.get_mut("mosa-cairo") {
        a.endpoint = Some(format!("http://{addr}"));
        a.login_user = Some("himaya".into());
        a.login_password = Some(himaya_settings::SecretString::from("pw-123"));
    }
    let hub = env.start().await;
    let pool = env.pool().await;
    let ch = channel(&hub).await;

    for i in 0..2 {
        let r = refer(&ch, &format!("login-{i}"), ServiceType::CaseManagement).await;
        let (outcome, reference, _, _) = wait_recorded(&pool, &r).await;
        assert_eq!(outcome, "delivered");
        assert!(reference.is_some(), "the record id the hub chose");
    }
    {
        let s = server.state.lock().unwrap();
        assert_eq!(s.logins, 1, "one login, its token reused");
        assert_eq!(s.cases, ["Bearer jwt-1", "Bearer jwt-1"]);
    }

    // The token expires: Primero answers 401, the hub logs in again, and the case is
    // delivered, not recorded as refused.
    server.expire();
    let r = refer(&ch, "after-expiry", ServiceType::CaseManagement).await;
    let (outcome, _, _, _) = wait_recorded(&pool, &r).await;
    assert_eq!(outcome, "delivered");
    {
        let s = server.state.lock().unwrap();
        assert_eq!(s.logins, 2);
        assert_eq!(s.cases.last().map(String::as_str), Some("Bearer jwt-2"));
        assert!(s.refused >= 1);
    }

    // The password changed on Primero's side: the delivery waits, nothing is recorded,
    // and once the login works again it goes through.
    server.state.lock().unwrap().password = "rotated".into();
    server.expire();
    let r = refer(&ch, "bad-login", ServiceType::CaseManagement).await;
    // The barrier: the hub has tried (and been refused) twice, so the delivery was
    // handled and held back, not merely not reached yet.
    eventually(30, "two refused logins", || async {
        (server.state.lock().unwrap().bad_logins >= 2).then_some(())
    })
    .await;
    assert!(
        recorded(&pool, &r).await.is_none(),
        "recorded while the login failed"
    );
    server.state.lock().unwrap().password = "pw-123".into();
    let (outcome, _, _, _) = wait_recorded(&pool, &r).await;
    assert_eq!(outcome, "delivered");
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM connectors.deliveries WHERE outcome = 'rejected'"
        )
        .await,
        0
    );
    hub.stop().await;
}
