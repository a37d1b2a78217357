//! The outbox relay's pace, measured rather than asserted (issue 14): how fast 1 and 3
//! relays drain 20,000 rows, how many round trips to PostgreSQL each round costs, and
//! how often a relay's connection sits "idle in transaction" meanwhile.
//!
//! `cargo test --test it relay_pace -- --ignored --nocapture`; `RELAY_PACE_ROWS` (20,000)
//! and `RELAY_PACE_RELAYS` (`1,3`) change the backlog and the relays.
//!
//! Round trips are counted on the wire: the relays' pools connect through a small proxy
//! that counts the client's `Sync` and `Query` messages (each one a wait for the server).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::helpers::*;
use himaya_bus::{Bus, Exchange, Topology};
use himaya_store::relay::{run_relay_with_stats, RelayConfig, RelayStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SCHEMA: &str = "relay_pace";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: run with --ignored --nocapture"]
async fn relay_pace() {
    let rows = env_or("RELAY_PACE_ROWS", "20000").parse().unwrap();
    for relays in env_or("RELAY_PACE_RELAYS", "1,3").split(',') {
        pace(relays.trim().parse().unwrap(), rows).await;
    }
}

async fn pace(relays: usize, rows: i64) {
    let env = TestEnv::new(None).await;
    let pool = himaya_store::connect(&env.db_url, SCHEMA, 4).await.unwrap();
    // Urgent every 50th row, as a busy hub's mix; urgent rows go to the urgent lane.
    sqlx::query(
        "INSERT INTO outbox (message_id, exchange, routing_key, event_type, priority, payload)
         SELECT 'msg_pace_' || g, 'events', 'relay.pace', 'himaya.v1.ReferralCreated',
                CASE WHEN g % 50 = 0 THEN 9 ELSE 0 END, '\\x01'::bytea
           FROM generate_series(1, $1) g",
    )
    .bind(rows)
    .execute(&pool)
    .await
    .unwrap();
    let bus = Bus::connect(env.amqp_url(), Topology::new(""))
        .await
        .unwrap();
    bus.declare_queue("paced", Exchange::Events, &["relay.pace"])
        .await
        .unwrap();

    // The broker's floor: batches of 100 published and confirmed, no database.
    bus.declare_queue("floor", Exchange::Events, &["relay.floor"])
        .await
        .unwrap();
    let batch: Vec<himaya_bus::Outgoing> = (0..100)
        .map(|i| himaya_bus::Outgoing {
            exchange: Exchange::Events,
            routing_key: "relay.floor".into(),
            payload: vec![1],
            message_id: format!("msg_floor_{i}"),
            event_type: "himaya.v1.ReferralCreated".into(),
            priority: 0,
            headers: Default::default(),
        })
        .collect();
    let floor_started = Instant::now();
    for _ in 0..20 {
        for r in bus.publish_batch(&batch).await.unwrap() {
            r.unwrap();
        }
    }
    let floor_ms = floor_started.elapsed().as_secs_f64() * 1000.0 / 20.0;

    let trips = Arc::new(AtomicU64::new(0));
    let proxy = proxy(trips.clone()).await;
    let via_proxy = format!(
        "{}?sslmode=disable",
        env.db_url.replace("127.0.0.1:5432", &proxy.to_string())
    );

    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut tasks = Vec::new();
    let mut stats = Vec::new();
    for _ in 0..relays {
        // Each relay as in a process of its own: its pool (the default 3 connections)
        // and its broker connection.
        let relay_pool = himaya_store::pool_of(&via_proxy, SCHEMA, 3).unwrap();
        let relay_bus = Bus::connect(env.amqp_url(), Topology::new(""))
            .await
            .unwrap();
        let s = Arc::new(RelayStats::default());
        stats.push(s.clone());
        tasks.push(tokio::spawn(run_relay_with_stats(
            relay_pool,
            relay_bus,
            RelayConfig::new(Duration::from_millis(200), 100),
            shutdown.clone(),
            s,
        )));
    }

    // Samples the relays' backends every 5 ms: how many sit idle in a transaction.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (pool, sampling, db) = (pool.clone(), sampling.clone(), env.db_name.clone());
        tokio::spawn(async move {
            let (mut samples, mut with_idle_tx, mut most, mut total) = (0u64, 0u64, 0i64, 0i64);
            while sampling.load(Ordering::Relaxed) {
                let idle: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity
                      WHERE datname = $1 AND state LIKE 'idle in transaction%'",
                )
                .bind(&db)
                .fetch_one(&pool)
                .await
                .unwrap_or(0);
                samples += 1;
                with_idle_tx += u64::from(idle > 0);
                most = most.max(idle);
                total += idle;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (samples, with_idle_tx, most, total)
        })
    };

    let started = Instant::now();
    wait_count(
        &pool,
        "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL",
        rows,
        600,
        "every row relayed",
    )
    .await;
    let elapsed = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    let (samples, with_idle_tx, most, total) = sampler.await.unwrap();
    let trips_used = trips.load(Ordering::Relaxed);
    shutdown.cancel();
    for t in tasks {
        t.await.unwrap();
    }
    let rounds: u64 = stats.iter().map(|s| s.rounds()).sum();
    let failed: u64 = stats.iter().map(|s| s.failed_rounds()).sum();

    // What reached the broker: every row once, or more.
    let ch = bus.channel().await.unwrap();
    let mut published = 0;
    for q in ["paced", "paced.urgent"] {
        let declared = ch
            .queue_declare(
                q.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .unwrap();
        published += declared.message_count();
    }
    // The statistics reach pg_stat_user_tables within a second of each transaction.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let hot: (i64, i64) = sqlx::query_as(
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
          WHERE schemaname = $1 AND relname = 'outbox'",
    )
    .bind(SCHEMA)
    .fetch_one(&pool)
    .await
    .unwrap_or((0, 0));

    let secs = elapsed.as_secs_f64();
    eprintln!(
        "relay pace, {relays} relay(s), {rows} rows: {:.2} s, {:.0} rows/s; {rounds} rounds \
         ({failed} failed), {:.1} ms a round per relay; {trips_used} round trips to \
         PostgreSQL, {:.2} a round, {:.3} a row; idle in transaction: in {:.1}% of {samples} \
         samples, at most {most} backends, {:.2} on average; {published} messages on the \
         queues; outbox updates {} ({} HOT); the broker alone: {floor_ms:.1} ms a batch of 100",
        secs,
        rows as f64 / secs,
        secs * 1000.0 * relays as f64 / rounds.max(1) as f64,
        trips_used as f64 / rounds.max(1) as f64,
        trips_used as f64 / rows as f64,
        100.0 * with_idle_tx as f64 / samples.max(1) as f64,
        total as f64 / samples.max(1) as f64,
        hot.0,
        hot.1,
    );
    bus.close().await;
    pool.close().await;
}

