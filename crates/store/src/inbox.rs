//! The inbox: processed message ids per consumer.

use std::collections::HashSet;

use sqlx::PgConnection;

use crate::StoreError;

/// Claims `message_id` for `consumer` inside the caller's transaction. `false` means it
/// was processed before: the caller commits nothing new and acknowledges the duplicate.
pub async fn claim(
    conn: &mut PgConnection,
    consumer: &str,
    message_id: &str,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO inbox (consumer, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(consumer)
    .bind(message_id)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Claims every id of `message_ids` for `consumer` in one statement, inside the caller's
/// transaction; returns the ones claimed now. An id processed before, or given twice, is
/// claimed at most once. The ids are inserted in sorted order, so two transactions
/// claiming some of the same ids wait for each other instead of deadlocking.
pub async fn claim_all(
    conn: &mut PgConnection,
    consumer: &str,
    message_ids: &[&str],
) -> Result<HashSet<String>, StoreError> {
    if message_ids.is_empty() {
        return Ok(HashSet::new());
    }
    let claimed: Vec<String> = sqlx::query_scalar(
        "INSERT INTO inbox (consumer, message_id)
         SELECT $1, m FROM unnest($2::text[]) AS ids(m) ORDER BY m
         ON CONFLICT DO NOTHING RETURNING message_id",
    )
    .bind(consumer)
    .bind(message_ids)
    .fetch_all(conn)
    .await?;
    Ok(claimed.into_iter().collect())
}
