//! The retention policy of closed cases (`[retention]`; the design in docs/decisions.md,
//! "Retention"). Every `check_interval_ms` the run takes the closed cases whose closure is
//! older than `anonymise_after_years`, a batch at a time (`FOR UPDATE SKIP LOCKED`, so
//! several processes share the work), and in one transaction per batch removes what
//! identifies the child and the family from the record and from the rows around it,
//! keeping what statistics count; a case merged into one anonymised follows it. Each
//! case anonymised is a line of its history
//! (`anonymised`, by `retention`), a new version announced as `case.updated`, and one
//! more in `himaya_cases_anonymised_total`.
//!
//! Restartable and idempotent: a batch commits whole or not at all, and a case once
//! anonymised (`anonymised_at` set) is never taken again. The disclosure log (schema
//! `audit`) is not touched: its entries hold ids and codes only, so its hash chain and
//! signed checkpoints verify as before.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use himaya_record::CaseRecord;
use himaya_settings::RetentionSettings;
use himaya_store::StoreError;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::CasesError;

/// Who the history names as having anonymised a case.
pub const ACTOR: &str = "retention";

/// Runs the policy every `check_interval_ms` until `shutdown`; off when
/// `anonymise_after_years` is 0.
pub async fn run(
    pool: PgPool,
    cfg: RetentionSettings,
    metrics: Arc<himaya_metrics::Metrics>,
    shutdown: CancellationToken,
) {
    if cfg.anonymise_after_years == 0 {
        tracing::info!("retention of closed cases is off (retention.anonymise_after_years = 0)");
        return;
    }
    let interval = Duration::from_millis(cfg.check_interval_ms);
    while !shutdown.is_cancelled() {
        match anonymise_due(&pool, cfg.anonymise_after_years, cfg.batch, &metrics).await {
            // A full batch: more may be waiting.
            Ok(n) if n as i64 >= cfg.batch => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention run failed; will retry"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Anonymises up to `batch` closed cases whose closure is more than `years` years old, in
/// one transaction; returns how many. Counted once committed.
pub async fn anonymise_due(
    pool: &PgPool,
    years: u32,
    batch: i64,
    metrics: &himaya_metrics::Metrics,
) -> Result<usize, CasesError> {
    let years = i32::try_from(years).unwrap_or(i32::MAX);
    let mut tx = pool.begin().await?;
    let due: Vec<(String, serde_json::Value)> = sqlx::query_as(
        "SELECT case_id, record FROM cases
          WHERE status = 'closed' AND anonymised_at IS NULL
            AND closed_at < now() - make_interval(years => $1)
          ORDER BY closed_at
          LIMIT $2
          FOR UPDATE SKIP LOCKED",
    )
    .bind(years)
    .bind(batch)
    .fetch_all(&mut *tx)
    .await?;
    let due_ids: Vec<String> = due.iter().map(|(id, _)| id.clone()).collect();
    // A case merged into one anonymised (now or before) follows it: it is the same child,
    // its record and history hold the same data.
    let followers: Vec<(String, serde_json::Value)> = sqlx::query_as(
        "SELECT case_id, record FROM cases
          WHERE status = 'merged' AND anonymised_at IS NULL
            AND (record->>'merged_into' = ANY($1)
                 OR record->>'merged_into' IN (SELECT case_id FROM cases
                                                WHERE anonymised_at IS NOT NULL))
          LIMIT $2
          FOR UPDATE SKIP LOCKED",
    )
    .bind(&due_ids)
    .bind(batch)
    .fetch_all(&mut *tx)
    .await?;
    if due.is_empty() && followers.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    let now = Utc::now();
    let ids: Vec<String> = due
        .iter()
        .chain(&followers)
        .map(|(id, _)| id.clone())
        .collect();
    for (_, json) in due.into_iter().chain(followers) {
        let mut rec: CaseRecord =
            serde_json::from_value(json).map_err(|_| StoreError::Corrupt("cases.record"))?;
        himaya_record::retention::anonymise(&mut rec);
        // The next version, its history line and `case.updated` (which no referrer is
        // told of: the router's feedback knows no `anonymised` change).
        crate::change::save(&mut tx, &mut rec, ACTOR, "anonymised", now).await?;
    }
    // Around the record: whatever holds the child's data or someone's own words about the
    // case. Vocabulary, ids, states and dates stay for the indicators.
    sqlx::query("UPDATE cases SET anonymised_at = $2 WHERE case_id = ANY($1)")
        .bind(&ids)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let statements = [
        // The duplicate search's match key and its name blocks (cascade).
        "DELETE FROM children WHERE case_id = ANY($1)",
        "UPDATE reviews SET findings = '' WHERE case_id = ANY($1)",
        "UPDATE service_referrals SET reason = NULL WHERE case_id = ANY($1)",
        "UPDATE service_referral_events SET reason = NULL
          WHERE service_referral_id IN (SELECT service_referral_id FROM service_referrals
                                         WHERE case_id = ANY($1))",
        "UPDATE break_glass SET justification = '', review_notes = NULL WHERE case_id = ANY($1)",
        // The one history line that quotes a person's words: a reopening's reason (also
        // as folded into the case a merged one went into: `from merged … : reopened: …`).
        "UPDATE case_history SET change = regexp_replace(change, 'reopened: .*$', 'reopened')
          WHERE case_id = ANY($1) AND change LIKE '%reopened: %'",
    ];
    for sql in statements {
        sqlx::query(sql).bind(&ids).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    let n = ids.len();
    metrics.lifecycle.anonymised(n as u64);
    tracing::info!(cases = n, "closed cases anonymised by the retention policy");
    Ok(n)
}
