//! Writing to the outbox inside the caller's transaction.

use std::collections::BTreeMap;

use himaya_bus::{Exchange, Outgoing};
use himaya_events::{encode, Event};
use sqlx::PgConnection;

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
    let mut headers = BTreeMap::new();
    headers.insert("x-correlation-id".to_owned(), correlation_id.to_owned());
    let msg = Outgoing {
        exchange,
        routing_key: routing_key.to_owned(),
        payload: encode(event).map_err(|_| StoreError::Encode(E::NAME))?,
        message_id: event.message_id().to_owned(),
        event_type: E::NAME.into(),
        priority,
        headers,
    };
    enqueue(conn, &msg).await
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
         SELECT pg_notify('himaya_outbox_' || current_schema(), '')",
    )
    .bind(&msg.message_id)
    .bind(msg.exchange.as_str())
    .bind(&msg.routing_key)
    .bind(&msg.event_type)
    .bind(i16::from(msg.priority))
    .bind(headers)
    .bind(&msg.payload)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
