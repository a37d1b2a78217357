//! The outbox relay: leases unsent rows (so relays in several processes share the work),
//! publishes them with confirms, and marks them sent only after the broker acknowledged.
//!
//! A round is two short statements, each committed at once, never a transaction held
//! through the broker's confirms: one claims a batch (`FOR UPDATE SKIP LOCKED` for the
//! instant of the claim, then a lease, `lease_until`, that other relays respect), and
//! one records what the broker said: confirmed rows sent, the others back to the pool
//! with a backoff. While full batches follow one another, that second statement is the
//! next round's claim, so a busy relay makes one round trip to PostgreSQL per batch.
//! A relay that dies between its claim and its record leaves leases that expire
//! (`relay.lease_secs`); another relay then publishes those rows again, and the
//! consumers' inbox drops the duplicates. Urgent rows (hotline escalations, high risk)
//! are claimed before routine ones, so a backlog of routine work never delays them
//! here; and an urgent relay beside the relay publishes them as soon as they are
//! written, without waiting for the round in flight (the broker's confirms of a routine
//! batch) to end. Sent rows and old inbox ids are pruned as it goes, and the outbox
//! vacuumed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use himaya_bus::{Bus, Exchange, Outgoing, URGENT_PRIORITY};
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgListener;
use sqlx::{PgPool, Postgres};
use tokio::sync::Notify;
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
    /// How long a claimed row stays the relay's own: longer than a batch's publish and
    /// confirms take. A publish still unconfirmed after it is given up.
    pub lease: Duration,
    /// The kind of stage its claims are when they take a background turn: on a
    /// referral's way to its agency (by default, and every service's outbox but the
    /// connectors'), or recording what has already happened (the connectors' answers),
    /// which gives way (see `himaya_bus::Turns`).
    pub stage: himaya_bus::Stage,
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
            lease: DEFAULT_LEASE,
            stage: himaya_bus::Stage::OnTheWay,
        }
    }
}

/// The lease of claimed rows unless configured (`relay.lease_secs`): a batch's publish
/// and confirms take milliseconds, a slow broker seconds.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// How often a relay prunes its schema's sent outbox rows and old inbox ids, and
/// vacuums its outbox.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How often a relay looks for tables of its schema that grew enough to analyze. A
/// table grows from empty by thousands of rows in the first seconds under load, and
/// every plan made meanwhile (cached for the connection's life) reads it end to end
/// until its next analyze: checked every 10 s, a hub's first 10 s under load ran its
/// relays' and consumers' look-ups as sequential scans. The check is one read of the
/// statistics view.
const ANALYZE_CHECK_EVERY: Duration = Duration::from_secs(1);
/// A table this small is analyzed as soon as it grew by a tenth (its plans are the ones
/// made on an empty table, and it is cheap to analyze), and so is one that has more than
/// doubled since its last analyze (its plans were made for a table less than half its
/// size: the router's look-up of a referral's earlier deliveries read the whole table
/// for the first 10 s of a run at 1,000/s, a seq scan planned at a few hundred rows and
/// run at ten thousand; doubling costs a growing table a few analyzes in its life); any
/// other at most every [`ANALYZE_SETTLED_EVERY`] (checked every second, growing tables
/// were analyzed every second or two: 8 % more PostgreSQL CPU per referral at 750/s).
const ANALYZE_SMALL_ROWS: i64 = 1_000;
const ANALYZE_SETTLED_EVERY: Duration = Duration::from_secs(10);
/// Rows deleted per statement, so no prune holds locks or writes WAL for long.
const PRUNE_BATCH: i64 = 5_000;

/// What a relay has done so far: for tests and for anyone watching a relay's pace.
#[derive(Debug, Default)]
pub struct RelayStats {
    rounds: AtomicU64,
    failed_rounds: AtomicU64,
    notifications: AtomicU64,
    urgent_rounds: AtomicU64,
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

    /// Rounds of the urgent relay (each woken by an urgent row's notification).
    pub fn urgent_rounds(&self) -> u64 {
        self.urgent_rounds.load(Ordering::Relaxed)
    }
}

