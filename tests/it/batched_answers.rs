//! The cases service records agencies' answers in batches: a burst of "delivered"
//! answers is written as sets, a few transactions for many answers, each answer once
//! (a copy in the same batch or a redelivery adds nothing), and an answer for a case the
//! hub does not hold is parked alone without holding back the others.

use std::collections::BTreeMap;

use crate::helpers::*;
use himaya::hub::{Component, Hub};
use himaya_bus::{Bus, Exchange, Outgoing, Topology};
use himaya_events::{encode, keys, DeliveryRecorded, Event};
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
    let env = TestEnv::new(None).await;
    // The cases, made as a school makes them; the hub then stops, so the answers below
    // wait on the cases service's queue and are taken in batches when it starts again.
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let mut cases = Vec::new();
    for i in 0..N {
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
    let mut msgs: Vec<Outgoing> = answers.iter().map(message).collect();
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
    hub.stop().await;
    assert_eq!(
        parked.keys().collect::<Vec<_>>(),
        [&unknown.message_id],
        "only the unknown case's answer is parked"
    );
    // Each answer once in the case's history, with the agency's reference kept.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM cases.case_history WHERE change LIKE 'delivery of %: delivered'"
        )
        .await,
        N as i64
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(DISTINCT case_id) FROM cases.case_history WHERE change LIKE 'delivery of %: delivered'"
        )
        .await,
        N as i64,
        "one entry for each case"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM cases.referral_deliveries WHERE agency_reference LIKE 'HC-%' AND http_status = 201"
        )
        .await,
        N as i64
    );
    assert_eq!(
        left_on_queue(&bus, himaya_cases::OUTCOMES_QUEUE).await,
        0,
        "every answer acknowledged"
    );
    bus.close().await;
}
