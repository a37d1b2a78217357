//! The consumer loop: prefetch-bounded and concurrent up to the prefetch, manual acks after the handler returns (the handler
//! commits its effect, inbox row included, before returning `Ok`), bounded in-process
//! retries, then a requeue that the quorum queue's delivery limit turns into parking;
//! permanent failures and panics are parked at once with their reason.
//!
//! A batch consumer ([`consume_batches`]) takes what is already waiting instead: it
//! waits for one message, adds every one delivered meanwhile (up to its bound), commits
//! them in one go and acknowledges them with one `multiple` ack. A message it cannot
//! read, and every message of a batch that failed, is handled alone exactly as
//! [`consume`] handles it, so one bad message never holds back or parks the others.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use backon::{BackoffBuilder, Retryable};
use futures_util::stream::FuturesUnordered;
use futures_util::TryStreamExt;
use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Consumer};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::{reconnect_backoff, Bus, BusError, Exchange, Outgoing};
use himaya_metrics::LaneHandles;

/// In-process retries of a retryable failure before the message is requeued: three, after
/// 200, 400 and 800 ms (each between half its step and the step).
fn local_retries() -> himaya_settings::retry::ExponentialBuilder {
    himaya_settings::retry::backoff(
        std::time::Duration::from_millis(200),
        std::time::Duration::from_secs(10),
    )
    .with_max_times(3)
}

/// A received message.
pub struct Incoming {
    delivery: Delivery,
    since: std::time::Instant,
}

impl Incoming {
    /// The earliest the broker may have sent this message to the consumer (to within
    /// the milliseconds a message is in transit): the broker's consumer timeout (30
    /// minutes by default) runs from then, so a handler that holds a message (waiting
    /// for an agency) bounds the hold from here, not from the call it is in. Several
    /// calls for the same message (its in-process retries, a batch handled again
    /// message by message) see the same instant.
    pub fn since(&self) -> std::time::Instant {
        self.since
    }

    pub fn payload(&self) -> &[u8] {
        &self.delivery.data
    }

    pub fn message_id(&self) -> Option<&str> {
        self.delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str())
    }

    pub fn routing_key(&self) -> &str {
        self.delivery.routing_key.as_str()
    }

    /// The W3C `traceparent` header, if present.
    pub fn traceparent(&self) -> Option<&str> {
        let headers = self.delivery.properties.headers().as_ref()?;
        match headers.inner().get(himaya_trace::TRACEPARENT)? {
            AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
            AMQPValue::ShortString(s) => Some(s.as_str()),
            _ => None,
        }
    }

    /// A string header, if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.string_headers().remove(name)
    }

    /// Every string header (other types are skipped).
    pub fn headers(&self) -> BTreeMap<String, String> {
        self.string_headers()
    }

    fn string_headers(&self) -> BTreeMap<String, String> {
        string_headers(self.delivery.properties.headers().as_ref())
    }
}

/// The string-valued headers of a message (other types are skipped).
pub(crate) fn string_headers(headers: Option<&FieldTable>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in headers.map(FieldTable::inner).into_iter().flatten() {
        let text = match v {
            AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            AMQPValue::ShortString(s) => s.to_string(),
            _ => continue,
        };
        out.insert(k.to_string(), text);
    }
    out
}

/// Why a handler did not finish. Reasons are operator-facing: ids and rule names only,
/// never personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandleError {
    /// A transient failure (database, broker, an agency's 5xx): try again.
    Retry { reason: String },
    /// The message can never be processed (undecodable, invalid): park it.
    Park { reason: String },
    /// Back to the queue now, without the in-process retries: trying again at once
    /// cannot help (a delivery whose wait for its agency is over, the hub stopping).
    Requeue { reason: String },
}

impl HandleError {
    /// A message that can never be processed; the reason as `e` displays (an operator
    /// reads it: ids and rule names only).
    pub fn park(e: impl std::fmt::Display) -> HandleError {
        HandleError::Park {
            reason: e.to_string(),
        }
    }

    /// A failure that may pass; the reason as `e` displays.
    pub fn retry(e: impl std::fmt::Display) -> HandleError {
        HandleError::Retry {
            reason: e.to_string(),
        }
    }

    /// A message to give back to its queue at once; the reason as `e` displays.
    pub fn requeue(e: impl std::fmt::Display) -> HandleError {
        HandleError::Requeue {
            reason: e.to_string(),
        }
    }
}

pub trait Handler: Send + Sync + 'static {
    /// Processes one message and commits its effect before returning `Ok`.
    fn handle(&self, msg: &Incoming) -> impl Future<Output = Result<(), HandleError>> + Send;
}

