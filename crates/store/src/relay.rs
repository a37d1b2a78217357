//! The outbox relay: claims unsent rows with `FOR UPDATE SKIP LOCKED` (so relays in several
//! processes share the work), publishes them with confirms, and marks them sent only after
//! the broker acknowledged. A crash between publish and commit republishes the row: the
//! consumers' inbox drops the duplicate. Urgent rows (hotline escalations, high risk)
//! are claimed before routine ones, so a backlog of routine work never delays them
//! here. Sent rows and old inbox ids are pruned as it goes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use himaya_bus::{Bus, Exchange, Outgoing};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::{channel_of, current_schema, StoreError};

/// Relay settings.
#[derive(Debug, Clone, Copy)]
pub struct RelayConfig {
    pub poll_interval: Duration,
    pub batch_size: i64,
    /// Sent rows older than this are deleted.
    pub keep_sent: Duration,
    /// Inbox ids older than this are deleted.
    pub inbox_keep: Duration,
}

impl RelayConfig {
    /// Polling every `poll_interval`, `batch_size` rows a round, pruning as configured by
    /// default (an hour of sent rows, a week of inbox ids).
    pub fn new(poll_interval: Duration, batch_size: i64) -> RelayConfig {
        RelayConfig {
            poll_interval,
            batch_size,
            keep_sent: Duration::from_secs(3_600),
            inbox_keep: Duration::from_secs(168 * 3_600),
        }
    }
}

/// How often a relay prunes its schema's sent outbox rows and old inbox ids.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Rows deleted per statement, so no prune holds locks or writes WAL for long.
const PRUNE_BATCH: i64 = 5_000;

/// What a relay has done so far: for tests and for anyone watching a relay's pace.
#[derive(Debug, Default)]
pub struct RelayStats {
    rounds: AtomicU64,
    failed_rounds: AtomicU64,
    notifications: AtomicU64,
}

impl RelayStats {
    /// Rounds started (each reads up to a batch of rows and, with rows, publishes them).
    pub fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }

    /// Rounds that failed (broker or database unreachable).
    pub fn failed_rounds(&self) -> u64 {
        self.failed_rounds.load(Ordering::Relaxed)
    }

    /// Notifications received, whether they woke the relay or were coalesced.
    pub fn notifications(&self) -> u64 {
        self.notifications.load(Ordering::Relaxed)
    }
}

/// Runs until `shutdown`. Wakes on the schema's NOTIFY, or every `poll_interval`; after
/// a failed round, only when its backoff is over.
pub async fn run_relay(pool: PgPool, bus: Arc<Bus>, cfg: RelayConfig, shutdown: CancellationToken) {
    run_relay_with_stats(pool, bus, cfg, shutdown, Arc::default()).await
}

/// [`run_relay`], counting its rounds and notifications in `stats`.
pub async fn run_relay_with_stats(
    pool: PgPool,
    bus: Arc<Bus>,
    cfg: RelayConfig,
    shutdown: CancellationToken,
    stats: Arc<RelayStats>,
) {
    let mut listener = listen(&pool).await;
    let mut outage = Outage::new(policy(cfg.poll_interval));
    let mut pruned_at = Instant::now();
    while !shutdown.is_cancelled() {
        if pruned_at.elapsed() >= PRUNE_EVERY {
            pruned_at = Instant::now();
            prune(&pool, &cfg).await;
        }
        stats.rounds.fetch_add(1, Ordering::Relaxed);
        let go_on = match relay_once(&pool, &bus, cfg.batch_size).await {
            // A full batch: more rows may be waiting, take them at once.
            Ok(n) if n as i64 >= cfg.batch_size => {
                outage.recovered();
                continue;
            }
            Ok(_) => {
                outage.recovered();
                idle(&mut listener, cfg.poll_interval, &shutdown, &stats).await
            }
            Err(e) => {
                stats.failed_rounds.fetch_add(1, Ordering::Relaxed);
                let wait = outage.failed(&e);
                match sit_out(&mut listener, wait, &shutdown, &stats).await {
                    Some(seen) => {
                        outage.notifications += seen;
                        true
                    }
                    None => false,
                }
            }
        };
        if !go_on {
            break;
        }
        if listener.is_none() {
            listener = listen(&pool).await;
        }
    }
}

