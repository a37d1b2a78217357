//! The operator's side of parking: list what is parked and why, inspect one message's
//! envelope, and replay messages to the queue they came from once the cause is fixed.
//!
//! Parked messages stay in the parking queue while they are read: a scan takes each
//! message with `basic.get` and puts the ones that stay parked back at the end of the
//! queue, in order (see `Scan` for why not a requeue). A replay publishes a copy to the
//! origin queue through the default exchange, waits for the broker's confirm, and only
//! then acknowledges the parked one: a crash in between leaves the message in both
//! places, and the consumer's inbox makes the second copy harmless.
//!
//! Only the envelope is ever shown (ids, type, origin, reason, size); the body holds a
//! child's data and is never decoded here.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use lapin::message::BasicGetMessage;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::Channel;
use lapin::Confirmation;

use crate::{Bus, BusError};

/// Header naming why a consumer parked the message.
pub const REASON_HEADER: &str = "x-himaya-park-reason";
/// Header naming the queue the message was taken from when it was parked.
pub const FROM_HEADER: &str = "x-himaya-parked-from";
/// Header with the parking time, in seconds since the Unix epoch.
pub const AT_HEADER: &str = "x-himaya-parked-at";
/// Header a replayed copy carries: when it was replayed, in seconds since the epoch.
pub const REPLAYED_HEADER: &str = "x-himaya-replayed-at";

/// Headers about a message's stay in parking, dropped from a replayed copy so that it
/// looks to its consumer like any other message (RabbitMQ adds the `x-*-death` ones when
/// a quorum queue's delivery limit dead-letters a message).
const PARKING_HEADERS: [&str; 7] = [
    REASON_HEADER,
    FROM_HEADER,
    AT_HEADER,
    "x-death",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-first-death-exchange",
];

/// A parked message's envelope: enough to decide what to do with it, never its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    /// The id an operator names it by (`list` prints it, `show` and `replay` take it):
    /// the message id, or `pkd_…` derived from the message when it has none.
    pub id: String,
    /// The message id as sent, `-` when it has none.
    pub message_id: String,
    /// The Avro event name (`himaya.v1.ReferralCreated`).
    pub event_type: String,
    pub routing_key: String,
    /// The queue to replay it to; `None` when nothing says where it came from.
    pub from_queue: Option<String>,
    /// Why it was parked, as the consumer (or the broker's delivery limit) put it.
    pub reason: String,
    /// Seconds since the Unix epoch, when the consumer recorded it.
    pub parked_at: Option<u64>,
    /// The body's size in bytes.
    pub bytes: usize,
    /// Every string header (trace and correlation ids, the reasons).
    pub headers: BTreeMap<String, String>,
}

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// (id, queue) of each message now back in its queue.
    pub replayed: Vec<(String, String)>,
    /// (id, why) of each selected message left in parking.
    pub kept: Vec<(String, String)>,
    /// Messages the selection did not take, left in parking untouched.
    pub unselected: usize,
}

/// Which parked messages a replay takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every parked message.
    All,
    /// The messages with one of these ids ([`Parked::id`]).
    Ids(Vec<String>),
    /// The messages parked from this queue (without the prefix or with it).
    FromQueue(String),
}

impl Selection {
    fn takes(&self, p: &Parked, prefix: &str) -> bool {
        match self {
            Selection::All => true,
            Selection::Ids(ids) => ids.contains(&p.id),
            Selection::FromQueue(q) => p
                .from_queue
                .as_deref()
                .is_some_and(|from| from == q || from.strip_prefix(prefix) == Some(q.as_str())),
        }
    }
}

impl Bus {
    /// Up to `limit` parked messages, oldest first, all left in parking (in their order).
    pub async fn parked(&self, limit: usize) -> Result<Vec<Parked>, BusError> {
        let mut scan = Scan::open(self).await?;
        let mut out = Vec::new();
        while let Some(msg) = scan.next().await? {
            if out.len() < limit {
                out.push(describe(&msg));
            }
            scan.keep(&msg).await?;
        }
        scan.close().await;
        Ok(out)
    }

