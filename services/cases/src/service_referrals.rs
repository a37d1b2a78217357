//! Service referrals between agencies, stored: each change moves the row, appends an
//! event row and a line of the case's history, meets or cancels the answer deadline and
//! enqueues `service.referral.changed`, all in the caller's transaction. Both the API
//! (`work::referrals`) and the connectors' answers (`outcomes`) change referrals here.

use chrono::{DateTime, Utc};
use himaya_bus::Exchange;
use himaya_events::{
    keys, new_message_id, ReferralCreated, ServiceReferralChanged, ServiceRequest,
};
use himaya_record::lifecycle::DeadlineKind;
use himaya_record::service_referral::{transition, AbilityToPay, MedicalCoverage, Side, TaskState};
use himaya_record::{CaseId, CaseRecord};
use himaya_store::StoreError;
use sqlx::{PgConnection, PgPool};

use crate::change::close_deadline_for;
use crate::db::history;
use crate::CasesError;

/// One service referral as stored.
#[derive(Debug, Clone)]
pub struct ServiceReferralRow {
    pub id: String,
    pub case_id: String,
    pub action_id: String,
    pub from_agency: String,
    pub to_agency: String,
    pub service_type: String,
    pub state: TaskState,
    pub reason: Option<String>,
    pub agency_reference: Option<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// A health service referral's medical costs: what the family can pay, as the
    /// referrer said, and who pays, as the hub decided then (both or neither).
    pub medical_costs: Option<(AbilityToPay, MedicalCoverage)>,
}

const COLUMNS: &str = "service_referral_id, case_id, action_id, from_agency, to_agency, service_type, state, reason, agency_reference, version, created_at, updated_at, ability_to_pay, medical_coverage";

/// A `service_referrals` row as stored ([`COLUMNS`]); [`StoredReferral::into_row`]
/// checks its state and medical costs.
#[derive(sqlx::FromRow)]
struct StoredReferral {
    service_referral_id: String,
    case_id: String,
    action_id: String,
    from_agency: String,
    to_agency: String,
    service_type: String,
    state: String,
    reason: Option<String>,
    agency_reference: Option<String>,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    ability_to_pay: Option<String>,
    medical_coverage: Option<String>,
}

impl StoredReferral {
    fn into_row(self) -> Result<ServiceReferralRow, CasesError> {
        let medical_costs = match (self.ability_to_pay, self.medical_coverage) {
            (None, None) => None,
            (Some(a), Some(c)) => Some((
                AbilityToPay::parse(&a)
                    .ok_or(StoreError::Corrupt("service_referrals.ability_to_pay"))?,
                MedicalCoverage::parse(&c)
                    .ok_or(StoreError::Corrupt("service_referrals.medical_coverage"))?,
            )),
            _ => return Err(StoreError::Corrupt("service_referrals.medical_coverage").into()),
        };
        Ok(ServiceReferralRow {
            id: self.service_referral_id,
            case_id: self.case_id,
            action_id: self.action_id,
            from_agency: self.from_agency,
            to_agency: self.to_agency,
            service_type: self.service_type,
            state: TaskState::parse(&self.state)
                .ok_or(StoreError::Corrupt("service_referrals.state"))?,
            reason: self.reason,
            agency_reference: self.agency_reference,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
            medical_costs,
        })
    }
}