/// Runs until `shutdown`. Wakes on the schema's NOTIFY, or every `poll_interval`; after
/// a failed round, only when its backoff is over. Beside it, an urgent relay publishes
/// urgent rows as soon as their notification arrives (see [`urgent_relay`]).
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
    // Where the bus runs urgent work, the notifications are read and the urgent rows
    // published there, on a connection of their own and the bus's urgent one (see
    // `himaya_bus::urgent`): an urgent row's notification then never waits behind the
    // routine work of this process.
    let urgent_place = bus.urgent().cloned();
    let (urgent_pool, urgent_bus) = match &urgent_place {
        // Two connections: the listener's, and the urgent relay's.
        Some(u) => (
            crate::options(2).connect_lazy_with((*pool.connect_options()).clone()),
            u.bus().clone(),
        ),
        None => (pool.clone(), bus.clone()),
    };
    // Listening before the first round: a row written after it wakes a round.
    let listener = match &urgent_place {
        Some(u) => {
            let pool = urgent_pool.clone();
            u.spawn(async move { listen(&pool).await })
                .await
                .ok()
                .flatten()
        }
        None => listen(&pool).await,
    };
    let wakes = Arc::new(Wakes::default());
    let listening = himaya_bus::urgent::spawn(
        urgent_place.as_ref(),
        read_notifications(
            urgent_pool.clone(),
            listener,
            wakes.clone(),
            cfg.poll_interval,
            stats.clone(),
            shutdown.clone(),
        ),
    );
    let mut relay = Relay::new(cfg);
    relay.take_turns(bus.background());
    let urgent = himaya_bus::urgent::spawn(
        urgent_place.as_ref(),
        urgent_relay(
            urgent_pool,
            urgent_bus,
            Relay::urgent(cfg, relay.id()),
            wakes.clone(),
            stats.clone(),
            shutdown.clone(),
        ),
    );
    let mut outage = Outage::new(policy(cfg.poll_interval));
    // Pruning, vacuuming and analyzing beside the rounds, never between two of them: a
    // vacuum of a busy outbox takes up to a second, which every row behind it waited.
    let upkeep = tokio::spawn(upkeep(pool.clone(), cfg, shutdown.clone()));
    let mut observed = false;
    while !shutdown.is_cancelled() {
        // The outbox's metrics are named by its schema: asked again each round until
        // PostgreSQL answers (it may be down when the relay starts).
        if !observed {
            relay.put_back();
            observed = observe_outbox(&mut relay, &pool, &bus).await;
        }
        stats.rounds.fetch_add(1, Ordering::Relaxed);
        let go_on = match relay.round(&pool, &bus).await {
            // A full batch: more rows may be waiting, take them at once (the claim
            // records this batch's outcomes).
            Ok(round) if round.claimed as i64 >= cfg.batch_size => {
                outage.recovered();
                continue;
            }
            Ok(_) => {
                outage.recovered();
                idle(&wakes.any, cfg.poll_interval, &shutdown).await
            }
            Err(e) => {
                stats.failed_rounds.fetch_add(1, Ordering::Relaxed);
                let wait = outage.failed(&e);
                match sit_out(&wakes.any, wait, &shutdown, &stats).await {
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
    }
    // The last full batch's outcomes, had shutdown come right after it.
    if let Err(e) = relay.record(&pool).await {
        tracing::warn!(error = %e, "outbox outcomes not recorded at shutdown; their leases will expire and the rows go out again");
    }
    // They stop at the same shutdown.
    let _ = tokio::join!(upkeep, urgent, listening);
}

/// What the schema's notifications wake: every one the relay, an urgent one (payload
/// [`URGENT_PAYLOAD`]) the urgent relay too. A wake-up that finds its relay busy is kept
/// (one, however many came), so the relay's next wait ends at once.
#[derive(Debug, Default)]
struct Wakes {
    any: Notify,
    urgent: Notify,
}

/// The payload of the notification that an outbox write with an urgent row sends
/// (see `outbox::Rows`).
pub const URGENT_PAYLOAD: &str = "urgent";

/// Reads the schema's notifications as they come, whatever the relays are doing, and
/// wakes them. A listener that breaks is renewed after `poll` (the relay polls
/// meanwhile), and its renewal wakes the relay for what it may have missed.
async fn read_notifications(
    pool: PgPool,
    mut listener: Option<PgListener>,
    wakes: Arc<Wakes>,
    poll: Duration,
    stats: Arc<RelayStats>,
    shutdown: CancellationToken,
) {
    loop {
        let Some(l) = listener.as_mut() else {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(poll) => {}
            }
            listener = listen(&pool).await;
            if listener.is_some() {
                wakes.any.notify_one();
            }
            continue;
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            received = l.recv() => match received {
                Ok(n) => {
                    stats.notifications.fetch_add(1, Ordering::Relaxed);
                    if n.payload() == URGENT_PAYLOAD {
                        wakes.urgent.notify_one();
                    }
                    wakes.any.notify_one();
                }
                Err(_) => listener = None,
            }
        }
    }
}

/// The urgent relay: woken by an urgent row's notification, it claims urgent rows only
/// and publishes them at once, on a connection of its own, while the relay may be
/// waiting for the broker's confirms of a routine batch. It never polls and never backs
/// off: should it miss a notification or fail a round, the relay claims urgent rows
/// first anyway, and handles the outage. Between wake-ups its connection goes back to
/// the pool.
async fn urgent_relay(
    pool: PgPool,
    bus: Arc<Bus>,
    mut relay: Relay,
    wakes: Arc<Wakes>,
    stats: Arc<RelayStats>,
    shutdown: CancellationToken,
) {
    let batch_size = relay.cfg.batch_size;
    let mut observed = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = wakes.urgent.notified() => {}
        }
        // Its batches count in the outbox's metrics as the relay's do.
        if !observed {
            observed = observe_outbox(&mut relay, &pool, &bus).await;
        }
        loop {
            stats.urgent_rounds.fetch_add(1, Ordering::Relaxed);
            match relay.round(&pool, &bus).await {
                Ok(round) if round.claimed as i64 >= batch_size => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "urgent outbox round failed; the relay takes its rows");
                    break;
                }
            }
        }
        // What a failed round left unrecorded (its rows' backoffs), before the
        // connection goes back: the next wake-up may be hours away.
        if let Err(e) = relay.record(&pool).await {
            tracing::debug!(error = %e, "urgent outbox outcomes not recorded; their leases will expire and the rows go out again");
        }
        relay.put_back();
    }
    if let Err(e) = relay.record(&pool).await {
        tracing::warn!(error = %e, "urgent outbox outcomes not recorded at shutdown; their leases will expire and the rows go out again");
    }
}

