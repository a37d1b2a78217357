//! The outbox relay's leases: a relay holds no transaction while the broker confirms,
//! so what keeps two relays off the same row is the lease each claim takes. A relay that
//! dies holding leases delays its rows until they expire, and another relay sends them
//! (again, if they had gone out: the consumers' inbox drops the copy); relays running
//! together publish every row once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::helpers::*;
use himaya_bus::{Bus, Exchange, Outgoing, Topology, URGENT_PRIORITY};
use himaya_store::handover::{Handed, Handover};
use himaya_store::relay::{run_relay_with_stats, Relay, RelayConfig, RelayStats, Round};
use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::types::FieldTable;

fn row(message_id: &str, priority: u8) -> Outgoing {
    Outgoing {
        exchange: Exchange::Events,
        routing_key: "relay.lease".into(),
        payload: vec![1],
        message_id: message_id.into(),
        event_type: "himaya.v1.ReferralCreated".into(),
        priority,
        headers: BTreeMap::new(),
    }
}

/// Adds `ids` to the outbox of `pool`'s schema in one transaction (one notification
/// per row, all delivered at its commit); every 50th urgent.
async fn enqueue_all(pool: &sqlx::PgPool, ids: &[String]) {
    let mut tx = pool.begin().await.unwrap();
    for (i, id) in ids.iter().enumerate() {
        let priority = if i % 50 == 49 { URGENT_PRIORITY } else { 0 };
        himaya_store::outbox::enqueue(&mut tx, &row(id, priority))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
}

/// The ready messages of `queue` and its urgent lane.
async fn ready(bus: &Bus, queue: &str) -> u32 {
    let ch = bus.channel().await.unwrap();
    let mut n = 0;
    for q in [queue.to_owned(), himaya_bus::urgent_queue(queue)] {
        let declared = ch
            .queue_declare(
                q.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        n += declared.message_count();
    }
    let _ = ch.close(200, "counted".into()).await;
    n
}

/// Takes every message off `queue` and its urgent lane: how many copies of each
/// message id arrived.
async fn drain(bus: &Bus, queue: &str) -> BTreeMap<String, u32> {
    let ch = bus.channel().await.unwrap();
    let mut copies = BTreeMap::new();
    for q in [queue.to_owned(), himaya_bus::urgent_queue(queue)] {
        while let Some(m) = ch
            .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            let id = m
                .delivery
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default();
            *copies.entry(id).or_insert(0) += 1;
        }
    }
    let _ = ch.close(200, "drained".into()).await;
    copies
}

/// A test's database with an outbox schema, and a queue of its own bound to the relayed
/// routing key.
async fn outbox_and_queue(queue: &str) -> (TestEnv, sqlx::PgPool, std::sync::Arc<Bus>) {
    let env = TestEnv::new(None).await;
    let pool = himaya_store::connect(&env.db_url, "lease_t", 4)
        .await
        .unwrap();
    let bus = Bus::connect(env.amqp_url(), Topology::new(""))
        .await
        .unwrap();
    bus.declare_queue(queue, Exchange::Events, &["relay.lease"])
        .await
        .unwrap();
    (env, pool, bus)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_of_a_relay_that_died_holding_their_lease_go_out_once_it_expires() {
    // The environment lives to the end: dropping it drops the database.
    let (_env, pool, bus) = outbox_and_queue("leased").await;
    let lease = Duration::from_secs(4);
    let short = |batch| RelayConfig {
        lease,
        ..RelayConfig::new(Duration::from_secs(1), batch)
    };

    // Relay A1 claims a full batch, publishes it and dies before recording the
    // broker's confirms (a full batch's are recorded by the next claim, which never
    // comes): the rows went out, but stay unsent, leased to A1.
    let first: Vec<String> = (0..3).map(|i| format!("msg_lease_{i}")).collect();
    enqueue_all(&pool, &first).await;
    let leased_at = Instant::now();
    let mut a1 = Relay::named(short(3), "relay-a1");
    let round = a1.round(&pool, &bus).await.unwrap();
    assert_eq!(
        round,
        Round {
            claimed: 3,
            sent: 3
        }
    );
    drop(a1);
    // Relay A2 claims the next rows and dies before publishing them.
    let second: Vec<String> = (3..5).map(|i| format!("msg_lease_{i}")).collect();
    enqueue_all(&pool, &second).await;
    let claimed_at = Instant::now();
    let mut a2 = Relay::named(short(100), "relay-a2");
    assert_eq!(a2.claim(&pool).await.unwrap(), 2);
    drop(a2);
    let unsent = "SELECT count(*) FROM outbox WHERE sent_at IS NULL";
    assert_eq!(count(&pool, unsent).await, 5);

    // Relay B passes over rows leased to others, then sends them once the leases expire.
    let mut b = Relay::named(RelayConfig::new(Duration::from_secs(1), 100), "relay-b");
    let early = b.round(&pool, &bus).await.unwrap();
    if leased_at.elapsed() < lease {
        assert_eq!(
            early,
            Round::default(),
            "B took rows still leased to A1 and A2"
        );
    }
    let mut sent = early.sent;
    let deadline = Instant::now() + Duration::from_secs(30);
    while sent < 5 {
        assert!(Instant::now() < deadline, "B sent {sent} of the 5 rows");
        tokio::time::sleep(Duration::from_millis(50)).await;
        sent += b.round(&pool, &bus).await.unwrap().sent;
    }
    assert!(
        claimed_at.elapsed() >= lease,
        "sent before A2's lease expired"
    );
    assert_eq!(sent, 5);
    assert_eq!(count(&pool, unsent).await, 0);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM outbox WHERE leased_by = 'relay-b' AND lease_until IS NULL"
        )
        .await,
        5
    );

    // A1's batch twice (a duplicate after a crash, which the inbox drops), A2's once.
    let copies = drain(&bus, "leased").await;
    let want: BTreeMap<String, u32> = first
        .iter()
        .map(|id| (id.clone(), 2))
        .chain(second.iter().map(|id| (id.clone(), 1)))
        .collect();
    assert_eq!(copies, want);
    bus.close().await;
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_running_together_publish_every_row_once() {
    const N: usize = 5_000;
    let (env, pool, bus) = outbox_and_queue("shared").await;

    // Two relays as in two processes: a pool and a broker connection each.
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut relays = Vec::new();
    let mut stats = Vec::new();
    for _ in 0..2 {
        let relay_pool = himaya_store::pool_of(&env.db_url, "lease_t", 3).unwrap();
        let relay_bus = Bus::connect(env.amqp_url(), Topology::new(""))
            .await
            .unwrap();
        let s = Arc::new(RelayStats::default());
        stats.push(s.clone());
        relays.push(tokio::spawn(run_relay_with_stats(
            relay_pool,
            relay_bus,
            RelayConfig::new(Duration::from_secs(5), 100),
            shutdown.clone(),
            s,
        )));
    }
    // Both listening (their first round follows the LISTEN): the commit wakes both.
    eventually(30, "both relays' first round", || async {
        stats.iter().all(|s| s.rounds() >= 1).then_some(())
    })
    .await;
    let ids: Vec<String> = (0..N).map(|i| format!("msg_shared_{i}")).collect();
    enqueue_all(&pool, &ids).await;

    let n = i64::try_from(N).unwrap();
    wait_count(
        &pool,
        "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL",
        n,
        120,
        "every row relayed",
    )
    .await;
    shutdown.cancel();
    for r in relays {
        r.await.unwrap();
    }
    let by_relay: Vec<(String, i64)> = sqlx::query_as(
        "SELECT leased_by, count(*) FROM outbox GROUP BY leased_by ORDER BY leased_by",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    eprintln!("rows sent by each relay: {by_relay:?}");
    assert_eq!(by_relay.len(), 2, "both relays took part: {by_relay:?}");

    // Every confirmed message is on the queues: each row once, no more.
    eventually(30, "every message on the queues", || async {
        (ready(&bus, "shared").await as usize >= N).then_some(())
    })
    .await;
    let copies = drain(&bus, "shared").await;
    let twice: Vec<_> = copies.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "published more than once: {twice:?}");
    assert_eq!(copies.values().sum::<u32>() as usize, N);
    let seen: BTreeSet<&String> = copies.keys().collect();
    assert_eq!(seen, ids.iter().collect::<BTreeSet<_>>());
    bus.close().await;
    pool.close().await;
}

/// Where autovacuum is off, a relay analyzes the tables of its schema that grew: the
/// planner's statistics follow the tables instead of staying those of an empty schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_that_grew_are_analyzed_and_the_others_left_alone() {
    let env = TestEnv::new(None).await;
    let pool = himaya_store::connect(&env.db_url, "analyze_t", 2)
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE grown (n int PRIMARY KEY);
         CREATE TABLE quiet (n int PRIMARY KEY);
         INSERT INTO grown SELECT generate_series(1, 2000);
         INSERT INTO quiet VALUES (1);",
    )
    .execute(&pool)
    .await
    .unwrap();
    // The server counts changes a little after they commit.
    let changed = "SELECT count(*) FROM pg_stat_user_tables
                    WHERE schemaname = 'analyze_t' AND n_mod_since_analyze > 0";
    wait_count(&pool, changed, 2, 30, "the changes counted").await;
    himaya_store::relay::analyze_grown(&pool).await;
    let analyzed: Vec<(String, Option<f32>)> = sqlx::query_as(
        "SELECT s.relname::text, CASE WHEN s.last_analyze IS NULL THEN NULL ELSE c.reltuples END
           FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
          WHERE s.schemaname = 'analyze_t' AND s.relname IN ('grown', 'quiet') ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        analyzed,
        vec![("grown".into(), Some(2000.0)), ("quiet".into(), None)],
        "the grown table analyzed with its true size, the one of one row left alone"
    );

    // Both grow again at once: the small one is analyzed straight away (its plans are
    // those of a near-empty table), the large one only 10 s after its last analyze.
    sqlx::raw_sql(
        "INSERT INTO grown SELECT generate_series(2001, 3000);
         INSERT INTO quiet SELECT generate_series(2, 400);",
    )
    .execute(&pool)
    .await
    .unwrap();
    let changed = "SELECT count(*) FROM pg_stat_user_tables
                    WHERE schemaname = 'analyze_t' AND n_mod_since_analyze > 300";
    wait_count(&pool, changed, 2, 30, "the new changes counted").await;
    himaya_store::relay::analyze_grown(&pool).await;
    let sizes: Vec<(String, f32)> = sqlx::query_as(
        "SELECT relname::text, reltuples FROM pg_class
          WHERE relnamespace = 'analyze_t'::regnamespace AND relname IN ('grown', 'quiet')
          ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        sizes,
        vec![("grown".into(), 2000.0), ("quiet".into(), 400.0)],
        "the small table analyzed at once, the large one left for now"
    );

    // The large one more than doubles since its last analyze (2,000 rows then, 5,000
    // now): its plans are those of a table less than half its size, so it is analyzed
    // at once, without waiting out the 10 s.
    sqlx::raw_sql("INSERT INTO grown SELECT generate_series(3001, 5000)")
        .execute(&pool)
        .await
        .unwrap();
    let changed = "SELECT count(*) FROM pg_stat_user_tables
                    WHERE schemaname = 'analyze_t' AND relname = 'grown' AND n_live_tup >= 5000";
    wait_count(&pool, changed, 1, 30, "the doubling counted").await;
    himaya_store::relay::analyze_grown(&pool).await;
    let grown: f32 = sqlx::query_scalar(
        "SELECT reltuples FROM pg_class
          WHERE relnamespace = 'analyze_t'::regnamespace AND relname = 'grown'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(grown, 5000.0, "the table that doubled analyzed at once");
}

