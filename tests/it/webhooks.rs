//! The agencies' webhooks against the real hub: each agency authenticated by its own
//! token, each payload read by its standard's mapping and entering through the same gRPC
//! services, once per agency message id; hostile payloads refused with a clear error and
//! nothing written.

use crate::helpers::*;
use himaya_proto::v1 as pb;
use himaya_settings::{Protocol, SecretString};
use reqwest::StatusCode;
use serde_json::{json, Value};

const TOKENS: [(&str, Protocol); 5] = [
    ("school-cairo-alnour", Protocol::School),
    ("hotline-16000", Protocol::EmergencyLine),
    ("health-cairo", Protocol::FhirR4),
    ("mosa-cairo", Protocol::PrimeroV2),
    ("legal-aid-cairo", Protocol::JusticeMinimal),
];

fn token(agency: &str) -> String {
    format!("{agency}-webhook-token-0123456789")
}

struct Hooks {
    env: TestEnv,
    hub: himaya::hub::Hub,
    base: String,
    http: reqwest::Client,
    agency: FakeAgency,
}

async fn hooks() -> Hooks {
    hooks_with(|_, _| {}).await
}

/// A hub whose agencies speak their standards with their webhook tokens; the simulated
/// agency system is health's endpoint, and `configure` may point others at it (its
/// address is given) or elsewhere before the hub starts.
async fn hooks_with(configure: impl FnOnce(&mut TestEnv, std::net::SocketAddr)) -> Hooks {
    let (agency, addr) = FakeAgency::start(&[]).await;
    let mut env = TestEnv::new(None).await;
    for (id, protocol) in TOKENS {
        if let Some(a) = env.settings.agencies.get_mut(id) {
            a.protocol = protocol;
            a.inbound_token = Some(SecretString::from(token(id)));
        }
    }
    if let Some(a) = env.settings.agencies.get_mut("health-cairo") {
        a.endpoint = Some(format!("http://{addr}/fhir"));
    }
    env.settings.connectors.webhook_listen = Some("127.0.0.1:0".parse().unwrap());
    env.settings.connectors.max_body_bytes = 64 * 1024;
    configure(&mut env, addr);
    let hub = env.start().await;
    let base = format!("http://{}", hub.webhook_addr.expect("webhooks listen"));
    Hooks {
        env,
        hub,
        base,
        http: http(),
        agency,
    }
}

impl Hooks {
    async fn post(
        &self,
        agency: &str,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value, bool) {
        let r = self
            .http
            .post(format!("{}/agencies/{agency}/{path}", self.base))
            .bearer_auth(token(agency))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let replayed = r.headers().contains_key("idempotent-replayed");
        (r.status(), r.json().await.unwrap_or(Value::Null), replayed)
    }
}

/// The `type` of the webhooks' problem details (RFC 9457) for a refusal's code.
fn problem(code: &str) -> String {
    format!("urn:himaya:problem:{code}")
}