/// What autovacuum would do for a relay's schema, where it is off, on a connection of
/// the relay's pool: the first prune at once (the planner has the outbox's statistics
/// from the start), then every [`PRUNE_EVERY`]; grown tables analyzed every
/// [`ANALYZE_CHECK_EVERY`]. Until `shutdown`.
async fn upkeep(pool: PgPool, cfg: RelayConfig, shutdown: CancellationToken) {
    let mut pruned_at: Option<Instant> = None;
    let mut checked_at = Instant::now();
    loop {
        if pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            pruned_at = Some(Instant::now());
            prune(&pool, &cfg).await;
        }
        if checked_at.elapsed() >= ANALYZE_CHECK_EVERY {
            checked_at = Instant::now();
            analyze_grown(&pool).await;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(ANALYZE_CHECK_EVERY) => {}
        }
    }
}

/// Deletes sent outbox rows and inbox ids past their keeping time, a batch at a time:
/// the hot tables stay the size of a few minutes' traffic, whatever autovacuum does.
/// Then vacuums and analyzes the outbox (see [`vacuum_outbox`]). A failure is logged
/// and tried again at the next prune.
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
    vacuum_outbox(pool).await;
}

/// What autovacuum would do for the outbox, where it is off. Every row is updated twice
/// (its lease, then sent) and deleted; until a vacuum the claim's index scan walks past
/// the index entries of every row sent since: 3 ms a claim after 200,000 rows (and on,
/// with every row), against 0.2 ms once vacuumed. The statistics keep the planner on
/// `outbox_unsent_urgent_first` whatever it makes of a prepared statement: without any
/// (no autovacuum, so no analyze either) a custom plan sorts the whole backlog (100 ms
/// a claim with 100,000 rows waiting). `SKIP_LOCKED`: should a relay of another process
/// be vacuuming the same outbox, that is enough.
async fn vacuum_outbox(pool: &PgPool) {
    let started = Instant::now();
    // VACUUM runs outside any transaction: a simple query of its own.
    match sqlx::raw_sql("VACUUM (ANALYZE, SKIP_LOCKED) outbox")
        .execute(pool)
        .await
    {
        Ok(_) => tracing::debug!(
            took_ms = started.elapsed().as_millis() as u64,
            "outbox vacuumed"
        ),
        Err(e) => tracing::warn!(error = %e, "vacuuming the outbox failed; trying again later"),
    }
}