/// Loads one referral locked for a change.
pub async fn load_for_update(
    conn: &mut PgConnection,
    id: &str,
) -> Result<Option<ServiceReferralRow>, CasesError> {
    let row = sqlx::query_as::<_, StoredReferral>(&format!(
        "SELECT {COLUMNS} FROM service_referrals WHERE service_referral_id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(StoredReferral::into_row).transpose()
}

pub async fn load(pool: &PgPool, id: &str) -> Result<Option<ServiceReferralRow>, CasesError> {
    let row = sqlx::query_as::<_, StoredReferral>(&format!(
        "SELECT {COLUMNS} FROM service_referrals WHERE service_referral_id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.map(StoredReferral::into_row).transpose()
}

/// The referrals an agency made or was sent, optionally of one case and in one state.
pub async fn list(
    pool: &PgPool,
    agency_id: &str,
    case_id: Option<&str>,
    state: Option<TaskState>,
) -> Result<Vec<ServiceReferralRow>, CasesError> {
    let rows = sqlx::query_as::<_, StoredReferral>(&format!(
        "SELECT {COLUMNS} FROM service_referrals
          WHERE (from_agency = $1 OR to_agency = $1)
            AND ($2::text IS NULL OR case_id = $2)
            AND ($3::text IS NULL OR state = $3)
          ORDER BY created_at DESC, service_referral_id DESC
          LIMIT 500"
    ))
    .bind(agency_id)
    .bind(case_id)
    .bind(state.map(TaskState::as_str))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(StoredReferral::into_row).collect()
}

/// One change of a referral, for its history.
#[derive(sqlx::FromRow)]
pub struct ChangeRow {
    pub state: String,
    pub agency_id: String,
    pub actor: String,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

pub async fn changes(pool: &PgPool, id: &str) -> Result<Vec<ChangeRow>, CasesError> {
    Ok(sqlx::query_as::<_, ChangeRow>(
        "SELECT state, agency_id, actor, reason, at FROM service_referral_events
          WHERE service_referral_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(pool)
    .await?)
}

/// When the receiving agency must answer by: the open deadline, if any.
pub async fn answer_due(pool: &PgPool, id: &str) -> Result<Option<DateTime<Utc>>, CasesError> {
    Ok(sqlx::query_scalar(
        "SELECT due_at FROM deadlines WHERE kind = $1 AND ref_id = $2 AND state = 'open'",
    )
    .bind(DeadlineKind::ServiceReferral.as_str())
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

/// Records a state the referral has reached (its creation included): event row, case
/// history line at the case's current version, and the `service.referral.changed` event.
pub async fn record_change(
    conn: &mut PgConnection,
    r: &ServiceReferralRow,
    agency_id: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<(), CasesError> {
    sqlx::query(
        "INSERT INTO service_referral_events (service_referral_id, state, agency_id, actor, reason, at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&r.id)
    .bind(r.state.as_str())
    .bind(agency_id)
    .bind(actor)
    .bind(&r.reason)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let case_version: i64 = sqlx::query_scalar("SELECT version FROM cases WHERE case_id = $1")
        .bind(&r.case_id)
        .fetch_one(&mut *conn)
        .await?;
    history(
        &mut *conn,
        &r.case_id,
        case_version,
        actor,
        &format!(
            "service referral {} ({} for {}, to {}): {} by {agency_id}{}",
            r.id,
            r.service_type,
            r.action_id,
            r.to_agency,
            r.state,
            // Who pays is decided once, when the referral is made; the family's ability
            // to pay stays on the referral row alone.
            match r.medical_costs {
                Some((_, coverage)) if r.state == TaskState::Requested => {
                    format!("; medical costs covered: {coverage}")
                }
                _ => String::new(),
            }
        ),
    )
    .await?;
    let event = ServiceReferralChanged {
        message_id: new_message_id(),
        occurred_at: now.to_rfc3339(),
        service_referral_id: r.id.clone(),
        case_id: r.case_id.clone(),
        action_id: r.action_id.clone(),
        from_agency: r.from_agency.clone(),
        to_agency: r.to_agency.clone(),
        state: r.state.as_str().into(),
        version: r.version,
        changed_by: agency_id.into(),
    };
    himaya_store::outbox::enqueue_event(
        conn,
        Exchange::Events,
        keys::SERVICE_REFERRAL_CHANGED,
        &event,
        5,
        &r.case_id,
    )
    .await?;
    Ok(())
}

/// Moves a locked referral to `to` on behalf of `side`, or says what is allowed.
#[allow(clippy::too_many_arguments)]
pub async fn move_to(
    conn: &mut PgConnection,
    r: &mut ServiceReferralRow,
    to: TaskState,
    side: Side,
    agency_id: &str,
    actor: &str,
    reason: Option<String>,
    agency_reference: Option<String>,
) -> Result<(), CasesError> {
    if TaskState::is_progress_report(r.state, to) && reason.is_none() {
        return Err(CasesError::Precondition(himaya_proto::status::msg!(
            "service-referral-progress-needs-reason"
        )));
    }
    let next = transition(r.state, to, side).map_err(|e| CasesError::Precondition(e.msg()))?;
    let now = Utc::now();
    r.state = next;
    // Why it was refused, failed or cancelled; or the agency's note on this step (a
    // hearing's outcome). The events keep every note; the row shows the latest.
    r.reason = reason;
    r.version += 1;
    r.updated_at = now;
    if agency_reference.is_some() {
        r.agency_reference = agency_reference;
    }
    sqlx::query(
        "UPDATE service_referrals
            SET state = $2, reason = $3, version = $4, updated_at = $5, agency_reference = $6,
                answered_at = CASE WHEN $7 THEN coalesce(answered_at, $5) ELSE answered_at END
          WHERE service_referral_id = $1",
    )
    .bind(&r.id)
    .bind(next.as_str())
    .bind(&r.reason)
    .bind(r.version)
    .bind(now)
    .bind(&r.agency_reference)
    .bind(next.is_answered() && next != TaskState::Cancelled)
    .execute(&mut *conn)
    .await?;
    if next.is_answered() {
        let case_id = CaseId::parse(&r.case_id)
            .map_err(|_| StoreError::Corrupt("service_referrals.case_id"))?;
        let state = if next == TaskState::Cancelled {
            "cancelled"
        } else {
            "met"
        };
        close_deadline_for(
            &mut *conn,
            &case_id,
            DeadlineKind::ServiceReferral,
            &r.id,
            state,
        )
        .await?;
    }
    record_change(conn, r, agency_id, actor, now).await
}

/// The event that sends `sr` to its agency through the router (which alone decides what
/// the agency may see of `rec`): when it is made, and again once an undelivered one can go.
pub fn requested(rec: &CaseRecord, sr: &ServiceReferralRow, now: DateTime<Utc>) -> ReferralCreated {
    ReferralCreated {
        message_id: new_message_id(),
        occurred_at: now.to_rfc3339(),
        case: rec.clone(),
        service_request: Some(ServiceRequest {
            service_referral_id: sr.id.clone(),
            agency_id: sr.to_agency.clone(),
            service_type: sr.service_type.clone(),
            action_id: sr.action_id.clone(),
            medical_coverage: sr.medical_costs.map(|(_, c)| c),
        }),
    }
}