/// Deletes sent outbox rows and inbox ids past their keeping time, a batch at a time:
/// the hot tables stay the size of a few minutes' traffic, whatever autovacuum does.
/// A failure is logged and tried again at the next prune.
pub async fn prune(pool: &PgPool, cfg: &RelayConfig) {
    let statements = [
        (
            "outbox",
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox
               WHERE sent_at IS NOT NULL AND sent_at < now() - make_interval(secs => $1)
               LIMIT $2)",
            cfg.keep_sent,
        ),
        (
            "inbox",
            "DELETE FROM inbox WHERE ctid IN (SELECT ctid FROM inbox
               WHERE processed_at < now() - make_interval(secs => $1)
               LIMIT $2)",
            cfg.inbox_keep,
        ),
    ];
    for (table, sql, keep) in statements {
        let mut deleted = 0u64;
        loop {
            match sqlx::query(sql)
                .bind(keep.as_secs_f64())
                .bind(PRUNE_BATCH)
                .execute(pool)
                .await
            {
                Ok(done) => {
                    deleted += done.rows_affected();
                    if done.rows_affected() < PRUNE_BATCH as u64 {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(table, error = %e, "pruning failed; trying again later");
                    break;
                }
            }
        }
        if deleted > 0 {
            tracing::debug!(table, deleted, "pruned");
        }
    }
}

/// The waits after failed rounds in a row: 400 ms doubling up to the poll interval (at
/// least 5 s, at most 12.8 s), so a blip is retried soon and a long outage costs one
/// round (and one log line) every few seconds, not a round per write. Each wait lies
/// between half its step and the step: the relays of every service (and of every
/// process) lose the broker together, and must not all come back in step.
fn policy(poll_interval: Duration) -> ExponentialBuilder {
    let cap = poll_interval
        .max(Duration::from_secs(5))
        .min(Duration::from_millis(12_800));
    himaya_settings::retry::backoff(Duration::from_millis(400), cap)
}

/// Rounds failing one after another (the broker or the database away): how long to
/// wait, and what to tell the operator, once per step rather than once per notification.
#[derive(Debug)]
struct Outage {
    policy: ExponentialBuilder,
    waits: <ExponentialBuilder as BackoffBuilder>::Backoff,
    failures: u32,
    /// Notifications received during the outage: work the next good round will take.
    notifications: u64,
    since: Option<Instant>,
}

impl Outage {
    fn new(policy: ExponentialBuilder) -> Outage {
        Outage {
            policy,
            waits: policy.build(),
            failures: 0,
            notifications: 0,
            since: None,
        }
    }

    /// The wait before the next round, logged with the counts so far.
    fn failed(&mut self, e: &RelayError) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let since = *self.since.get_or_insert_with(Instant::now);
        // The policy has no last wait; its cap stands in, should it ever end.
        let wait = self.waits.next().unwrap_or(Duration::from_millis(12_800));
        tracing::warn!(
            error = %e,
            failures = self.failures,
            retry_in_ms = wait.as_millis() as u64,
            notifications_waiting = self.notifications,
            failing_for_ms = since.elapsed().as_millis() as u64,
            "outbox relay round failed; retrying after the backoff"
        );
        wait
    }

    /// A round went through: one line closing the outage, if there was one.
    fn recovered(&mut self) {
        if let Some(since) = self.since {
            tracing::info!(
                failed_rounds = self.failures,
                notifications = self.notifications,
                failed_for_ms = since.elapsed().as_millis() as u64,
                "outbox relay recovered"
            );
        }
        *self = Outage::new(self.policy);
    }
}

