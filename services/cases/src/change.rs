//! Changing a case safely: load it locked at the version the caller expects, change it,
//! save it with the next version, its history entry and its `case.updated` event, all in
//! one transaction. A stale version is refused (ABORTED), never last-write-wins.

use chrono::{DateTime, Utc};
use himaya_bus::Exchange;
use himaya_events::{keys, new_message_id, CaseUpdated};
use himaya_proto::status::msg;
use himaya_record::lifecycle::DeadlineKind;
use himaya_record::{CaseId, CaseRecord};
use himaya_store::StoreError;
use sqlx::types::Json;
use sqlx::PgConnection;

use crate::db::history;
use crate::CasesError;

/// Loads `case_id` for update; refuses when its version is not `expected`.
pub async fn load_for_update(
    conn: &mut PgConnection,
    case_id: &CaseId,
    expected: i64,
) -> Result<CaseRecord, CasesError> {
    let record = load_locked(conn, case_id).await?;
    if record.version != expected {
        return Err(CasesError::Stale {
            case_id: case_id.to_string(),
            current: record.version,
            expected,
        });
    }
    Ok(record)
}

/// Loads `case_id` locked for update, whatever its version (for changes that hang off
/// the case without changing its record, such as a service referral).
pub async fn load_locked(
    conn: &mut PgConnection,
    case_id: &CaseId,
) -> Result<CaseRecord, CasesError> {
    let (json, anonymised): (serde_json::Value, bool) = sqlx::query_as(
        "SELECT record, anonymised_at IS NOT NULL FROM cases WHERE case_id = $1 FOR UPDATE",
    )
    .bind(case_id.to_string())
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| CasesError::NotFound(msg!("case-not-found", case_id = case_id.to_string())))?;
    // What the retention policy left of a case is kept for statistics only: nothing
    // about the child is left to work on, reopen or share.
    if anonymised {
        return Err(CasesError::Precondition(msg!(
            "case-anonymised",
            case_id = case_id.to_string()
        )));
    }
    serde_json::from_value(json).map_err(|_| StoreError::Corrupt("cases.record").into())
}

/// Saves the changed record as the next version, with history and event.
pub async fn save(
    conn: &mut PgConnection,
    record: &mut CaseRecord,
    actor: &str,
    change: &str,
    now: DateTime<Utc>,
) -> Result<(), CasesError> {
    record.version += 1;
    record.updated_at = now;
    let case_id = record.case_id.to_string();
    sqlx::query(
        "UPDATE cases SET version = $2, status = $3, risk_level = $4, record = $5, updated_at = $6,
                caseworker_id = $7, closed_at = $8
          WHERE case_id = $1",
    )
    .bind(&case_id)
    .bind(record.version)
    .bind(record.status.as_str())
    .bind(record.risk_level.as_str())
    .bind(Json(&*record))
    .bind(now)
    .bind(record.assignment.as_ref().map(|a| a.caseworker_id.as_str()))
    .bind(record.closure.as_ref().map(|c| c.closed_at))
    .execute(&mut *conn)
    .await?;
    history(&mut *conn, &case_id, record.version, actor, change).await?;
    let event = CaseUpdated {
        message_id: new_message_id(),
        occurred_at: now.to_rfc3339(),
        case_id: case_id.clone(),
        version: record.version,
        status: record.status.as_str().into(),
        change: change.split(':').next().unwrap_or(change).into(),
        actor: actor.into(),
        referral_id: Some(record.referral.referral_id.to_string()),
        referrer_agency_id: record.referral.source.agency_id.clone(),
    };
    himaya_store::outbox::enqueue_event(
        conn,
        Exchange::Events,
        keys::CASE_UPDATED,
        &event,
        record.referral.priority.amqp_priority(),
        &case_id,
    )
    .await?;
    Ok(())
}

/// Opens a deadline (replacing an open one of the same kind and reference).
pub async fn open_deadline(
    conn: &mut PgConnection,
    case_id: &CaseId,
    kind: DeadlineKind,
    due_at: DateTime<Utc>,
) -> Result<(), CasesError> {
    open_deadline_for(conn, case_id, kind, None, due_at).await
}

/// Opens a deadline watching one thing of a case (a plan action: `ref_id` = its id).
pub async fn open_deadline_for(
    conn: &mut PgConnection,
    case_id: &CaseId,
    kind: DeadlineKind,
    ref_id: Option<&str>,
    due_at: DateTime<Utc>,
) -> Result<(), CasesError> {
    sqlx::query(
        "UPDATE deadlines SET state = 'cancelled', closed_at = now()
          WHERE case_id = $1 AND kind = $2 AND ref_id IS NOT DISTINCT FROM $3 AND state = 'open'",
    )
    .bind(case_id.to_string())
    .bind(kind.as_str())
    .bind(ref_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query("INSERT INTO deadlines (case_id, kind, ref_id, due_at) VALUES ($1, $2, $3, $4)")
        .bind(case_id.to_string())
        .bind(kind.as_str())
        .bind(ref_id)
        .bind(due_at)
        .execute(conn)
        .await?;
    Ok(())
}

/// Marks the open deadline watching `ref_id` as `state`.
pub async fn close_deadline_for(
    conn: &mut PgConnection,
    case_id: &CaseId,
    kind: DeadlineKind,
    ref_id: &str,
    state: &str,
) -> Result<(), CasesError> {
    sqlx::query(
        "UPDATE deadlines SET state = $4, closed_at = now()
          WHERE case_id = $1 AND kind = $2 AND ref_id = $3 AND state = 'open'",
    )
    .bind(case_id.to_string())
    .bind(kind.as_str())
    .bind(ref_id)
    .bind(state)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks open deadlines of `kinds` as `state` (`met` or `cancelled`); empty `kinds`: all.
pub async fn close_deadlines(
    conn: &mut PgConnection,
    case_id: &CaseId,
    kinds: &[DeadlineKind],
    state: &str,
) -> Result<(), CasesError> {
    let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    sqlx::query(
        "UPDATE deadlines SET state = $3, closed_at = now()
          WHERE case_id = $1 AND state = 'open' AND (cardinality($2::text[]) = 0 OR kind = ANY($2))",
    )
    .bind(case_id.to_string())
    .bind(&kinds)
    .bind(state)
    .execute(conn)
    .await?;
    Ok(())
}