    /// The number of parked messages.
    pub async fn parked_count(&self) -> Result<u32, BusError> {
        let ch = self.channel().await?;
        let q = ch
            .queue_declare(
                self.topology().parking_queue().into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(BusError::Consume)?;
        let _ = ch.close(200, "counted".into()).await;
        Ok(q.message_count())
    }

    /// Sends the selected parked messages back to the queues they came from; the rest
    /// stay parked. A message whose origin is unknown, or whose queue no longer exists,
    /// stays parked and is reported in [`Replayed::kept`].
    pub async fn replay_parked(&self, selection: &Selection) -> Result<Replayed, BusError> {
        let prefix = self.topology().prefix().to_owned();
        let mut scan = Scan::open(self).await?;
        let mut report = Replayed::default();
        while let Some(msg) = scan.next().await? {
            let parked = describe(&msg);
            if !selection.takes(&parked, &prefix) {
                report.unselected += 1;
                scan.keep(&msg).await?;
                continue;
            }
            let Some(target) = parked.from_queue.clone() else {
                report
                    .kept
                    .push((parked.id, "nothing says which queue it came from".into()));
                scan.keep(&msg).await?;
                continue;
            };
            match publish_copy(&scan.publisher, &target, &msg, replay_headers(&msg)).await {
                Ok(()) => {
                    scan.take(&msg).await?;
                    tracing::info!(id = %parked.id, queue = %target, "parked message replayed");
                    report.replayed.push((parked.id, target));
                }
                Err(BusError::Unroutable(_)) => {
                    report
                        .kept
                        .push((parked.id, format!("its queue `{target}` no longer exists")));
                    scan.keep(&msg).await?;
                }
                // The broker failed mid-replay: what was not acked goes back by itself
                // when the channel closes.
                Err(e) => return Err(e),
            }
        }
        scan.close().await;
        Ok(report)
    }
}

/// One pass over the parking queue. Each message is taken (unacknowledged); one that
/// stays parked is put back at the end of the queue (a confirmed copy, then the taken one
/// acknowledged) rather than requeued: a requeue counts as a delivery, and RabbitMQ
/// 4.0-4.2 give quorum queues a default limit of 20 deliveries, past which a message on a
/// queue without a dead-letter exchange is dropped. Looking must never lose one. A crash
/// between the copy and the ack leaves the message parked twice, never gone.
struct Scan {
    ch: Channel,
    publisher: Channel,
    queue: String,
    /// Messages of the pass still to take: the count the broker gave with the first one
    /// bounds the pass, so what is put back (or parked meanwhile) waits for the next.
    left: Option<u32>,
}

impl Scan {
    async fn open(bus: &Bus) -> Result<Scan, BusError> {
        let ch = bus.channel().await?;
        let publisher = bus.channel().await?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(BusError::Publish)?;
        Ok(Scan {
            ch,
            publisher,
            queue: bus.topology().parking_queue(),
            left: None,
        })
    }

    async fn next(&mut self) -> Result<Option<BasicGetMessage>, BusError> {
        if self.left == Some(0) {
            return Ok(None);
        }
        let msg = self
            .ch
            .basic_get(
                self.queue.as_str().into(),
                BasicGetOptions { no_ack: false },
            )
            .await
            .map_err(BusError::Consume)?;
        if let Some(m) = &msg {
            self.left = Some(self.left.map_or(m.message_count, |n| n.saturating_sub(1)));
        }
        Ok(msg)
    }

    /// Puts the message back at the end of the parking queue, unchanged.
    async fn keep(&self, msg: &BasicGetMessage) -> Result<(), BusError> {
        let headers = msg
            .delivery
            .properties
            .headers()
            .clone()
            .unwrap_or_default();
        publish_copy(&self.publisher, &self.queue, msg, headers).await?;
        self.take(msg).await
    }

    /// Removes the taken message from the parking queue.
    async fn take(&self, msg: &BasicGetMessage) -> Result<(), BusError> {
        crate::settle(msg.delivery.ack(BasicAckOptions::default())).await
    }

