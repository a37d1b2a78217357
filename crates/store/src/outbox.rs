//! Writing to the outbox inside the caller's transaction.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use himaya_bus::{Exchange, Outgoing, URGENT_PRIORITY};
use himaya_events::{encode, Event};
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::{PgConnection, Postgres};

use crate::relay::URGENT_PAYLOAD;
use crate::StoreError;

/// Encodes `event` and adds it to the outbox, under `routing_key` on `exchange`, with
/// its correlation id (the case, referral or service it concerns) as a header.
pub async fn enqueue_event<E: Event>(
    conn: &mut PgConnection,
    exchange: Exchange,
    routing_key: &str,
    event: &E,
    priority: u8,
    correlation_id: &str,
) -> Result<(), StoreError> {
    let msg = event_message(exchange, routing_key, event, priority, correlation_id)?;
    enqueue(conn, &msg).await
}

/// The message [`enqueue_event`] adds for `event`.
pub fn event_message<E: Event>(
    exchange: Exchange,
    routing_key: &str,
    event: &E,
    priority: u8,
    correlation_id: &str,
) -> Result<Outgoing, StoreError> {
    let mut headers = BTreeMap::new();
    headers.insert("x-correlation-id".to_owned(), correlation_id.to_owned());
    // The span that wrote the event: its consumers continue this trace (traces on only).
    if let Some(tp) = himaya_trace::current() {
        headers.insert(himaya_trace::TRACEPARENT.to_owned(), tp);
    }
    message_of(exchange, routing_key, event, priority, headers)
}

/// `event` encoded as a message under `routing_key` on `exchange`, with its own message
/// id and these headers.
pub fn message_of<E: Event>(
    exchange: Exchange,
    routing_key: &str,
    event: &E,
    priority: u8,
    headers: BTreeMap<String, String>,
) -> Result<Outgoing, StoreError> {
    Ok(Outgoing {
        exchange,
        routing_key: routing_key.to_owned(),
        payload: encode(event).map_err(|_| StoreError::Encode(E::NAME))?,
        message_id: event.message_id().to_owned(),
        event_type: E::NAME.into(),
        priority,
        headers,
    })
}

/// Outbox rows as the end of a larger statement: a writer that has other rows to insert
/// in the same transaction adds them in the same round trip, as common table
/// expressions before these (see [`Rows::statement`]). Rows of no message insert
/// nothing and wake no relay.
pub struct Rows<'a> {
    msgs: &'a [Outgoing],
    held: Option<(&'a str, std::time::Duration)>,
    headers: Vec<serde_json::Value>,
}

/// What a [`Rows`] statement returns: the held rows' ids and message ids, and one row
/// of nulls for the wake-up.
pub type Returned = Vec<(Option<i64>, Option<String>)>;

