//! How the hub behaves on the bus: poison messages are parked with a reason without
//! blocking the queue, a redelivered event has one effect, the hub heals after losing its
//! broker connections, and gRPC health and reflection are served.

use std::collections::BTreeMap;

use crate::helpers::*;
use himaya_bus::{Bus, Exchange, Outgoing, Topology};
use himaya_events::{encode, keys, Event, ReferralCreated};
use himaya_proto::v1 as pb;
use pb::intake_client::IntakeClient;

fn raw(routing_key: &str, payload: Vec<u8>, message_id: &str) -> Outgoing {
    Outgoing {
        exchange: Exchange::Events,
        routing_key: routing_key.into(),
        payload,
        message_id: message_id.into(),
        event_type: ReferralCreated::NAME.into(),
        priority: 0,
        headers: BTreeMap::new(),
    }
}

fn created(message_id: &str) -> ReferralCreated {
    let mut case = himaya_record::fixtures::record();
    case.case_id = himaya_record::CaseId::new();
    case.referral.referral_id = himaya_record::ReferralId::new();
    ReferralCreated {
        message_id: message_id.into(),
        occurred_at: "2026-11-22T09:30:00Z".into(),
        case,
        service_request: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_is_parked_with_its_reason_and_duplicates_have_one_effect() {
    let (agency, addr) = FakeAgency::start(&[]).await;
    let mut env = TestEnv::new(Some(addr)).await;
    // Prefetch 1: each queue is consumed strictly in order, which the sentinel relies on.
    env.settings.bus.prefetch = 1;
    let hub = env.start().await;
    let bus = Bus::connect(env.amqp_url(), Topology::new(""))
        .await
        .unwrap();

    // Garbage, a truncated body, then the same event twice, then a sentinel. With
    // prefetch 1 the router consumes in order, so when the sentinel's delivery arrives everything before it
    // has been handled.
    bus.publish(&raw(
        keys::REFERRAL_CREATED,
        b"{\"not\": \"avro\"}".to_vec(),
        "msg_poison",
    ))
    .await
    .unwrap();
    let twice = created("msg_twice");
    let bytes = encode(&twice).unwrap();
    bus.publish(&raw(
        keys::REFERRAL_CREATED,
        bytes[..30].to_vec(),
        "msg_truncated",
    ))
    .await
    .unwrap();
    bus.publish(&raw(keys::REFERRAL_CREATED, bytes.clone(), "msg_twice"))
        .await
        .unwrap();
    bus.publish(&raw(keys::REFERRAL_CREATED, bytes, "msg_twice"))
        .await
        .unwrap();
    let sentinel = created("msg_sentinel");
    bus.publish(&raw(
        keys::REFERRAL_CREATED,
        encode(&sentinel).unwrap(),
        "msg_sentinel",
    ))
    .await
    .unwrap();

    let sentinel_ref = sentinel.case.referral.referral_id.to_string();
    eventually(30, "the sentinel delivered", || async {
        agency.received(&sentinel_ref).then_some(())
    })
    .await;
    let twice_ref = twice.case.referral.referral_id.to_string();
    let deliveries_of_twice = agency
        .requests()
        .iter()
        .filter(|s| s.body["referral_id"] == twice_ref)
        .count();
    assert_eq!(deliveries_of_twice, 1, "a redelivered event has one effect");

    // Both bad messages are in parking, each with a reason an operator can read.
    let reasons = parked_reasons(&env.amqp_url(), 2).await;
    assert!(
        reasons["msg_poison"].contains("single-object"),
        "{reasons:?}"
    );
    assert!(
        reasons["msg_truncated"].contains("does not match its schema"),
        "{reasons:?}"
    );
    bus.close().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_heals_after_the_broker_drops_its_connections() {
    let (agency, addr) = FakeAgency::start(&[]).await;
    let env = TestEnv::new(Some(addr)).await;
    let hub = env.start().await;
    let mut intake = IntakeClient::new(channel(&hub).await);
    intake
        .submit_school_referral(from_school(school_request("sub-before")))
        .await
        .unwrap();
    eventually(30, "the first delivery", || async {
        (agency.count() == 1).then_some(())
    })
    .await;

    // Close every connection of this test's vhost, as a broker restart would.
    close_connections(&env.vhost).await;

    let r = intake
        .submit_school_referral(from_school(school_request("sub-after")))
        .await
        .unwrap()
        .into_inner();
    eventually(60, "a delivery after the connections dropped", || async {
        agency.received(&r.referral_id).then_some(())
    })
    .await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_are_served() {
    let env = TestEnv::new(None).await;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    for service in ["himaya.v1.Intake", "himaya.v1.Cases", "himaya.v1.Directory"] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service}"
        );
    }
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut reflection = ServerReflectionClient::new(ch);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        stream.message().await.unwrap().unwrap().message_response
    else {
        panic!("no service list");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"himaya.v1.Intake".to_owned()), "{names:?}");
    hub.stop().await;
}