/// The urgent relay claims urgent rows only, by the claim's index (it never walks the
/// routine backlog); the relay beside it takes the routine rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_urgent_relay_claims_urgent_rows_only() {
    let (_env, pool, bus) = outbox_and_queue("urgent_only").await;
    // 100 rows, every 50th urgent: two urgent among 98 routine.
    let ids: Vec<String> = (0..100).map(|i| format!("msg_urgent_only_{i}")).collect();
    enqueue_all(&pool, &ids).await;
    let cfg = RelayConfig::new(Duration::from_secs(1), 10);
    let mut urgent = Relay::urgent(cfg, "relay-u");
    let round = urgent.round(&pool, &bus).await.unwrap();
    assert_eq!(
        round,
        Round {
            claimed: 2,
            sent: 2
        }
    );
    let sent: Vec<(String, i16)> = sqlx::query_as(
        "SELECT message_id, priority FROM outbox WHERE sent_at IS NOT NULL ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let urgent_ids = vec![
        (ids[49].clone(), i16::from(URGENT_PRIORITY)),
        (ids[99].clone(), i16::from(URGENT_PRIORITY)),
    ];
    assert_eq!(sent, urgent_ids);
    // Nothing urgent left: a round claims nothing, whatever waits behind.
    assert_eq!(urgent.round(&pool, &bus).await.unwrap(), Round::default());
    let mut relay = Relay::named(RelayConfig::new(Duration::from_secs(1), 200), "relay-r");
    assert_eq!(relay.round(&pool, &bus).await.unwrap().sent, 98);
    // Their connections back to the pool, which closes only once it has them all.
    drop((urgent, relay));
    bus.close().await;
    pool.close().await;
}