    async fn close(self) {
        let _ = self.publisher.close(200, "scanned".into()).await;
        let _ = self.ch.close(200, "scanned".into()).await;
    }
}

/// The parking headers a consumer adds to a message it parks.
/// Parks `out`, taken from `queue`, for an operator with the reason: a copy published to
/// the parking exchange, returned once the broker confirmed it. What a consumer parks is
/// usually the message it was given (the consumer loop does that); this parks a part of
/// one, e.g. one item of a batch message whose other items were handled. A replay sends
/// it back to `queue`.
pub async fn park_copy(
    bus: &Bus,
    queue: &str,
    mut out: crate::Outgoing,
    reason: &str,
) -> Result<(), BusError> {
    parking_headers(&mut out.headers, queue, reason);
    out.exchange = crate::Exchange::Parking;
    out.priority = 0;
    bus.publish(&out).await
}

pub(crate) fn parking_headers(headers: &mut BTreeMap<String, String>, queue: &str, reason: &str) {
    headers.insert(REASON_HEADER.into(), reason.to_owned());
    headers.insert(FROM_HEADER.into(), queue.to_owned());
    headers.insert(AT_HEADER.into(), now_secs().to_string());
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn describe(msg: &BasicGetMessage) -> Parked {
    let props = &msg.delivery.properties;
    let headers = crate::consume::string_headers(props.headers().as_ref());
    let from_queue = headers
        .get(FROM_HEADER)
        .or_else(|| headers.get("x-first-death-queue"))
        .cloned();
    // A consumer parks a message without an id under `-` (its logs' placeholder).
    let message_id = props
        .message_id()
        .as_ref()
        .map(|s| s.as_str())
        .filter(|id| !id.is_empty() && *id != "-");
    let event_type = props
        .kind()
        .as_ref()
        .map(|s| s.to_string())
        .unwrap_or_default();
    Parked {
        id: parked_id(message_id, &event_type, &headers, &msg.delivery.data),
        message_id: message_id.unwrap_or("-").to_owned(),
        event_type,
        routing_key: msg.delivery.routing_key.to_string(),
        from_queue,
        reason: reason(&headers),
        parked_at: headers.get(AT_HEADER).and_then(|s| s.parse().ok()),
        bytes: msg.delivery.data.len(),
        headers,
    }
}

/// Why the message was parked, from the consumer's header or the broker's.
fn reason(headers: &BTreeMap<String, String>) -> String {
    match (
        headers.get(REASON_HEADER),
        headers.get("x-first-death-reason"),
    ) {
        (Some(r), _) => r.clone(),
        (None, Some(r)) if r == "delivery_limit" => format!(
            "delivered {} times without being handled (the queue's delivery limit)",
            crate::topology::DELIVERY_LIMIT
        ),
        (None, Some(r)) => format!("dead-lettered by the broker ({r})"),
        (None, None) => "no reason recorded".into(),
    }
}

/// The id an operator names a parked message by: its message id, or, for a message
/// without one, `pkd_` and a hash of its type, string headers and body. The hash takes
/// only what a look leaves unchanged (a scan puts each message back with the same
/// properties and body, but under the parking queue's routing key), so the id `list`
/// prints is the one `show` and `replay` find; it is the same in every process (FNV-1a,
/// not the standard library's seeded hasher). Identical copies share an id, as copies of
/// a message with an id do: the two are the same message. The body is hashed, never
/// shown.
fn parked_id(
    message_id: Option<&str>,
    event_type: &str,
    headers: &BTreeMap<String, String>,
    body: &[u8],
) -> String {
    if let Some(id) = message_id {
        return id.to_owned();
    }
    let mut h = Fnv1a::default();
    h.field(event_type.as_bytes());
    for (k, v) in headers {
        h.field(k.as_bytes());
        h.field(v.as_bytes());
    }
    h.field(body);
    format!("pkd_{:012x}", h.0 >> 16)
}

/// 64-bit FNV-1a: small, and stable across processes and Rust versions.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    /// Adds one field, length first, so that fields cannot run into each other
    /// (`ab` + `c` and `a` + `bc` hash apart).
    fn field(&mut self, bytes: &[u8]) {
        for b in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// A replayed copy's headers: the message's own, without those of its stay in parking,
/// and with the time of the replay.
fn replay_headers(msg: &BasicGetMessage) -> FieldTable {
    let mut headers = FieldTable::default();
    if let Some(h) = msg.delivery.properties.headers() {
        for (k, v) in h.inner() {
            if !PARKING_HEADERS.contains(&k.as_str()) {
                headers.insert(k.clone(), v.clone());
            }
        }
    }
    headers.insert(
        ShortString::from(REPLAYED_HEADER),
        AMQPValue::LongString(LongString::from(now_secs().to_string())),
    );
    headers
}

/// Publishes a copy of a taken message straight to `queue` (default exchange) with
/// `headers`, and waits for the broker's confirm.
async fn publish_copy(
    ch: &Channel,
    queue: &str,
    msg: &BasicGetMessage,
    headers: FieldTable,
) -> Result<(), BusError> {
    let props = msg.delivery.properties.clone().with_headers(headers);
    let opts = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    let publishing = async {
        ch.basic_publish("".into(), queue.into(), opts, &msg.delivery.data, props)
            .await?
            .await
    };
    let confirm = crate::bounded(crate::CONFIRM_TIMEOUT, async {
        publishing.await.map_err(BusError::Publish)
    })
    .await?;
    match confirm {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_)) => {
            Err(BusError::Unroutable(queue.to_owned()))
        }
        Confirmation::Nack(None) => Err(BusError::Nacked),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(reason: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(REASON_HEADER.to_owned(), reason.to_owned())])
    }

    #[test]
    fn a_message_id_is_the_parked_id() {
        let id = parked_id(Some("msg_a"), "T", &headers("bad"), b"body");
        assert_eq!(id, "msg_a");
    }

    #[test]
    fn a_message_without_an_id_gets_one_from_what_it_carries() {
        let h = headers("bad");
        let first = parked_id(None, "T", &h, &[1, 2, 3]);
        assert!(first.starts_with("pkd_") && first.len() == 16, "{first}");
        assert_eq!(parked_id(None, "T", &h, &[1, 2, 3]), first);
        let others = [
            parked_id(None, "T", &h, &[1, 2, 4]),
            parked_id(None, "T", &headers("worse"), &[1, 2, 3]),
            parked_id(None, "U", &h, &[1, 2, 3]),
            // Fields do not run into each other.
            parked_id(None, "T", &headers("ba"), &[b'd', 1, 2, 3]),
        ];
        for other in &others {
            assert_ne!(other, &first);
        }
    }

    #[test]
    fn the_derived_id_is_the_same_in_every_process_and_release() {
        // An id printed by `list` yesterday must still name the message today.
        let id = parked_id(
            None,
            "himaya.v1.ReferralCreated",
            &headers("bad"),
            &[1, 2, 3],
        );
        assert_eq!(id, "pkd_7a34eb8d0c3f");
    }
}
