//! Withdrawal notices addressed to agencies: kept from the disclosure log's
//! `consent.withdrawal.notice` events so every agency, with or without a connector, can
//! collect its own (`Cases.ListNotices`) and acknowledge them (`AcknowledgeNotice`).
//! A notice carries ids, categories and dates, never case data.

use chrono::{DateTime, Utc};
use himaya_bus::{HandleError, Handler, Incoming};
use himaya_events::{decode, WithdrawalNotice};
use himaya_proto::status::{msg, Lang};
use himaya_proto::v1 as pb;
use himaya_record::validate::check_text;
use himaya_record::{CaseId, Problem, Purpose, Violations};
use sqlx::PgPool;

use crate::{CasesError, State};

/// Notices listed per call, at most (oldest first; `after_notice_id` pages on).
const LIST_LIMIT: i64 = 1000;

/// The consumer of `consent.withdrawal.notice`.
pub struct Notices {
    pool: PgPool,
}

impl Notices {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Keeps one notice; a redelivery changes nothing (the notice id is the key).
    async fn keep(&self, n: &WithdrawalNotice) -> Result<(), CasesError> {
        let issued_at = DateTime::parse_from_rfc3339(&n.occurred_at)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| CasesError::Precondition(msg!("notice-time-invalid")))?;
        sqlx::query(
            "INSERT INTO agency_notices (notice_id, agency_id, case_id, consent_id, categories, withdrawn_at, issued_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (notice_id) DO NOTHING",
        )
        .bind(&n.notice_id)
        .bind(&n.agency_id)
        .bind(&n.case_id)
        .bind(&n.consent_id)
        .bind(&n.categories)
        .bind(&n.withdrawn_at)
        .bind(issued_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

impl Handler for Notices {
    async fn handle(&self, msg: &Incoming) -> Result<(), HandleError> {
        let notice = decode::<WithdrawalNotice>(msg.payload()).map_err(HandleError::park)?;
        self.keep(&notice).await.map_err(|e| match e {
            // A malformed notice will not improve by retrying.
            CasesError::Precondition(m) => HandleError::Park {
                reason: m.to_string(),
            },
            e => HandleError::retry(e),
        })
    }
}

/// An `agency_notices` row as stored; [`NoticeRow::into_notice`] checks its categories.
#[derive(sqlx::FromRow)]
struct NoticeRow {
    notice_id: String,
    case_id: String,
    consent_id: String,
    categories: Vec<String>,
    withdrawn_at: String,
    issued_at: DateTime<Utc>,
    acknowledged_at: Option<DateTime<Utc>>,
    acknowledged_by: Option<String>,
}

impl NoticeRow {
    fn into_notice(self) -> Result<pb::Notice, sqlx::Error> {
        Ok(pb::Notice {
            notice_id: self.notice_id,
            case_id: self.case_id,
            consent_id: self.consent_id,
            categories: self
                .categories
                .iter()
                .map(|c| crate::work::wire_of::<himaya_record::DataCategory>("categories", c))
                .collect::<Result<_, _>>()?,
            withdrawn_at: self.withdrawn_at,
            issued_at: self.issued_at.to_rfc3339(),
            acknowledged_at: self.acknowledged_at.map(|t| t.to_rfc3339()),
            acknowledged_by: self.acknowledged_by,
        })
    }
}

/// The calling agency's notices, oldest first (notice ids are time-ordered), after
/// `after` when given.
pub(crate) async fn list(
    state: &State,
    agency_id: &str,
    r: &pb::ListNoticesRequest,
) -> Result<pb::NoticeList, CasesError> {
    let rows = sqlx::query_as::<_, NoticeRow>(
        "SELECT * FROM agency_notices
          WHERE agency_id = $1 AND ($2 OR acknowledged_at IS NULL) AND notice_id > $3
          ORDER BY notice_id LIMIT $4",
    )
    .bind(agency_id)
    .bind(r.include_acknowledged)
    .bind(r.after_notice_id.trim())
    .bind(LIST_LIMIT)
    .fetch_all(&state.pool)
    .await?;
    let notices = rows
        .into_iter()
        .map(NoticeRow::into_notice)
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(pb::NoticeList { notices })
}

/// Acknowledges one of the caller's notices (the first acknowledgement stands). Another
/// agency's notice is refused, and the refusal logged, before the request is checked.
pub(crate) async fn acknowledge(
    state: &State,
    agency_id: &str,
    r: &pb::AcknowledgeNoticeRequest,
    lang: Lang,
) -> Result<pb::Notice, CasesError> {
    let id = r.notice_id.trim();
    let owner: Option<(String, String)> =
        sqlx::query_as("SELECT agency_id, case_id FROM agency_notices WHERE notice_id = $1")
            .bind(id)
            .fetch_optional(&state.pool)
            .await?;
    if let Some((addressee, case_id)) = &owner {
        if addressee != agency_id {
            if let Ok(case_id) = CaseId::parse(case_id) {
                state
                    .log_refusal(
                        None,
                        agency_id,
                        &case_id,
                        "not_addressee",
                        "grpc_call",
                        Purpose::ServiceProvision,
                    )
                    .await?;
            }
            return Err(CasesError::PermissionDenied(msg!(
                "notice-not-addressee",
                notice_id = id,
                agency_id = agency_id
            )));
        }
    }
    let mut v = Violations::new();
    if id.is_empty() {
        v.push("notice_id", Problem::Required);
    }
    if r.actor.trim().is_empty() {
        v.push("actor", Problem::Required);
    }
    check_text(&mut v, "actor", &r.actor, 64);
    if !v.is_empty() {
        return Err(CasesError::Invalid(v, lang));
    }
    if owner.is_none() {
        // The id is the caller's text, not checked against a shape: not repeated back.
        return Err(CasesError::NotFound(msg!("notice-not-found")));
    }
    let row = sqlx::query_as::<_, NoticeRow>(
        "UPDATE agency_notices
            SET acknowledged_at = COALESCE(acknowledged_at, now()),
                acknowledged_by = COALESCE(acknowledged_by, $2)
          WHERE notice_id = $1 RETURNING *",
    )
    .bind(id)
    .bind(r.actor.trim())
    .fetch_one(&state.pool)
    .await?;
    tracing::info!(notice_id = %id, agency = %agency_id, "withdrawal notice acknowledged");
    Ok(row.into_notice()?)
}
