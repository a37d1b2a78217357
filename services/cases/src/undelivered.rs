//! No child falls between agencies. A referral, an onward referral or a service referral
//! that reaches no agency (none offers the service there, the consent layer refuses,
//! the child's assent is missing, the agency's system refused it, the connector parked
//! it) is recorded on the case as `undelivered` with the reason, and at once:
//! - the case-owning ministry gets an escalation (`himaya escalations`, and
//!   `case.deadline.missed` of kind `undelivered` on the bus);
//! - the referrer is told (`case.updated` with change `undelivered`, which the router
//!   turns into feedback to a connected referrer);
//! - a service referral's answer deadline is called off, so it blames no agency that
//!   never received it, and opened afresh once it is delivered.
//!
//! Once the cause is fixed it goes out without anyone entering it again: a consent
//! granted or amended routes the case's undelivered referrals again, and so does every
//! start of the cases service (an agency connected since).

use chrono::{DateTime, Duration, Utc};
use himaya_bus::Exchange;
use himaya_events::{
    keys, new_message_id, CaseUpdated, DeadlineMissed, DeliveryRecorded, ReferralCreated,
};
use himaya_record::lifecycle::DeadlineKind;
use himaya_record::service_referral::TaskState;
use himaya_record::{CaseId, CaseRecord, RiskLevel, ServiceReferralId};
use himaya_settings::Settings;
use sqlx::{PgConnection, PgPool};

use crate::change::{close_deadline_for, open_deadline_for};
use crate::CasesError;

/// These referrals were delivered after all: their "no agency" markers are history now.
pub(crate) async fn delivered_after_all(
    conn: &mut PgConnection,
    referrals: &[&str],
) -> Result<(), CasesError> {
    sqlx::query(
        "DELETE FROM referral_deliveries
          WHERE referral_id = ANY($1) AND agency_id = '' AND outcome = 'undelivered'",
    )
    .bind(referrals)
    .execute(conn)
    .await?;
    Ok(())
}

/// After an answer for `e` was stored (`before`: the outcome stored until then).
pub(crate) async fn after_answer(
    conn: &mut PgConnection,
    settings: &Settings,
    e: &DeliveryRecorded,
    before: Option<&str>,
) -> Result<(), CasesError> {
    let case_id = CaseId::parse(&e.case_id).map_err(|_| {
        CasesError::NotFound(himaya_proto::status::msg!(
            "case-not-found",
            case_id = &e.case_id
        ))
    })?;
    let service_referral = e.referral_id.starts_with(ServiceReferralId::PREFIX);
    match e.outcome.as_str() {
        "delivered" => {
            delivered_after_all(&mut *conn, &[e.referral_id.as_str()]).await?;
            if service_referral && before == Some("undelivered") {
                reopen_answer_deadline(conn, settings, &case_id, &e.referral_id).await?;
            }
            Ok(())
        }
        "undelivered" | "rejected" if before != Some(e.outcome.as_str()) => {
            if service_referral {
                close_deadline_for(
                    &mut *conn,
                    &case_id,
                    DeadlineKind::ServiceReferral,
                    &e.referral_id,
                    "cancelled",
                )
                .await?;
            }
            escalate(conn, &case_id, e).await
        }
        _ => Ok(()),
    }
}