/// What autovacuum's analyze would do, where it is off: analyzes each table of the
/// schema changed by more than 50 rows and a tenth of its size since its last analyze
/// (autovacuum's own thresholds), a table of more than [`ANALYZE_SMALL_ROWS`] rows at
/// most every [`ANALYZE_SETTLED_EVERY`]. A plan made while a table was empty stays in every
/// connection's statement cache, and in the foreign-key checks, until the table's
/// statistics change: a fresh hub read `cases.children` from end to end for each
/// intake's key check, about once per referral, until its first analyze.
pub async fn analyze_grown(pool: &PgPool) {
    let started = Instant::now();
    match analyze_grown_within(pool, ANALYZE_TIMEOUT).await {
        Ok(0) => {}
        Ok(tables) => tracing::debug!(
            tables,
            took_ms = started.elapsed().as_millis() as u64,
            "grown tables analyzed"
        ),
        Err(e) => tracing::warn!(error = %e, "analyzing grown tables failed; trying again later"),
    }
}

/// The longest an analyze of the grown tables may take before it is given up (and
/// tried again at the next check).
const ANALYZE_TIMEOUT: Duration = Duration::from_secs(30);

/// One transaction under `timeout`: reads which tables grew, analyzes them; returns how
/// many.
async fn analyze_grown_within(pool: &PgPool, timeout: Duration) -> Result<usize, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT set_config('statement_timeout', $1, true)")
        .bind(format!("{}ms", timeout.as_millis()))
        .execute(&mut *tx)
        .await?;
    let grown: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(s.relname) FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
          WHERE s.schemaname = current_schema()
            AND s.n_mod_since_analyze > 50 + s.n_live_tup / 10
            AND (s.n_live_tup < $1
                 OR c.reltuples < s.n_live_tup / 2
                 OR coalesce(greatest(s.last_analyze, s.last_autoanalyze), '-infinity')
                    < now() - make_interval(secs => $2))",
    )
    .bind(ANALYZE_SMALL_ROWS)
    .bind(ANALYZE_SETTLED_EVERY.as_secs_f64())
    .fetch_all(&mut *tx)
    .await?;
    if !grown.is_empty() {
        // Names come quoted from the catalogue itself.
        let statement = format!("ANALYZE (SKIP_LOCKED) {}", grown.join(", "));
        sqlx::query(&statement).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(grown.len())
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

/// Waits for work while rounds succeed: a notification (every one received meanwhile
/// comes with it, since one round serves them all), or the poll interval. `false` on
/// shutdown.
async fn idle(wake: &Notify, poll: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(poll) => true,
        _ = wake.notified() => true,
    }
}

/// Waits out a backoff in full. A notification meanwhile only says there is work, which
/// the round after the backoff takes anyway: it neither cuts the wait short nor queues
/// a round of its own. The notifications seen, or `None` on shutdown.
async fn sit_out(
    wake: &Notify,
    wait: Duration,
    shutdown: &CancellationToken,
    stats: &RelayStats,
) -> Option<u64> {
    let before = stats.notifications();
    tokio::select! {
        _ = shutdown.cancelled() => return None,
        _ = tokio::time::sleep(wait) => {}
    }
    // The wake-up kept meanwhile, taken: the round that follows serves it.
    let _ = tokio::time::timeout(Duration::ZERO, wake.notified()).await;
    Some(stats.notifications().saturating_sub(before))
}

/// Has `relay` record its batches in its outbox's metrics, which are named by the
/// schema: whether PostgreSQL answered with it (asked again later if not).
async fn observe_outbox(relay: &mut Relay, pool: &PgPool, bus: &Bus) -> bool {
    match current_schema(pool).await {
        Ok(schema) => {
            relay.observe(bus.metrics().outbox.of(&schema));
            true
        }
        Err(_) => false,
    }
}

async fn listen(pool: &PgPool) -> Option<PgListener> {
    let schema = current_schema(pool).await.ok()?;
    let mut l = PgListener::connect_with(pool).await.ok()?;
    l.listen(&channel_of(&schema)).await.ok()?;
    Some(l)
}

