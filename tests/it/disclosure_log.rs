//! The disclosure log against the real broker and database: every decision (a delivery,
//! a read, a refused read) lands in one hash chain, and `verify` names the first entry of
//! each kind of tampering: modified, deleted, inserted, reordered, and a truncated tail
//! caught by an exported signed checkpoint.

use crate::helpers::*;
use himaya::hub::Hub;
use himaya_audit::chain::{entry_hash, Entry, EntryBody, Tamper};
use himaya_audit::AuditError;
use himaya_proto::v1 as pb;
use pb::cases_client::CasesClient;
use pb::intake_client::IntakeClient;
use sqlx::PgPool;
use tonic::{Code, Request};

/// channel, recipient, decision, reason, basis
type LogRow = (String, String, String, Option<String>, Vec<String>);

fn read_as(agency: &str, case_id: &str) -> Request<pb::GetCaseRequest> {
    let mut r = Request::new(pb::GetCaseRequest {
        case_id: case_id.into(),
        purpose: pb::Purpose::ServiceProvision.into(),
    });
    r.metadata_mut()
        .insert("x-himaya-agency", agency.parse().unwrap());
    r
}

async fn exec(pool: &PgPool, sql: &str) {
    sqlx::query(sql).execute(pool).await.unwrap();
}

async fn tamper_kind(pool: &PgPool, exported: &[himaya_audit::chain::Checkpoint]) -> Tamper {
    match himaya_audit::verify(pool, exported).await {
        Err(AuditError::Tamper(t)) => t,
        other => panic!("tampering not detected: {other:?}"),
    }
}

