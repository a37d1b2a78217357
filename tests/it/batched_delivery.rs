//! A connector takes the deliveries waiting on its agency's queue in batches: it sends
//! them to the agency side by side and records their answers in one transaction. Each
//! delivery reaches the agency once (a redelivery within the batch or after it adds
//! nothing), each answer is recorded once and sent on with the batch's other answers in
//! one message, which carries the trace of its first, and a delivery that cannot be made
//! is parked alone, its case told, without holding back the others. The same holds for
//! the deliveries one routing transaction sent the agency in one message.

use std::collections::{BTreeMap, BTreeSet};

use crate::helpers::*;
use himaya::hub::{Component, Hub};
use himaya_bus::{Bus, Exchange, Outgoing, Topology};
use himaya_events::{
    decode, encode, DeliveriesRecorded, DeliveriesRequested, DeliveryRecorded, DeliveryRequested,
    Event,
};
use himaya_settings::Protocol;

const AGENCY: &str = "health-cairo";

/// The `i`th delivery of a burst: a referral of its own, carrying the full case.
fn delivery(i: usize) -> DeliveryRequested {
    let mut d = himaya_connect::testing::delivery(himaya_connect::testing::FULL_CASE, None);
    d.message_id = format!("msg_deliver_{i:05}");
    d.case_id = format!("case_{i:05}");
    d.referral_id = format!("ref_{i:05}");
    d.idempotency_key = format!("ref_{i:05}:{AGENCY}");
    d.priority = "routine".into();
    d
}

/// The trace the `i`th delivery's message carries.
fn traceparent(i: usize) -> String {
    format!("00-{:032x}-{:016x}-01", i + 1, i + 7)
}

fn message(i: usize, d: &DeliveryRequested) -> Outgoing {
    let mut headers = BTreeMap::new();
    headers.insert("traceparent".to_owned(), traceparent(i));
    Outgoing {
        exchange: Exchange::Delivery,
        routing_key: AGENCY.into(),
        payload: encode(d).unwrap(),
        message_id: d.message_id.clone(),
        event_type: DeliveryRequested::NAME.into(),
        priority: 0,
        headers,
    }
}

/// An environment where only health-cairo is connected (at `addr`), and its queue,
/// declared before its connector starts so that a burst waits on it and is taken in
/// batches.
async fn agency_queue(addr: std::net::SocketAddr) -> (TestEnv, std::sync::Arc<Bus>, String) {
    let mut env = TestEnv::new(None).await;
    for (id, a) in env.settings.agencies.iter_mut() {
        a.endpoint = None;
        if id == AGENCY {
            a.endpoint = Some(format!("http://{addr}"));
            a.protocol = Protocol::FhirR4;
        }
    }
    let bus = Bus::connect(env.amqp_url(), Topology::new(""))
        .await
        .unwrap();
    let queue = bus.topology().delivery_queue(AGENCY);
    bus.declare_queue(&queue, Exchange::Delivery, &[AGENCY])
        .await
        .unwrap();
    (env, bus, queue)
}

/// [`agency_queue`] for an agency that fails calls: each tried twice, 20 ms apart, and
/// its circuit never opened, so its deliveries wait for it in place.
async fn failing_agency_queue(
    addr: std::net::SocketAddr,
) -> (TestEnv, std::sync::Arc<Bus>, String) {
    let (mut env, bus, queue) = agency_queue(addr).await;
    let c = &mut env.settings.connectors;
    c.attempts = 2;
    c.backoff_ms = 20;
    c.breaker_failures = 1000;
    (env, bus, queue)
}

/// What the agency should see of `deliveries`: each one's key, with its trace.
fn keys_and_traces(deliveries: &[DeliveryRequested]) -> BTreeSet<(Option<String>, Option<String>)> {
    deliveries
        .iter()
        .enumerate()
        .map(|(i, d)| (Some(d.idempotency_key.clone()), Some(traceparent(i))))
        .collect()
}

/// A delivery no connector can make: its document unreadable (and holding a value no
/// park reason may quote).
fn unreadable(i: usize) -> DeliveryRequested {
    let mut d = delivery(i);
    d.document_json = "{\"child\": {\"sex\": \"قنطرة\"".into();
    d
}

