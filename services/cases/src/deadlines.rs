//! The deadline engine. Deadlines are rows; every `interval` the engine claims the open
//! ones that have passed (`FOR UPDATE SKIP LOCKED`, so several processes share the work),
//! marks each fired, records the escalation and enqueues `case.deadline.missed` in the
//! same transaction: each fires exactly once, and a restart loses none.

use std::time::Duration;

use chrono::{DateTime, Utc};
use himaya_bus::Exchange;
use himaya_events::{keys, new_message_id, DeadlineMissed};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::CasesError;

/// Deadlines fired per transaction; a full batch means more may be waiting.
const BATCH: usize = 100;

pub async fn run(
    pool: PgPool,
    interval: Duration,
    metrics: std::sync::Arc<himaya_metrics::Metrics>,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        match fire_due(&pool, BATCH as i64, &metrics).await {
            Ok(BATCH) => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "deadline check failed; will retry"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Fires up to `batch` passed deadlines; returns how many. Each is counted once
/// committed (`himaya_deadlines_escalated_total{kind,risk}`).
pub async fn fire_due(
    pool: &PgPool,
    batch: i64,
    metrics: &himaya_metrics::Metrics,
) -> Result<usize, CasesError> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query_as::<_, DueDeadline>(
        "SELECT d.id, d.case_id, d.kind, d.ref_id, d.due_at, s.supervisor_id, c.risk_level
           FROM deadlines d
           JOIN cases c ON c.case_id = d.case_id
           LEFT JOIN staff s ON s.agency_id = c.caseworker_agency AND s.staff_id = c.caseworker_id
          WHERE d.state = 'open' AND d.due_at <= now()
          ORDER BY d.due_at
          LIMIT $1
          FOR UPDATE OF d SKIP LOCKED",
    )
    .bind(batch)
    .fetch_all(&mut *tx)
    .await?;
    let fired = rows.len();
    let mut escalated = Vec::with_capacity(fired);
    for DueDeadline {
        id,
        case_id,
        kind,
        ref_id,
        due_at,
        supervisor_id,
        risk_level,
    } in rows
    {
        escalated.push((kind.clone(), risk_level));
        sqlx::query("UPDATE deadlines SET state = 'fired', closed_at = now() WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO escalations (deadline_id, case_id, kind, due_at, supervisor_id, ref_id) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(id)
            .bind(&case_id)
            .bind(&kind)
            .bind(due_at)
                        .bind(&supervisor_id)
            .bind(&ref_id)
            .execute(&mut *tx)
            .await?;
        let event = DeadlineMissed {
            message_id: new_message_id(),
            occurred_at: Utc::now().to_rfc3339(),
            case_id: case_id.clone(),
            kind: kind.clone(),
            due_at: due_at.to_rfc3339(),
            supervisor_id,
        };
        himaya_store::outbox::enqueue_event(
            &mut tx,
            Exchange::Events,
            keys::DEADLINE_MISSED,
            &event,
            9,
            &case_id,
        )
        .await?;
        tracing::warn!(case_id = %case_id, kind = %kind, "deadline missed: escalated to the supervisor");
    }
    tx.commit().await?;
    for (kind, risk) in escalated {
        let kind =
            himaya_record::lifecycle::DeadlineKind::parse(&kind).map_or("other", |k| k.as_str());
        let risk = himaya_record::RiskLevel::parse(&risk).map_or("other", |r| r.as_str());
        metrics.lifecycle.escalated(kind, risk);
    }
    Ok(fired)
}

/// A passed open deadline, with the supervisor of the case's caseworker.
#[derive(sqlx::FromRow)]
struct DueDeadline {
    id: i64,
    case_id: String,
    kind: String,
    ref_id: Option<String>,
    due_at: DateTime<Utc>,
    supervisor_id: Option<String>,
    risk_level: String,
}
