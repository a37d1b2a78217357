//! The only crate that touches the broker. Publishing always waits for the broker's
//! confirm with `mandatory` set; consumers acknowledge only after their handler's effect
//! is committed; a message that can never be processed is parked with its reason; a lost
//! connection is re-established with backoff.

mod consume;
mod link;
mod parked;
mod topology;
mod turns;
pub mod urgent;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::Confirmation;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;

pub use consume::{consume, consume_batches, BatchHandler, HandleError, Handler, Incoming};
pub use link::{refuses_our_certificate, Link, CONNECT_TIMEOUT};
pub use parked::{park_copy, Parked, Replayed, Selection};
pub use topology::{lane_key, queues, urgent_queue, Exchange, Topology, URGENT_PRIORITY};
pub use turns::{Stage, Turn, Turns, TURN_WAIT};

/// The longest a channel's opening (or the connection's closing) is awaited on a
/// connection that says it is up: the broker answers in milliseconds.
const CHANNEL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an ack, nack or reject may take to be handed to the broker (lapin answers once
/// it is written to the socket: a healthy connection takes microseconds).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a lone publish ([`Bus::publish`]: parking, the tools) waits for its confirm.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to the broker")]
    Connect(#[source] lapin::Error),
    /// The broker could not be reached, or its TLS refused (said naming the setting).
    #[error("cannot connect to the broker: {0}")]
    Link(String),
    #[error("configuration key `{key}`: {problem}")]
    Setting { key: &'static str, problem: String },
    #[error("cannot declare the bus topology")]
    Declare(#[source] lapin::Error),
    #[error("publishing failed")]
    Publish(#[source] lapin::Error),
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("no queue is bound for routing key `{0}`: the message came back")]
    Unroutable(String),
    #[error("consuming failed")]
    Consume(#[source] lapin::Error),
    #[error("the channel closed before the acknowledgement reached the broker; the message will be delivered again")]
    NotAcknowledged,
    #[error("the acknowledgement was not sent within {0} s; the channel is dropped and the message will be delivered again")]
    Unsettled(u64),
    /// No answer from the broker within the time given (ms): what was sent may or may
    /// not have arrived.
    #[error("the broker did not confirm within {0} ms")]
    Unconfirmed(u64),
}

/// An ack, nack or reject that lapin could not send (its channel closed or the delivery
/// was already settled) is an error: the broker still holds the message and will deliver
/// it again, which the idempotent handlers absorb. Bounded by [`SETTLE_TIMEOUT`]: a
/// settlement sent just as the connection died can be left unanswered by lapin, and a
/// consumer waiting on it would never notice that its channel is gone.
pub(crate) async fn settle(
    settling: impl std::future::Future<Output = lapin::Result<bool>>,
) -> Result<(), BusError> {
    match tokio::time::timeout(SETTLE_TIMEOUT, settling).await {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err(BusError::NotAcknowledged),
        Ok(Err(e)) => Err(BusError::Consume(e)),
        Err(_) => Err(BusError::Unsettled(SETTLE_TIMEOUT.as_secs())),
    }
}

/// `call` awaited `limit` at most: past it, [`BusError::Unconfirmed`] (the broker's
/// answer may still come, on a channel no one reads any more).
pub(crate) async fn bounded<T>(
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, BusError>>,
) -> Result<T, BusError> {
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or(Err(BusError::Unconfirmed(limit.as_millis() as u64)))
}

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub exchange: Exchange,
    pub routing_key: String,
    pub payload: Vec<u8>,
    /// The idempotency id consumers deduplicate on.
    pub message_id: String,
    /// The Avro event name (`himaya.v1.ReferralCreated`), as the AMQP `type`.
    pub event_type: String,
    /// 0–9; urgent referrals are published with a higher priority.
    pub priority: u8,
    /// String headers: `traceparent`, `x-correlation-id`, a parking reason.
    pub headers: BTreeMap<String, String>,
}

/// A connection to the broker that heals itself: every operation asks for a channel and
/// gets a fresh connection when the old one died, from the next of the cluster's
/// addresses on: a process whose node died goes on through another node.
pub struct Bus {
    /// Every node's link, tried in turn (never empty).
    links: Vec<Link>,
    /// Which of `links` the live connection (or the last one) was made through.
    current: std::sync::atomic::AtomicUsize,
    topology: Topology,
    conn: Mutex<Option<Arc<Connection>>>,
    publisher: Mutex<Option<Channel>>,
    /// The hub's metrics: its consumers count here (`himaya_bus_*`).
    metrics: Arc<himaya_metrics::Metrics>,
    /// Where urgent work runs, once the process has set it (see [`urgent`]); until then
    /// it runs beside routine work.
    urgent: std::sync::OnceLock<urgent::Urgent>,
    /// Turns for routine background transactions, once the process has set how many
    /// (see [`Bus::set_background`]); until then, none are waited for.
    background: std::sync::OnceLock<Arc<Turns>>,
}

impl Bus {
    /// Connects and declares the base topology; fails fast when the broker is unreachable.
    /// Its consumers count in a registry of their own (see [`Bus::connect_with`]).
    /// An `amqps://` URL trusts the system's authorities; [`Bus::connect_link`] takes
    /// the hub's settings (`bus.ca_file`, a client certificate).
    pub async fn connect(url: impl Into<String>, topology: Topology) -> Result<Arc<Bus>, BusError> {
        Bus::connect_with(url, topology, Arc::default()).await
    }

    /// [`Bus::connect`], its consumers counting in the hub's `metrics`.
    pub async fn connect_with(
        url: impl Into<String>,
        topology: Topology,
        metrics: Arc<himaya_metrics::Metrics>,
    ) -> Result<Arc<Bus>, BusError> {
        Bus::connect_link(Link::url(url)?, topology, metrics).await
    }

    /// Connects over `link` (see [`Link::from_settings`]), its consumers counting in
    /// `metrics`.
    pub async fn connect_link(
        link: Link,
        topology: Topology,
        metrics: Arc<himaya_metrics::Metrics>,
    ) -> Result<Arc<Bus>, BusError> {
        Bus::connect_links(vec![link], topology, metrics).await
    }

    /// [`Bus::connect_link`] to a cluster (see [`Link::all_from_settings`]): the first of
    /// `links` that answers, and on each reconnect the next ones in turn, starting after
    /// the node that was lost (an empty list cannot connect).
    pub async fn connect_links(
        links: Vec<Link>,
        topology: Topology,
        metrics: Arc<himaya_metrics::Metrics>,
    ) -> Result<Arc<Bus>, BusError> {
        if links.is_empty() {
            return Err(BusError::Link("bus.url is empty".into()));
        }
        let bus = Arc::new(Bus {
            links,
            current: std::sync::atomic::AtomicUsize::new(0),
            topology,
            conn: Mutex::new(None),
            publisher: Mutex::new(None),
            metrics,
            urgent: std::sync::OnceLock::new(),
            background: std::sync::OnceLock::new(),
        });
        let ch = bus.channel().await?;
        bus.topology.declare_base(&ch).await?;
        let _ = ch.close(200, "declared".into()).await;
        Ok(bus)
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Another connection to the same nodes, with the same topology and metrics, not
    /// yet connected: it connects on its first use, driven by the runtime it is used on.
    fn twin(&self) -> Bus {
        Bus {
            links: self.links.clone(),
            current: std::sync::atomic::AtomicUsize::new(
                self.current.load(std::sync::atomic::Ordering::Relaxed),
            ),
            topology: self.topology.clone(),
            conn: Mutex::new(None),
            publisher: Mutex::new(None),
            metrics: self.metrics.clone(),
            urgent: std::sync::OnceLock::new(),
            background: std::sync::OnceLock::new(),
        }
    }

    /// Runs this bus's urgent work (its consumers' urgent lanes, the relays' urgent
    /// rounds, whoever asks [`Bus::urgent`]) on `urgent`. Set once, before the consumers
    /// start; a second call changes nothing.
    pub fn set_urgent(&self, urgent: urgent::Urgent) {
        let _ = self.urgent.set(urgent);
    }

    /// Where urgent work runs, if the process has a runtime for it.
    pub fn urgent(&self) -> Option<&urgent::Urgent> {
        self.urgent.get()
    }

    /// Lets at most `turns` routine background transactions of this process run at
    /// once (`database.background_transactions`; 0: no bound). Set once, before the
    /// consumers and relays start; a second call changes nothing.
    pub fn set_background(&self, turns: u32) {
        if turns > 0 {
            let turns = usize::try_from(turns).unwrap_or(usize::MAX);
            let _ = self.background.set(Arc::new(Turns::new(turns)));
        }
    }

    /// The turns of [`Bus::set_background`], if set: each routine background
    /// transaction holds one while it runs (see [`Turns::take`]).
    pub fn background(&self) -> Option<Arc<Turns>> {
        self.background.get().cloned()
    }

    /// A background turn of this bus for `stage` ([`Turns::take`]), or none if no
    /// bound is set.
    pub async fn background_turn(&self, stage: Stage) -> Option<Turn> {
        match self.background.get() {
            Some(turns) => turns.take(stage).await,
            None => None,
        }
    }

    /// The metrics this bus's consumers (and the relays publishing through it) count in.
    pub fn metrics(&self) -> &Arc<himaya_metrics::Metrics> {
        &self.metrics
    }

    /// Whether the broker can be reached now: the connection is up, or a new one could
    /// be made (which the consumers and the relays then use) within `within`. For
    /// readiness: lapin marks the connection closed as soon as the broker closes it.
    /// The whole probe is bounded by `within`, the wait for the connection's lock too: a
    /// reconnect stuck on a broker that drops packets holds that lock, and readiness
    /// must then say "not ready", not wait behind it.
    pub async fn probe(&self, within: Duration) -> bool {
        let probe = async {
            if let Some(c) = self.conn.lock().await.as_ref() {
                if c.status().connected() {
                    return true;
                }
            }
            match self.channel().await {
                Ok(ch) => {
                    let _ = ch.close(200, "probed".into()).await;
                    true
                }
                Err(_) => false,
            }
        };
        tokio::time::timeout(within, probe).await.unwrap_or(false)
    }

    /// Reads from the broker how many messages are ready on every queue consumed in this
    /// process (a passive declare each, on one channel), into
    /// `himaya_bus_queue_ready_messages`. False when the broker could not be asked.
    pub async fn sample_queues(&self) -> bool {
        let queues = self.metrics.bus.watched_queues();
        if queues.is_empty() {
            return true;
        }
        let Some(ready) = self.ready_messages(&queues).await else {
            return false;
        };
        for (q, n) in queues.iter().zip(&ready) {
            if let Some(n) = n {
                self.metrics.bus.set_ready_messages(q, *n);
            }
        }
        ready.iter().all(Option::is_some)
    }

    /// How many messages are ready on each of `queues` (full names), by a passive
    /// declare each on one channel; `None` for a queue that does not exist (yet). `None`
    /// in all when the broker could not be asked.
    pub async fn ready_messages(&self, queues: &[String]) -> Option<Vec<Option<u32>>> {
        let mut ch = self.channel().await.ok()?;
        let mut ready = Vec::with_capacity(queues.len());
        for q in queues {
            let opts = lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            match ch
                .queue_declare(q.as_str().into(), opts, FieldTable::default())
                .await
            {
                Ok(declared) => ready.push(Some(declared.message_count())),
                Err(_) => {
                    // A passive declare of a missing queue closes the channel.
                    ready.push(None);
                    ch = self.channel().await.ok()?;
                }
            }
        }
        let _ = ch.close(200, "sampled".into()).await;
        Some(ready)
    }

    /// Declares a consumer's quorum queue bound to `exchange` with `keys` (idempotent).
    pub async fn declare_queue(
        &self,
        queue: &str,
        exchange: Exchange,
        keys: &[&str],
    ) -> Result<(), BusError> {
        let ch = self.channel().await?;
        self.topology
            .declare_queue(&ch, queue, exchange, keys)
            .await?;
        let _ = ch.close(200, "declared".into()).await;
        Ok(())
    }

    /// A new channel on a live connection, reconnecting if needed.
    pub async fn channel(&self) -> Result<Channel, BusError> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            if c.status().connected() {
                // Bounded: a connection whose socket died without lapin noticing still
                // says connected, and its channel would be awaited forever.
                match tokio::time::timeout(CHANNEL_TIMEOUT, c.create_channel()).await {
                    Ok(Ok(ch)) => return Ok(ch),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "channel creation failed; reconnecting")
                    }
                    Err(_) => tracing::warn!(
                        timeout_s = CHANNEL_TIMEOUT.as_secs(),
                        "channel creation unanswered; reconnecting"
                    ),
                }
            }
        }
        // A connection that was lost starts the round at the next node: its own may be
        // the one that died. The first connection starts at the first address.
        use std::sync::atomic::Ordering;
        let n = self.links.len();
        let first = match guard.is_some() {
            true => (self.current.load(Ordering::Relaxed) + 1) % n,
            false => self.current.load(Ordering::Relaxed) % n,
        };
        let mut last = None;
        for i in (0..n).map(|k| (first + k) % n) {
            let link = &self.links[i];
            let props = ConnectionProperties::default().with_connection_name("himaya".into());
            let opened = match link.open(props).await {
                Ok(conn) => match conn.create_channel().await {
                    Ok(ch) => Ok((conn, ch)),
                    Err(e) => Err(BusError::Connect(e)),
                },
                Err(e) => Err(match e.kind() {
                    // The socket's own error (refused, timed out, TLS), said once.
                    lapin::ErrorKind::IOError(io) => BusError::Link(link.describe(io)),
                    _ => BusError::Connect(e),
                }),
            };
            match opened {
                Ok((conn, ch)) => {
                    if n > 1 {
                        tracing::info!(node = i, of = n, "connected to the broker");
                    }
                    self.current.store(i, Ordering::Relaxed);
                    *guard = Some(Arc::new(conn));
                    return Ok(ch);
                }
                Err(e) => {
                    // The address is never logged: it may carry the password.
                    if n > 1 {
                        tracing::warn!(node = i, of = n, error = %e, "broker node unreachable; trying the next");
                    }
                    last = Some(e);
                }
            }
        }
        // Nothing answered: the next attempt goes on from the node after this round's first.
        self.current.store(first, Ordering::Relaxed);
        Err(last.unwrap_or_else(|| BusError::Link("bus.url is empty".into())))
    }

    async fn publisher(&self) -> Result<Channel, BusError> {
        let mut guard = self.publisher.lock().await;
        if let Some(ch) = guard.as_ref() {
            if ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        let ch = self.channel().await?;
        // Bounded like the channel's opening, with the publisher's lock held.
        bounded(CHANNEL_TIMEOUT, async {
            ch.confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(BusError::Publish)
        })
        .await?;
        *guard = Some(ch.clone());
        Ok(ch)
    }

    /// Publishes and waits for the broker's confirm, [`CONFIRM_TIMEOUT`] at most.
    pub async fn publish(&self, msg: &Outgoing) -> Result<(), BusError> {
        self.publish_within(std::slice::from_ref(msg), CONFIRM_TIMEOUT)
            .await?
            .pop()
            .unwrap_or(Ok(()))
    }

    /// [`Bus::publish_batch`], waiting `within` at most for the confirms. Past it the
    /// answer is [`BusError::Unconfirmed`] (each message perhaps published, perhaps
    /// not) and the next publish starts on a fresh channel: a channel whose connection
    /// died while lapin still called it open would leave every later publish as
    /// unanswered.
    pub async fn publish_within(
        &self,
        msgs: &[Outgoing],
        within: Duration,
    ) -> Result<Vec<Result<(), BusError>>, BusError> {
        let published = bounded(within, self.publish_batch(msgs)).await;
        if let Err(BusError::Unconfirmed(_)) = published {
            *self.publisher.lock().await = None;
        }
        published
    }

    /// Publishes every message, then waits for all the confirms: one round trip of
    /// latency for the batch instead of one per message. The outer error means nothing
    /// was sent; otherwise there is one result per message.
    pub async fn publish_batch(
        &self,
        msgs: &[Outgoing],
    ) -> Result<Vec<Result<(), BusError>>, BusError> {
        let ch = self.publisher().await?;
        let mut pending = Vec::with_capacity(msgs.len());
        for m in msgs {
            let exchange = self.topology.exchange(m.exchange);
            let opts = BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            };
            let key = topology::lane_key(m.exchange, &m.routing_key, m.priority);
            pending.push(
                ch.basic_publish(
                    exchange.into(),
                    key.as_ref().into(),
                    opts,
                    &m.payload,
                    properties(m),
                )
                .await,
            );
        }
        let mut out = Vec::with_capacity(msgs.len());
        for (p, m) in pending.into_iter().zip(msgs) {
            out.push(match p {
                Err(e) => Err(BusError::Publish(e)),
                Ok(confirm) => match confirm.await {
                    Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => Ok(()),
                    Ok(Confirmation::Ack(Some(_))) | Ok(Confirmation::Nack(Some(_))) => {
                        Err(BusError::Unroutable(m.routing_key.clone()))
                    }
                    Ok(Confirmation::Nack(None)) => Err(BusError::Nacked),
                    Err(e) => Err(BusError::Publish(e)),
                },
            });
        }
        if out.iter().any(Result::is_err) {
            // Start the next batch on a fresh channel: a failed one may be closed.
            *self.publisher.lock().await = None;
        }
        Ok(out)
    }

    /// Closes the connection, and the urgent one if there is one (best effort), on
    /// shutdown.
    pub async fn close(&self) {
        if let Some(u) = self.urgent.get() {
            u.bus().close_own().await;
        }
        self.close_own().await;
    }

    async fn close_own(&self) {
        if let Some(c) = self.conn.lock().await.take() {
            // Bounded like a channel's opening: a dead connection never answers.
            let _ = tokio::time::timeout(CHANNEL_TIMEOUT, c.close(200, "shutdown".into())).await;
        }
    }
}

fn properties(m: &Outgoing) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (k, v) in &m.headers {
        headers.insert(
            ShortString::from(k.as_str()),
            AMQPValue::LongString(LongString::from(v.as_str())),
        );
    }
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(ShortString::from("application/vnd.apache.avro+binary"))
        .with_message_id(ShortString::from(m.message_id.as_str()))
        .with_type(ShortString::from(m.event_type.as_str()))
        .with_priority(m.priority)
        .with_headers(headers)
}

/// The waits of a consumer reconnecting to the broker: 100 ms doubling to 10 s (each
/// between half its step and the step), for as long as the broker is away.
pub(crate) fn reconnect_backoff() -> himaya_settings::retry::ExponentialBuilder {
    himaya_settings::retry::backoff(Duration::from_millis(100), Duration::from_secs(10))
}
