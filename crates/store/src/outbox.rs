//! Writing to the outbox inside the caller's transaction.

use himaya_bus::Outgoing;
use sqlx::PgConnection;

use crate::StoreError;

/// Adds `msg` to the outbox of the connection's schema and wakes the relay at commit.
pub async fn enqueue(conn: &mut PgConnection, msg: &Outgoing) -> Result<(), StoreError> {
    let headers = serde_json::to_value(&msg.headers).map_err(|_| StoreError::Corrupt("headers"))?;
    sqlx::query(
        "INSERT INTO outbox (message_id, exchange, routing_key, event_type, priority, headers, payload)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
    // NOTIFY is delivered at commit, and only if the transaction commits.
    sqlx::query("SELECT pg_notify('himaya_outbox_' || current_schema(), '')")
        .execute(conn)
        .await?;
    Ok(())
}