fn fixture(path: &str) -> Value {
    let path = format!("{}/connectors/{path}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_school_system_refers_once_and_the_child_reaches_health_over_fhir() {
    let h = hooks().await;
    let body = fixture("schools/fixtures/referral_in.json").to_string();
    let (status, first, replayed) = h
        .post("school-cairo-alnour", "school/referrals", body.clone())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert!(!replayed);
    let case = first["case_ref"].as_str().unwrap().to_owned();
    // The same message again: the same answer, nothing new.
    let (status, again, replayed) = h
        .post("school-cairo-alnour", "school/referrals", body)
        .await;
    assert_eq!((status, replayed), (StatusCode::CREATED, true));
    assert_eq!(again, first);
    // Re-indented, keys in another order: still the same message.
    let reordered = serde_json::to_string_pretty(&fixture("schools/fixtures/referral_in.json"))
        .unwrap()
        .replace('\n', "\r\n  ");
    let (status, _, replayed) = h
        .post("school-cairo-alnour", "school/referrals", reordered)
        .await;
    assert_eq!((status, replayed), (StatusCode::CREATED, true));
    // A different message under the same id is not silently dropped: 409, named field.
    let mut other = fixture("schools/fixtures/referral_in.json");
    other["officer_ref"] = json!("officer-2");
    let (status, refused, replayed) = h
        .post("school-cairo-alnour", "school/referrals", other.to_string())
        .await;
    assert_eq!(
        (status, replayed),
        (StatusCode::CONFLICT, false),
        "{refused}"
    );
    assert_eq!(refused["type"], problem("message_id_reused"), "{refused}");
    assert_eq!(refused["status"], 409, "{refused}");
    assert_eq!(refused["field"], "message_id", "{refused}");
    let pool = h.env.pool().await;
    assert_eq!(count(&pool, "SELECT count(*) FROM cases.cases").await, 1);
    // It went through the same intake: the referral reaches the health agency as FHIR.
    let seen = eventually(20, "the FHIR bundle arrives", || async {
        h.agency
            .requests()
            .into_iter()
            .find(|s| s.body["resourceType"] == "Bundle")
    })
    .await;
    assert_eq!(seen.path, "/fhir");
    assert_eq!(
        seen.body["entry"][0]["resource"]["identifier"][0]["value"],
        case.as_str()
    );
    h.hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emergency_line_escalates_and_follows_up() {
    let h = hooks().await;
    let body = fixture("emergency_line/fixtures/escalation_in.json").to_string();
    let (status, ack, _) = h.post("hotline-16000", "hotline/escalations", body).await;
    assert_eq!(status, StatusCode::CREATED, "{ack}");
    assert_eq!(ack["priority"], "urgent");
    assert!(ack["message_ar"].as_str().unwrap().contains("عاجل"));
    let case = ack["case_ref"].as_str().unwrap();
    let r = h
        .http
        .get(format!(
            "{}/agencies/hotline-16000/hotline/cases/{case}",
            h.base
        ))
        .bearer_auth(token("hotline-16000"))
        .send()
        .await
        .unwrap();
    // The line reads the case through the consent layer, for emergency response: a
    // referral form's consent covers service provision only, so the answer is a refusal
    // that says so (and is logged as one), not the case.
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let refusal: Value = r.json().await.unwrap();
    assert_eq!(refusal["type"], problem("permission_denied"));
    // Another agency's token cannot read the line's follow-up.
    let r = h
        .http
        .get(format!(
            "{}/agencies/hotline-16000/hotline/cases/{case}",
            h.base
        ))
        .bearer_auth(token("school-cairo-alnour"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    h.hub.stop().await;
}

/// The service referral as the ministry that made it sees it.
async fn referral_as_ministry(
    sr: &mut pb::service_referrals_client::ServiceReferralsClient<tonic::transport::Channel>,
    srv: &str,
) -> pb::ServiceReferral {
    sr.get_service_referral(as_agency(
        "mosa-cairo",
        pb::GetServiceReferralRequest {
            service_referral_id: srv.into(),
        },
    ))
    .await
    .unwrap()
    .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fhir_task_moves_the_service_referral_once() {
    use pb::service_referrals_client::ServiceReferralsClient;
    let h = hooks().await;
    let ch = channel(&h.hub).await;
    let case = submit_school(&ch, "task-flow").await;
    plan_health_action(&ch, &case).await;
    let srv = refer_health_action(&ch, &case).await.service_referral_id;
    let mut sr = ServiceReferralsClient::new(ch);
    let mut task = fixture("health/fixtures/task_accepted.json");
    task["basedOn"][0]["identifier"]["value"] = json!(srv);
    // FHIR's create: 201 Created, the Task's Location and version, FHIR's media type.
    let r = h
        .http
        .post(format!("{}/agencies/health-cairo/fhir/Task", h.base))
        .bearer_auth(token("health-cairo"))
        .header("content-type", "application/fhir+json")
        .body(task.to_string())
        .send()
        .await
        .unwrap();
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        header(&r, "location").as_deref(),
        Some("/agencies/health-cairo/fhir/Task/task-77/_history/2")
    );
    assert_eq!(header(&r, "etag").as_deref(), Some("W/\"2\""));
    assert_eq!(
        header(&r, "content-type").as_deref(),
        Some("application/fhir+json")
    );
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut answered = vec![("created OperationOutcome".to_owned(), body.clone())];
    // A FHIR client gets an OperationOutcome; the hub's answer is its diagnostics.
    let inner = |b: &Value| -> Value {
        assert_eq!(b["resourceType"], "OperationOutcome", "{b}");
        serde_json::from_str(b["issue"][0]["diagnostics"].as_str().unwrap()).unwrap()
    };
    assert_eq!(inner(&body)["state"], "accepted");
    let (status, _, replayed) = h.post("health-cairo", "fhir/Task", task.to_string()).await;
    assert_eq!((status, replayed), (StatusCode::CREATED, true));
    let now = referral_as_ministry(&mut sr, &srv).await;
    assert_eq!(now.state(), pb::ServiceReferralState::Accepted);
    assert_eq!(
        now.changes
            .iter()
            .filter(|c| c.state() == pb::ServiceReferralState::Accepted)
            .count(),
        1
    );
    // Two progress reports: each a new version of the Task with its note, each recorded.
    for (version, note) in [("3", "first session held"), ("4", "second session held")] {
        task["meta"]["versionId"] = json!(version);
        task["status"] = json!("in-progress");
        task["statusReason"] = json!({ "text": note });
        let (status, body, _) = h.post("health-cairo", "fhir/Task", task.to_string()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(inner(&body)["changed"], true, "{body}");
    }
    // The Task edited in another field (a new version, the same note): not a new report.
    task["meta"]["versionId"] = json!("4b");
    task["note"] = json!([{"text": "room changed"}]);
    let (status, body, _) = h.post("health-cairo", "fhir/Task", task.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(inner(&body)["changed"], false, "{body}");
    task.as_object_mut().unwrap().remove("note");
    let now = referral_as_ministry(&mut sr, &srv).await;
    let reports: Vec<Option<&str>> = now
        .changes
        .iter()
        .filter(|c| c.state() == pb::ServiceReferralState::InProgress)
        .map(|c| c.reason.as_deref())
        .collect();
    assert_eq!(
        reports,
        [Some("first session held"), Some("second session held")]
    );
    task.as_object_mut().unwrap().remove("statusReason");
    // The next version of the Task completes it, sent as FHIR clients update in place.
    task["meta"]["versionId"] = json!("5");
    task["status"] = json!("completed");
    let r = h
        .http
        .put(format!(
            "{}/agencies/health-cairo/fhir/Task/task-77",
            h.base
        ))
        .bearer_auth(token("health-cairo"))
        .body(task.to_string())
        .send()
        .await
        .unwrap();
    // An update of a Task the hub knows: 200 OK, its new version, no Location.
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "etag").as_deref(), Some("W/\"5\""));
    assert!(header(&r, "location").is_none());
    let body: Value = r.json().await.unwrap();
    assert_eq!(inner(&body)["state"], "completed");
    assert_eq!(inner(&body)["changed"], true);
    answered.push(("updated OperationOutcome".to_owned(), body));
    // A Task the hub has not seen, put in place: created, with its Location.
    let mut other = task.clone();
    other["id"] = json!("task-90");
    other["meta"]["versionId"] = json!("1");
    let r = h
        .http
        .put(format!(
            "{}/agencies/health-cairo/fhir/Task/task-90",
            h.base
        ))
        .bearer_auth(token("health-cairo"))
        .body(other.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        header(&r, "location").as_deref(),
        Some("/agencies/health-cairo/fhir/Task/task-90/_history/1")
    );
    answered.push((
        "put-created OperationOutcome".to_owned(),
        r.json().await.unwrap(),
    ));
    // Every answer is valid FHIR R4.
    let errors = himaya_connect::testing::fhir_r4_errors(&answered);
    assert!(errors.is_empty(), "{errors:#?}");
    // Another health agency's Task cannot touch it: the gateway's object checks apply.
    h.hub.stop().await;
}

/// `GET [base]/metadata`: the CapabilityStatement of a health agency's FHIR base, asked
/// without a token as FHIR clients do; it and the endpoint's refusals are valid FHIR R4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fhir_endpoint_states_its_capabilities() {
    let h = hooks().await;
    let r = h
        .http
        .get(format!("{}/agencies/health-cairo/fhir/metadata", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/fhir+json")
    );
    let statement: Value = r.json().await.unwrap();
    assert_eq!(statement["resourceType"], "CapabilityStatement");
    assert_eq!(statement["fhirVersion"], "4.0.1");
    assert_eq!(statement["rest"][0]["resource"][0]["type"], "Task");
    // A refusal is an OperationOutcome naming the element.
    let mut task = fixture("health/fixtures/task_accepted.json");
    task.as_object_mut().unwrap().remove("status");
    let (status, refusal, _) = h.post("health-cairo", "fhir/Task", task.to_string()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refusal}");
    let (status, unauthenticated) = {
        let r = h
            .http
            .post(format!("{}/agencies/health-cairo/fhir/Task", h.base))
            .body("{}")
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let errors = himaya_connect::testing::fhir_r4_errors(&[
        ("metadata CapabilityStatement".into(), statement),
        ("refusal OperationOutcome".into(), refusal),
        ("unauthenticated OperationOutcome".into(), unauthenticated),
    ]);
    assert!(errors.is_empty(), "{errors:#?}");
    h.hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_payloads_are_refused_clearly_and_write_nothing() {
    let h = hooks().await;
    let pool = h.env.pool().await;
    let good = fixture("schools/fixtures/referral_in.json");
    let school = "school-cairo-alnour";

    // Who: no token, a wrong one, another agency's, an unknown agency, the wrong standard.
    let r = h
        .http
        .post(format!("{}/agencies/{school}/school/referrals", h.base))
        .body(good.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    for (agency, tok) in [
        (school, "wrong".to_owned()),
        (school, token("hotline-16000")),
        ("nobody", token(school)),
    ] {
        let r = h
            .http
            .post(format!("{}/agencies/{agency}/school/referrals", h.base))
            .bearer_auth(tok)
            .body(good.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        // The agency in the path is only the caller's claim: not echoed back.
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["type"], problem("unauthenticated"), "{body}");
        assert!(body.get("instance").is_none(), "{body}");
    }
    let (status, body, _) = h
        .post(school, "hotline/escalations", good.to_string())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // What: not UTF-8, not JSON, too big, wrong types, missing ids, a FHIR resource of the wrong type.
    let (status, body, _) = h
        .post(school, "school/referrals", vec![0xff, 0xfe, b'{'])
        .await;
    assert_eq!(
        (status, body["type"].as_str()),
        (StatusCode::BAD_REQUEST, Some(problem("not_utf8").as_str()))
    );
    let (status, body, _) = h
        .post(school, "school/referrals", "{\"message_id\": ")
        .await;
    assert_eq!(
        (status, body["type"].as_str()),
        (StatusCode::BAD_REQUEST, Some(problem("not_json").as_str()))
    );
    let huge =
        json!({"message_id": "m", "officer_ref": "o", "padding": "x".repeat(100_000)}).to_string();
    let (status, _, _) = h.post(school, "school/referrals", huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let mut wrong = good.clone();
    wrong["referral"]["child"]["sex"] = json!("مريم");
    let (status, body, _) = h.post(school, "school/referrals", wrong.to_string()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!body.to_string().contains("مريم"), "{body}");
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("message_id");
    let (status, body, _) = h
        .post(school, "school/referrals", missing.to_string())
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("message_id"))
    );
    let (status, body, _) = h
        .post(
            "health-cairo",
            "fhir/Task",
            json!({"resourceType": "Patient", "id": "p1"}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert!(body["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .contains("expected a FHIR Task"));
    // Valid JSON the intake refuses (no requested service): its field violations come back.
    let mut invalid = good.clone();
    invalid["message_id"] = json!("invalid-1");
    invalid["referral"]["requested_services"] = json!([]);
    let (status, body, _) = h
        .post(school, "school/referrals", invalid.to_string())
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["violations"].as_array().is_some_and(|v| !v.is_empty()),
        "{body}"
    );

    assert_eq!(
        count(&pool, "SELECT count(*) FROM cases.cases").await,
        0,
        "nothing half-written"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM connectors.inbound_messages").await,
        0
    );
    // And the webhooks still serve.
    let (status, _, _) = h.post(school, "school/referrals", good.to_string()).await;
    assert_eq!(status, StatusCode::CREATED);
    h.hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primero_directorate_pushes_a_case_and_answers_a_transfer() {
    let h = hooks().await;
    let case = fixture("social_affairs/fixtures/case_in.json");
    let (status, body, _) = h
        .post("mosa-cairo", "primero/api/v2/cases", case.to_string())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, again, replayed) = h
        .post("mosa-cairo", "primero/api/v2/cases", case.to_string())
        .await;
    assert!(replayed);
    assert_eq!(again["case_ref"], body["case_ref"]);
    // A transfer answer for a referral the hub never sent it: refused by the hub, with
    // the hub's reason passed on.
    let transfer = fixture("social_affairs/fixtures/transfer_rejected.json");
    let (status, body, _) = h
        .post(
            "mosa-cairo",
            "primero/api/v2/referrals",
            transfer.to_string(),
        )
        .await;
    assert!(status.is_client_error(), "{status}");
    assert!(
        body["detail"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    h.hub.stop().await;
}

/// The emergency line escalates through its webhook; when the ministry registers and
/// assigns the case, the line's system hears each step (ids and status only), the
/// assignment being the acknowledgement its operator waits for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_referrer_hears_when_its_case_is_registered_and_assigned() {
    let (line, line_addr) = FakeAgency::start(&[]).await;
    let h = hooks_with(|env, _| {
        if let Some(a) = env.settings.agencies.get_mut("hotline-16000") {
            a.endpoint = Some(format!("http://{line_addr}"));
        }
    })
    .await;
    let body = fixture("emergency_line/fixtures/escalation_in.json").to_string();
    let (status, ack, _) = h.post("hotline-16000", "hotline/escalations", body).await;
    assert_eq!(status, StatusCode::CREATED, "{ack}");
    let case = ack["case_ref"].as_str().unwrap().to_owned();

    register_and_assign(&channel(&h.hub).await, &case, "abuse_or_violence").await;

    let seen = eventually(20, "both steps reach the line", || async {
        let got: Vec<_> = line
            .requests()
            .into_iter()
            .filter(|s| s.path == "/himaya/acknowledgements")
            .collect();
        (got.len() == 2).then_some(got)
    })
    .await;
    let changes: Vec<_> = seen
        .iter()
        .map(|s| s.body["change"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        changes.contains(&"registered".to_owned()) && changes.contains(&"assigned".to_owned()),
        "{changes:?}"
    );
    for s in &seen {
        assert_eq!(s.body["case_ref"], case.as_str());
        assert_eq!(s.body["referral_ref"], ack["referral_ref"]);
        // Ids and a status: nothing about the child.
        assert!(!s.body.to_string().contains("يوسف"), "{}", s.body);
        assert!(s
            .idempotency_key
            .as_deref()
            .is_some_and(|k| k.starts_with("fbk_")));
    }
    // Each is in the disclosure log as a permit on the feedback channel, and in the case's history.
    let pool = h.env.pool().await;
    assert_eq!(
        count(&pool, &format!("SELECT count(*) FROM router.disclosures WHERE case_id = '{case}' AND referral_id LIKE 'fbk_%' AND decision = 'permit'")).await,
        2
    );
    wait_count(&pool, &format!("SELECT count(*) FROM cases.case_history WHERE case_id = '{case}' AND change LIKE 'feedback fbk_%'"), 2, 10, "the case history records the feedback").await;
    h.hub.stop().await;
}

/// Primero has no inbox: what becomes of a case a directorate pushed reaches it as a flag
/// on its own record, named by the record id it pushed the case with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primero_directorate_hears_of_its_case_as_flags_on_its_own_record() {
    let h = hooks_with(|env, addr| {
        if let Some(a) = env.settings.agencies.get_mut("mosa-cairo") {
            a.endpoint = Some(format!("http://{addr}"));
            a.place_codes.insert("الجيزة".into(), "EG21".into());
        }
    })
    .await;
    let primero = h.agency.clone();
    let mut case_in = fixture("social_affairs/fixtures/case_in.json");
    // Primero names the place by its location code; the hub reads it back as the name.
    case_in["data"]["location_current"] = json!("EG21");
    let record = case_in["data"]["id"].as_str().unwrap().to_owned();
    let (status, ack, _) = h
        .post("mosa-cairo", "primero/api/v2/cases", case_in.to_string())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ack}");
    let case = ack["case_ref"].as_str().unwrap().to_owned();
    let pool = h.env.pool().await;
    let governorate: String =
        sqlx::query_scalar("SELECT governorate FROM cases.cases WHERE case_id = $1")
            .bind(&case)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(governorate, "الجيزة");

    register_and_assign(&channel(&h.hub).await, &case, "abuse_or_violence").await;

    let flags = eventually(
        20,
        "both steps flagged on the directorate's record",
        || async {
            let got: Vec<_> = primero
                .requests()
                .into_iter()
                .filter(|s| s.path == "/api/v2/cases/flags")
                .collect();
            (got.len() == 2).then_some(got)
        },
    )
    .await;
    for f in &flags {
        let ids = f.body["data"]["ids"].as_array().unwrap();
        assert!(ids.iter().any(|i| i == record.as_str()), "{}", f.body);
        assert_eq!(f.body["data"]["record_type"], "cases");
        assert!(f.body["data"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        // Ids and a status: nothing about the child.
        assert!(!f
            .body
            .to_string()
            .contains(case_in["data"]["name"].as_str().unwrap()));
    }
    h.hub.stop().await;
}

/// A directorate whose Primero cannot push is pulled: each changed case enters like a
/// pushed one, once; a case the hub refuses is parked with the reason; the cursor moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primero_that_cannot_push_is_pulled_page_by_page() {
    let mut good = fixture("social_affairs/fixtures/case_in.json")["data"].clone();
    good["last_updated_at"] = json!("2026-11-22T10:15:00Z");
    let mut bad = good.clone();
    bad["id"] = json!("bad-1");
    bad["sex"] = json!("x");
    bad["last_updated_at"] = json!("2026-11-22T11:00:00Z");
    let first = json!({"data": [good, bad], "metadata": {"total": 2, "per": 100, "page": 1}});
    let empty = json!({"data": [], "metadata": {"total": 0, "per": 100, "page": 1}});
    let mut script = vec![Step::Answer(200, first)];
    script.extend(std::iter::repeat_n(Step::Answer(200, empty), 500));
    let (primero, addr) = FakeAgency::scripted(script).await;
    let mut env = TestEnv::new(None).await;
    if let Some(a) = env.settings.agencies.get_mut("mosa-cairo") {
        a.protocol = Protocol::PrimeroV2;
        a.endpoint = Some(format!("http://{addr}"));
        a.poll_interval_ms = Some(100);
        a.outbound_token = Some(SecretString::from("primero-api-token"));
    }
    // A second national administrator, to suspend the directorate below (an
    // administrator cannot suspend its own agency).
    let national = env.settings.agencies.get("mosa-cairo").map(|a| {
        let mut n = (*a).clone();
        n.endpoint = None;
        n.poll_interval_ms = None;
        n
    });
    if let Some(n) = national {
        env.settings.agencies.insert("mosa-national".into(), n);
    }
    let hub = env.start().await;
    let pool = env.pool().await;
    wait_count(
        &pool,
        "SELECT count(*) FROM connectors.poll_cursors WHERE cursor = '2026-11-22T11:00:00Z'",
        1,
        20,
        "the pull parks the bad case and moves the cursor",
    )
    .await;
    // Several pulls later: still one case, one parked item.
    eventually(10, "more pulls", || async {
        (primero.count() >= 4).then_some(())
    })
    .await;
    assert_eq!(count(&pool, "SELECT count(*) FROM cases.cases").await, 1);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM connectors.inbound_messages WHERE agency_id = 'mosa-cairo'"
        )
        .await,
        1
    );
    let reason: String = sqlx::query_scalar(
        "SELECT reason FROM connectors.inbound_parked WHERE agency_id = 'mosa-cairo'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(reason.contains("data.sex"), "{reason}");
    assert!(primero.requests().iter().all(|s| s.path == "/api/v2/cases"));
    // Each turn is counted for an operator: the fourth page asked for means three turns
    // ended (one page each), all of them pulls.
    let (turns, outcome) = poll_turn(&pool, "mosa-cairo").await;
    assert!(turns >= 3, "{turns} turns");
    assert_eq!(outcome, "pulled");

    // While another replica holds the agency's pull (its lease), this one skips its
    // turns; once the lease is released, pulls resume.
    sqlx::query("INSERT INTO connectors.poll_leases (agency_id, holder, until) VALUES ('mosa-cairo', 'other-replica', now() + interval '1 hour') ON CONFLICT (agency_id) DO UPDATE SET holder = 'other-replica', until = EXCLUDED.until")
        .execute(&pool)
        .await
        .unwrap();
    // A pull that had begun may still ask for one page; the first turn counted as
    // skipped has ended, so its pages are all in. Then two more skipped turns, no page.
    let skipped = eventually(
        10,
        "a turn skipped for the other replica's lease",
        || async {
            let (turns, outcome) = poll_turn(&pool, "mosa-cairo").await;
            (outcome == "lease_held_elsewhere").then_some(turns)
        },
    )
    .await;
    let before = primero.count();
    eventually(10, "two more turns skipped", || async {
        let (turns, outcome) = poll_turn(&pool, "mosa-cairo").await;
        assert_eq!(outcome, "lease_held_elsewhere", "turn {turns}");
        (turns >= skipped + 2).then_some(())
    })
    .await;
    assert_eq!(
        primero.count(),
        before,
        "pulled while another replica was pulling"
    );
    sqlx::query("DELETE FROM connectors.poll_leases WHERE holder = 'other-replica'")
        .execute(&pool)
        .await
        .unwrap();
    eventually(10, "pulls resume", || async {
        (primero.count() > before).then_some(())
    })
    .await;
    eventually(10, "a turn counted as pulled again", || async {
        (poll_turn(&pool, "mosa-cairo").await.1 == "pulled").then_some(())
    })
    .await;

    // Suspended in the directory: its poller stops (nothing more is pulled from it) until
    // it is reactivated, without a restart.
    let ch = channel(&hub).await;
    let directory = |status: pb::AgencyStatus, version: i64| {
        let ch = ch.clone();
        async move {
            pb::directory_client::DirectoryClient::new(ch)
                .set_agency_status(as_agency(
                    "mosa-national",
                    pb::SetAgencyStatusRequest {
                        agency_id: "mosa-cairo".into(),
                        expected_version: version,
                        status: status.into(),
                        reason: "agreement_suspended".into(),
                    },
                ))
                .await
                .expect("the directory takes the change")
        }
    };
    directory(pb::AgencyStatus::Suspended, 1).await;
    // The followers' second, and a pull that had begun.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let stopped = primero.count();
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    assert_eq!(primero.count(), stopped, "pulled from a suspended agency");
    directory(pb::AgencyStatus::Active, 2).await;
    eventually(10, "pulls resume once reactivated", || async {
        (primero.count() > stopped).then_some(())
    })
    .await;
    hub.stop().await;
}

/// The agency's poller turns so far (every replica's) and how the last one ended.
async fn poll_turn(pool: &sqlx::PgPool, agency: &str) -> (i64, String) {
    sqlx::query_as("SELECT turns, last_outcome FROM connectors.poll_turns WHERE agency_id = $1")
        .bind(agency)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Sends `head` (and nothing more) on a raw connection; returns what the server answered
/// before closing, or None if it still holds the connection open after `wait`.
async fn raw_answer(addr: &str, head: &str, wait: std::time::Duration) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    match tokio::time::timeout(wait, s.read_to_end(&mut got)).await {
        Ok(_) => Some(String::from_utf8_lossy(&got).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_idle_and_unauthenticated_clients_cannot_hold_the_webhooks() {
    use std::time::{Duration, Instant};
    let h = hooks_with(|env, _| {
        env.settings.limits.header_read_timeout_ms = 500;
        env.settings.limits.body_read_timeout_ms = 500;
        env.settings.limits.idle_timeout_ms = 1_500;
        env.settings.limits.request_timeout_ms = 1_000;
    })
    .await;
    let addr = h.base.trim_start_matches("http://").to_owned();
    let school = "school-cairo-alnour";
    let path = format!("/agencies/{school}/school/referrals");
    let enough = Duration::from_secs(5);

    // No token: refused from the headers alone, before the declared 262,000 bytes come.
    let started = Instant::now();
    let head = format!("POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 262000\r\n\r\n{{\"a\":");
    let answer = raw_answer(&addr, &head, enough).await;
    let answer = answer.expect("an answer without waiting for the body");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(2));

    // A declared gigabyte with the right token: 413 at once, not a wait for it.
    let head = format!("POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-length: 1000000000\r\n\r\n0123456789", token(school));
    let answer = raw_answer(&addr, &head, enough).await.expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // A body that stops coming: 408 after limits.body_read_timeout_ms.
    let head = format!("POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\naccept-language: ar\r\ncontent-length: 100\r\n\r\n{{\"a\":", token(school));
    let answer = raw_answer(&addr, &head, enough).await.expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("ميلي ثانية"),
        "in the caller's language: {answer}"
    );

    // Headers trickling in, and a silent connection: both closed by the server.
    let started = Instant::now();
    let answer = raw_answer(
        &addr,
        "POST /agencies/x/school/referrals HTTP/1.1\r\nhost:",
        enough,
    )
    .await;
    assert!(
        answer.is_some(),
        "a connection still sending its headers is closed"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    let answer = raw_answer(&addr, "", enough).await;
    assert!(answer.is_some(), "a silent connection is closed");

    // The server still answers properly afterwards.
    let good = fixture("schools/fixtures/referral_in.json");
    let (status, body, _) = h.post(school, "school/referrals", good.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_over_its_limit_is_a_short_422_in_the_callers_language() {
    let h = hooks().await;
    let school = "school-cairo-alnour";
    let mut referral = fixture("schools/fixtures/referral_in.json");
    // 300 caregivers: under the body limit, fifteen times the list limit.
    let one = referral["referral"]["caregivers"][0].clone();
    referral["referral"]["caregivers"] = Value::Array(vec![one; 300]);
    let started = std::time::Instant::now();
    let r = h
        .http
        .post(format!("{}/agencies/{school}/school/referrals", h.base))
        .bearer_auth(token(school))
        .header("accept-language", "ar")
        .body(referral.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
    assert!(
        text.len() < 16 * 1024,
        "a short answer: {} bytes",
        text.len()
    );
    assert!(text.contains("referral.caregivers"), "{text}");
    assert!(text.contains("يحتوي على أكثر من 20"), "in Arabic: {text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_the_mapping_refuses_is_refused_in_the_callers_language() {
    let h = hooks().await;
    let school = "school-cairo-alnour";
    let arabic = |s: &str| s.chars().any(|c| ('\u{0621}'..='\u{064A}').contains(&c));
    let post = |agency: &'static str, path: &'static str, body: Value, lang: Option<&str>| {
        let mut r = h
            .http
            .post(format!("{}/agencies/{agency}/{path}", h.base))
            .bearer_auth(token(agency))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(lang) = lang {
            r = r.header("accept-language", lang);
        }
        async move {
            let r = r.send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // A school's referral whose child's sex is of the wrong type (serde's refusal).
    let mut school_body = fixture("schools/fixtures/referral_in.json");
    school_body["referral"]["child"]["sex"] = json!(7);
    // A FHIR Task without its status (the health mapping's own refusal).
    let mut task = fixture("health/fixtures/task_accepted.json");
    task.as_object_mut().unwrap().remove("status");

    let (status, body) = post(school, "school/referrals", school_body.clone(), Some("ar")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["type"], problem("invalid_payload"), "{body}");
    assert_eq!(body["status"], 422, "{body}");
    assert_eq!(
        body["instance"],
        format!("/agencies/{school}/school/referrals"),
        "{body}"
    );
    assert!(
        body["title"].as_str().is_some_and(arabic),
        "title in Arabic: {body}"
    );
    let field = body["field"].as_str().unwrap();
    assert!(field.starts_with("referral (line "), "{body}");
    let message = body["detail"].as_str().unwrap();
    assert!(message.starts_with(field), "names the field: {body}");
    assert!(arabic(message), "in Arabic: {body}");
    // None of the English words of the mapping's refusals (serde's kind of problem).
    for english in [
        "field",
        "wrong",
        "type",
        "value",
        "vocabulary",
        "object",
        "expected",
        "shape",
    ] {
        assert!(!message.contains(english), "`{english}` in {body}");
    }

    let (status, body) = post(
        "health-cairo",
        "fhir/Task",
        task.clone(),
        Some("ar-EG,ar;q=0.9"),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    let diagnostics = body["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(
        diagnostics.starts_with("status: "),
        "names the field: {body}"
    );
    assert!(arabic(diagnostics), "in Arabic: {body}");
    assert!(!diagnostics.contains("required"), "{body}");

    // Without Accept-Language (or with another language), the same refusals stay English.
    let (status, body) = post(school, "school/referrals", school_body, None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["title"], "Unprocessable Entity", "{body}");
    let message = body["detail"].as_str().unwrap();
    // A number where a code is expected: serde reads it as the wrong shape.
    assert_eq!(
        message,
        format!("{field}: not a JSON object of the expected shape"),
        "{body}"
    );
    assert!(!arabic(message), "{body}");
    let (status, body) = post("health-cairo", "fhir/Task", task, Some("en-GB")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["issue"][0]["diagnostics"], "status: is required",
        "{body}"
    );
    h.hub.stop().await;
}