/// The escalation to the case-owning ministry's supervisor, and the word to the referrer.
async fn escalate(
    conn: &mut PgConnection,
    case_id: &CaseId,
    e: &DeliveryRecorded,
) -> Result<(), CasesError> {
    let now = Utc::now();
    let reason = e.reason.clone().unwrap_or_else(|| e.outcome.clone());
    let EscalatedCase {
        version,
        status,
        record,
        supervisor_id,
    } = sqlx::query_as::<_, EscalatedCase>(
        "SELECT c.version, c.status, c.record, s.supervisor_id
           FROM cases c
           LEFT JOIN staff s ON s.agency_id = c.caseworker_agency AND s.staff_id = c.caseworker_id
          WHERE c.case_id = $1",
    )
    .bind(case_id.to_string())
    .fetch_one(&mut *conn)
    .await?;
    let deadline_id: i64 = sqlx::query_scalar(
        "INSERT INTO deadlines (case_id, kind, ref_id, due_at, state, closed_at)
         VALUES ($1, $2, $3, $4, 'fired', $4) RETURNING id",
    )
    .bind(case_id.to_string())
    .bind(DeadlineKind::Undelivered.as_str())
    .bind(&e.referral_id)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO escalations (deadline_id, case_id, kind, due_at, supervisor_id, ref_id, agency_id, reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(deadline_id)
    .bind(case_id.to_string())
    .bind(DeadlineKind::Undelivered.as_str())
    .bind(now)
    .bind(&supervisor_id)
    .bind(&e.referral_id)
    .bind(&e.agency_id)
    .bind(&reason)
    .execute(&mut *conn)
    .await?;
    let priority = match record["referral"]["priority"].as_str() {
        Some("urgent") => 9,
        _ => 1,
    };
    let missed = DeadlineMissed {
        message_id: new_message_id(),
        occurred_at: now.to_rfc3339(),
        case_id: case_id.to_string(),
        kind: DeadlineKind::Undelivered.as_str().into(),
        due_at: now.to_rfc3339(),
        supervisor_id,
    };
    let id = case_id.to_string();
    himaya_store::outbox::enqueue_event(
        conn,
        Exchange::Events,
        keys::DEADLINE_MISSED,
        &missed,
        priority,
        &id,
    )
    .await?;
    let told = CaseUpdated {
        message_id: new_message_id(),
        occurred_at: now.to_rfc3339(),
        case_id: id.clone(),
        version,
        status,
        change: "undelivered".into(),
        actor: "hub".into(),
        referral_id: record["referral"]["referral_id"]
            .as_str()
            .map(str::to_owned),
        referrer_agency_id: record["referral"]["source"]["agency_id"]
            .as_str()
            .map(str::to_owned),
    };
    himaya_store::outbox::enqueue_event(
        conn,
        Exchange::Events,
        keys::CASE_UPDATED,
        &told,
        priority,
        &id,
    )
    .await?;
    tracing::warn!(case_id = %case_id, referral_id = %e.referral_id, agency = %e.agency_id, reason = %reason, "a referral reached no agency: escalated to the case owner");
    Ok(())
}

/// The case of an undelivered referral, with the supervisor of its caseworker.
#[derive(sqlx::FromRow)]
struct EscalatedCase {
    version: i64,
    status: String,
    record: serde_json::Value,
    supervisor_id: Option<String>,
}

/// A service referral delivered after being undelivered: its agency answers from now.
async fn reopen_answer_deadline(
    conn: &mut PgConnection,
    settings: &Settings,
    case_id: &CaseId,
    referral_id: &str,
) -> Result<(), CasesError> {
    let risk: String = sqlx::query_scalar("SELECT risk_level FROM cases WHERE case_id = $1")
        .bind(case_id.to_string())
        .fetch_one(&mut *conn)
        .await?;
    let d = &settings.lifecycle.deadlines;
    let within = match RiskLevel::parse(&risk) {
        Some(RiskLevel::High) => d.high.service_referral_answer_within_secs,
        Some(RiskLevel::Medium) => d.medium.service_referral_answer_within_secs,
        _ => d.low.service_referral_answer_within_secs,
    };
    let due = Utc::now() + Duration::seconds(within);
    open_deadline_for(
        conn,
        case_id,
        DeadlineKind::ServiceReferral,
        Some(referral_id),
        due,
    )
    .await
}

/// Sends the case's undelivered referrals again, with the record as it is now (its new
/// consent included). The router sends each only to agencies that have not had it.
/// Parked ones are left to the operator's replay. Returns how many were sent again.
pub(crate) async fn reroute(
    conn: &mut PgConnection,
    settings: &Settings,
    rec: &CaseRecord,
    now: DateTime<Utc>,
) -> Result<usize, CasesError> {
    let rows = sqlx::query_as::<_, (String, String)>(
        "SELECT DISTINCT referral_id, agency_id FROM referral_deliveries
          WHERE case_id = $1 AND outcome = 'undelivered' AND coalesce(reason, '') <> 'parked'",
    )
    .bind(rec.case_id.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let mut sent = 0;
    for (referral_id, agency_id) in &rows {
        let Some((key, event)) = again(conn, settings, rec, referral_id, agency_id, now).await?
        else {
            continue;
        };
        himaya_store::outbox::enqueue_event(
            &mut *conn,
            Exchange::Events,
            key,
            &event,
            rec.referral.priority.amqp_priority(),
            referral_id,
        )
        .await?;
        sent += 1;
    }
    if sent > 0 {
        tracing::info!(case_id = %rec.case_id, referrals = sent, "undelivered referrals routed again");
    }
    Ok(sent)
}

/// The event that routes one undelivered referral again, if it still should go.
async fn again(
    conn: &mut PgConnection,
    settings: &Settings,
    rec: &CaseRecord,
    referral_id: &str,
    agency_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<(&'static str, ReferralCreated)>, CasesError> {
    if referral_id.starts_with(ServiceReferralId::PREFIX) {
        let Some(sr) = crate::service_referrals::load_for_update(conn, referral_id).await? else {
            return Ok(None);
        };
        // Cancelled by the referrer meanwhile, or answered through the API: not again.
        if sr.state != TaskState::Requested {
            return Ok(None);
        }
        let event = crate::service_referrals::requested(rec, &sr, now);
        return Ok(Some((keys::SERVICE_REFERRAL_REQUESTED, event)));
    }
    let referred_on = rec
        .acceptance
        .as_ref()
        .and_then(|a| a.referred_on_to.as_deref());
    if !agency_id.is_empty() && referred_on == Some(agency_id) {
        let event = crate::work::referral_on(settings, rec, agency_id, now);
        return Ok(Some((keys::SERVICE_REFERRAL_REQUESTED, event)));
    }
    let event = ReferralCreated {
        message_id: new_message_id(),
        occurred_at: now.to_rfc3339(),
        case: rec.clone(),
        service_request: None,
    };
    Ok(Some((keys::REFERRAL_CREATED, event)))
}

/// At start: routes again every case's undelivered referrals (an agency may have been
/// connected since), a bounded number of cases per start.
pub(crate) async fn reroute_all(pool: PgPool, settings: std::sync::Arc<Settings>) {
    let cases: Result<Vec<String>, sqlx::Error> = sqlx::query_scalar(
        "SELECT DISTINCT d.case_id FROM referral_deliveries d JOIN cases c USING (case_id)
          WHERE d.outcome = 'undelivered' AND coalesce(d.reason, '') <> 'parked'
            AND c.anonymised_at IS NULL LIMIT 1000",
    )
    .fetch_all(&pool)
    .await;
    let cases = match cases {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "undelivered referrals could not be listed; they are routed again at the next consent or start");
            return;
        }
    };
    let mut sent = 0;
    for case_id in cases {
        match reroute_case(&pool, &settings, &case_id).await {
            Ok(n) => sent += n,
            Err(e) => {
                tracing::warn!(case_id = %case_id, error = %e, "undelivered referrals of a case could not be routed again")
            }
        }
    }
    if sent > 0 {
        tracing::info!(
            referrals = sent,
            "undelivered referrals routed again at start"
        );
    }
}

async fn reroute_case(
    pool: &PgPool,
    settings: &Settings,
    case_id: &str,
) -> Result<usize, CasesError> {
    let mut tx = pool.begin().await?;
    let record: Option<serde_json::Value> = sqlx::query_scalar(
        "SELECT record FROM cases WHERE case_id = $1 AND anonymised_at IS NULL FOR UPDATE",
    )
    .bind(case_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(record) = record else {
        return Ok(0);
    };
    let rec: CaseRecord = serde_json::from_value(record)
        .map_err(|_| himaya_store::StoreError::Corrupt("case record"))?;
    let n = reroute(&mut tx, settings, &rec, Utc::now()).await?;
    tx.commit().await?;
    Ok(n)
}

/// What the caller of the change that sends a referral should hear at once: that it
/// reaches no agency for now, why, and what fixes it (`to`: the one agency a service or
/// onward referral names). Empty when it may be delivered.
pub(crate) fn warnings(
    settings: &Settings,
    rec: &CaseRecord,
    to: Option<&str>,
    lang: himaya_proto::status::Lang,
) -> Vec<himaya_proto::v1::DeliveryWarning> {
    let Some(obstacle) = settings.obstacle(rec, to, Utc::now()) else {
        return Vec::new();
    };
    vec![himaya_proto::v1::DeliveryWarning {
        agency_id: to.unwrap_or_default().to_owned(),
        reason: obstacle.code().to_owned(),
        message: crate::work::explain(obstacle.code(), lang),
    }]
}