/// One round with a relay of its own: up to `batch` rows, claimed, published and
/// recorded before it returns. How many were published.
pub async fn relay_once(pool: &PgPool, bus: &Bus, batch: i64) -> Result<usize, RelayError> {
    let mut relay = Relay::new(RelayConfig::new(Duration::from_secs(1), batch));
    let round = relay.round(pool, bus).await?;
    relay.record(pool).await?;
    Ok(round.sent)
}

/// What publishing outbox rows together came to.
pub(crate) enum Published {
    /// The broker's answer for each row, in their order.
    Answered(Vec<Result<(), himaya_bus::BusError>>),
    /// The broker could not be reached: nothing went out.
    Unreachable(himaya_bus::BusError),
    /// No answer for them all in the time given: perhaps published, perhaps not.
    Unanswered,
}

/// Publishes outbox rows and waits for every confirm, `within` at most; counts the
/// publish's time and the rows the broker did not confirm in their outbox's `metrics`.
/// What the relay's rounds and the writers' handovers (`crate::handover`) both do.
pub(crate) async fn publish_rows(
    bus: &Bus,
    msgs: &[Outgoing],
    within: Duration,
    metrics: Option<&himaya_metrics::OutboxHandles>,
) -> Published {
    if msgs.is_empty() {
        return Published::Answered(Vec::new());
    }
    let publishing = Instant::now();
    let published = match bus.publish_within(msgs, within).await {
        Ok(results) => Published::Answered(results),
        Err(himaya_bus::BusError::Unconfirmed(_)) => Published::Unanswered,
        Err(e) => Published::Unreachable(e),
    };
    if let Some(m) = metrics {
        m.publish.observe(publishing.elapsed().as_secs_f64());
        let unconfirmed = match &published {
            Published::Answered(results) => results.iter().filter(|r| r.is_err()).count(),
            Published::Unreachable(_) => 0,
            Published::Unanswered => msgs.len(),
        };
        m.confirms_failed.inc_by(unconfirmed as u64);
    }
    published
}

/// What one [`Relay::round`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    /// Rows claimed (a full batch: more may be waiting).
    pub claimed: usize,
    /// Rows the broker confirmed.
    pub sent: usize,
}

/// One relay: its name on the rows it leases, and the broker's answers for its last
/// batch while they wait for the next claim to record them.
#[derive(Debug)]
pub struct Relay {
    id: String,
    cfg: RelayConfig,
    /// Row ids, and why each unconfirmed one was not sent (`None`: confirmed).
    outcomes: Vec<(i64, Option<String>)>,
    /// The connection its statements go through, kept between rounds: each return to
    /// the pool costs a round trip (sqlx pings a connection as it takes it back).
    /// Dropped after a failed statement, so a broken one is replaced.
    conn: Option<PoolConnection<Postgres>>,
    /// Its outbox's metrics (publish latency, confirms failed), once observed.
    metrics: Option<himaya_metrics::OutboxHandles>,
    /// Claims urgent rows only (the urgent relay).
    urgent_only: bool,
    /// Background turns its routine statements take (see `Bus::set_background`).
    turns: Option<Arc<himaya_bus::Turns>>,
}

impl Relay {
    /// A relay named uniquely (process id and a random part), so that no two relays,
    /// here or in other processes, take each other's leases for their own.
    pub fn new(cfg: RelayConfig) -> Relay {
        let random = uuid::Uuid::new_v4().simple().to_string();
        Relay::named(cfg, format!("{}-{}", std::process::id(), &random[..12]))
    }

    /// A relay of the given name (`outbox.leased_by`).
    pub fn named(cfg: RelayConfig, id: impl Into<String>) -> Relay {
        Relay {
            id: id.into(),
            cfg,
            outcomes: Vec::new(),
            conn: None,
            metrics: None,
            urgent_only: false,
            turns: None,
        }
    }

    /// A relay that claims urgent rows only (priority [`URGENT_PRIORITY`] and above),
    /// named `id`: beside a relay, the same name (they are one process's relay).
    pub fn urgent(cfg: RelayConfig, id: impl Into<String>) -> Relay {
        Relay {
            urgent_only: true,
            ..Relay::named(cfg, id)
        }
    }