/// Records the order messages were handled in, slowly, as a busy consumer would.
struct Recorder {
    seen: std::sync::Mutex<Vec<String>>,
}

impl himaya_bus::Handler for Recorder {
    async fn handle(&self, msg: &himaya_bus::Incoming) -> Result<(), himaya_bus::HandleError> {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        self.seen
            .lock()
            .unwrap()
            .push(msg.message_id().unwrap_or("-").to_owned());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_urgent_message_jumps_the_routine_backlog() {
    let env = TestEnv::new(None).await;
    let bus = Bus::connect(env.amqp_url(), Topology::new(""))
        .await
        .unwrap();
    bus.declare_queue("lanes", Exchange::Events, &["lane.test"])
        .await
        .unwrap();
    let routine: Vec<Outgoing> = (0..300)
        .map(|i| raw("lane.test", vec![0], &format!("msg_routine_{i}")))
        .collect();
    for r in bus.publish_batch(&routine).await.unwrap() {
        r.unwrap();
    }
    let mut urgent = raw("lane.test", vec![0], "msg_urgent");
    urgent.priority = himaya_bus::URGENT_PRIORITY;
    bus.publish(&urgent).await.unwrap();

    let recorder = std::sync::Arc::new(Recorder {
        seen: std::sync::Mutex::new(Vec::new()),
    });
    let shutdown = tokio_util::sync::CancellationToken::new();
    let consumer = tokio::spawn(himaya_bus::consume(
        bus.clone(),
        "lanes".into(),
        1,
        recorder.clone(),
        shutdown.clone(),
    ));
    let position = eventually(30, "the urgent message handled", || {
        let recorder = recorder.clone();
        async move {
            let seen = recorder.seen.lock().unwrap();
            seen.iter().position(|m| m == "msg_urgent")
        }
    })
    .await;
    assert!(
        position < 10,
        "published after 300 routine messages, handled at position {position}"
    );
    shutdown.cancel();
    consumer.await.unwrap();
    bus.close().await;
}

/// What each pass over a message saw: its id, when it may have arrived
/// (`Incoming::since`), and when the pass's batch began. Each batch takes its time, as a
/// connector waiting for its agency does; `msg_retry` fails every pass.
struct Passes {
    seen: std::sync::Mutex<Vec<(String, std::time::Instant, std::time::Instant)>>,
}

impl himaya_bus::BatchHandler for Passes {
    type Item = (String, std::time::Instant);

    fn read(&self, msg: &himaya_bus::Incoming) -> Result<Self::Item, himaya_bus::HandleError> {
        Ok((msg.message_id().unwrap_or("-").to_owned(), msg.since()))
    }

    async fn handle_batch(&self, items: Vec<Self::Item>) -> Result<(), himaya_bus::HandleError> {
        let began = std::time::Instant::now();
        self.seen
            .lock()
            .unwrap()
            .extend(items.iter().map(|(id, since)| (id.clone(), *since, began)));
        if items.iter().any(|(id, _)| id == "msg_requeue") {
            return Err(himaya_bus::HandleError::requeue("its wait is over"));
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        if items.iter().any(|(id, _)| id == "msg_retry") {
            return Err(himaya_bus::HandleError::Retry {
                reason: "fails every pass".into(),
            });
        }
        Ok(())
    }
}

/// `ids` published to a queue of their own, then consumed in batches of two (four in
/// the channel at once: the broker's window is two batches) by a [`Passes`]; returns
/// what each pass saw once `done` says so (bounded), with the consumer stopped.
async fn passes_over<F>(
    ids: &[&str],
    done: F,
) -> Vec<(String, std::time::Instant, std::time::Instant)>
where
    F: Fn(&[(String, std::time::Instant, std::time::Instant)]) -> bool,
{
    let env = TestEnv::new(None).await;
    let bus = Bus::connect(env.amqp_url(), Topology::new(""))
        .await
        .unwrap();
    bus.declare_queue("held", Exchange::Events, &["held.test"])
        .await
        .unwrap();
    // All waiting before the consume begins: the broker sends the first four at once.
    let out: Vec<Outgoing> = ids.iter().map(|id| raw("held.test", vec![0], id)).collect();
    for r in bus.publish_batch(&out).await.unwrap() {
        r.unwrap();
    }
    let passes = std::sync::Arc::new(Passes {
        seen: std::sync::Mutex::new(Vec::new()),
    });
    let shutdown = tokio_util::sync::CancellationToken::new();
    let consumer = tokio::spawn(himaya_bus::consume_batches(
        bus.clone(),
        "held".into(),
        2,
        2,
        passes.clone(),
        shutdown.clone(),
    ));
    eventually(30, "the passes over the messages", || {
        let passes = passes.clone();
        let done = &done;
        async move { done(&passes.seen.lock().unwrap()).then_some(()) }
    })
    .await;
    shutdown.cancel();
    consumer.await.unwrap();
    bus.close().await;
    let seen = passes.seen.lock().unwrap().clone();
    seen
}

/// A handler that says a message goes back to its queue now (a delivery whose wait for
/// its agency is over: no call would be begun) has it given back without the three
/// in-process retries (200, 400 and 800 ms apart) a retryable failure gets: each
/// delivery of it is passed over twice (its batch, then alone), and it comes round at
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_given_back_goes_back_without_the_retries() {
    let seen = passes_over(&["msg_requeue"], |seen| seen.len() >= 8).await;
    let took = seen[7].2.duration_since(seen[0].2);
    eprintln!("eight passes in {took:?}");
    // With the retries, eight passes take at least 0.8 s: the first delivery's three
    // waits (at least 100, 200 and 400 ms: each is at least half its step) and the
    // second's first.
    assert!(
        took < std::time::Duration::from_millis(600),
        "eight passes took {took:?}: the message waited in process"
    );
}

/// A connector holds a delivery while its agency cannot answer, and the broker closes a
/// channel whose message is unacknowledged past its consumer timeout (30 minutes). The
/// hold is counted from when the message may have arrived, not from the pass that holds
/// it: a message that waited in the channel while the batch before it was handled
/// arrived before that batch began, and every pass over one delivery (the batch, then
/// the message alone with its in-process retries) sees the same instant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_counts_its_hold_from_when_it_arrived_not_from_each_pass() {
    // The batch, the message alone, its three in-process retries.
    let seen = passes_over(&["msg_0", "msg_1", "msg_2", "msg_retry"], |seen| {
        seen.iter().filter(|p| p.0 == "msg_retry").count() >= 5
    })
    .await;
    let first_began = seen[0].2;
    for id in ["msg_2", "msg_retry"] {
        let (_, since, began) = seen.iter().find(|p| p.0 == id).unwrap();
        assert!(
            *began >= first_began + std::time::Duration::from_millis(250),
            "{id} waited in the channel behind the first batch"
        );
        assert!(
            *since <= first_began,
            "{id} arrived before the first batch began; its hold counts from {:?} later",
            since.duration_since(first_began)
        );
    }
    let retried: Vec<_> = seen.iter().filter(|p| p.0 == "msg_retry").collect();
    assert!(
        retried[..5].iter().all(|p| p.1 == retried[0].1),
        "every pass over one delivery counts from the same instant"
    );
}

/// Under a backlog every batch is full, and the instant a message may have arrived
/// still follows the batches: the broker sends no more than two batches
/// unacknowledged, so a message taken two batches after another was sent after that
/// one was taken. Were it kept from the consume's start, a backlog would find its hold
/// already over, each message would go round the queue in seconds, and the queue's
/// delivery limit would park it within minutes of an agency's outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_backlog_the_instant_a_message_came_follows_the_batches() {
    let ids: Vec<String> = (0..10).map(|i| format!("msg_{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let seen = passes_over(&ids, |seen| seen.len() >= 10).await;
    let first_began = seen[0].2;
    let (id, since, began) = seen.last().unwrap();
    assert!(
        *since >= first_began + std::time::Duration::from_millis(250),
        "{id}, taken {:?} after the first batch, counts from before it",
        began.duration_since(first_began)
    );
    // Still a lower bound: from at least one batch before its own.
    assert!(
        *since + std::time::Duration::from_millis(250) <= *began,
        "{id} counts from no earlier than its own batch"
    );
}

/// One worker, held by a routine message the way a CPU-bound routine backlog holds a
/// runtime: the urgent message that arrives meanwhile is handled at once, on the
/// urgent runtime, through the urgent connection (`himaya_bus::urgent`). The test's own
/// waits are the thread's, not the runtime's: its one worker is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn an_urgent_message_is_handled_while_routine_work_holds_every_worker() {
    let env = TestEnv::new(None).await;
    let bus = Bus::connect(env.amqp_url(), Topology::new(""))
        .await
        .unwrap();
    let rt = himaya_bus::urgent::UrgentRuntime::start().unwrap();
    bus.set_urgent(
        himaya_bus::urgent::Urgent::connect(&rt, &bus)
            .await
            .unwrap(),
    );
    bus.declare_queue("held", Exchange::Events, &["held.test"])
        .await
        .unwrap();
    bus.publish(&raw("held.test", vec![0], "msg_holding"))
        .await
        .unwrap();
    let holder = std::sync::Arc::new(Holder::default());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let consumer = tokio::spawn(himaya_bus::consume(
        bus.clone(),
        "held".into(),
        4,
        holder.clone(),
        shutdown.clone(),
    ));
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !done() {
            assert!(std::time::Instant::now() < until, "{what} within 20 s");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    };
    wait_for("the routine message holding the worker", &|| {
        holder.started.load(std::sync::atomic::Ordering::SeqCst)
    });
    let mut urgent = raw("held.test", vec![0], "msg_urgent");
    urgent.priority = himaya_bus::URGENT_PRIORITY;
    let place = bus.urgent().unwrap().clone();
    let publisher = place.bus().clone();
    place.spawn(async move { publisher.publish(&urgent).await.unwrap() });
    wait_for("the urgent message handled", &|| {
        holder.urgent.lock().unwrap().is_some()
    });
    let (on_urgent_runtime, routine_done) = holder.urgent.lock().unwrap().unwrap();
    assert!(on_urgent_runtime, "handled on the urgent runtime");
    assert!(
        !routine_done,
        "handled while the routine message held the worker"
    );
    shutdown.cancel();
    consumer.await.unwrap();
    bus.close().await;
}

/// Holds its thread for the routine message; notes where, and when, the urgent one
/// was handled.
#[derive(Default)]
struct Holder {
    started: std::sync::atomic::AtomicBool,
    done: std::sync::atomic::AtomicBool,
    urgent: std::sync::Mutex<Option<(bool, bool)>>,
}

impl himaya_bus::Handler for Holder {
    async fn handle(&self, msg: &himaya_bus::Incoming) -> Result<(), himaya_bus::HandleError> {
        use std::sync::atomic::Ordering::SeqCst;
        if msg.message_id() == Some("msg_holding") {
            self.started.store(true, SeqCst);
            std::thread::sleep(std::time::Duration::from_secs(5));
            self.done.store(true, SeqCst);
        } else {
            *self.urgent.lock().unwrap() =
                Some((himaya_bus::urgent::is_current(), self.done.load(SeqCst)));
        }
        Ok(())
    }
}

/// Parks every message until its cause is "fixed", then records what it handles.
struct Fixable {
    fixed: std::sync::atomic::AtomicBool,
    handled: std::sync::Mutex<Vec<String>>,
}

impl himaya_bus::Handler for Fixable {
    async fn handle(&self, msg: &himaya_bus::Incoming) -> Result<(), himaya_bus::HandleError> {
        if !self.fixed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(himaya_bus::HandleError::Park {
                reason: "service code `X-1` is not on the service map".into(),
            });
        }
        let mut handled = self.handled.lock().unwrap();
        let id = msg.message_id().unwrap_or("-").to_owned();
        // Idempotent, as every consumer of the hub: a second copy has no effect.
        if !handled.contains(&id) {
            handled.push(id);
        }
        Ok(())
    }
}

async fn parked_ids(bus: &Bus) -> Vec<String> {
    let mut ids: Vec<String> = bus
        .parked(1000)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.message_id)
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_messages_are_listed_kept_and_replayed_once_the_cause_is_fixed() {
    use himaya_bus::Selection;
    use lapin::options::{BasicGetOptions, BasicNackOptions, QueueDeleteOptions};

    let env = TestEnv::new(None).await;
    let bus = Bus::connect(env.amqp_url(), Topology::new(""))
        .await
        .unwrap();
    for (queue, key) in [
        ("fixable", "fix.test"),
        ("gone", "gone.test"),
        ("stuck", "stuck.test"),
    ] {
        bus.declare_queue(queue, Exchange::Events, &[key])
            .await
            .unwrap();
    }
    let handler = std::sync::Arc::new(Fixable {
        fixed: false.into(),
        handled: std::sync::Mutex::new(Vec::new()),
    });
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut consumers = Vec::new();
    for queue in ["fixable", "gone"] {
        consumers.push(tokio::spawn(himaya_bus::consume(
            bus.clone(),
            queue.into(),
            4,
            handler.clone(),
            shutdown.clone(),
        )));
    }
    for (key, id) in [
        ("fix.test", "msg_a"),
        ("fix.test", "msg_b"),
        ("gone.test", "msg_gone"),
    ] {
        bus.publish(&raw(key, vec![1, 2, 3], id)).await.unwrap();
    }

    // A message no consumer ever handles: the quorum queue's delivery limit parks it.
    bus.publish(&raw("stuck.test", vec![4], "msg_stuck"))
        .await
        .unwrap();
    let ch = bus.channel().await.unwrap();
    for _ in 0..100 {
        let get = ch
            .basic_get("stuck".into(), BasicGetOptions { no_ack: false })
            .await
            .unwrap();
        let Some(m) = get else { break };
        ch.basic_nack(
            m.delivery.delivery_tag,
            BasicNackOptions {
                requeue: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }

    eventually(30, "four messages parked", || async {
        (parked_ids(&bus).await.len() == 4).then_some(())
    })
    .await;
    let listed = bus.parked(10).await.unwrap();
    let a = listed.iter().find(|p| p.message_id == "msg_a").unwrap();
    assert_eq!(a.from_queue.as_deref(), Some("fixable"));
    assert_eq!(a.reason, "service code `X-1` is not on the service map");
    assert_eq!(a.event_type, ReferralCreated::NAME);
    assert_eq!(a.bytes, 3);
    assert!(a.parked_at.is_some());
    let stuck = listed.iter().find(|p| p.message_id == "msg_stuck").unwrap();
    assert_eq!(stuck.from_queue.as_deref(), Some("stuck"));
    assert!(stuck.reason.contains("delivery limit"), "{}", stuck.reason);
    // Listing takes nothing away, keeps the order (however often: a look is not a
    // delivery that counts towards a limit), and a limit is a limit.
    let order: Vec<String> = listed.iter().map(|p| p.message_id.clone()).collect();
    for _ in 0..25 {
        let again: Vec<String> = bus
            .parked(10)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.message_id)
            .collect();
        assert_eq!(again, order);
    }
    assert_eq!(bus.parked(2).await.unwrap().len(), 2);
    assert_eq!(bus.parked_count().await.unwrap(), 4);

    // The cause is fixed: one message first, by id.
    handler
        .fixed
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let report = bus
        .replay_parked(&Selection::Ids(vec!["msg_a".into()]))
        .await
        .unwrap();
    assert_eq!(
        report.replayed,
        vec![("msg_a".to_owned(), "fixable".to_owned())]
    );
    assert_eq!((report.kept.len(), report.unselected), (0, 3));
    eventually(30, "msg_a handled", || async {
        (handler.handled.lock().unwrap().as_slice() == ["msg_a"]).then_some(())
    })
    .await;
    assert_eq!(parked_ids(&bus).await, ["msg_b", "msg_gone", "msg_stuck"]);

    // A queue that no longer exists keeps its message parked, and says so.
    shutdown.cancel();
    for c in consumers {
        c.await.unwrap();
    }
    ch.queue_delete("gone".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    let report = bus.replay_parked(&Selection::All).await.unwrap();
    let mut replayed = report.replayed.clone();
    replayed.sort();
    assert_eq!(
        replayed,
        [
            ("msg_b".to_owned(), "fixable".to_owned()),
            ("msg_stuck".to_owned(), "stuck".to_owned())
        ]
    );
    assert_eq!(report.kept.len(), 1);
    assert_eq!(report.kept[0].0, "msg_gone");
    assert!(
        report.kept[0].1.contains("no longer exists"),
        "{:?}",
        report.kept
    );
    assert_eq!(parked_ids(&bus).await, ["msg_gone"]);

    // The replayed copy is back in its queue without its parking headers.
    let back = ch
        .basic_get("stuck".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    let headers = back
        .delivery
        .properties
        .headers()
        .clone()
        .unwrap_or_default();
    assert!(headers.inner().contains_key("x-himaya-replayed-at"));
    assert!(!headers.inner().contains_key("x-first-death-queue"));
    assert_eq!(back.delivery.data, vec![4]);
    bus.close().await;
}

/// Adds one row to the outbox of `pool`'s schema, in a transaction of its own: one
/// notification to the relay, as every service write makes.
async fn enqueue_row(pool: &sqlx::PgPool, message_id: &str) {
    let mut conn = pool.acquire().await.unwrap();
    himaya_store::outbox::enqueue(&mut conn, &raw("relay.test", vec![1], message_id))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_do_not_cut_the_relay_backoff_short_while_the_broker_is_down() {
    use himaya_store::relay::{run_relay_with_stats, RelayConfig, RelayStats};
    use std::time::{Duration, Instant};

    let env = TestEnv::new(None).await;
    let pool = himaya_store::connect(&env.db_url, "relay_t", 4)
        .await
        .unwrap();
    let bus = Bus::connect(env.amqp_url(), Topology::new(""))
        .await
        .unwrap();
    bus.declare_queue("relayed", Exchange::Events, &["relay.test"])
        .await
        .unwrap();
    let stats = std::sync::Arc::new(RelayStats::default());
    let shutdown = tokio_util::sync::CancellationToken::new();
    // A slow poll: rounds start on notifications (and, once failing, on the backoff).
    let cfg = RelayConfig::new(Duration::from_secs(5), 100);
    let relay = tokio::spawn(run_relay_with_stats(
        pool.clone(),
        bus.clone(),
        cfg,
        shutdown.clone(),
        stats.clone(),
    ));
    // The first round follows the LISTEN: from then on a row goes out on its notification.
    eventually(30, "the relay's first round", || async {
        (stats.rounds() >= 1).then_some(())
    })
    .await;
    enqueue_row(&pool, "msg_relay_first").await;
    let sent = "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL";
    wait_count(&pool, sent, 1, 30, "a row relayed on its notification").await;

    // The broker goes away: the vhost is deleted, its connections closed, and every
    // reconnection refused until it is back.
    let api = env_or("HIMAYA_TEST_RABBIT_API", "http://127.0.0.1:15672");
    let http = http();
    let vhost_url = format!("{api}/api/vhosts/{}", env.vhost);
    let gone = http
        .delete(&vhost_url)
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .unwrap();
    assert!(gone.status().is_success(), "{}", gone.status());
    eventually(30, "the broker unreachable", || async {
        bus.channel().await.is_err().then_some(())
    })
    .await;

    // Many writes, each notifying the relay, paced as a busy hub makes them.
    const N: u64 = 200;
    let (rounds0, failed0, notified0) =
        (stats.rounds(), stats.failed_rounds(), stats.notifications());
    let started = Instant::now();
    for i in 0..N {
        enqueue_row(&pool, &format!("msg_relay_{i}")).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eventually(60, "every notification received by the relay", || async {
        (stats.notifications() >= notified0 + N).then_some(())
    })
    .await;
    let elapsed = started.elapsed();
    let rounds = stats.rounds() - rounds0;
    let failed = stats.failed_rounds() - failed0;
    eprintln!(
        "{N} notifications in {} ms with the broker down: {rounds} relay rounds, {failed} failed",
        elapsed.as_millis()
    );
    assert!(failed >= 1, "the relay never tried the broker");
    // The first notification wakes an idle relay; after that each round follows a
    // backoff of at least 200 ms (half the first step, the jitter's floor), whatever
    // the notifications in between.
    let bound = 2 + elapsed.as_millis() as u64 / 200;
    assert!(
        rounds <= bound,
        "{rounds} rounds for {N} notifications in {} ms (at most {bound} expected)",
        elapsed.as_millis()
    );

    // The broker is back: the relay finds it at its next step and sends everything.
    let back = http
        .put(&vhost_url)
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .unwrap();
    assert!(back.status().is_success());
    http.put(format!("{api}/api/permissions/{}/guest", env.vhost))
        .basic_auth("guest", Some("guest"))
        .json(&serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"}))
        .send()
        .await
        .unwrap();
    let again = Bus::connect(env.amqp_url(), Topology::new(""))
        .await
        .unwrap();
    again
        .declare_queue("relayed", Exchange::Events, &["relay.test"])
        .await
        .unwrap();
    let all = i64::try_from(N).unwrap() + 1;
    wait_count(
        &pool,
        sent,
        all,
        60,
        "every row relayed once the broker is back",
    )
    .await;
    shutdown.cancel();
    relay.await.unwrap();
    again.close().await;
    bus.close().await;
    pool.close().await;
}

/// Runs a `himaya parked` command as the command line does; what it printed, or why it
/// failed.
async fn parked_cli(bus: &Bus, cmd: himaya::cli::parked::BusCommand) -> Result<String, String> {
    let mut out = Vec::new();
    let result = himaya::cli::parked::bus_command(cmd, bus, &mut out).await;
    let printed = String::from_utf8(out).unwrap();
    result.map(|()| printed).map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_messages_without_a_message_id_each_have_an_id_of_their_own() {
    use himaya::cli::parked::BusCommand;
    use himaya::client::Lang;
    use lapin::options::{BasicGetOptions, BasicPublishOptions};

    let env = TestEnv::new(None).await;
    let bus = Bus::connect(env.amqp_url(), Topology::new(""))
        .await
        .unwrap();
    bus.declare_queue("noid", Exchange::Events, &["noid.test"])
        .await
        .unwrap();
    // Two messages without a message id (a foreign producer's), parked by their consumer
    // in order (prefetch 1).
    let ch = bus.channel().await.unwrap();
    for body in [vec![1u8, 2, 3], vec![4u8, 5, 6, 7, 8]] {
        ch.basic_publish(
            "".into(),
            "noid".into(),
            BasicPublishOptions::default(),
            &body,
            lapin::BasicProperties::default(),
        )
        .await
        .unwrap();
    }
    let handler = std::sync::Arc::new(Fixable {
        fixed: false.into(),
        handled: std::sync::Mutex::new(Vec::new()),
    });
    let shutdown = tokio_util::sync::CancellationToken::new();
    let consumer = tokio::spawn(himaya_bus::consume(
        bus.clone(),
        "noid".into(),
        1,
        handler,
        shutdown.clone(),
    ));
    eventually(30, "two messages parked", || async {
        (bus.parked_count().await.ok()? == 2).then_some(())
    })
    .await;
    shutdown.cancel();
    consumer.await.unwrap();

    let lang = Lang::En;
    let listed = parked_cli(&bus, BusCommand::List { limit: 50, lang })
        .await
        .unwrap();
    let ids: Vec<String> = listed
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), 2, "{listed}");
    assert_ne!(
        ids[0], ids[1],
        "each parked message has an id of its own:\n{listed}"
    );
    assert!(!ids.iter().any(|id| id == "-"), "{listed}");
    // The ids are the messages' own: the same at every look.
    let again = parked_cli(&bus, BusCommand::List { limit: 50, lang })
        .await
        .unwrap();
    assert_eq!(again, listed);

    // The second, by its id: its envelope, then back to its queue.
    let shown = parked_cli(
        &bus,
        BusCommand::Show {
            id: ids[1].clone(),
            lang,
        },
    )
    .await
    .unwrap();
    assert!(shown.starts_with(&ids[1]), "{shown}");
    assert!(
        shown.contains("body: 5 B"),
        "the second message's size:\n{shown}"
    );
    let replayed = parked_cli(
        &bus,
        BusCommand::Replay {
            ids: vec![ids[1].clone()],
            id: Vec::new(),
            all: false,
            from_queue: None,
            lang,
        },
    )
    .await
    .unwrap();
    assert!(
        replayed.contains(&format!("replayed {} → noid", ids[1])),
        "{replayed}"
    );
    assert!(
        replayed.contains("replayed 1, kept 0, not selected 1"),
        "{replayed}"
    );
    let back = ch
        .basic_get("noid".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.delivery.data, vec![4u8, 5, 6, 7, 8]);
    assert!(ch
        .basic_get("noid".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .is_none());
    let left: Vec<String> = bus
        .parked(10)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(
        left,
        [ids[0].clone()],
        "the first stays parked, under its id"
    );
    bus.close().await;
}

/// A broker "node" in front of the real broker: a TCP relay that can be killed, cutting
/// every connection through it and refusing new ones, as a node killed with SIGKILL.
struct Node {
    addr: std::net::SocketAddr,
    relays: tokio::task::JoinSet<()>,
}

impl Node {
    async fn start(to: std::net::SocketAddr) -> Node {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut relays = tokio::task::JoinSet::new();
        relays.spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                conns.spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        });
        Node { addr, relays }
    }

    /// Every connection cut, the port closed.
    async fn kill(mut self) {
        self.relays.shutdown().await;
    }
}

/// A hub whose `bus.urls` are a node that is down, then `node` (in front of the real
/// broker), then the real broker; `bus.url` says the node that is down.
async fn hub_behind(node: &Node, env: &mut TestEnv) -> himaya::hub::Hub {
    use himaya_settings::SecretString;
    let amqp = env.amqp_url();
    let broker = broker_addr(&amqp);
    // No node listens here (bound, never listening: refused).
    let (_dead, dead_port) = reserved_port();
    let through = |port: u16| amqp.replacen(&format!(":{}", broker.port()), &format!(":{port}"), 1);
    env.settings.bus.url = SecretString::from(through(dead_port));
    env.settings.bus.urls = vec![
        SecretString::from(through(node.addr.port())),
        SecretString::from(amqp.clone()),
    ];
    env.start().await
}

fn broker_addr(amqp: &str) -> std::net::SocketAddr {
    let u = reqwest::Url::parse(amqp).unwrap();
    format!("{}:{}", u.host_str().unwrap(), u.port().unwrap_or(5672))
        .parse()
        .unwrap()
}

/// `bus.urls`: the hub connects to the first node that answers, and when its node dies
/// it carries on through the next without that node coming back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_moves_to_another_broker_node_when_its_node_dies() {
    let (agency, addr) = FakeAgency::start(&[]).await;
    let mut env = TestEnv::new(Some(addr)).await;
    let node = Node::start(broker_addr(&env.amqp_url())).await;
    let hub = hub_behind(&node, &mut env).await;
    let mut intake = IntakeClient::new(channel(&hub).await);
    intake
        .submit_school_referral(from_school(school_request("sub-node-a")))
        .await
        .unwrap();
    eventually(
        30,
        "a delivery through the first node that answers",
        || async { (agency.count() == 1).then_some(()) },
    )
    .await;

    node.kill().await;

    let r = intake
        .submit_school_referral(from_school(school_request("sub-node-b")))
        .await
        .unwrap()
        .into_inner();
    eventually(60, "a delivery through the next node", || async {
        agency.received(&r.referral_id).then_some(())
    })
    .await;
    hub.stop().await;
}

/// A delivery the connector holds when its broker node dies (the agency still
/// answering) cannot be acknowledged on the dead connection: the connector's consumer
/// comes back on the next node, the broker gives the delivery again (the connector's
/// inbox knows it; any call made again carries the same idempotency key), its answer is
/// recorded once, and what comes after is delivered too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_in_hand_when_its_node_dies_is_made_again_through_the_next() {
    let (agency, addr) = FakeAgency::scripted(vec![Step::Slow(1_500, 201)]).await;
    let mut env = TestEnv::new(Some(addr)).await;
    let node = Node::start(broker_addr(&env.amqp_url())).await;
    let hub = hub_behind(&node, &mut env).await;
    let mut intake = IntakeClient::new(channel(&hub).await);
    let first = intake
        .submit_school_referral(from_school(school_request("sub-held-a")))
        .await
        .unwrap()
        .into_inner();
    // The agency has the request and answers in 1.5 s: the node dies meanwhile.
    eventually(30, "the first delivery at the agency", || async {
        (agency.count() == 1).then_some(())
    })
    .await;
    node.kill().await;

    let second = intake
        .submit_school_referral(from_school(school_request("sub-held-b")))
        .await
        .unwrap()
        .into_inner();
    eventually(60, "both deliveries through the next node", || async {
        agency.received(&second.referral_id).then_some(())
    })
    .await;
    let pool = env.pool().await;
    wait_count(
        &pool,
        &format!(
            "SELECT count(*) FROM cases.referral_deliveries WHERE referral_id = '{}' AND outcome = 'delivered'",
            first.referral_id
        ),
        1,
        60,
        "the first referral's answer recorded once",
    )
    .await;
    let keys: Vec<_> = agency
        .requests()
        .into_iter()
        .filter(|s| s.body["referral_id"] == first.referral_id)
        .map(|s| s.idempotency_key)
        .collect();
    // Made again or not (the connector may have recorded it before the node died), the
    // agency sees one key for it.
    assert!(keys[0].is_some(), "{keys:?}");
    assert!(keys.windows(2).all(|w| w[0] == w[1]), "{keys:?}");
    hub.stop().await;
}

/// Records when each of its batches was handled (each takes 150 ms).
struct Turns {
    spans: std::sync::Mutex<Vec<(std::time::Instant, std::time::Instant)>>,
}

impl himaya_bus::BatchHandler for Turns {
    type Item = ();

    fn read(&self, _msg: &himaya_bus::Incoming) -> Result<(), himaya_bus::HandleError> {
        Ok(())
    }

    async fn handle_batch(&self, _items: Vec<()>) -> Result<(), himaya_bus::HandleError> {
        let began = std::time::Instant::now();
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        self.spans
            .lock()
            .unwrap()
            .push((began, std::time::Instant::now()));
        Ok(())
    }
}

/// Two consumers of three messages each, one message a batch, on a bus allowing
/// `turns` background transactions at once (0: no bound): when each batch ran.
async fn two_consumers_with_turns(turns: u32) -> Vec<(std::time::Instant, std::time::Instant)> {
    let env = TestEnv::new(None).await;
    let bus = Bus::connect(env.amqp_url(), Topology::new(""))
        .await
        .unwrap();
    bus.set_background(turns);
    let turns = std::sync::Arc::new(Turns {
        spans: std::sync::Mutex::new(Vec::new()),
    });
    let shutdown = tokio_util::sync::CancellationToken::new();
    // Both queues full before either consumer starts, so that they start together.
    for q in ["turn_a", "turn_b"] {
        let key = format!("{q}.test");
        bus.declare_queue(q, Exchange::Events, &[key.as_str()])
            .await
            .unwrap();
        let out: Vec<Outgoing> = (0..3)
            .map(|i| raw(&key, vec![0], &format!("{q}_{i}")))
            .collect();
        for r in bus.publish_batch(&out).await.unwrap() {
            r.unwrap();
        }
    }
    let mut consumers = Vec::new();
    for q in ["turn_a", "turn_b"] {
        consumers.push(tokio::spawn(himaya_bus::consume_batches(
            bus.clone(),
            q.into(),
            1,
            1,
            turns.clone(),
            shutdown.clone(),
        )));
    }
    eventually(30, "six batches handled", || {
        let turns = turns.clone();
        async move { (turns.spans.lock().unwrap().len() >= 6).then_some(()) }
    })
    .await;
    shutdown.cancel();
    for c in consumers {
        c.await.unwrap();
    }
    bus.close().await;
    let spans = turns.spans.lock().unwrap().clone();
    spans
}

/// How many pairs of `spans` overlap in time.
fn overlapping(spans: &[(std::time::Instant, std::time::Instant)]) -> usize {
    let mut n = 0;
    for (i, a) in spans.iter().enumerate() {
        for b in &spans[i + 1..] {
            if a.0 < b.1 && b.0 < a.1 {
                n += 1;
            }
        }
    }
    n
}

/// `database.background_transactions`: with one turn, two consumers' routine batches
/// run one after the other; without a bound, side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routine_batches_take_background_turns() {
    let one = two_consumers_with_turns(1).await;
    assert_eq!(overlapping(&one), 0, "one turn: no two batches at once");
    let unbounded = two_consumers_with_turns(0).await;
    assert!(
        overlapping(&unbounded) > 0,
        "without a bound the two consumers ran one after the other: the test shows nothing"
    );
}