/// Publishes `msgs` on the agency's queue, starts the connectors, and waits until `sql`
/// counts `n` (`what` names it if it never does).
async fn deliver(
    env: &TestEnv,
    bus: &Bus,
    msgs: &[Outgoing],
    sql: &str,
    n: usize,
    what: &str,
) -> (Hub, sqlx::PgPool) {
    publish_all(bus, msgs).await;
    let hub = Hub::start(env.settings.clone(), &[Component::Connectors])
        .await
        .unwrap();
    let db = env.pool().await;
    wait_count(&db, sql, n as i64, 60, what).await;
    (hub, db)
}

/// Waits until the case of `d`, parked, is told: its answer says undelivered.
async fn case_told_parked(db: &sqlx::PgPool, d: &DeliveryRequested) {
    wait_count(
        db,
        &format!(
            "SELECT count(*) FROM connectors.outbox WHERE routing_key = 'referral.delivery.recorded' AND headers->>'x-correlation-id' = '{}'",
            d.referral_id
        ),
        1,
        30,
        "the parked delivery's answer",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_deliveries_reaches_the_agency_once_each_in_batches() {
    const N: usize = 200;
    let (agency, addr) = FakeAgency::start(&[]).await;
    let (env, bus, queue) = agency_queue(addr).await;
    let deliveries: Vec<_> = (0..N).map(delivery).collect();
    let mut msgs: Vec<_> = deliveries
        .iter()
        .enumerate()
        .map(|(i, d)| message(i, d))
        .collect();
    // A redelivery right behind its original (the same batch), one long after it, and in
    // the middle a delivery no connector can make (its document unreadable).
    msgs.insert(8, message(7, &deliveries[7]));
    msgs.push(message(2, &deliveries[2]));
    let broken = unreadable(N);
    msgs.insert(100, message(N, &broken));
    let (hub, db) = deliver(
        &env,
        &bus,
        &msgs,
        "SELECT count(*) FROM connectors.deliveries",
        N,
        "the burst delivered",
    )
    .await;
    let reasons = parked_reasons(&env.amqp_url(), 1).await;
    let broken_reason = &reasons[&broken.message_id];
    assert!(
        broken_reason.contains("not a case the connector can read"),
        "{reasons:?}"
    );
    assert!(!broken_reason.contains("قنطرة"), "a value in a park reason");
    // The broken delivery's case is told: its answer says undelivered, parked.
    case_told_parked(&db, &broken).await;
    hub.stop().await;

    // Each delivery reached the agency once, under its own key and trace.
    let seen: Vec<(Option<String>, Option<String>)> = agency
        .requests()
        .into_iter()
        .map(|s| (s.idempotency_key, s.traceparent))
        .collect();
    assert_eq!(
        seen.len(),
        N,
        "one call per delivery, none for a redelivery"
    );
    let seen: BTreeSet<_> = seen.into_iter().collect();
    assert_eq!(seen, keys_and_traces(&deliveries));
    // One answer per delivery, recorded as delivered; a transaction's answers in one
    // message (fewer messages than answers), each message with its first answer's trace.
    let rows: Vec<(String, Vec<u8>, Option<String>)> = sqlx::query_as(
        "SELECT event_type, payload, headers->>'traceparent' FROM connectors.outbox
          WHERE headers->>'x-correlation-id' <> $1",
    )
    .bind(&broken.referral_id)
    .fetch_all(&db)
    .await
    .unwrap();
    let trace_of: BTreeMap<&str, String> = (0..N)
        .map(|i| (deliveries[i].referral_id.as_str(), traceparent(i)))
        .collect();
    let mut recorded: BTreeMap<String, String> = BTreeMap::new();
    for (event_type, payload, trace) in &rows {
        let answers = if event_type == DeliveriesRecorded::NAME {
            decode::<DeliveriesRecorded>(payload).unwrap().answers
        } else {
            vec![decode::<DeliveryRecorded>(payload).unwrap()]
        };
        assert_eq!(
            trace.as_deref(),
            Some(trace_of[answers[0].referral_id.as_str()].as_str()),
            "a message carries its first answer's trace"
        );
        for a in answers {
            assert!(
                recorded.insert(a.referral_id, a.outcome).is_none(),
                "an answer sent twice"
            );
        }
    }
    let expected: BTreeMap<String, String> = (0..N)
        .map(|i| (deliveries[i].referral_id.clone(), "delivered".to_owned()))
        .collect();
    assert_eq!(recorded, expected);
    assert!(
        rows.len() < N / 2,
        "{} messages for {N} answers: not sent together",
        rows.len()
    );
    // Many answers per transaction (rows written together share their `xmin`).
    assert_batched(&db, "FROM connectors.deliveries", N, "deliveries").await;
    // Every message was acknowledged: none went back to the queue with the channel.
    assert_eq!(left_on_queue(&bus, &queue).await, 0);
    bus.close().await;
}

/// An agency failing part of a batch's calls (503, then answering again) fails the
/// batch before anything is recorded; its deliveries are then made one by one, each
/// recorded once as delivered, nothing parked and nothing left on the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_agency_fails_is_delivered_one_by_one_and_recorded_once() {
    const N: usize = 40;
    let (agency, addr) = FakeAgency::start(&[503; 12]).await;
    let (env, bus, queue) = failing_agency_queue(addr).await;
    let deliveries: Vec<_> = (0..N).map(delivery).collect();
    let msgs: Vec<_> = deliveries
        .iter()
        .enumerate()
        .map(|(i, d)| message(i, d))
        .collect();
    let (hub, db) = deliver(
        &env,
        &bus,
        &msgs,
        "SELECT count(*) FROM connectors.deliveries WHERE outcome = 'delivered'",
        N,
        "every delivery made once the agency answers",
    )
    .await;
    hub.stop().await;
    assert_eq!(
        count(&db, "SELECT count(*) FROM connectors.deliveries").await,
        N as i64,
        "each delivery recorded once"
    );
    let keys: BTreeSet<Option<String>> = agency
        .requests()
        .into_iter()
        .map(|s| s.idempotency_key)
        .collect();
    assert_eq!(
        keys.len(),
        N,
        "every delivery reached the agency under its own key"
    );
    assert!(
        parked_reasons(&env.amqp_url(), 0).await.is_empty(),
        "nothing parked"
    );
    assert_eq!(left_on_queue(&bus, &queue).await, 0);
    bus.close().await;
}

/// The connector's inbox is its deliveries' table: a delivery recorded elsewhere while
/// its call was in flight here (the same message handled by another consumer after a
/// lost channel) is passed over when its answer is recorded, with the other answers of
/// its batch, and only the deliveries recorded here are told; nothing fails, nothing is
/// called again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_recorded_elsewhere_meanwhile_is_told_once_and_its_batch_recorded() {
    let (agency, addr) =
        FakeAgency::scripted(vec![Step::Slow(3_000, 201), Step::Slow(3_000, 201)]).await;
    let (mut env, bus, queue) = agency_queue(addr).await;
    // The agency's slow answers are answers, not timeouts.
    env.settings.connectors.timeout_ms = 20_000;
    let deliveries: Vec<_> = (0..2).map(delivery).collect();
    let msgs: Vec<_> = deliveries
        .iter()
        .enumerate()
        .map(|(i, d)| message(i, d))
        .collect();
    publish_all(&bus, &msgs).await;
    let hub = Hub::start(env.settings.clone(), &[Component::Connectors])
        .await
        .unwrap();
    let db = env.pool().await;
    // While its call is in flight (alone, or beside the other's, as the broker sent
    // them), the first delivery is recorded by someone else.
    let first_key = Some(deliveries[0].idempotency_key.clone());
    eventually(30, "the first delivery's call made", || async {
        agency
            .requests()
            .iter()
            .any(|s| s.idempotency_key == first_key)
            .then_some(())
    })
    .await;
    sqlx::query(
        "INSERT INTO connectors.deliveries (message_id, agency_id, protocol, case_id, referral_id, idempotency_key, outcome, http_status, attempts, latency_ms)
         VALUES ($1, $2, 'elsewhere', $3, $4, $5, 'delivered', 201, 1, 1)",
    )
    .bind(&deliveries[0].message_id)
    .bind(AGENCY)
    .bind(&deliveries[0].case_id)
    .bind(&deliveries[0].referral_id)
    .bind(&deliveries[0].idempotency_key)
    .execute(&db)
    .await
    .unwrap();
    wait_count(
        &db,
        "SELECT count(*) FROM connectors.deliveries",
        2,
        30,
        "the second delivery recorded",
    )
    .await;
    assert_eq!(
        left_on_queue(&bus, &queue).await,
        0,
        "the batch acknowledged"
    );
    hub.stop().await;
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM connectors.deliveries WHERE protocol = 'elsewhere'"
        )
        .await,
        1,
        "the row recorded elsewhere kept"
    );
    let rows: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT event_type, payload FROM connectors.outbox")
            .fetch_all(&db)
            .await
            .unwrap();
    let mut told = Vec::new();
    for (event_type, payload) in &rows {
        if event_type == DeliveriesRecorded::NAME {
            told.extend(decode::<DeliveriesRecorded>(payload).unwrap().answers);
        } else {
            told.push(decode::<DeliveryRecorded>(payload).unwrap());
        }
    }
    let told: Vec<&str> = told.iter().map(|a| a.referral_id.as_str()).collect();
    assert_eq!(
        told,
        vec![deliveries[1].referral_id.as_str()],
        "only the delivery recorded here told"
    );
    assert_eq!(agency.requests().len(), 2, "nothing called again");
    assert!(
        parked_reasons(&env.amqp_url(), 0).await.is_empty(),
        "nothing parked"
    );
    bus.close().await;
}