    /// Records its batches' publish latency and unconfirmed rows in `metrics`.
    pub fn observe(&mut self, metrics: himaya_metrics::OutboxHandles) {
        self.metrics = Some(metrics);
    }

    /// Takes one of `turns` for each claim (and record) of its rows, unless it is the
    /// urgent relay: the process's routine background transactions run a few at a time.
    pub fn take_turns(&mut self, turns: Option<Arc<himaya_bus::Turns>>) {
        self.turns = turns.filter(|_| !self.urgent_only);
    }

    /// Its name on the rows it leases.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Records the last batch's outcomes, claims up to a batch of rows and publishes
    /// them, waiting for every confirm together. A full batch's outcomes are recorded
    /// by the next round's claim (call [`Relay::record`] if none follows); a partial
    /// batch's before this returns.
    pub async fn round(&mut self, pool: &PgPool, bus: &Bus) -> Result<Round, RelayError> {
        let started = Instant::now();
        let rows = self.claim_rows(pool, self.cfg.batch_size).await?;
        if rows.is_empty() {
            return Ok(Round::default());
        }
        let claimed_in = started.elapsed();
        let claimed = rows.len();
        let mut ids = Vec::with_capacity(claimed);
        let mut msgs = Vec::with_capacity(claimed);
        let mut outcomes = Vec::with_capacity(claimed);
        for r in rows {
            let id = r.id;
            match r.into_outgoing() {
                Ok(m) => {
                    ids.push(id);
                    msgs.push(m);
                }
                // A malformed row waits out its backoff: it does not hold up the others.
                Err(e) => outcomes.push((id, Some(e.to_string()))),
            }
        }
        let published = publish_rows(bus, &msgs, self.cfg.lease, self.metrics.as_ref()).await;
        let results = match published {
            Published::Answered(results) => results,
            Published::Unreachable(e) => {
                // Nothing went out: the rows are free again at once, for the next round
                // (the malformed ones wait for it to record their backoff).
                self.outcomes = outcomes;
                self.release(pool, &ids).await;
                return Err(RelayError::Bus(e));
            }
            // Perhaps published, perhaps not: the leases expire when this gives up, and
            // the rows go out again (the inbox drops what was a duplicate).
            Published::Unanswered => {
                self.outcomes = outcomes;
                return Err(RelayError::Unconfirmed(self.cfg.lease));
            }
        };
        let confirmed_in = started.elapsed();
        let mut sent = 0;
        for ((id, result), m) in ids.iter().zip(results).zip(&msgs) {
            match result {
                Ok(()) => {
                    sent += 1;
                    outcomes.push((*id, None));
                }
                Err(e) => {
                    tracing::warn!(message_id = %m.message_id, error = %e, "outbox row not confirmed; will retry");
                    outcomes.push((*id, Some(e.to_string())));
                }
            }
        }
        self.outcomes = outcomes;
        if (claimed as i64) < self.cfg.batch_size {
            self.record(pool).await?;
        }
        tracing::debug!(
            rows = claimed,
            sent,
            claimed_us = claimed_in.as_micros() as u64,
            confirmed_us = confirmed_in.as_micros() as u64,
            recorded_us = started.elapsed().as_micros() as u64,
            "outbox relayed"
        );
        Ok(Round { claimed, sent })
    }

    /// Claims up to a batch of rows without publishing them: the first half of a
    /// [`Relay::round`] (with the last batch's outcomes recorded), what a relay that died
    /// right after its claim leaves behind. How many rows it leased.
    pub async fn claim(&mut self, pool: &PgPool) -> Result<usize, RelayError> {
        Ok(self.claim_rows(pool, self.cfg.batch_size).await?.len())
    }

    /// Records the outcomes not recorded yet (none: no statement).
    pub async fn record(&mut self, pool: &PgPool) -> Result<(), RelayError> {
        if !self.outcomes.is_empty() {
            self.claim_rows(pool, 0).await?;
        }
        Ok(())
    }

