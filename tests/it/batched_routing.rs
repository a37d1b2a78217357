//! The router takes the referrals waiting on its queue in batches, one transaction each:
//! every referral is routed once (a redelivery within a batch or across batches too),
//! each delivery keeps the trace of its own referral (an intake group's referrals come in
//! one message, `referrals.created`, each with its trace; a transaction's deliveries for
//! an agency go in one message, `DeliveriesRequested`, each with its trace), and a
//! message that is no referral is parked alone.

use std::collections::BTreeMap;

use crate::helpers::*;
use himaya::hub::{Component, Hub};
use himaya_bus::{Bus, Exchange, Outgoing, Topology};
use himaya_events::{
    encode, keys, DeliveriesRequested, DeliveryRequested, DisclosuresRecorded, Event,
    ReferralCreated, ReferralsCreated,
};

/// The `i`th referral of a burst: a case of its own, health-cairo's to receive.
fn created(i: usize) -> ReferralCreated {
    let mut case = himaya_record::fixtures::record();
    case.case_id = himaya_record::CaseId::new();
    case.referral.referral_id = himaya_record::ReferralId::new();
    ReferralCreated {
        message_id: format!("msg_route_{i:05}"),
        occurred_at: "2026-11-22T09:30:00Z".into(),
        case,
        service_request: None,
    }
}

/// The trace the `i`th referral's message carries.
fn traceparent(i: usize) -> String {
    format!("00-{i:032x}-{:016x}-01", i + 1)
}

fn message(i: usize, e: &ReferralCreated) -> Outgoing {
    let mut headers = BTreeMap::new();
    headers.insert("traceparent".to_owned(), traceparent(i));
    Outgoing {
        exchange: Exchange::Events,
        routing_key: keys::REFERRAL_CREATED.into(),
        payload: encode(e).unwrap(),
        message_id: e.message_id.clone(),
        event_type: ReferralCreated::NAME.into(),
        priority: 0,
        headers,
    }
}

/// An environment where health-cairo is connected (no connector runs: its deliveries
/// wait on its queue).
async fn connected_env() -> TestEnv {
    TestEnv::new(Some("127.0.0.1:9".parse().unwrap())).await
}

/// The broker and the router's queue, declared before the router starts so that a
/// burst waits on it and is taken in batches.
async fn router_queue(env: &TestEnv) -> std::sync::Arc<Bus> {
    let bus = Bus::connect(env.amqp_url(), Topology::new(""))
        .await
        .unwrap();
    bus.declare_queue(
        himaya_router::QUEUE,
        Exchange::Events,
        &[
            keys::REFERRAL_CREATED,
            keys::REFERRALS_CREATED,
            keys::SERVICE_REFERRAL_REQUESTED,
        ],
    )
    .await
    .unwrap();
    bus
}