/// A consumer that commits many messages at once (see [`consume_batches`]).
pub trait BatchHandler: Send + Sync + 'static {
    /// One message as the batch takes it (decoded).
    type Item: Send;

    /// Reads one message. One that cannot be read stays out of the batch and is handled
    /// alone, as by [`consume`]: an `Err(Park)` here parks it with its reason.
    fn read(&self, msg: &Incoming) -> Result<Self::Item, HandleError>;

    /// Processes the items in the order they were delivered and commits all their
    /// effects (in one transaction, or in several) before returning `Ok`. On an error
    /// its messages are then handled one by one, so whatever of the batch was committed
    /// before the error must be passed over then (its inbox entries; the connectors also
    /// look their recorded deliveries up).
    fn handle_batch(
        &self,
        items: Vec<Self::Item>,
    ) -> impl Future<Output = Result<(), HandleError>> + Send;

    /// Whether a routine batch waits for a background turn (see
    /// [`crate::Bus::set_background`]) and holds it while handled. A handler whose
    /// batch waits on something else than its database (the connectors' calls to an
    /// agency) says no, and may take a turn around its transaction alone
    /// ([`crate::Bus::background_turn`]).
    fn takes_turns(&self) -> bool {
        true
    }

    /// Which kind of stage its batches are when they take a turn: on a referral's way
    /// to its agency (the default), or recording what has already happened, which
    /// gives way to those on the way (see [`crate::Turns`]).
    fn stage(&self) -> crate::Stage {
        crate::Stage::OnTheWay
    }
}

/// A batch handler taking one message at a time: how the messages of a failed batch,
/// and those it could not read, are handled (with [`consume`]'s retries and parking).
struct Singly<H>(Arc<H>);

impl<H: BatchHandler> Handler for Singly<H> {
    async fn handle(&self, msg: &Incoming) -> Result<(), HandleError> {
        let item = self.0.read(msg)?;
        self.0.handle_batch(vec![item]).await
    }
}

/// Consumes `queue` and its urgent lane side by side until `shutdown`, reconnecting
/// after broker failures. An urgent message is handled as soon as it arrives, whatever
/// the routine backlog.
pub async fn consume<H: Handler>(
    bus: Arc<Bus>,
    queue: String,
    prefetch: u16,
    handler: Arc<H>,
    shutdown: CancellationToken,
) {
    let urgent = crate::urgent_queue(&queue);
    let (u, r) = counters(&bus, &queue, &urgent);
    let urgent_lane = {
        let (handler, shutdown) = (handler.clone(), shutdown.clone());
        move |bus: Arc<Bus>| async move {
            let each = Each {
                handler: &*handler,
                prefetch,
            };
            lane(&bus, urgent, &each, &shutdown, u).await
        }
    };
    let each = Each {
        handler: &*handler,
        prefetch,
    };
    tokio::join!(
        on_urgent(&bus, urgent_lane),
        lane(&bus, queue, &each, &shutdown, r),
    );
}

/// Consumes `queue` and its urgent lane like [`consume`], a batch at a time: each lane
/// waits for a message, takes with it every one already delivered (at most
/// `max_batch`; the broker sends up to twice that ahead, so the next batch arrives
/// while one is committed), hands the ones it can read to
/// [`BatchHandler::handle_batch`] and acknowledges them together once it returns.
/// A batch never waits to fill: under a light load each is one message.
///
/// A message that cannot be read is handled alone first, as [`consume`] would (parked
/// with its reason); if the batch fails (an error or a panic), its messages are handled
/// one by one as [`consume`] would, up to `prefetch` at once, with its retries, requeue
/// and parking.
pub async fn consume_batches<H: BatchHandler>(
    bus: Arc<Bus>,
    queue: String,
    prefetch: u16,
    max_batch: u16,
    handler: Arc<H>,
    shutdown: CancellationToken,
) {
    let batches = move |handler, routine| Batches {
        handler: Singly(handler),
        prefetch,
        max: max_batch.max(1),
        routine,
    };
    let urgent = crate::urgent_queue(&queue);
    let (u, r) = counters(&bus, &queue, &urgent);
    let urgent_lane = {
        let (handler, shutdown) = (handler.clone(), shutdown.clone());
        move |bus: Arc<Bus>| async move {
            lane(&bus, urgent, &batches(handler, false), &shutdown, u).await
        }
    };
    let routine = batches(handler, true);
    tokio::join!(
        on_urgent(&bus, urgent_lane),
        lane(&bus, queue, &routine, &shutdown, r),
    );
}