/// A TCP proxy to PostgreSQL that counts the round trips its clients make: each
/// `Sync` (extended protocol) or `Query` (simple protocol) message waits for the server.
/// Clients must not ask for TLS (`sslmode=disable`).
async fn proxy(trips: Arc<AtomicU64>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let trips = trips.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect("127.0.0.1:5432").await else {
                    return;
                };
                // As sqlx's own sockets: without, Nagle's algorithm holds a message's
                // second segment until the first is acknowledged (40 ms, delayed).
                if client.set_nodelay(true).is_err() || server.set_nodelay(true).is_err() {
                    return;
                }
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    let _ = cw.shutdown().await;
                });
                let mut wire = Wire::default();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    trips.fetch_add(wire.feed(&buf[..n]), Ordering::Relaxed);
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = sw.shutdown().await;
            });
        }
    });
    addr
}

/// Where a client's byte stream is: in a message's header (the startup message has no
/// type byte), or skipping its body.
#[derive(Default)]
struct Wire {
    started: bool,
    header: Vec<u8>,
    skip: usize,
}

impl Wire {
    /// Reads `bytes`; how many `Sync` and `Query` messages began in them.
    fn feed(&mut self, mut bytes: &[u8]) -> u64 {
        let mut trips = 0;
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let want = if self.started { 5 } else { 4 };
            let n = (want - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.header.len() < want {
                break;
            }
            let len_at = want - 4;
            let mut len = [0u8; 4];
            len.copy_from_slice(&self.header[len_at..want]);
            let len = u32::from_be_bytes(len) as usize;
            if self.started && matches!(self.header[0], b'S' | b'Q') {
                trips += 1;
            }
            self.started = true;
            self.skip = len.saturating_sub(4);
            self.header.clear();
        }
        trips
    }
}
