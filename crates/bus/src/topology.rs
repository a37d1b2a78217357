//! Names and declarations. Every name carries the configured prefix, so several hubs (or
//! parallel tests) can share one broker without touching each other's queues.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use crate::BusError;

/// Deliveries a quorum queue hands out before it dead-letters a message to parking: the
/// backstop against a message that crashes its consumer every time.
pub(crate) const DELIVERY_LIMIT: i64 = 20;

/// Priority at and above which a message takes its queue's urgent lane (urgent referrals,
/// high-risk hotline escalations, missed deadlines).
pub const URGENT_PRIORITY: u8 = 9;

/// The routing key of a message: urgent messages are published under `urgent.<key>`, so
/// they land in each consumer's urgent lane (`<queue>.urgent`), which is consumed beside
/// the routine queue and so never waits behind its backlog. RabbitMQ 3.10's quorum queues
/// ignore message priority; two queues do not.
pub fn lane_key(exchange: Exchange, key: &str, priority: u8) -> std::borrow::Cow<'_, str> {
    if priority >= URGENT_PRIORITY && exchange != Exchange::Parking && !key.starts_with("urgent.") {
        format!("urgent.{key}").into()
    } else {
        key.into()
    }
}

/// The queues of the hub's own stages, named once (a deployment's `bus.prefix` goes in
/// front, see [`Topology::queue`]).
pub mod queues {
    /// The router's: referrals to route, consent to decide, deliveries to redact.
    pub const ROUTER_REFERRALS: &str = "router.referral-created";
    /// The cases service's: the agencies' answers, recorded on the cases.
    pub const CASES_ANSWERS: &str = "cases.delivery-recorded";
    /// The disclosure log's: every disclosure, appended to the chain.
    pub const AUDIT_DISCLOSURES: &str = "audit.disclosure-recorded";
    /// What a referral passes through after intake, before and after its agency: the
    /// backlog intake's admission watches (`limits.backlog_max_messages`).
    pub const BEHIND_INTAKE: &[&str] = &[ROUTER_REFERRALS, CASES_ANSWERS, AUDIT_DISCLOSURES];
}

/// The urgent lane of a consumer's queue.
pub fn urgent_queue(queue: &str) -> String {
    format!("{queue}.urgent")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
}

/// The exchanges a message can be published to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exchange {
    /// Topic exchange of domain events (`referral.created`, ...).
    Events,
    /// Direct exchange feeding per-agency delivery queues; only the router publishes here.
    Delivery,
    /// Fanout to the parking queue: messages no consumer could process, with the reason.
    Parking,
}

impl Exchange {
    pub fn as_str(self) -> &'static str {
        match self {
            Exchange::Events => "events",
            Exchange::Delivery => "delivery",
            Exchange::Parking => "parking",
        }
    }

    pub fn parse(s: &str) -> Option<Exchange> {
        [Exchange::Events, Exchange::Delivery, Exchange::Parking]
            .into_iter()
            .find(|e| e.as_str() == s)
    }
}

impl Topology {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn exchange(&self, e: Exchange) -> String {
        format!("{}himaya.{}", self.prefix, e.as_str())
    }

    fn unrouted(&self) -> String {
        format!("{}himaya.unrouted", self.prefix)
    }

    pub fn parking_queue(&self) -> String {
        format!("{}himaya.parking", self.prefix)
    }

    pub fn unrouted_queue(&self) -> String {
        self.unrouted()
    }

    /// A consumer's queue (`router.referral-created`).
    pub fn queue(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name)
    }

    /// The delivery queue of one agency.
    pub fn delivery_queue(&self, agency_id: &str) -> String {
        format!("{}deliver.{}", self.prefix, agency_id)
    }

    /// Exchanges, the parking queue and the unrouted queue. Idempotent.
    pub async fn declare_base(&self, ch: &Channel) -> Result<(), BusError> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let err = |e| BusError::Declare(e);
        ch.exchange_declare(
            self.unrouted().into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(err)?;
        let mut alt = FieldTable::default();
        alt.insert(
            ShortString::from("alternate-exchange"),
            AMQPValue::LongString(LongString::from(self.unrouted())),
        );
        ch.exchange_declare(
            self.exchange(Exchange::Events).into(),
            ExchangeKind::Topic,
            durable,
            alt.clone(),
        )
        .await
        .map_err(err)?;
        ch.exchange_declare(
            self.exchange(Exchange::Delivery).into(),
            ExchangeKind::Direct,
            durable,
            alt,
        )
        .await
        .map_err(err)?;
        ch.exchange_declare(
            self.exchange(Exchange::Parking).into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(err)?;
        self.declare_plain(
            ch,
            &self.parking_queue(),
            &self.exchange(Exchange::Parking),
            "",
        )
        .await?;
        self.declare_plain(ch, &self.unrouted(), &self.unrouted(), "")
            .await
    }

    /// A consumer's durable quorum queue bound to `exchange` with each key, and its
    /// urgent lane bound with `urgent.<key>`. Messages redelivered past the delivery limit
    /// go to parking.
    pub async fn declare_queue(
        &self,
        ch: &Channel,
        queue: &str,
        exchange: Exchange,
        keys: &[&str],
    ) -> Result<(), BusError> {
        self.declare_lane(ch, queue, exchange, keys.iter().map(|k| (*k).to_owned()))
            .await?;
        let urgent = keys.iter().map(|k| format!("urgent.{k}"));
        self.declare_lane(ch, &urgent_queue(queue), exchange, urgent)
            .await
    }

    async fn declare_lane(
        &self,
        ch: &Channel,
        queue: &str,
        exchange: Exchange,
        keys: impl Iterator<Item = String>,
    ) -> Result<(), BusError> {
        let mut args = quorum_args();
        args.insert(
            ShortString::from("x-delivery-limit"),
            AMQPValue::LongLongInt(DELIVERY_LIMIT),
        );
        args.insert(
            ShortString::from("x-dead-letter-exchange"),
            AMQPValue::LongString(LongString::from(self.exchange(Exchange::Parking))),
        );
        ch.queue_declare(queue.into(), durable_queue(), args)
            .await
            .map_err(BusError::Declare)?;
        for key in keys {
            ch.queue_bind(
                queue.into(),
                self.exchange(exchange).into(),
                (*key).into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(BusError::Declare)?;
        }
        Ok(())
    }

    async fn declare_plain(
        &self,
        ch: &Channel,
        queue: &str,
        exchange: &str,
        key: &str,
    ) -> Result<(), BusError> {
        ch.queue_declare(queue.into(), durable_queue(), quorum_args())
            .await
            .map_err(BusError::Declare)?;
        ch.queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(BusError::Declare)
    }
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    args
}