/// Runs an urgent lane where `bus`'s urgent work runs, on its connection (see
/// [`crate::urgent`]); beside the routine lane where there is no such place.
async fn on_urgent<F, Fut>(bus: &Arc<Bus>, lane: F)
where
    F: FnOnce(Arc<Bus>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    match bus.urgent() {
        Some(u) => {
            if let Err(e) = u.spawn(lane(u.bus().clone())).await {
                if e.is_panic() {
                    tracing::error!("an urgent lane's consumer panicked");
                }
            }
        }
        None => lane(bus.clone()).await,
    }
}

/// The counters of `queue`'s two lanes (urgent, routine), resolved once: a message
/// then costs an atomic increment each.
fn counters(bus: &Bus, queue: &str, urgent: &str) -> (LaneHandles, LaneHandles) {
    let m = &bus.metrics().bus;
    (
        m.lane(queue, "urgent", urgent),
        m.lane(queue, "routine", queue),
    )
}

/// How a lane handles what its consumer delivers.
trait Drain: Sync {
    /// The channel's prefetch (QoS).
    fn qos(&self) -> u16;

    /// Handles deliveries until `shutdown` (`Ok`) or a broker failure (`Err`).
    fn drain(
        &self,
        bus: &Bus,
        queue: &str,
        ch: &Channel,
        consumer: Consumer,
        shutdown: &CancellationToken,
        counts: &LaneHandles,
    ) -> impl Future<Output = Result<(), BusError>> + Send;
}

async fn lane<D: Drain>(
    bus: &Bus,
    queue: String,
    how: &D,
    shutdown: &CancellationToken,
    counts: LaneHandles,
) {
    // The waits start over once a consumer is up again; the stream of waits never ends.
    let mut waits = reconnect_backoff().build();
    let mut attempt = 0u32;
    while !shutdown.is_cancelled() {
        match consume_once(bus, &queue, how, shutdown, &mut attempt, &counts).await {
            Ok(()) => break,
            Err(e) => {
                if attempt == 0 {
                    // Once per loss (the retries that follow it are not counted).
                    counts.restarted.inc();
                    waits = reconnect_backoff().build();
                }
                let wait = waits.next().unwrap_or(std::time::Duration::from_secs(10));
                tracing::warn!(queue = %queue, error = %e, attempt, retry_in_ms = wait.as_millis() as u64, "consumer lost its channel; reconnecting");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
                attempt = attempt.saturating_add(1);
            }
        }
    }
    tracing::debug!(queue = %queue, "consumer stopped");
}

async fn consume_once<D: Drain>(
    bus: &Bus,
    queue: &str,
    how: &D,
    shutdown: &CancellationToken,
    attempt: &mut u32,
    counts: &LaneHandles,
) -> Result<(), BusError> {
    let ch = bus.channel().await?;
    // Bounded like the channel's opening: a connection dying meanwhile may leave them
    // unanswered.
    let subscribing = async {
        ch.basic_qos(how.qos(), BasicQosOptions::default()).await?;
        ch.basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
    };
    let consumer = crate::bounded(crate::CHANNEL_TIMEOUT, async {
        subscribing.await.map_err(BusError::Consume)
    })
    .await?;
    *attempt = 0;
    how.drain(bus, queue, &ch, consumer, shutdown, counts).await
}

fn channel_closed() -> BusError {
    BusError::Consume(
        lapin::ErrorKind::InvalidChannelState(lapin::ChannelState::Closed, "basic.consume").into(),
    )
}

/// [`consume`]'s way: each message on its own.
struct Each<'a, H> {
    handler: &'a H,
    prefetch: u16,
}

impl<H: Handler> Drain for Each<'_, H> {
    fn qos(&self) -> u16 {
        self.prefetch
    }

    async fn drain(
        &self,
        bus: &Bus,
        queue: &str,
        ch: &Channel,
        mut consumer: Consumer,
        shutdown: &CancellationToken,
        counts: &LaneHandles,
    ) -> Result<(), BusError> {
        // Up to `prefetch` messages are handled at once (each acks its own delivery); with
        // prefetch 1 the queue is consumed strictly in order.
        let mut inflight = FuturesUnordered::new();
        let limit = usize::from(self.prefetch.max(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    while let Some(done) = inflight.next().await {
                        let _ = done;
                    }
                    let _ = ch.close(200, "shutdown".into()).await;
                    return Ok(());
                }
                Some(done) = inflight.next(), if !inflight.is_empty() => done?,
                next = consumer.next(), if inflight.len() < limit => match next {
                    None => return Err(channel_closed()),
                    Some(Err(e)) => return Err(BusError::Consume(e)),
                    Some(Ok(delivery)) => {
                        counts.consumed.inc();
                        // Taken as it arrives: no more than `limit` are unacknowledged.
                        let since = std::time::Instant::now();
                        inflight.push(process(bus, queue, self.handler, Incoming { delivery, since }, shutdown, counts))
                    }
                },
            }
        }
    }
}