/// Waits for work while rounds succeed: a notification, or the poll interval. Every
/// notification already received is taken with it, since one round serves them all.
/// `false` on shutdown.
async fn idle(
    listener: &mut Option<PgListener>,
    poll: Duration,
    shutdown: &CancellationToken,
    stats: &RelayStats,
) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => return false,
        _ = tokio::time::sleep(poll) => {}
        woke = wait_notification(listener) => {
            if !woke {
                *listener = None;
                return true;
            }
            stats.notifications.fetch_add(1, Ordering::Relaxed);
        }
    }
    let mut seen = 0;
    while let Some(l) = listener.as_mut() {
        // A zero timeout still polls once: a notification already on the socket is read.
        match tokio::time::timeout(Duration::ZERO, l.recv()).await {
            Ok(Ok(_)) => seen += 1,
            Ok(Err(_)) => *listener = None,
            Err(_) => break,
        }
    }
    stats.notifications.fetch_add(seen, Ordering::Relaxed);
    true
}

/// Waits out a backoff in full. A notification meanwhile only says there is work, which
/// the round after the backoff takes anyway: it neither cuts the wait short nor queues
/// a round of its own. The notifications seen, or `None` on shutdown.
async fn sit_out(
    listener: &mut Option<PgListener>,
    wait: Duration,
    shutdown: &CancellationToken,
    stats: &RelayStats,
) -> Option<u64> {
    let until = tokio::time::Instant::now() + wait;
    let mut seen = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep_until(until) => return Some(seen),
            woke = wait_notification(listener) => {
                if woke {
                    seen += 1;
                    stats.notifications.fetch_add(1, Ordering::Relaxed);
                } else {
                    // Broken: no more wake-ups; the listener is renewed after the wait.
                    *listener = None;
                }
            }
        }
    }
}

async fn listen(pool: &PgPool) -> Option<PgListener> {
    let schema = current_schema(pool).await.ok()?;
    let mut l = PgListener::connect_with(pool).await.ok()?;
    l.listen(&channel_of(&schema)).await.ok()?;
    Some(l)
}

