//! The outbox relay: claims unsent rows with `FOR UPDATE SKIP LOCKED` (so relays in several
//! processes share the work), publishes them with confirms, and marks them sent only after
//! the broker acknowledged. A crash between publish and commit republishes the row: the
//! consumers' inbox drops the duplicate.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use himaya_bus::{Bus, Exchange, Outgoing};
use sqlx::postgres::PgListener;
use sqlx::{PgPool, Row};
use tokio_util::sync::CancellationToken;

use crate::{channel_of, current_schema, StoreError};

/// Relay settings.
#[derive(Debug, Clone, Copy)]
pub struct RelayConfig {
    pub poll_interval: Duration,
    pub batch_size: i64,
}

/// Runs until `shutdown`. Wakes on the schema's NOTIFY, or every `poll_interval`.
pub async fn run_relay(pool: PgPool, bus: Arc<Bus>, cfg: RelayConfig, shutdown: CancellationToken) {
    let mut listener = listen(&pool).await;
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        match relay_once(&pool, &bus, cfg.batch_size).await {
            Ok(n) if n as i64 >= cfg.batch_size => {
                failures = 0;
                continue;
            }
            Ok(_) => failures = 0,
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, failures, "outbox relay round failed; will retry");
            }
        }
        let wait = if failures > 0 {
            Duration::from_millis(200u64 << failures.min(6))
                .min(cfg.poll_interval.max(Duration::from_secs(5)))
        } else {
            cfg.poll_interval
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
            woke = wait_notification(&mut listener) => {
                if !woke {
                    listener = None;
                }
            }
        }
        if listener.is_none() {
            listener = listen(&pool).await;
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
    let rows = sqlx::query(
        "SELECT id, message_id, exchange, routing_key, event_type, priority, headers, payload
           FROM outbox
          WHERE sent_at IS NULL AND next_attempt_at <= now()
          ORDER BY id
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
    for r in &rows {
        ids.push(r.try_get::<i64, _>("id").map_err(StoreError::from)?);
        msgs.push(outgoing(r)?);
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

fn outgoing(r: &sqlx::postgres::PgRow) -> Result<Outgoing, StoreError> {
    let exchange: String = r.try_get("exchange")?;
    let headers: serde_json::Value = r.try_get("headers")?;
    let headers: BTreeMap<String, String> =
        serde_json::from_value(headers).map_err(|_| StoreError::Corrupt("outbox.headers"))?;
    let priority: i16 = r.try_get("priority")?;
    Ok(Outgoing {
        exchange: Exchange::parse(&exchange).ok_or(StoreError::Corrupt("outbox.exchange"))?,
        routing_key: r.try_get("routing_key")?,
        payload: r.try_get("payload")?,
        message_id: r.try_get("message_id")?,
        event_type: r.try_get("event_type")?,
        priority: u8::try_from(priority).unwrap_or(0),
        headers,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the broker could not be reached")]
    Bus(#[source] himaya_bus::BusError),
}