/// An urgent row's notification wakes the urgent relay, which publishes it; a routine
/// row's wakes the relay alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_urgent_row_wakes_the_urgent_relay_and_a_routine_row_does_not() {
    let (_env, pool, bus) = outbox_and_queue("urgent_wake").await;
    let stats = Arc::new(RelayStats::default());
    let shutdown = tokio_util::sync::CancellationToken::new();
    // A slow poll: rounds start on notifications.
    let relay = tokio::spawn(run_relay_with_stats(
        pool.clone(),
        bus.clone(),
        RelayConfig::new(Duration::from_secs(30), 100),
        shutdown.clone(),
        stats.clone(),
    ));
    eventually(30, "the relay's first round", || async {
        (stats.rounds() >= 1).then_some(())
    })
    .await;
    let sent = "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL";
    let mut conn = pool.acquire().await.unwrap();
    himaya_store::outbox::enqueue(&mut conn, &row("msg_wake_routine", 0))
        .await
        .unwrap();
    wait_count(&pool, sent, 1, 30, "the routine row relayed").await;
    assert_eq!(
        stats.urgent_rounds(),
        0,
        "a routine row woke the urgent relay"
    );
    himaya_store::outbox::enqueue(&mut conn, &row("msg_wake_urgent", URGENT_PRIORITY))
        .await
        .unwrap();
    wait_count(&pool, sent, 2, 30, "the urgent row relayed").await;
    eventually(30, "the urgent relay's round", || async {
        (stats.urgent_rounds() >= 1).then_some(())
    })
    .await;
    drop(conn);
    shutdown.cancel();
    relay.await.unwrap();
    let copies = drain(&bus, "urgent_wake").await;
    assert_eq!(copies.values().sum::<u32>(), 2, "each row once: {copies:?}");
    bus.close().await;
    pool.close().await;
}

