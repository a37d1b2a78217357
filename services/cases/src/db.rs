//! The cases service's queries. Every write that must be announced enqueues its event
//! in the same transaction.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use himaya_bus::{Exchange, Outgoing};
use himaya_events::{encode, keys, new_message_id, Event, ReferralCreated};
use himaya_record::{CaseId, CaseRecord};
use himaya_store::StoreError;
use sqlx::{PgConnection, PgPool};

use crate::CasesError;

/// The answer to a submission (first time or replayed).
#[derive(Debug, Clone)]
pub struct Submitted {
    pub case_id: String,
    pub referral_id: String,
    pub version: i64,
    pub priority: String,
    pub replayed: bool,
}

/// Stores a new case, its history entry and its `referral.created` event atomically,
/// unless this (submitter, submission id) was seen before: then the first answer is
/// returned and nothing is written.
pub async fn open_case(
    pool: &PgPool,
    record: &CaseRecord,
    submitter: &str,
    submission_id: &str,
    traceparent: Option<String>,
) -> Result<Submitted, CasesError> {
    let mut tx = pool.begin().await?;
    // Concurrent retries of one submission queue up here instead of racing.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("{submitter}\u{1f}{submission_id}"))
        .execute(&mut *tx)
        .await?;
    if let Some(existing) = find_submission(&mut tx, submitter, submission_id).await? {
        tx.rollback().await?;
        return Ok(existing);
    }
    let case_id = record.case_id.to_string();
    let referral_id = record.referral.referral_id.to_string();
    let json = serde_json::to_value(record).map_err(|_| StoreError::Corrupt("case record"))?;
    sqlx::query(
        "INSERT INTO cases (case_id, version, status, risk_level, priority, governorate, record, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
    )
    .bind(&case_id)
    .bind(record.version)
    .bind(record.status.as_str())
    .bind(record.risk_level.as_str())
    .bind(record.referral.priority.as_str())
    .bind(&record.child.governorate)
    .bind(&json)
    .bind(record.created_at)
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO submissions (submitter, submission_id, case_id, referral_id) VALUES ($1, $2, $3, $4)")
        .bind(submitter)
        .bind(submission_id)
        .bind(&case_id)
        .bind(&referral_id)
        .execute(&mut *tx)
        .await?;
    history(
        &mut tx,
        &case_id,
        record.version,
        submitter,
        &format!("opened by referral {referral_id}"),
    )
    .await?;
    crate::duplicates::index_child(&mut tx, record).await?;
    let event = ReferralCreated {
        message_id: new_message_id(),
        occurred_at: record.created_at.to_rfc3339(),
        case: record.clone(),
        service_request: None,
    };
    let mut headers = BTreeMap::new();
    headers.insert("x-correlation-id".to_owned(), referral_id.clone());
    if let Some(tp) = traceparent {
        headers.insert("traceparent".to_owned(), tp);
    }
    let msg = Outgoing {
        exchange: Exchange::Events,
        routing_key: keys::REFERRAL_CREATED.into(),
        payload: encode(&event)?,
        message_id: event.message_id.clone(),
        event_type: ReferralCreated::NAME.into(),
        priority: record.referral.priority.amqp_priority(),
        headers,
    };
    himaya_store::outbox::enqueue(&mut tx, &msg).await?;
    tx.commit().await?;
    Ok(Submitted {
        case_id,
        referral_id,
        version: record.version,
        priority: record.referral.priority.as_str().into(),
        replayed: false,
    })
}

async fn find_submission(
    conn: &mut PgConnection,
    submitter: &str,
    submission_id: &str,
) -> Result<Option<Submitted>, CasesError> {
    let row = sqlx::query_as::<_, (String, String, i64, String)>(
        "SELECT s.case_id, s.referral_id, c.version, c.priority
           FROM submissions s JOIN cases c USING (case_id)
          WHERE s.submitter = $1 AND s.submission_id = $2",
    )
    .bind(submitter)
    .bind(submission_id)
    .fetch_optional(conn)
    .await?;
    Ok(
        row.map(|(case_id, referral_id, version, priority)| Submitted {
            case_id,
            referral_id,
            version,
            priority,
            replayed: true,
        }),
    )
}

pub async fn history(
    conn: &mut PgConnection,
    case_id: &str,
    version: i64,
    actor: &str,
    change: &str,
) -> Result<(), CasesError> {
    sqlx::query(
        "INSERT INTO case_history (case_id, version, actor, change) VALUES ($1, $2, $3, $4)",
    )
    .bind(case_id)
    .bind(version)
    .bind(actor)
    .bind(change)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn load_case(pool: &PgPool, case_id: &CaseId) -> Result<Option<CaseRecord>, CasesError> {
    let json: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT record FROM cases WHERE case_id = $1")
            .bind(case_id.to_string())
            .fetch_optional(pool)
            .await?;
    json.map(|j| serde_json::from_value(j).map_err(|_| StoreError::Corrupt("cases.record").into()))
        .transpose()
}

/// One agency's answer to a delivery, as recorded.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub referral_id: String,
    pub agency_id: String,
    pub outcome: String,
    pub http_status: i32,
    pub recorded_at: DateTime<Utc>,
    pub reason: Option<String>,
}

pub async fn deliveries(pool: &PgPool, case_id: &CaseId) -> Result<Vec<DeliveryRow>, CasesError> {
    Ok(sqlx::query_as::<_, DeliveryRow>(
        "SELECT referral_id, agency_id, outcome, http_status, recorded_at, reason FROM referral_deliveries
          WHERE case_id = $1 ORDER BY recorded_at, agency_id",
    )
    .bind(case_id.to_string())
    .fetch_all(pool)
    .await?)
}

/// The answers recorded for each of `case_ids`, by case.
pub async fn deliveries_of(
    pool: &PgPool,
    case_ids: &[String],
) -> Result<BTreeMap<String, Vec<DeliveryRow>>, CasesError> {
    let rows = sqlx::query_as::<_, CaseDelivery>(
        "SELECT case_id, referral_id, agency_id, outcome, http_status, recorded_at, reason FROM referral_deliveries
          WHERE case_id = ANY($1) ORDER BY recorded_at, agency_id",
    )
    .bind(case_ids)
    .fetch_all(pool)
    .await?;
    let mut out: BTreeMap<String, Vec<DeliveryRow>> = BTreeMap::new();
    for r in rows {
        out.entry(r.case_id).or_default().push(r.delivery);
    }
    Ok(out)
}

/// A [`DeliveryRow`] with the case it answers.
#[derive(sqlx::FromRow)]
struct CaseDelivery {
    case_id: String,
    #[sqlx(flatten)]
    delivery: DeliveryRow,
}

/// Cases (merged ones excepted) by governorate, status and risk.
pub async fn case_counts(
    pool: &PgPool,
    governorate: Option<&str>,
) -> Result<Vec<himaya_proto::v1::CaseCount>, CasesError> {
    let rows = sqlx::query_as::<_, (String, String, String, i64)>(
        "SELECT governorate, status, risk_level, count(*) AS n FROM cases
          WHERE status <> 'merged' AND ($1::text IS NULL OR governorate = $1)
          GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    )
    .bind(governorate)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(governorate, status, risk_level, count)| {
            Ok(himaya_proto::v1::CaseCount {
                governorate,
                status: crate::work::wire_of::<himaya_record::CaseStatus>("status", &status)?,
                risk_level: crate::work::wire_of::<himaya_record::RiskLevel>(
                    "risk_level",
                    &risk_level,
                )?,
                count,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}