    /// One statement, committed at once: records the last batch's outcomes (confirmed
    /// rows sent; the others back to the pool after a backoff, unless another relay
    /// holds them now) and leases up to `limit` unsent rows, urgent first, that no
    /// other relay holds. The outcomes are forgotten once recorded.
    async fn claim_rows(
        &mut self,
        pool: &PgPool,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, RelayError> {
        let (ids, errors): (Vec<i64>, Vec<Option<String>>) = self.outcomes.iter().cloned().unzip();
        // The outcomes are found by primary key, one look-up each: "not sent yet" is
        // written so that it does not match the unsent rows' partial index, which the
        // planner chose when its statistics saw few unsent rows, and which then walked
        // the whole backlog (hundreds of rows under load) for every round.
        let _turn = match &self.turns {
            Some(turns) => turns.take(self.cfg.stage).await,
            None => None,
        };
        let mut conn = self.take_connection(pool).await?;
        // The urgent relay keeps to the index's urgent end: it never walks the routine
        // backlog.
        let lowest = if self.urgent_only {
            i16::from(URGENT_PRIORITY)
        } else {
            0
        };
        let rows = sqlx::query_as::<_, OutboxRow>(
            "WITH recorded AS (
               UPDATE outbox o
                  SET sent_at = CASE WHEN r.error IS NULL THEN now() END,
                      lease_until = NULL,
                      leased_by = $3,
                      attempts = o.attempts + CASE WHEN r.error IS NULL THEN 0 ELSE 1 END,
                      last_error = COALESCE(r.error, o.last_error),
                      next_attempt_at = CASE WHEN r.error IS NULL THEN o.next_attempt_at
                        ELSE now() + make_interval(secs => LEAST(300, power(2, o.attempts))) END
                 FROM unnest($1::bigint[], $2::text[]) AS r(id, error)
                WHERE o.id = r.id AND coalesce(o.sent_at, '-infinity') = '-infinity'
                  AND (r.error IS NULL OR o.leased_by = $3)
             ), claimed AS (
               SELECT id FROM outbox
                WHERE sent_at IS NULL AND next_attempt_at <= now()
                  AND priority >= $6
                  AND (lease_until IS NULL OR lease_until < now())
                  AND id <> ALL($1)
                ORDER BY priority DESC, id
                LIMIT $4
                FOR UPDATE SKIP LOCKED
             )
             UPDATE outbox o
                SET lease_until = now() + make_interval(secs => $5), leased_by = $3
               FROM claimed
              WHERE o.id = claimed.id
             RETURNING o.id, o.message_id, o.exchange, o.routing_key, o.event_type, o.priority,
                       o.headers, o.payload",
        )
        .bind(&ids)
        .bind(&errors)
        .bind(&self.id)
        .bind(limit)
        .bind(self.cfg.lease.as_secs_f64())
        .bind(lowest)
        .fetch_all(&mut *conn)
        .await
        .map_err(StoreError::from)?;
        // Kept only after a statement that went through: a failed one may be broken.
        self.conn = Some(conn);
        self.outcomes.clear();
        let mut rows = rows;
        // RETURNING keeps no order: urgent rows go out first.
        rows.sort_by_key(|r| (std::cmp::Reverse(r.priority), r.id));
        Ok(rows)
    }

    /// Gives up the leases of rows not published (the broker unreachable), so the next
    /// round takes them without waiting for the leases to expire. Best effort: should
    /// this fail too, the leases expire.
    async fn release(&mut self, pool: &PgPool, ids: &[i64]) {
        let released = match self.take_connection(pool).await {
            Ok(mut conn) => sqlx::query(
                "UPDATE outbox SET lease_until = NULL
                  WHERE id = ANY($1) AND leased_by = $2 AND sent_at IS NULL",
            )
            .bind(ids)
            .bind(&self.id)
            .execute(&mut *conn)
            .await
            .map(|_| self.conn = Some(conn))
            .map_err(StoreError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = released {
            tracing::debug!(error = %e, "outbox leases not released; they will expire");
        }
    }

    /// The relay's connection, or one from `pool` if it has none.
    async fn take_connection(
        &mut self,
        pool: &PgPool,
    ) -> Result<PoolConnection<Postgres>, StoreError> {
        match self.conn.take() {
            Some(conn) => Ok(conn),
            None => Ok(pool.acquire().await?),
        }
    }

    /// Gives its connection back to the pool (it takes one again when it needs one):
    /// before the pruning, so a pool of two (one listening) can serve it.
    pub fn put_back(&mut self) {
        self.conn = None;
    }
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
    #[error("the broker did not confirm a batch within the lease ({0:?})")]
    Unconfirmed(Duration),
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