/// [`consume_batches`]'s way: what is waiting, at once.
struct Batches<H> {
    handler: Singly<H>,
    prefetch: u16,
    max: u16,
    /// The routine lane (its batches take background turns), not the urgent one.
    routine: bool,
}

impl<H: BatchHandler> Drain for Batches<H> {
    fn qos(&self) -> u16 {
        self.max.saturating_mul(2)
    }

    async fn drain(
        &self,
        bus: &Bus,
        queue: &str,
        ch: &Channel,
        consumer: Consumer,
        shutdown: &CancellationToken,
        counts: &LaneHandles,
    ) -> Result<(), BusError> {
        // Waits for the first delivery, then takes every one already here, up to `max`.
        let mut ready = consumer.ready_chunks(usize::from(self.max));
        // When the messages of the next batch were sent, at the earliest (see
        // `Incoming::since`): not before the consume began, nor before the last batch
        // taken short of `max` (it took everything that had arrived), nor before the
        // batch before the last was taken: the broker sends no more than `qos` (two
        // batches) unacknowledged and batches are handled one at a time, so whatever had
        // been sent when a batch was taken is in it or in the one after.
        let mut floor = std::time::Instant::now();
        let mut taken: [Option<std::time::Instant>; 2] = [None, None];
        loop {
            let chunk = tokio::select! {
                _ = shutdown.cancelled() => {
                    // Nothing is in hand between batches: what was delivered and not
                    // yet taken goes back to the queue with the channel.
                    let _ = ch.close(200, "shutdown".into()).await;
                    return Ok(());
                }
                next = ready.next() => next.ok_or_else(channel_closed)?,
            };
            let deliveries = chunk
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .map_err(BusError::Consume)?;
            counts.consumed.inc_by(deliveries.len() as u64);
            let now = std::time::Instant::now();
            let since = taken[0].map_or(floor, |t| t.max(floor));
            taken = [taken[1], Some(now)];
            if deliveries.len() < usize::from(self.max) {
                floor = now;
            }
            self.batch(bus, queue, deliveries, since, shutdown, counts)
                .await?;
        }
    }
}

impl<H: BatchHandler> Batches<H> {
    /// One batch: the unreadable messages alone, then the rest in one call and one ack.
    async fn batch(
        &self,
        bus: &Bus,
        queue: &str,
        deliveries: Vec<Delivery>,
        since: std::time::Instant,
        shutdown: &CancellationToken,
        counts: &LaneHandles,
    ) -> Result<(), BusError> {
        let started = std::time::Instant::now();
        let mut items = Vec::with_capacity(deliveries.len());
        let mut msgs = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let msg = Incoming { delivery, since };
            match self.handler.0.read(&msg) {
                Ok(item) => {
                    items.push(item);
                    msgs.push(msg);
                }
                // Settled (parked, or requeued) before the batch's ack, which covers
                // every earlier delivery of the channel still unacknowledged.
                Err(_) => process(bus, queue, &self.handler, msg, shutdown, counts).await?,
            }
        }
        let Some(last) = msgs.last() else {
            return Ok(());
        };
        let size = msgs.len();
        let traced =
            himaya_trace::batch_consumer(queue, size, msgs.iter().map(|m| m.traceparent()));
        // A routine batch waits for its turn (the urgent lane never does): what runs in
        // the background takes turns, so intake's statements find a core.
        let turn = match self.routine && self.handler.0.takes_turns() {
            true => bus.background_turn(self.handler.0.stage()).await,
            false => None,
        };
        let outcome = AssertUnwindSafe(self.handler.0.handle_batch(items))
            .catch_unwind()
            .instrument(traced)
            .await
            .unwrap_or_else(|_| {
                Err(HandleError::Park {
                    reason: "the handler panicked".into(),
                })
            });
        drop(turn);
        match outcome {
            Ok(()) => {
                let handled = started.elapsed();
                // The batch is every unacknowledged delivery up to its last: the earlier
                // ones of the channel were settled before it began.
                let opts = BasicAckOptions { multiple: true };
                let acked = crate::settle(last.delivery.ack(opts)).await;
                if acked.is_ok() {
                    counts.acked.inc_by(size as u64);
                }
                tracing::debug!(
                    queue,
                    size,
                    handled_us = handled.as_micros() as u64,
                    acked_us = started.elapsed().as_micros() as u64,
                    "batch handled"
                );
                acked
            }
            Err(
                HandleError::Retry { reason }
                | HandleError::Park { reason }
                | HandleError::Requeue { reason },
            ) => {
                tracing::warn!(queue, size, reason = %reason, "batch failed; handling its messages one by one");
                let limit = usize::from(self.prefetch.max(1));
                futures_util::stream::iter(msgs)
                    .map(|msg| process(bus, queue, &self.handler, msg, shutdown, counts))
                    .buffer_unordered(limit)
                    .try_collect()
                    .await
            }
        }
    }
}