impl<'a> Rows<'a> {
    /// The rows of `msgs`, in their order; the urgent ones leased by `held` (a holder's
    /// name, and how long) when given.
    pub fn new(
        msgs: &'a [Outgoing],
        held: Option<(&'a str, std::time::Duration)>,
    ) -> Result<Rows<'a>, StoreError> {
        let headers = msgs
            .iter()
            .map(|m| serde_json::to_value(&m.headers))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| StoreError::Corrupt("headers"))?;
        Ok(Rows {
            msgs,
            held,
            headers,
        })
    }

    /// The statement inserting the rows, its parameters numbered from `$first` (12 of
    /// them, bound by [`Rows::bind`]), after the common table expressions `before`
    /// (`name AS (...)`, comma separated; empty for none). It returns [`Returned`], and
    /// wakes the relay at commit (only if the transaction commits).
    pub fn statement(before: &str, first: usize) -> String {
        let p = |i: usize| format!("${}", first + i);
        let before = if before.is_empty() {
            String::new()
        } else {
            format!("{before},\n         ")
        };
        format!(
            "WITH {before}outbox_rows AS (
           INSERT INTO outbox (message_id, exchange, routing_key, event_type, priority, headers, payload,
                               lease_until, leased_by)
           SELECT m.message_id, m.exchange, m.routing_key, m.event_type, m.priority, m.headers, m.payload,
                  CASE WHEN m.priority >= {urgent} AND {holder}::text IS NOT NULL
                       THEN now() + make_interval(secs => {lease}) END,
                  CASE WHEN m.priority >= {urgent} THEN {holder}::text END
             FROM UNNEST({0}::text[], {1}::text[], {2}::text[], {3}::text[], {4}::smallint[], {5}::jsonb[], {6}::bytea[])
                  WITH ORDINALITY AS m(message_id, exchange, routing_key, event_type, priority, headers, payload, i)
            ORDER BY m.i
           RETURNING id, message_id, leased_by)
         SELECT id, message_id FROM outbox_rows WHERE leased_by IS NOT NULL
         UNION ALL
         SELECT NULL, NULL FROM (SELECT pg_notify('himaya_outbox_' || current_schema(), {wake})) AS woken
          WHERE {woken}",
            p(0),
            p(1),
            p(2),
            p(3),
            p(4),
            p(5),
            p(6),
            wake = p(7),
            holder = p(8),
            urgent = p(9),
            lease = p(10),
            woken = p(11),
        )
    }

    /// Binds the rows' 12 parameters to `q`, after whatever it has bound already.
    pub fn bind<'q, O>(
        &'q self,
        q: QueryAs<'q, Postgres, O, PgArguments>,
    ) -> QueryAs<'q, Postgres, O, PgArguments> {
        let msgs = self.msgs;
        let column = |f: fn(&Outgoing) -> &str| -> Vec<&str> { msgs.iter().map(f).collect() };
        let priorities: Vec<i16> = msgs.iter().map(|m| i16::from(m.priority)).collect();
        let payloads: Vec<&[u8]> = msgs.iter().map(|m| m.payload.as_slice()).collect();
        // The rows a relay must be woken for: all of them, or the routine ones when the
        // urgent are held.
        let held = self.held;
        let unheld: Vec<&Outgoing> = msgs
            .iter()
            .filter(|m| held.is_none() || m.priority < URGENT_PRIORITY)
            .collect();
        q.bind(column(|m| m.message_id.as_str()))
            .bind(column(|m| m.exchange.as_str()))
            .bind(column(|m| m.routing_key.as_str()))
            .bind(column(|m| m.event_type.as_str()))
            .bind(priorities)
            .bind(&self.headers)
            .bind(payloads)
            .bind(wake(unheld.iter().copied()))
            .bind(held.map(|(holder, _)| holder))
            .bind(i16::from(URGENT_PRIORITY))
            .bind(held.map_or(0.0, |(_, lease)| lease.as_secs_f64()))
            .bind(!unheld.is_empty())
    }

    /// Inserts the rows alone, in one statement: the held rows' ids with their
    /// messages, in the messages' order.
    pub async fn insert(
        &self,
        conn: &mut PgConnection,
    ) -> Result<Vec<(i64, &'a Outgoing)>, StoreError> {
        if self.msgs.is_empty() {
            return Ok(Vec::new());
        }
        static ALONE: LazyLock<String> = LazyLock::new(|| Rows::statement("", 1));
        let returned = self.bind(sqlx::query_as(&ALONE)).fetch_all(conn).await?;
        Ok(self.held(returned))
    }

    /// The held rows' ids with their messages, in the messages' order, from what the
    /// statement returned.
    pub fn held(&self, returned: Returned) -> Vec<(i64, &'a Outgoing)> {
        let held: std::collections::HashMap<String, i64> = returned
            .into_iter()
            .filter_map(|(id, message_id)| Some((message_id?, id?)))
            .collect();
        self.msgs
            .iter()
            .filter_map(|m| Some((*held.get(&m.message_id)?, m)))
            .collect()
    }
}

/// Adds `msg` to the outbox of the connection's schema and wakes the relay at commit.
pub async fn enqueue(conn: &mut PgConnection, msg: &Outgoing) -> Result<(), StoreError> {
    let headers = serde_json::to_value(&msg.headers).map_err(|_| StoreError::Corrupt("headers"))?;
    // One round trip: the row, and the NOTIFY that wakes the relay. NOTIFY is delivered
    // at commit, and only if the transaction commits.
    sqlx::query(
        "WITH row AS (
           INSERT INTO outbox (message_id, exchange, routing_key, event_type, priority, headers, payload)
           VALUES ($1, $2, $3, $4, $5, $6, $7))
         SELECT pg_notify('himaya_outbox_' || current_schema(), $8)",
    )
    .bind(&msg.message_id)
    .bind(msg.exchange.as_str())
    .bind(&msg.routing_key)
    .bind(&msg.event_type)
    .bind(i16::from(msg.priority))
    .bind(headers)
    .bind(&msg.payload)
    .bind(wake(std::iter::once(msg)))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The payload of the notification that wakes the relay: [`URGENT_PAYLOAD`] when a row is
/// urgent (the urgent relay publishes it at once), empty otherwise. PostgreSQL sends one
/// notification of each payload per transaction, however many writes asked for it.
fn wake<'a>(mut msgs: impl Iterator<Item = &'a Outgoing>) -> &'static str {
    if msgs.any(|m| m.priority >= URGENT_PRIORITY) {
        URGENT_PAYLOAD
    } else {
        ""
    }
}