/// The deliveries of `members` (each with its place in the burst, for its trace) in one
/// message, as the router sends a routing transaction's deliveries for one agency.
fn bundle(id: &str, members: &[(usize, &DeliveryRequested)]) -> Outgoing {
    let batch = DeliveriesRequested {
        message_id: id.into(),
        occurred_at: "2026-12-04T03:00:00Z".into(),
        deliveries: members.iter().map(|(_, d)| (*d).clone()).collect(),
        traceparents: members.iter().map(|(i, _)| Some(traceparent(*i))).collect(),
    };
    let mut headers = BTreeMap::new();
    headers.insert("traceparent".to_owned(), traceparent(members[0].0));
    Outgoing {
        exchange: Exchange::Delivery,
        routing_key: AGENCY.into(),
        payload: encode(&batch).unwrap(),
        message_id: batch.message_id.clone(),
        event_type: DeliveriesRequested::NAME.into(),
        priority: 0,
        headers,
    }
}

/// An agency's deliveries in messages of many, as the router sends them under load: each
/// reaches the agency once with its own key and trace (a message sent twice adds
/// nothing), one that cannot be made is parked alone as a delivery of its own (its case
/// told, the others of its message delivered), and an agency failing the first calls
/// (503) only delays the deliveries, which then wait for it in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_sent_together_reach_the_agency_once_each_and_a_bad_one_is_parked_alone() {
    const N: usize = 60;
    let (agency, addr) = FakeAgency::start(&[503; 6]).await;
    let (env, bus, queue) = failing_agency_queue(addr).await;
    let mut deliveries: Vec<_> = (0..N).map(delivery).collect();
    for d in &mut deliveries[N - 2..] {
        d.priority = "urgent".into();
    }
    let broken = unreadable(N);
    let mut broken_urgent = unreadable(N + 1);
    broken_urgent.priority = "urgent".into();
    let mut members: Vec<(usize, &DeliveryRequested)> =
        deliveries[..N - 2].iter().enumerate().collect();
    members.insert(25, (N, &broken));
    let mut msgs: Vec<Outgoing> = members
        .chunks(10)
        .enumerate()
        .map(|(g, chunk)| bundle(&format!("msg_bundle_{g}"), chunk))
        .collect();
    // A message sent again (a redelivery), and one delivery also alone.
    msgs.push(msgs[1].clone());
    msgs.push(message(3, &deliveries[3]));
    // Urgent deliveries together on the urgent lane, one of them broken too.
    let mut urgent = bundle(
        "msg_bundle_urgent",
        &[
            (N - 2, &deliveries[N - 2]),
            (N + 1, &broken_urgent),
            (N - 1, &deliveries[N - 1]),
        ],
    );
    urgent.priority = himaya_bus::URGENT_PRIORITY;
    msgs.push(urgent);
    let (hub, db) = deliver(
        &env,
        &bus,
        &msgs,
        "SELECT count(*) FROM connectors.deliveries WHERE outcome = 'delivered'",
        N,
        "every delivery made",
    )
    .await;
    let reasons = parked_reasons(&env.amqp_url(), 2).await;
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    for d in [&broken, &broken_urgent] {
        let why = &reasons[&d.message_id];
        assert!(why.contains("not a case the connector can read"), "{why}");
        assert!(!why.contains("قنطرة"), "a value in a park reason");
    }
    case_told_parked(&db, &broken).await;
    case_told_parked(&db, &broken_urgent).await;
    hub.stop().await;
    // Each answer goes back on its delivery's lane: an urgent delivery's (delivered, or
    // parked and told) on the urgent lane, where a refusal's escalation never waits
    // behind the routine answers; a routine one's on the routine lane.
    let lanes: Vec<(String, i16)> = sqlx::query_as(
        "SELECT coalesce(headers->>'x-correlation-id', ''), priority FROM connectors.outbox
          WHERE routing_key IN ('referral.delivery.recorded', 'referral.deliveries.recorded')",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let urgent_referrals: BTreeSet<&str> = [&deliveries[N - 2], &deliveries[N - 1], &broken_urgent]
        .iter()
        .map(|d| d.referral_id.as_str())
        .collect();
    let on_urgent: BTreeSet<&str> = lanes
        .iter()
        .filter(|(_, p)| *p >= i16::from(himaya_bus::URGENT_PRIORITY))
        .map(|(r, _)| r.as_str())
        .collect();
    assert!(
        on_urgent.contains(broken_urgent.referral_id.as_str()),
        "the urgent parked delivery's notice on the urgent lane: {lanes:?}"
    );
    assert!(
        on_urgent.len() >= 2,
        "the urgent deliveries' answers on the urgent lane too: {lanes:?}"
    );
    for (referral, priority) in &lanes {
        assert_eq!(
            urgent_referrals.contains(referral.as_str()),
            *priority >= i16::from(himaya_bus::URGENT_PRIORITY),
            "{referral}: answered on the wrong lane ({priority})"
        );
    }
    assert_eq!(
        count(&db, "SELECT count(*) FROM connectors.deliveries").await,
        N as i64,
        "each delivery recorded once"
    );
    // Each delivery reached the agency under its own key and trace, once answered (the
    // calls the agency failed were repeated under the same key).
    let seen: BTreeSet<(Option<String>, Option<String>)> = agency
        .requests()
        .into_iter()
        .map(|s| (s.idempotency_key, s.traceparent))
        .collect();
    assert_eq!(seen, keys_and_traces(&deliveries));
    // A parked copy is the one delivery, as if it had come alone: a replay sends it back
    // to the lane it came from as a delivery of its own.
    let bus_parked = bus.parked(usize::MAX).await.unwrap();
    let urgent_queue = himaya_bus::urgent_queue(&queue);
    for (d, from) in [(&broken, &queue), (&broken_urgent, &urgent_queue)] {
        let copy = bus_parked
            .iter()
            .find(|p| p.message_id == d.message_id)
            .expect("the parked copy");
        assert_eq!(copy.from_queue.as_deref(), Some(from.as_str()));
        assert_eq!(copy.event_type, DeliveryRequested::NAME);
    }
    assert_eq!(left_on_queue(&bus, &queue).await, 0);
    assert_eq!(left_on_queue(&bus, &urgent_queue).await, 0);
    bus.close().await;
}