async fn process<H: Handler>(
    bus: &Bus,
    queue: &str,
    handler: &H,
    msg: Incoming,
    shutdown: &CancellationToken,
    counts: &LaneHandles,
) -> Result<(), BusError> {
    let id = msg.message_id().unwrap_or("-").to_owned();
    let started = std::time::Instant::now();
    // The message's hop: a span continuing the trace its `traceparent` names.
    let span = himaya_trace::consumer(queue, &id, msg.traceparent());
    let handle = || {
        AssertUnwindSafe(handler.handle(&msg).instrument(span.clone()))
            .catch_unwind()
            .map(|outcome| {
                outcome.unwrap_or_else(|_| {
                    Err(HandleError::Park {
                        reason: "the handler panicked".into(),
                    })
                })
            })
    };
    let mut tries = 0u32;
    let outcome = handle
        .retry(local_retries())
        .sleep(tokio::time::sleep)
        // Stopping: what still fails goes back to its queue now, not after the retries.
        .when(|e| matches!(e, HandleError::Retry { .. }) && !shutdown.is_cancelled())
        .notify(|e, wait| {
            if let HandleError::Retry { reason } = e {
                counts.retried.inc();
                tracing::warn!(queue, message_id = %id, reason = %reason, tries, retry_in_ms = wait.as_millis() as u64, "retrying");
            }
            tries += 1;
        })
        .await;
    match outcome {
        Ok(()) => {
            let handled = started.elapsed();
            let acked = crate::settle(msg.delivery.ack(BasicAckOptions::default())).await;
            if acked.is_ok() {
                counts.acked.inc();
            }
            tracing::debug!(queue, message_id = %id, handled_us = handled.as_micros() as u64, acked_us = started.elapsed().as_micros() as u64, "message handled");
            acked
        }
        Err(HandleError::Park { reason }) => park(bus, queue, msg, &id, &reason, counts).await,
        Err(HandleError::Retry { reason }) => {
            counts.retried.inc();
            tracing::warn!(queue, message_id = %id, reason = %reason, "still failing; requeued");
            requeue(msg).await
        }
        Err(HandleError::Requeue { reason }) => {
            counts.retried.inc();
            tracing::info!(queue, message_id = %id, reason = %reason, "given back to its queue");
            requeue(msg).await
        }
    }
}

/// Gives `msg` back to its queue (a delivery counted towards the queue's limit).
async fn requeue(msg: Incoming) -> Result<(), BusError> {
    let opts = BasicNackOptions {
        requeue: true,
        ..Default::default()
    };
    crate::settle(msg.delivery.nack(opts)).await
}

/// Copies the message to parking with the reason, and acks it only once parking confirmed.
async fn park(
    bus: &Bus,
    queue: &str,
    msg: Incoming,
    id: &str,
    reason: &str,
    counts: &LaneHandles,
) -> Result<(), BusError> {
    let out = Outgoing {
        exchange: Exchange::Parking,
        routing_key: msg.routing_key().to_owned(),
        payload: msg.payload().to_vec(),
        message_id: id.to_owned(),
        event_type: msg
            .delivery
            .properties
            .kind()
            .as_ref()
            .map(|k| k.to_string())
            .unwrap_or_default(),
        priority: 0,
        headers: msg.string_headers(),
    };
    match crate::parked::park_copy(bus, queue, out, reason).await {
        Ok(()) => {
            counts.parked.inc();
            tracing::error!(queue, message_id = %id, reason, "message parked; an operator must look at it");
            crate::settle(msg.delivery.ack(BasicAckOptions::default())).await
        }
        Err(e) => {
            tracing::warn!(queue, message_id = %id, error = %e, "parking failed; requeued");
            let opts = BasicNackOptions {
                requeue: true,
                ..Default::default()
            };
            crate::settle(msg.delivery.nack(opts)).await
        }
    }
}