/// `true` on a notification, `false` when the listener broke (fall back to polling).
async fn wait_notification(listener: &mut Option<PgListener>) -> bool {
    match listener {
        Some(l) => l.recv().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// One round: up to `batch` rows. Returns how many were published.
pub async fn relay_once(pool: &PgPool, bus: &Bus, batch: i64) -> Result<usize, RelayError> {
    let started = std::time::Instant::now();
    let mut tx = pool.begin().await.map_err(StoreError::from)?;
    let rows = sqlx::query_as::<_, OutboxRow>(
        "SELECT id, message_id, exchange, routing_key, event_type, priority, headers, payload
           FROM outbox
          WHERE sent_at IS NULL AND next_attempt_at <= now()
          ORDER BY priority DESC, id
          LIMIT $1
          FOR UPDATE SKIP LOCKED",
    )
    .bind(batch)
    .fetch_all(&mut *tx)
    .await
    .map_err(StoreError::from)?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut ids = Vec::with_capacity(rows.len());
    let mut msgs = Vec::with_capacity(rows.len());
    for r in rows {
        ids.push(r.id);
        msgs.push(r.into_outgoing()?);
    }
    let claimed = started.elapsed();
    let results = bus.publish_batch(&msgs).await.map_err(RelayError::Bus)?;
    let confirmed = started.elapsed();
    let mut sent = Vec::new();
    for ((id, result), m) in ids.iter().zip(&results).zip(&msgs) {
        match result {
            Ok(()) => sent.push(*id),
            Err(e) => {
                tracing::warn!(message_id = %m.message_id, error = %e, "outbox row not confirmed; will retry");
                sqlx::query(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = $2,
                            next_attempt_at = now() + make_interval(secs => LEAST(300, power(2, attempts)))
                      WHERE id = $1",
                )
                .bind(id)
                .bind(e.to_string())
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
            }
        }
    }
    sqlx::query("UPDATE outbox SET sent_at = now() WHERE id = ANY($1)")
        .bind(&sent)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)?;
    tx.commit().await.map_err(StoreError::from)?;
    tracing::debug!(
        rows = msgs.len(),
        sent = sent.len(),
        claimed_us = claimed.as_micros() as u64,
        confirmed_us = confirmed.as_micros() as u64,
        committed_us = started.elapsed().as_micros() as u64,
        "outbox relayed"
    );
    Ok(sent.len())
}

/// An unsent `outbox` row as stored; [`OutboxRow::into_outgoing`] checks its exchange and
/// headers.
#[derive(sqlx::FromRow)]
struct OutboxRow {
    id: i64,
    message_id: String,
    exchange: String,
    routing_key: String,
    event_type: String,
    priority: i16,
    headers: serde_json::Value,
    payload: Vec<u8>,
}

impl OutboxRow {
    fn into_outgoing(self) -> Result<Outgoing, StoreError> {
        let headers: BTreeMap<String, String> = serde_json::from_value(self.headers)
            .map_err(|_| StoreError::Corrupt("outbox.headers"))?;
        Ok(Outgoing {
            exchange: Exchange::parse(&self.exchange)
                .ok_or(StoreError::Corrupt("outbox.exchange"))?,
            routing_key: self.routing_key,
            payload: self.payload,
            message_id: self.message_id,
            event_type: self.event_type,
            priority: u8::try_from(self.priority).unwrap_or(0),
            headers,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the broker could not be reached")]
    Bus(#[source] himaya_bus::BusError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within(wait: Duration, step_ms: u64) -> bool {
        himaya_settings::retry::jittered_within(wait, Duration::from_millis(step_ms))
    }

    #[test]
    fn the_backoff_grows_then_stays_at_its_cap() {
        let waits: Vec<Duration> = policy(Duration::from_secs(5)).build().take(8).collect();
        let steps = [400, 800, 1600, 3200, 5000, 5000, 5000, 5000];
        assert_eq!(waits.len(), steps.len());
        for (w, s) in waits.iter().zip(steps) {
            assert!(within(*w, s), "{w:?} for a step of {s} ms");
        }
        // A long poll interval raises the cap, but the steps stop doubling past 12.8 s.
        let long = policy(Duration::from_secs(60)).build().nth(1000);
        assert!(long.is_some_and(|w| within(w, 12_800)), "{long:?}");
    }

    #[test]
    fn the_jitter_stays_between_half_the_step_and_the_step() {
        let waits: std::collections::BTreeSet<Duration> = (0..200)
            .filter_map(|_| policy(Duration::from_secs(5)).build().next())
            .collect();
        assert!(waits.iter().all(|w| within(*w, 400)), "{waits:?}");
        // Spread out, not one value: 200 draws over 201 possible milliseconds.
        let millis: std::collections::BTreeSet<u128> =
            waits.iter().map(Duration::as_millis).collect();
        assert!(millis.len() > 50, "{} distinct waits", millis.len());
        let zero = himaya_settings::retry::backoff(Duration::ZERO, Duration::from_secs(5))
            .build()
            .next();
        assert_eq!(zero, Some(Duration::ZERO));
    }

    #[test]
    fn an_outage_starts_its_waits_over_once_a_round_went_through() {
        let mut outage = Outage::new(policy(Duration::from_secs(5)));
        let e = RelayError::Store(StoreError::Corrupt("test"));
        for _ in 0..6 {
            outage.failed(&e);
        }
        assert!(within(outage.failed(&e), 5000));
        outage.recovered();
        assert_eq!(outage.failures, 0);
        assert!(within(outage.failed(&e), 400));
    }
}