/// A relay running beside a writer: rounds start on notifications (a slow poll), or on
/// ended leases within a second (`poll`).
fn relay_beside(
    pool: &sqlx::PgPool,
    bus: &Arc<Bus>,
    poll: Duration,
) -> (
    Arc<RelayStats>,
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let stats = Arc::new(RelayStats::default());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let relay = tokio::spawn(run_relay_with_stats(
        pool.clone(),
        bus.clone(),
        RelayConfig::new(poll, 100),
        shutdown.clone(),
        stats.clone(),
    ));
    (stats, shutdown, relay)
}

/// One transaction through `handover`: a routine row and an urgent one; the urgent
/// one held for the writer.
async fn write_handed(pool: &sqlx::PgPool, handover: &Handover, tag: &str) -> Handed {
    let mut tx = pool.begin().await.unwrap();
    let handed = handover
        .enqueue_all(
            &mut tx,
            &[
                row(&format!("msg_{tag}_routine"), 0),
                row(&format!("msg_{tag}_urgent"), URGENT_PRIORITY),
            ],
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    handed
}

/// A writer's urgent rows are held for it: no relay takes them, and the urgent relay
/// is not even woken; the writer publishes them once it has committed, and each row
/// goes out once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urgent_rows_held_for_their_writer_go_out_from_it_once() {
    let (_env, pool, bus) = outbox_and_queue("handed").await;
    let (stats, shutdown, relay) = relay_beside(&pool, &bus, Duration::from_secs(30));
    eventually(30, "the relay's first round", || async {
        (stats.rounds() >= 1).then_some(())
    })
    .await;
    let handover = Handover::new(bus.clone(), "lease_t");
    let handed = write_handed(&pool, &handover, "handed").await;
    assert!(!handed.is_empty());
    let sent = "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL";
    // The routine row woke the relay, which sent it and left the urgent one alone.
    wait_count(&pool, sent, 1, 30, "the routine row relayed").await;
    let held = "SELECT count(*) FROM outbox
                 WHERE sent_at IS NULL AND priority > 0 AND leased_by LIKE 'writer-%'
                   AND lease_until > now()";
    assert_eq!(count(&pool, held).await, 1, "the urgent row is not held");
    assert_eq!(stats.urgent_rounds(), 0, "a held row woke the urgent relay");
    handover.publish(&pool, handed).await;
    assert_eq!(count(&pool, sent).await, 2, "published and not marked sent");
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM outbox WHERE lease_until IS NOT NULL"
        )
        .await,
        0
    );
    shutdown.cancel();
    relay.await.unwrap();
    assert_eq!(stats.urgent_rounds(), 0);
    let copies = drain(&bus, "handed").await;
    let want: BTreeMap<String, u32> = ["msg_handed_routine", "msg_handed_urgent"]
        .into_iter()
        .map(|id| (id.to_owned(), 1))
        .collect();
    assert_eq!(copies, want);
    bus.close().await;
    pool.close().await;
}