/// An intake group's referrals in one message, each with its own trace (`i`: each
/// referral's place in the burst).
fn group(id: &str, members: &[(usize, &ReferralCreated)]) -> Outgoing {
    let batch = ReferralsCreated {
        message_id: id.into(),
        occurred_at: "2026-12-03T10:00:00Z".into(),
        referrals: members.iter().map(|(_, e)| (*e).clone()).collect(),
        traceparents: members.iter().map(|(i, _)| Some(traceparent(*i))).collect(),
    };
    let mut headers = BTreeMap::new();
    headers.insert("traceparent".to_owned(), traceparent(members[0].0));
    Outgoing {
        exchange: Exchange::Events,
        routing_key: keys::REFERRALS_CREATED.into(),
        payload: encode(&batch).unwrap(),
        message_id: batch.message_id.clone(),
        event_type: ReferralsCreated::NAME.into(),
        priority: 0,
        headers,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_referrals_is_routed_in_batches_once_each_with_poison_parked_alone() {
    const N: usize = 300;
    // The last hundred in groups of twenty, as intake's group commits send them.
    const ALONE: usize = 200;
    let env = connected_env().await;
    let bus = router_queue(&env).await;
    let events: Vec<_> = (0..N).map(created).collect();
    let mut msgs: Vec<_> = events[..ALONE]
        .iter()
        .enumerate()
        .map(|(i, e)| message(i, e))
        .collect();
    let members: Vec<(usize, &ReferralCreated)> = events.iter().enumerate().skip(ALONE).collect();
    for (g, chunk) in members.chunks(20).enumerate() {
        let mut chunk = chunk.to_vec();
        if g == 0 {
            // A referral routed before, again inside a group.
            chunk.insert(3, (5, &events[5]));
        }
        msgs.push(group(&format!("msg_route_group_{g}"), &chunk));
    }
    // A group whose traces do not match its referrals.
    let spare = created(N + 1);
    let mut broken = group(
        "msg_route_poison_group",
        &[(N + 1, &spare), (N + 1, &spare)],
    );
    let mut malformed = himaya_events::decode::<ReferralsCreated>(&broken.payload).unwrap();
    malformed.traceparents.pop();
    broken.payload = encode(&malformed).unwrap();
    msgs.insert(120, broken);
    // A redelivery right behind its original (the same batch), one long after it
    // (another batch), and a message that is no referral in the middle.
    msgs.insert(11, message(10, &events[10]));
    msgs.push(message(3, &events[3]));
    let mut poison = message(0, &events[0]);
    poison.payload = b"not avro".to_vec();
    poison.message_id = "msg_route_poison".into();
    msgs.insert(150, poison);
    publish_all(&bus, &msgs).await;

    let hub = Hub::start(env.settings.clone(), &[Component::Router])
        .await
        .unwrap();
    let db = env.pool().await;
    wait_count(
        &db,
        "SELECT count(*) FROM router.inbox WHERE consumer = 'router.referral-created'",
        N as i64,
        60,
        "the burst routed",
    )
    .await;
    let reasons = parked_reasons(&env.amqp_url(), 2).await;
    assert!(
        reasons
            .get("msg_route_poison")
            .is_some_and(|r| r.contains("single-object")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .get("msg_route_poison_group")
            .is_some_and(|r| r.contains("traceparents")),
        "{reasons:?}"
    );
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    hub.stop().await;

    // One decision per referral: the redeliveries routed nothing more.
    let decided: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT referral_id, decision, count(*) FROM router.disclosures
          GROUP BY referral_id, decision ORDER BY referral_id",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let mut expected: Vec<(String, String, i64)> = events
        .iter()
        .map(|e| (e.case.referral.referral_id.to_string(), "permit".into(), 1))
        .collect();
    expected.sort();
    assert_eq!(decided, expected);
    // Each delivery carries the trace of its own referral's message, also where a
    // transaction's deliveries for the agency went in one message (fewer messages than
    // deliveries), and each delivery is queued once.
    let rows: Vec<(String, Vec<u8>, Option<String>)> = sqlx::query_as(
        "SELECT event_type, payload, headers->>'traceparent' FROM router.outbox
          WHERE exchange = 'delivery'",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let mut traces: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut queued = std::collections::BTreeSet::new();
    for (event_type, payload, trace) in &rows {
        let deliveries = if event_type == DeliveriesRequested::NAME {
            let b = himaya_events::decode::<DeliveriesRequested>(payload).unwrap();
            assert_eq!(
                trace, &b.traceparents[0],
                "a message carries its first's trace"
            );
            b.deliveries.into_iter().zip(b.traceparents).collect()
        } else {
            let d = himaya_events::decode::<DeliveryRequested>(payload).unwrap();
            vec![(d, trace.clone())]
        };
        for (d, trace) in deliveries {
            assert!(
                queued.insert((d.referral_id.clone(), d.agency_id)),
                "a delivery queued twice"
            );
            traces.insert(d.referral_id, trace);
        }
    }
    assert!(
        rows.len() < N / 2,
        "{} delivery messages for {N}",
        rows.len()
    );
    let expected: BTreeMap<String, Option<String>> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            (
                e.case.referral.referral_id.to_string(),
                Some(traceparent(i)),
            )
        })
        .collect();
    assert_eq!(traces, expected);
    // Many referrals per transaction (rows written together share their `xmin`).
    assert_batched(&db, "FROM router.disclosures", N, "referrals").await;
    // A transaction's decisions go to the disclosure log in one message: every decision
    // once, in far fewer messages than decisions.
    let together: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT payload FROM router.outbox WHERE routing_key = $1 ORDER BY id")
            .bind(keys::DISCLOSURES_RECORDED)
            .fetch_all(&db)
            .await
            .unwrap();
    assert!(together.len() < N / 2, "{} messages", together.len());
    let logged: Vec<String> = together
        .iter()
        .flat_map(|p| {
            himaya_events::decode::<DisclosuresRecorded>(p)
                .unwrap()
                .disclosures
        })
        .map(|d| d.referral_id.unwrap())
        .collect();
    let routed: std::collections::BTreeSet<&String> = logged.iter().collect();
    assert_eq!((logged.len(), routed.len()), (N, N));
    let alone = count(
        &db,
        "SELECT count(*) FROM router.outbox WHERE routing_key = 'audit.disclosure.recorded'",
    )
    .await;
    assert_eq!(alone, 0);
    // Every message was acknowledged: none went back to the queue with the channel.
    assert_eq!(left_on_queue(&bus, himaya_router::QUEUE).await, 0);
    bus.close().await;
}

/// Referrals routed per second: 2,000 waiting on the queue when the router starts (a
/// backlog), timed from the first routed
/// (`cargo test --test it routes_per_second -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement"]
async fn routes_per_second() {
    const N: usize = 2000;
    let env = connected_env().await;
    let bus = router_queue(&env).await;
    let db = env.pool().await;
    let msgs: Vec<_> = (0..N).map(|i| message(i, &created(i))).collect();
    publish_all(&bus, &msgs).await;
    let hub = Hub::start(env.settings.clone(), &[Component::Router])
        .await
        .unwrap();
    let routed = "SELECT count(*) FROM router.disclosures";
    eventually(600, "the first of the backlog", || async {
        (count(&db, routed).await > 0).then_some(())
    })
    .await;
    let started = std::time::Instant::now();
    wait_count(&db, routed, N as i64, 600, "the backlog routed").await;
    let drained = started.elapsed();
    let transactions = count(
        &db,
        "SELECT count(DISTINCT xmin::text) FROM router.disclosures",
    )
    .await;
    println!(
        "backlog of {N} referral.created: routed {:.2} s after the first: {:.0} routed/s ({transactions} transactions, {:.1} referrals each)",
        drained.as_secs_f64(),
        N as f64 / drained.as_secs_f64(),
        N as f64 / transactions as f64,
    );
    hub.stop().await;
    bus.close().await;
}
