//! The inbox: processed message ids per consumer.

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
