//! An agency's refusal in its own words (`deliveries.reason`, cut to 500 characters) is
//! kept for operators to take up with the agency, but it may quote the child: after
//! `retention.agency_words_keep_days` it is emptied, the refusal itself (outcome, HTTP
//! status, when) kept. Every hour, 5,000 rows a statement, so no run holds locks for
//! long; several replicas may run it side by side (each row is emptied once).

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// How often the connectors look for words past their keeping time.
const EVERY: Duration = Duration::from_secs(3_600);
/// Rows emptied per statement.
const BATCH: i64 = 5_000;

/// Empties the agencies' words recorded more than `keep` ago; returns how many.
pub async fn forget_agency_words(pool: &PgPool, keep: Duration) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let done = sqlx::query(
            "UPDATE deliveries SET reason = NULL WHERE message_id IN (
               SELECT message_id FROM deliveries
                WHERE reason IS NOT NULL AND recorded_at < now() - make_interval(secs => $1)
                LIMIT $2)",
        )
        .bind(keep.as_secs_f64())
        .bind(BATCH)
        .execute(pool)
        .await?;
        total += done.rows_affected();
        if done.rows_affected() < BATCH as u64 {
            return Ok(total);
        }
    }
}

/// Runs [`forget_agency_words`] every hour (at once first) until `shutdown`.
pub async fn run(pool: PgPool, keep_days: u32, shutdown: CancellationToken) {
    let keep = Duration::from_secs(u64::from(keep_days) * 86_400);
    let mut every = tokio::time::interval(EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => match forget_agency_words(&pool, keep).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deliveries = n, "agencies' words past their keeping time emptied"),
                Err(e) => tracing::warn!(error = %e, "emptying agencies' old words failed; trying again later"),
            },
        }
    }
}