/// Puts the log back as it was (as a DBA could, trigger off).
async fn restore(pool: &PgPool) {
    exec(pool, "DELETE FROM audit.log").await;
    exec(pool, "INSERT INTO audit.log SELECT * FROM audit.log_copy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_decision_is_chained_and_every_kind_of_tampering_is_caught() {
    let (agency, addr) = FakeAgency::start(&[]).await;
    let env = TestEnv::new(Some(addr)).await;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let case = submit_school(&ch, "audited").await;
    eventually(20, "the delivery", || async {
        (agency.count() == 1).then_some(())
    })
    .await;
    let mut cases = CasesClient::new(ch);
    let e = cases
        .get_case(read_as("hotline-16000", &case))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    cases.get_case(read_as("mosa-cairo", &case)).await.unwrap();

    let db = env.pool().await;
    wait_count(
        &db,
        "SELECT count(*) FROM audit.log",
        3,
        20,
        "three decisions in the log",
    )
    .await;
    let rows: Vec<LogRow> = sqlx::query_as(
        "SELECT channel, recipient, decision, reason, basis FROM audit.log ORDER BY seq",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let delivery = rows
        .iter()
        .find(|r| r.0 == "bus_delivery")
        .expect("the delivery is logged");
    assert_eq!(
        (delivery.1.as_str(), delivery.2.as_str()),
        ("health-cairo", "permit")
    );
    assert_eq!(
        delivery.4,
        ["cns_demo", "cns_demo_assent"],
        "the consents it rests on"
    );
    assert!(rows.iter().any(|r| r.1 == "hotline-16000"
        && r.2 == "deny"
        && r.3.as_deref() == Some("no_part_in_case")));
    assert!(rows.iter().any(|r| r.1 == "mosa-cairo" && r.2 == "permit"));

    let audit = himaya_audit::connect(&env.settings).await.unwrap();
    assert_eq!(himaya_audit::verify(&audit, &[]).await.unwrap(), 3);
    let key = himaya_audit::signing_key(&env.settings.audit.signing_key_file).unwrap();
    assert_eq!(
        himaya_audit::checkpoint(&audit, &key).await.unwrap(),
        Some(3)
    );
    let exported = himaya_audit::checkpoints(&audit).await.unwrap();
    hub.stop().await;

    // From here on we are the attacker with database rights: the trigger goes first.
    exec(&db, "ALTER TABLE audit.log DISABLE TRIGGER log_append_only").await;
    exec(
        &db,
        "CREATE TABLE audit.log_copy AS SELECT * FROM audit.log",
    )
    .await;

    exec(
        &db,
        "UPDATE audit.log SET recipient = 'justice-cairo' WHERE seq = 2",
    )
    .await;
    assert_eq!(tamper_kind(&audit, &[]).await, Tamper::Modified { seq: 2 });
    restore(&db).await;

    exec(&db, "DELETE FROM audit.log WHERE seq = 2").await;
    assert_eq!(tamper_kind(&audit, &[]).await.seq(), 2);
    restore(&db).await;

    // Inserted: a validly hashed forged entry at 2, the rest renumbered.
    exec(&db, "UPDATE audit.log SET seq = seq + 100 WHERE seq >= 2").await;
    exec(&db, "UPDATE audit.log SET seq = seq - 99 WHERE seq >= 100").await;
    let prev: String = sqlx::query_scalar("SELECT hash FROM audit.log WHERE seq = 1")
        .fetch_one(&db)
        .await
        .unwrap();
    let forged = EntryBody {
        seq: 2,
        message_id: "msg_forged".into(),
        at: "2026-11-22T10:00:00+00:00".into(),
        source: "cases".into(),
        channel: "grpc_read".into(),
        case_id: case.clone(),
        referral_id: None,
        recipient: "justice-cairo".into(),
        purpose: "legal_proceedings".into(),
        decision: "permit".into(),
        reason: None,
        categories: vec!["identity".into()],
        basis: vec![],
        delivery_message_id: None,
        person: None,
    };
    let forged = Entry {
        hash: entry_hash(&prev, &forged),
        prev_hash: prev,
        body: forged,
    };
    sqlx::query("INSERT INTO audit.log (seq, message_id, at, source, channel, case_id, recipient, purpose, decision, categories, basis, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)")
        .bind(2i64)
        .bind(&forged.body.message_id)
        .bind(&forged.body.at)
        .bind(&forged.body.source)
        .bind(&forged.body.channel)
        .bind(&forged.body.case_id)
        .bind(&forged.body.recipient)
        .bind(&forged.body.purpose)
        .bind(&forged.body.decision)
        .bind(&forged.body.categories)
        .bind(&forged.body.basis)
        .bind(&forged.prev_hash)
        .bind(&forged.hash)
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(
        tamper_kind(&audit, &[]).await.seq(),
        3,
        "the entry after the insertion"
    );
    restore(&db).await;

    // Reordered: entries 2 and 3 swapped.
    exec(&db, "UPDATE audit.log SET seq = 100 WHERE seq = 2").await;
    exec(&db, "UPDATE audit.log SET seq = 2 WHERE seq = 3").await;
    exec(&db, "UPDATE audit.log SET seq = 3 WHERE seq = 100").await;
    assert_eq!(tamper_kind(&audit, &[]).await.seq(), 2);
    restore(&db).await;
    assert_eq!(himaya_audit::verify(&audit, &exported).await.unwrap(), 3);

    // A truncated tail, its stored checkpoint removed too: the chain alone looks whole,
    // the exported checkpoint does not.
    exec(&db, "DELETE FROM audit.log WHERE seq = 3").await;
    exec(&db, "DELETE FROM audit.checkpoints").await;
    assert_eq!(himaya_audit::verify(&audit, &[]).await.unwrap(), 2);
    assert_eq!(
        tamper_kind(&audit, &exported).await,
        Tamper::Truncated { seq: 3, last: 2 }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_notice_reaches_every_earlier_recipient() {
    let (agency, addr) = FakeAgency::start(&[]).await;
    let mut env = TestEnv::new(Some(addr)).await;
    // The ministry reads here under the consent, as in a deployment that asks consent of
    // every agency: by default its reads rest on its legal mandate, not on the consent,
    // and a withdrawal neither notifies nor stops it (case_lifecycle.rs tests that).
    env.settings.consent.owner_reads_by_legal_obligation = false;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let case = submit_school(&ch, "withdrawn").await;
    eventually(20, "the delivery", || async {
        (agency.count() == 1).then_some(())
    })
    .await;
    let mut cases = CasesClient::new(ch.clone());
    cases.get_case(read_as("mosa-cairo", &case)).await.unwrap();
    let db = env.pool().await;
    wait_count(
        &db,
        "SELECT count(*) FROM audit.log WHERE decision = 'permit'",
        2,
        20,
        "both disclosures logged",
    )
    .await;

    withdraw_demo_consent(&ch, &case).await;

    let notice = eventually(20, "the notice at the health agency", || async {
        agency
            .requests()
            .into_iter()
            .find(|s| s.body["kind"] == "withdrawal_notice")
    })
    .await;
    assert_eq!(notice.body["case"]["case_id"], case.as_str());
    assert_eq!(notice.body["case"]["consent_id"], "cns_demo");
    assert!(notice.body["case"]["categories"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c == "health"));
    let id = notice.body["referral_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("wdn_"));
    assert_eq!(notice.idempotency_key.as_deref(), Some(id.as_str()));
    assert!(
        notice.body.get("child").is_none() && notice.body["case"].get("child").is_none(),
        "a notice carries no case data"
    );
    // Both earlier recipients were found in the log: the health agency (delivered) and
    // the ministry that read it (no connector: the notice waits in the log).
    assert_eq!(
        count(&db, &format!("SELECT count(*) FROM audit.notices WHERE case_id = '{case}' AND consent_id = 'cns_demo'")).await,
        2
    );
    wait_count(&db, &format!("SELECT count(*) FROM cases.case_history WHERE case_id = '{case}' AND change LIKE 'withdrawal notice % delivered'"), 1, 20, "the notice's delivery in the case history").await;
    // And from now on nothing more leaves under it.
    let e = cases
        .get_case(read_as("mosa-cairo", &case))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(
        agency.count(),
        2,
        "the referral and its notice, nothing else"
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_are_aggregates_with_small_counts_suppressed() {
    let env = TestEnv::new(None).await;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let mut intake = IntakeClient::new(ch.clone());
    for i in 0..7 {
        let mut req = school_request(&format!("stats-{i}"));
        if i == 6 {
            let child = req.referral.as_mut().unwrap().child.as_mut().unwrap();
            child.governorate = "الجيزة".into();
            child.district = None;
        }
        intake
            .submit_school_referral(from_school(req))
            .await
            .unwrap();
    }
    let mut cases = CasesClient::new(ch);
    let stats = |agency: &str| {
        let mut r = Request::new(pb::GetStatisticsRequest::default());
        r.metadata_mut()
            .insert("x-himaya-agency", agency.parse().unwrap());
        r
    };
    let s = cases
        .get_statistics(stats("takaful-cairo"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.min_count, 5);
    let cells: Vec<(&str, Option<i64>, bool)> = s
        .cells
        .iter()
        .map(|c| (c.governorate.as_str(), c.count, c.suppressed))
        .collect();
    assert_eq!(cells, [("الجيزة", None, true), ("القاهرة", Some(6), false)]);
    let e = cases
        .get_statistics(stats("health-cairo"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // A case is never given out for statistics, whoever asks.
    let case: String = sqlx::query_scalar("SELECT case_id FROM cases.cases LIMIT 1")
        .fetch_one(&env.pool().await)
        .await
        .unwrap();
    let mut r = read_as("mosa-cairo", &case);
    r.get_mut().purpose = pb::Purpose::Statistics.into();
    let e = cases.get_case(r).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("aggregates"), "{}", e.message());
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_is_minimal_time_boxed_audited_and_reviewed() {
    let env = TestEnv::new(None).await;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let mut intake = IntakeClient::new(ch.clone());
    let high = intake
        .submit_school_referral(from_school(school_request("glass-high")))
        .await
        .unwrap()
        .into_inner()
        .case_id;
    let mut low = school_request("glass-low");
    low.referral.as_mut().unwrap().risk_level = pb::RiskLevel::Low.into();
    let low = intake
        .submit_school_referral(from_school(low))
        .await
        .unwrap()
        .into_inner()
        .case_id;
    let mut cases = CasesClient::new(ch.clone());
    let glass = |agency: &str, case: &str, reason: &str, why: &str| {
        let mut r = Request::new(pb::BreakGlassRequest {
            case_id: case.into(),
            reason_code: reason.into(),
            justification: why.into(),
            actor: "operator-3".into(),
        });
        r.metadata_mut()
            .insert("x-himaya-agency", agency.parse().unwrap());
        r
    };
    let why = "الطفلة في خطر داهم بحسب اتصال الجيران";

    // No reason code, no justification: refused, naming both.
    let e = cases
        .break_glass(glass("hotline-16000", &high, "", ""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let fields: Vec<String> = tonic_types::StatusExt::get_details_bad_request(&e)
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["reason_code", "justification"]);

    // The emergency line: the minimal data set, no consent needed, one window.
    let first = cases
        .break_glass(glass("hotline-16000", &high, "imminent_danger", why))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        himaya_proto::convert::codes::<himaya_record::DataCategory>(&first.categories),
        [
            "reference",
            "identity",
            "contact",
            "location",
            "protection_concern"
        ]
    );
    let doc: serde_json::Value = serde_json::from_str(&first.document_json).unwrap();
    assert!(doc["child"].get("disability").is_none(), "no health data");
    assert!(doc["referral"].get("narrative").is_none(), "no case notes");
    let again = cases
        .break_glass(glass("hotline-16000", &high, "imminent_danger", why))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.break_glass_id, first.break_glass_id, "same window");

    // Not for every agency, and not for a case that is not high risk.
    for (agency, case) in [("school-cairo-alnour", &high), ("health-cairo", &low)] {
        let e = cases
            .break_glass(glass(agency, case, "medical_emergency", why))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{agency}");
    }

    let db = env.pool().await;
    eventually(
        20,
        "two break-glass reads and two refusals in the log",
        || async {
            let glass = count(
                &db,
                "SELECT count(*) FROM audit.log WHERE decision = 'break_glass'",
            )
            .await;
            let denied = count(
                &db,
                "SELECT count(*) FROM audit.log WHERE reason LIKE 'break_glass_not%'",
            )
            .await;
            (glass == 2 && denied == 2).then_some(())
        },
    )
    .await;

    // Queued for review; reviewed once.
    let mut work = pb::oversight_client::OversightClient::new(ch);
    let owner = |msg| {
        let mut r = Request::new(msg);
        r.metadata_mut()
            .insert("x-himaya-agency", "mosa-cairo".parse().unwrap());
        r
    };
    let queue = work
        .list_break_glass(owner(pb::ListBreakGlassRequest { all: false }))
        .await
        .unwrap()
        .into_inner()
        .accesses;
    assert_eq!(queue.len(), 1);
    assert_eq!(
        (queue[0].reads, queue[0].reason_code.as_str()),
        (2, "imminent_danger")
    );
    let review = || pb::ReviewBreakGlassRequest {
        break_glass_id: queue[0].break_glass_id.clone(),
        actor: "sup-1".into(),
        outcome: pb::BreakGlassOutcome::Justified.into(),
        notes: "اتصال موثق".into(),
    };
    let mut w2 = work.clone();
    let reviewed = w2.review_break_glass(Request::new(review())).await;
    assert_eq!(
        reviewed.unwrap_err().code(),
        Code::Unauthenticated,
        "only the case-owning ministry reviews"
    );
    let done = work
        .review_break_glass(owner_review(review()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.outcome(), pb::BreakGlassOutcome::Justified);
    assert_eq!(
        work.review_break_glass(owner_review(review()))
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );
    assert!(work
        .list_break_glass(owner(pb::ListBreakGlassRequest { all: false }))
        .await
        .unwrap()
        .into_inner()
        .accesses
        .is_empty());
    hub.stop().await;
}

fn owner_review(msg: pb::ReviewBreakGlassRequest) -> Request<pb::ReviewBreakGlassRequest> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("x-himaya-agency", "mosa-cairo".parse().unwrap());
    r
}

/// A disclosure decision as the router or the cases service records it, the `i`th of a
/// burst (permits and refusals, several cases, some read by a person).
fn disclosure(i: usize) -> himaya_events::DisclosureRecorded {
    let permit = !i.is_multiple_of(3);
    himaya_events::DisclosureRecorded {
        message_id: format!("msg_burst_{i:05}"),
        occurred_at: format!("2026-11-22T09:{:02}:{:02}+00:00", (i / 60) % 60, i % 60),
        source: "router".into(),
        channel: "bus_delivery".into(),
        case_id: format!("case_burst_{}", i % 7),
        referral_id: i.is_multiple_of(2).then(|| format!("ref_burst_{i}")),
        recipient: "health-cairo".into(),
        purpose: "service_provision".into(),
        decision: if permit { "permit" } else { "deny" }.into(),
        reason: (!permit).then(|| "no_consent".into()),
        categories: ["reference", "health", "identity"][..1 + i % 3]
            .iter()
            .map(|c| (*c).to_owned())
            .collect(),
        basis: if permit {
            vec![format!("cns_{}", i % 5)]
        } else {
            vec![]
        },
        delivery_message_id: permit.then(|| format!("msg_delivery_{i}")),
        person: i.is_multiple_of(4).then(|| format!("psn_{i}")),
    }
}

fn recorded(e: &himaya_events::DisclosureRecorded) -> himaya_bus::Outgoing {
    himaya_bus::Outgoing {
        exchange: himaya_bus::Exchange::Events,
        routing_key: himaya_events::keys::DISCLOSURE_RECORDED.into(),
        payload: himaya_events::encode(e).unwrap(),
        message_id: e.message_id.clone(),
        event_type: <himaya_events::DisclosureRecorded as himaya_events::Event>::NAME.into(),
        priority: 0,
        headers: Default::default(),
    }
}

/// The broker and the audit queue, declared before the log starts so that a burst waits
/// on it and is taken in batches.
async fn audit_queue(env: &TestEnv) -> std::sync::Arc<himaya_bus::Bus> {
    let bus = himaya_bus::Bus::connect(env.amqp_url(), himaya_bus::Topology::new(""))
        .await
        .unwrap();
    bus.declare_queue(
        himaya_audit::QUEUE,
        himaya_bus::Exchange::Events,
        &[
            himaya_events::keys::DISCLOSURE_RECORDED,
            himaya_events::keys::DISCLOSURES_RECORDED,
        ],
    )
    .await
    .unwrap();
    bus
}

/// The disclosure log started on what waits on its queue, once `n` entries are in it.
async fn appended(env: &TestEnv, n: i64, what: &str) -> (Hub, PgPool) {
    let hub = Hub::start(env.settings.clone(), &[himaya::hub::Component::Audit])
        .await
        .unwrap();
    let db = env.pool().await;
    wait_count(&db, "SELECT count(*) FROM audit.log", n, 60, what).await;
    (hub, db)
}

/// The log holds exactly `events`, each once, in their order, and its chain verifies.
async fn chained_in_order(
    env: &TestEnv,
    db: &PgPool,
    events: &[himaya_events::DisclosureRecorded],
) {
    let ids: Vec<String> = sqlx::query_scalar("SELECT message_id FROM audit.log ORDER BY seq")
        .fetch_all(db)
        .await
        .unwrap();
    let expected: Vec<String> = events.iter().map(|e| e.message_id.clone()).collect();
    assert_eq!(ids, expected);
    let audit = himaya_audit::connect(&env.settings).await.unwrap();
    assert_eq!(
        himaya_audit::verify(&audit, &[]).await.unwrap(),
        events.len() as i64
    );
}

/// The router's message for the decisions of one routing transaction.
fn recorded_together(
    events: &[himaya_events::DisclosureRecorded],
    id: &str,
) -> himaya_bus::Outgoing {
    let batch = himaya_events::DisclosuresRecorded {
        message_id: id.into(),
        occurred_at: "2026-11-22T10:00:00+00:00".into(),
        disclosures: events.to_vec(),
    };
    himaya_bus::Outgoing {
        exchange: himaya_bus::Exchange::Events,
        routing_key: himaya_events::keys::DISCLOSURES_RECORDED.into(),
        payload: himaya_events::encode(&batch).unwrap(),
        message_id: batch.message_id.clone(),
        event_type: <himaya_events::DisclosuresRecorded as himaya_events::Event>::NAME.into(),
        priority: 0,
        headers: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_sent_together_are_appended_each_once_in_order() {
    let env = TestEnv::new(None).await;
    let bus = audit_queue(&env).await;
    let events: Vec<_> = (0..150).map(disclosure).collect();
    let mut second = events[100..].to_vec();
    second.insert(0, events[99].clone());
    let msgs = [
        recorded_together(&events[..100], "msg_together_1"),
        // One of them alone as well, the first message again (a redelivery), and a
        // second message holding one decision of the first again.
        recorded(&events[50]),
        recorded_together(&events[..100], "msg_together_1"),
        recorded_together(&second, "msg_together_2"),
    ];
    publish_all(&bus, &msgs).await;

    let (hub, db) = appended(&env, 150, "the decisions in the log").await;
    // Nothing more comes: the messages behind are all appended or dropped.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    hub.stop().await;
    chained_in_order(&env, &db, &events).await;
    assert_eq!(left_on_queue(&bus, himaya_audit::QUEUE).await, 0);
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_appended_in_batches_once_each_in_order_with_poison_parked_alone() {
    let env = TestEnv::new(None).await;
    let bus = audit_queue(&env).await;
    let events: Vec<_> = (0..500).map(disclosure).collect();
    let mut msgs: Vec<_> = events.iter().map(recorded).collect();
    // A redelivery right behind its original (the same batch), one long after it
    // (another batch), and a message that is no disclosure in the middle.
    msgs.insert(11, recorded(&events[10]));
    msgs.push(recorded(&events[3]));
    let mut poison = recorded(&events[0]);
    poison.payload = b"not avro".to_vec();
    poison.message_id = "msg_burst_poison".into();
    msgs.insert(250, poison);
    publish_all(&bus, &msgs).await;

    let (hub, db) = appended(&env, 500, "the burst in the log").await;
    let reasons = parked_reasons(&env.amqp_url(), 1).await;
    assert!(
        reasons
            .get("msg_burst_poison")
            .is_some_and(|r| r.contains("single-object")),
        "{reasons:?}"
    );
    hub.stop().await;

    // One routine lane, batches one after the other: the chain is the order of the queue.
    chained_in_order(&env, &db, &events).await;
    // What each entry says is what was recorded, lists in their order.
    let stored: Vec<EntryBody> = sqlx::query_as("SELECT * FROM audit.log ORDER BY seq")
        .fetch_all(&db)
        .await
        .unwrap();
    for (s, e) in stored.iter().zip(&events) {
        assert_eq!(
            (
                &s.at,
                &s.case_id,
                &s.referral_id,
                &s.reason,
                &s.categories,
                &s.basis,
                &s.delivery_message_id,
                &s.person
            ),
            (
                &e.occurred_at,
                &e.case_id,
                &e.referral_id,
                &e.reason,
                &e.categories,
                &e.basis,
                &e.delivery_message_id,
                &e.person
            )
        );
    }
    // Many entries per transaction (rows written together share their `xmin`).
    let transactions = count(&db, "SELECT count(DISTINCT xmin::text) FROM audit.log").await;
    assert!(
        transactions < 250,
        "{transactions} transactions for 500 entries"
    );
    // Every message was acknowledged: none went back to the queue with the channel.
    assert_eq!(left_on_queue(&bus, himaya_audit::QUEUE).await, 0);
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_appends_each_message_id_once_within_it_and_across_batches() {
    let env = TestEnv::new(None).await;
    let hub = Hub::start(env.settings.clone(), &[himaya::hub::Component::Audit])
        .await
        .unwrap();
    let audit = himaya_audit::connect(&env.settings).await.unwrap();
    let e: Vec<_> = (0..5).map(disclosure).collect();
    let first = [e[0].clone(), e[1].clone(), e[0].clone(), e[2].clone()];
    assert_eq!(himaya_audit::append(&audit, &first).await.unwrap(), 3);
    let second = [e[2].clone(), e[3].clone(), e[1].clone(), e[4].clone()];
    assert_eq!(himaya_audit::append(&audit, &second).await.unwrap(), 2);
    assert_eq!(himaya_audit::append(&audit, &second).await.unwrap(), 0);
    assert_eq!(himaya_audit::append(&audit, &[]).await.unwrap(), 0);
    let ids: Vec<String> = sqlx::query_scalar("SELECT message_id FROM log ORDER BY seq")
        .fetch_all(&audit)
        .await
        .unwrap();
    let expected = [0, 1, 2, 3, 4].map(|i| e[i].message_id.clone());
    assert_eq!(ids, expected);
    assert_eq!(himaya_audit::verify(&audit, &[]).await.unwrap(), 5);

    // Permits decided just before a withdrawal and logged just after it, two of them to
    // one agency in the same batch: each agency is told once.
    sqlx::query(
        "INSERT INTO withdrawals (case_id, consent_id, categories, withdrawn_at)
         VALUES ('case_burst_1', 'cns_1', '{health}', '2026-11-22T10:00:00+00:00')",
    )
    .execute(&audit)
    .await
    .unwrap();
    let late = |n: usize, recipient: &str| himaya_events::DisclosureRecorded {
        message_id: format!("msg_late_{n}"),
        recipient: recipient.into(),
        ..disclosure(1)
    };
    let batch = [
        late(1, "health-cairo"),
        late(2, "mosa-cairo"),
        late(3, "health-cairo"),
        disclosure(8),
    ];
    assert_eq!(himaya_audit::append(&audit, &batch).await.unwrap(), 4);
    let told: Vec<String> = sqlx::query_scalar(
        "SELECT agency_id FROM notices WHERE case_id = 'case_burst_1' AND consent_id = 'cns_1'
          ORDER BY agency_id",
    )
    .fetch_all(&audit)
    .await
    .unwrap();
    assert_eq!(told, ["health-cairo", "mosa-cairo"]);
    assert_eq!(himaya_audit::verify(&audit, &[]).await.unwrap(), 9);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_the_database_refuses_does_not_hold_back_the_rest_of_its_batch() {
    let env = TestEnv::new(None).await;
    let bus = audit_queue(&env).await;
    let events: Vec<_> = (0..100).map(disclosure).collect();
    let mut msgs: Vec<_> = events.iter().map(recorded).collect();
    // A valid event PostgreSQL cannot store (text holds no NUL): its batch fails.
    let mut refused = disclosure(100);
    refused.recipient = "health\0cairo".into();
    msgs.insert(50, recorded(&refused));
    publish_all(&bus, &msgs).await;

    let hub = Hub::start(env.settings.clone(), &[himaya::hub::Component::Audit])
        .await
        .unwrap();
    let db = env.pool().await;
    wait_count(
        &db,
        "SELECT count(*) FROM audit.log",
        100,
        60,
        "the others in the log",
    )
    .await;
    hub.stop().await;
    let audit = himaya_audit::connect(&env.settings).await.unwrap();
    assert_eq!(himaya_audit::verify(&audit, &[]).await.unwrap(), 100);
    let logged: std::collections::BTreeSet<String> =
        sqlx::query_scalar("SELECT message_id FROM audit.log")
            .fetch_all(&db)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let expected: std::collections::BTreeSet<String> =
        events.iter().map(|e| e.message_id.clone()).collect();
    assert_eq!(logged, expected);
    // The refused one is still on the queue, to be retried until its delivery limit
    // parks it; everything else was acknowledged.
    assert_eq!(left_on_queue(&bus, himaya_audit::QUEUE).await, 1);
    bus.close().await;
}

/// Appends per second: 5,000 disclosures published at once to a running log, then
/// 5,000 more waiting on the queue when the log starts (a backlog), timed from its first
/// entry (`cargo test --test it appends_per_second -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement"]
async fn appends_per_second() {
    const N: usize = 5000;
    let env = TestEnv::new(None).await;
    let bus = audit_queue(&env).await;
    let db = env.pool().await;
    let per_transaction = |n: i64, after: i64| {
        let db = db.clone();
        async move {
            let t = count(
                &db,
                &format!("SELECT count(DISTINCT xmin::text) FROM audit.log WHERE seq > {after}"),
            )
            .await;
            format!("{t} transactions, {:.1} entries each", n as f64 / t as f64)
        }
    };

    let hub = Hub::start(env.settings.clone(), &[himaya::hub::Component::Audit])
        .await
        .unwrap();
    let msgs: Vec<_> = (0..N).map(|i| recorded(&disclosure(i))).collect();
    let started = std::time::Instant::now();
    publish_all(&bus, &msgs).await;
    let published = started.elapsed();
    let all = "SELECT count(*) FROM audit.log";
    wait_count(&db, all, N as i64, 600, "the burst in the log").await;
    let appended = started.elapsed();
    println!(
        "burst of {N} to a running log: published in {:.2} s, all appended {:.2} s after the first was published: {:.0} appends/s ({})",
        published.as_secs_f64(),
        appended.as_secs_f64(),
        N as f64 / appended.as_secs_f64(),
        per_transaction(N as i64, 0).await,
    );
    hub.stop().await;

    let msgs: Vec<_> = (N..2 * N).map(|i| recorded(&disclosure(i))).collect();
    publish_all(&bus, &msgs).await;
    let hub = Hub::start(env.settings.clone(), &[himaya::hub::Component::Audit])
        .await
        .unwrap();
    eventually(600, "the first of the backlog", || async {
        (count(&db, all).await > N as i64).then_some(())
    })
    .await;
    let started = std::time::Instant::now();
    wait_count(&db, all, 2 * N as i64, 600, "the backlog in the log").await;
    let drained = started.elapsed();
    println!(
        "backlog of {N}: drained {:.2} s after its first entry: {:.0} appends/s ({})",
        drained.as_secs_f64(),
        N as f64 / drained.as_secs_f64(),
        per_transaction(N as i64, N as i64).await,
    );
    hub.stop().await;
    let audit = himaya_audit::connect(&env.settings).await.unwrap();
    assert_eq!(
        himaya_audit::verify(&audit, &[]).await.unwrap(),
        2 * N as i64
    );
    bus.close().await;
}