/// What a writer cannot publish goes to the relays at once: the broker refuses it (the
/// writer's exchange is gone), the writer gives its lease back and wakes the
/// urgent relay, which sends it well before the lease would have ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urgent_rows_their_writer_could_not_publish_go_out_through_the_urgent_relay() {
    let (env, pool, bus) = outbox_and_queue("handed_back").await;
    let (stats, shutdown, relay) = relay_beside(&pool, &bus, Duration::from_secs(30));
    eventually(30, "the relay's first round", || async {
        (stats.rounds() >= 1).then_some(())
    })
    .await;
    // Another topology, whose exchange the writer publishes to is gone: the broker
    // closes the channel of such a publish.
    let nowhere = Bus::connect(env.amqp_url(), Topology::new("nowhere."))
        .await
        .unwrap();
    let ch = nowhere.channel().await.unwrap();
    ch.exchange_delete(
        nowhere
            .topology()
            .exchange(Exchange::Events)
            .as_str()
            .into(),
        Default::default(),
    )
    .await
    .unwrap();
    let _ = ch.close(200, "deleted".into()).await;
    let handover = Handover::new(nowhere.clone(), "lease_t");
    let started = Instant::now();
    let handed = write_handed(&pool, &handover, "handed_back").await;
    handover.publish(&pool, handed).await;
    let sent = "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL";
    wait_count(&pool, sent, 2, 30, "both rows relayed").await;
    assert!(
        started.elapsed() < himaya_store::handover::LEASE,
        "the urgent row waited for its lease to end ({:?})",
        started.elapsed()
    );
    assert!(stats.urgent_rounds() >= 1, "the urgent relay was not woken");
    let failed: (i32, Option<String>) = sqlx::query_as(
        "SELECT attempts, leased_by FROM outbox WHERE message_id = 'msg_handed_back_urgent'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(failed.0, 0, "a writer's failure is not a relay's attempt");
    shutdown.cancel();
    relay.await.unwrap();
    let copies = drain(&bus, "handed_back").await;
    assert_eq!(copies.values().sum::<u32>(), 2, "each row once: {copies:?}");
    nowhere.close().await;
    bus.close().await;
    pool.close().await;
}

/// A writer that dies between its commit and its publish: its urgent row waits for the
/// lease to end, then a relay sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urgent_rows_of_a_writer_that_died_go_out_once_their_lease_ends() {
    let (_env, pool, bus) = outbox_and_queue("handed_dead").await;
    let (_stats, shutdown, relay) = relay_beside(&pool, &bus, Duration::from_secs(1));
    let handover = Handover::new(bus.clone(), "lease_t");
    let written = Instant::now();
    let handed = write_handed(&pool, &handover, "handed_dead").await;
    drop((handover, handed));
    let sent = "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL";
    wait_count(&pool, sent, 1, 30, "the routine row relayed").await;
    wait_count(&pool, sent, 2, 30, "the urgent row relayed").await;
    assert!(
        written.elapsed() >= himaya_store::handover::LEASE,
        "sent before the writer's lease ended"
    );
    shutdown.cancel();
    relay.await.unwrap();
    let copies = drain(&bus, "handed_dead").await;
    assert_eq!(copies.values().sum::<u32>(), 2, "each row once: {copies:?}");
    bus.close().await;
    pool.close().await;
}
