//! The cases service records agencies' answers in batches: a burst of "delivered"
//! answers is written as sets, a few transactions for many answers, each answer once
//! (a copy in the same batch or a redelivery adds nothing), and an answer for a case the
//! hub does not hold is parked alone without holding back the others: alone in its
//! batch of messages, and alone out of a message of many answers (a connector's
//! transaction's, `referral.deliveries.recorded`).

use std::collections::BTreeMap;

use crate::helpers::*;
use himaya::hub::{Component, Hub};
use himaya_bus::{Bus, Exchange, Outgoing, Topology};
use himaya_events::{encode, keys, new_message_id, DeliveriesRecorded, DeliveryRecorded, Event};
use himaya_proto::v1::intake_client::IntakeClient;

fn answer(i: usize, case_id: &str, referral_id: &str) -> DeliveryRecorded {
    DeliveryRecorded {
        message_id: format!("msg_answer_{i:05}"),
        occurred_at: "2026-12-02T18:00:00Z".into(),
        agency_id: "health-cairo".into(),
        case_id: case_id.into(),
        referral_id: referral_id.into(),
        delivery_message_id: format!("msg_deliver_{i:05}"),
        outcome: "delivered".into(),
        http_status: 201,
        agency_reference: Some(format!("HC-{i}")),
        reason: None,
    }
}

fn message(e: &DeliveryRecorded) -> Outgoing {
    Outgoing {
        exchange: Exchange::Events,
        routing_key: keys::DELIVERY_RECORDED.into(),
        payload: encode(e).unwrap(),
        message_id: e.message_id.clone(),
        event_type: DeliveryRecorded::NAME.into(),
        priority: 0,
        headers: BTreeMap::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_answers_is_recorded_once_each_in_batches_and_an_unknown_case_parked_alone() {
    const N: usize = 60;
    // Answered later, together in one message.
    const LATER: usize = 3;
    let env = TestEnv::new(None).await;
    // The cases, made as a school makes them; the hub then stops, so the answers below
    // wait on the cases service's queue and are taken in batches when it starts again.
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let mut cases = Vec::new();
    for i in 0..N + LATER {
        let r = IntakeClient::new(ch.clone())
            .submit_school_referral(from_school(school_request(&format!("sub-answers-{i}"))))
            .await
            .unwrap()
            .into_inner();
        cases.push((r.case_id, r.referral_id));
    }
    hub.stop().await;
    let db = env.pool().await;
    let recorded_before = count(
        &db,
        "SELECT count(*) FROM cases.referral_deliveries WHERE agency_id = 'health-cairo'",
    )
    .await;
    assert_eq!(recorded_before, 0, "no answer before the burst");

    let answers: Vec<DeliveryRecorded> = cases
        .iter()
        .enumerate()
        .map(|(i, (c, r))| answer(i, c, r))
        .collect();
    let mut msgs: Vec<Outgoing> = answers[..N].iter().map(message).collect();
    // A copy right behind its original, and one at the end.
    msgs.insert(4, message(&answers[3]));
    msgs.push(message(&answers[10]));
    let bus = Bus::connect(env.amqp_url(), Topology::new(""))
        .await
        .unwrap();
    publish_all(&bus, &msgs).await;

    let hub = Hub::start(env.settings.clone(), &[Component::Cases])
        .await
        .unwrap();
    wait_count(
        &db,
        "SELECT count(*) FROM cases.referral_deliveries WHERE agency_id = 'health-cairo' AND outcome = 'delivered'",
        N as i64,
        60,
        "every answer recorded",
    )
    .await;
    // Many answers per transaction.
    assert_batched(
        &db,
        "FROM cases.referral_deliveries WHERE agency_id = 'health-cairo'",
        N,
        "answers",
    )
    .await;

    // Then an answer for a case the hub never held, between two copies of answers
    // already recorded: parked at once with its reason (not retried until the broker
    // gives up on it), the copies adding nothing.
    let unknown = answer(N, "case_0000000000000000000000000000dead", "ref_unknown");
    publish_all(
        &bus,
        &[
            message(&answers[0]),
            message(&unknown),
            message(&answers[1]),
        ],
    )
    .await;
    let parked = parked_reasons(&env.amqp_url(), 1).await;
    assert_eq!(
        parked.keys().collect::<Vec<_>>(),
        [&unknown.message_id],
        "only the unknown case's answer is parked"
    );

    // A connector's transaction's answers in one message: the new ones, one for a case
    // the hub never held and a copy of one recorded before. The unknown one is parked
    // alone, as a message of its own, and the others are recorded once each.
    let unknown_too = answer(
        N + LATER,
        "case_0000000000000000000000000000beef",
        "ref_unknown_2",
    );
    let together = DeliveriesRecorded {
        message_id: new_message_id(),
        occurred_at: "2026-12-03T10:00:00Z".into(),
        answers: vec![
            answers[N].clone(),
            answers[N + 1].clone(),
            unknown_too.clone(),
            answers[0].clone(),
            answers[N + 2].clone(),
        ],
    };
    let mut headers = BTreeMap::new();
    headers.insert(
        "x-correlation-id".to_owned(),
        answers[N].referral_id.clone(),
    );
    publish_all(
        &bus,
        &[Outgoing {
            exchange: Exchange::Events,
            routing_key: keys::DELIVERIES_RECORDED.into(),
            payload: encode(&together).unwrap(),
            message_id: together.message_id.clone(),
            event_type: DeliveriesRecorded::NAME.into(),
            priority: 0,
            headers,
        }],
    )
    .await;
    wait_count(
        &db,
        "SELECT count(*) FROM cases.referral_deliveries WHERE agency_id = 'health-cairo' AND outcome = 'delivered'",
        (N + LATER) as i64,
        60,
        "the message's answers recorded",
    )
    .await;
    let parked = parked_reasons(&env.amqp_url(), 2).await;
    hub.stop().await;
    assert_eq!(
        parked
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        [unknown.message_id.clone(), unknown_too.message_id.clone()].into(),
        "only the unknown cases' answers are parked, the second alone out of its message"
    );
    assert!(
        parked[&unknown_too.message_id].contains("case"),
        "the reason names what is missing: {}",
        parked[&unknown_too.message_id]
    );
    let copy = bus
        .parked(usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.message_id == unknown_too.message_id)
        .unwrap();
    assert_eq!(
        copy.event_type,
        DeliveryRecorded::NAME,
        "parked as one answer"
    );
    assert_eq!(
        copy.from_queue.as_deref(),
        Some(himaya_cases::OUTCOMES_QUEUE),
        "a replay goes back to the answers' queue"
    );
    assert_eq!(
        copy.headers.get("x-correlation-id"),
        Some(&answers[N].referral_id),
        "with its message's headers"
    );
    // Each answer once in the case's history, with the agency's reference kept.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM cases.case_history WHERE change LIKE 'delivery of %: delivered'"
        )
        .await,
        (N + LATER) as i64
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(DISTINCT case_id) FROM cases.case_history WHERE change LIKE 'delivery of %: delivered'"
        )
        .await,
        (N + LATER) as i64,
        "one entry for each case"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM cases.referral_deliveries WHERE agency_reference LIKE 'HC-%' AND http_status = 201"
        )
        .await,
        (N + LATER) as i64
    );
    assert_eq!(
        left_on_queue(&bus, himaya_cases::OUTCOMES_QUEUE).await,
        0,
        "every answer acknowledged"
    );
    bus.close().await;
}
