//! Records what agencies answered to deliveries (`referral.delivery.recorded`).

use std::collections::BTreeMap;

use himaya_bus::{BatchHandler, Bus, HandleError, Incoming};
use himaya_events::{decode, event_name, keys, DeliveriesRecorded, DeliveryRecorded, Event};
use himaya_proto::status::msg;
use himaya_record::service_referral::{Side, TaskState};
use himaya_record::ServiceReferralId;
use std::sync::Arc;

use himaya_settings::Settings;
use sqlx::{PgConnection, PgPool};

use crate::db::history;
use crate::service_referrals;
use crate::{CasesError, OUTCOMES_QUEUE};

pub struct Outcomes {
    pool: PgPool,
    settings: Arc<Settings>,
    /// Where an answer that can never be recorded is parked alone (see [`Outcomes::record_each`]).
    bus: Arc<Bus>,
}

impl Outcomes {
    pub fn new(pool: PgPool, settings: Arc<Settings>, bus: Arc<Bus>) -> Self {
        Self {
            pool,
            settings,
            bus,
        }
    }

    /// Records the answers in the order given, in one transaction: all of them or, on an
    /// error, none. Each message id is recorded once, whether it was recorded before (a
    /// redelivery) or is given twice (the first counts).
    async fn record_all(&self, events: &[DeliveryRecorded]) -> Result<(), CasesError> {
        let mut tx = self.pool.begin().await?;
        if events.len() > 1 {
            lock_cases(&mut tx, events).await?;
        }
        if all_plain_deliveries(events) {
            record_deliveries(&mut tx, events).await?;
        } else {
            for e in events {
                self.record(&mut tx, e).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records one answer inside the caller's transaction (its inbox claim included).
    async fn record(&self, tx: &mut PgConnection, e: &DeliveryRecorded) -> Result<(), CasesError> {
        if !himaya_store::inbox::claim(&mut *tx, OUTCOMES_QUEUE, &e.message_id).await? {
            return Ok(());
        }
        if e.referral_id.starts_with(NOTICE_PREFIX) || e.referral_id.starts_with(FEEDBACK_PREFIX) {
            // A withdrawal notice or a referrer's feedback: not a referral (it gives the
            // agency no part in the case); kept in the case history only.
            let version: i64 = sqlx::query_scalar("SELECT version FROM cases WHERE case_id = $1")
                .bind(&e.case_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| {
                    CasesError::NotFound(msg!("case-not-found", case_id = &e.case_id))
                })?;
            let what = if e.referral_id.starts_with(NOTICE_PREFIX) {
                "withdrawal notice"
            } else {
                "feedback"
            };
            let change = format!("{what} {} to {}: {}", e.referral_id, e.agency_id, e.outcome);
            history(&mut *tx, &e.case_id, version, &e.agency_id, &change).await?;
            return Ok(());
        }
        let before: Option<String> = sqlx::query_scalar(
            "SELECT outcome FROM referral_deliveries WHERE referral_id = $1 AND agency_id = $2 FOR UPDATE",
        )
        .bind(&e.referral_id)
        .bind(&e.agency_id)
        .fetch_optional(&mut *tx)
        .await?;
        if before.as_deref() == Some("delivered") && e.outcome == "undelivered" {
            // A parked copy of a delivery that went through: the agency has it.
            return Ok(());
        }
        // The case first: an answer for a case the hub does not hold is parked at once
        // with that reason (written first, the delivery would break its foreign key, a
        // storage error retried until the broker gives up on it).
        let version: Option<i64> =
            sqlx::query_scalar("SELECT version FROM cases WHERE case_id = $1")
                .bind(&e.case_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(version) = version else {
            return Err(CasesError::NotFound(msg!(
                "case-not-found",
                case_id = &e.case_id
            )));
        };
        store_deliveries(&mut *tx, &[e]).await?;
        history(
            &mut *tx,
            &e.case_id,
            version,
            &e.agency_id,
            &delivery_change(e),
        )
        .await?;
        if e.referral_id.starts_with(ServiceReferralId::PREFIX) {
            service_referral_answered(&mut *tx, e).await?;
        }
        crate::undelivered::after_answer(&mut *tx, &self.settings, e, before.as_deref()).await?;
        Ok(())
    }
}

/// What the case's history says of an answer.
fn delivery_change(e: &DeliveryRecorded) -> String {
    match &e.reason {
        Some(r) => format!("delivery of {}: {} ({r})", e.referral_id, e.outcome),
        None => format!("delivery of {}: {}", e.referral_id, e.outcome),
    }
}

/// Whether every answer of a batch is a referral delivered to an agency (no withdrawal
/// notice, feedback or service referral, a well-formed case id), each for a different
/// referral and agency: the answers [`record_deliveries`] writes as a set. Anything else
/// is recorded one answer at a time, in order, as [`Outcomes::record`] does.
fn all_plain_deliveries(events: &[DeliveryRecorded]) -> bool {
    let mut pairs = std::collections::HashSet::with_capacity(events.len());
    events.iter().all(|e| {
        e.outcome == "delivered"
            && !e.referral_id.starts_with(NOTICE_PREFIX)
            && !e.referral_id.starts_with(FEEDBACK_PREFIX)
            && !e.referral_id.starts_with(ServiceReferralId::PREFIX)
            && himaya_record::CaseId::parse(&e.case_id).is_ok()
            && pairs.insert((e.referral_id.as_str(), e.agency_id.as_str()))
    })
}

/// [`Outcomes::record`] for a batch of plain deliveries, in four statements whatever
/// its size: the inbox claims, the case history entries (at each case's version; a case
/// the hub does not hold fails the batch, as one answer's would, before anything
/// breaks the deliveries' foreign key), the deliveries, and the "no agency" markers the
/// deliveries make history. A delivered answer never looks at what was recorded before,
/// so nothing is read first.
async fn record_deliveries(
    tx: &mut PgConnection,
    events: &[DeliveryRecorded],
) -> Result<(), CasesError> {
    let ids: Vec<&str> = events.iter().map(|e| e.message_id.as_str()).collect();
    let mut claimed = himaya_store::inbox::claim_all(&mut *tx, OUTCOMES_QUEUE, &ids).await?;
    // The first of two copies in a batch counts; a message seen before, none.
    let new: Vec<&DeliveryRecorded> = events
        .iter()
        .filter(|e| claimed.remove(&e.message_id))
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    let column =
        |f: fn(&DeliveryRecorded) -> &str| -> Vec<&str> { new.iter().map(|e| f(e)).collect() };
    let changes: Vec<String> = new.iter().map(|e| delivery_change(e)).collect();
    let written = sqlx::query(
        "INSERT INTO case_history (case_id, version, actor, change)
         SELECT h.case_id, c.version, h.actor, h.change
           FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS h (case_id, actor, change, i)
           JOIN cases c ON c.case_id = h.case_id
          ORDER BY h.i",
    )
    .bind(column(|e| e.case_id.as_str()))
    .bind(column(|e| e.agency_id.as_str()))
    .bind(&changes)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if written < new.len() as u64 {
        let missing = sqlx::query_scalar::<_, String>(
            "SELECT c FROM unnest($1::text[]) AS c WHERE NOT EXISTS (SELECT 1 FROM cases WHERE case_id = c) LIMIT 1",
        )
        .bind(column(|e| e.case_id.as_str()))
        .fetch_optional(&mut *tx)
        .await?
        .unwrap_or_default();
        return Err(CasesError::NotFound(msg!(
            "case-not-found",
            case_id = &missing
        )));
    }
    store_deliveries(&mut *tx, &new).await?;
    let referrals: Vec<&str> = new.iter().map(|e| e.referral_id.as_str()).collect();
    crate::undelivered::delivered_after_all(&mut *tx, &referrals).await?;
    Ok(())
}

/// Stores what agencies answered, one row per referral and agency (a later answer
/// replaces an earlier one), each stamped when it is recorded, not when its batch's
/// transaction began. One statement; each referral and agency at most once in `answers`.
async fn store_deliveries(
    conn: &mut PgConnection,
    answers: &[&DeliveryRecorded],
) -> Result<(), CasesError> {
    let column =
        |f: fn(&DeliveryRecorded) -> &str| -> Vec<&str> { answers.iter().map(|e| f(e)).collect() };
    let statuses: Vec<i32> = answers.iter().map(|e| e.http_status).collect();
    let references: Vec<Option<&str>> = answers
        .iter()
        .map(|e| e.agency_reference.as_deref())
        .collect();
    let reasons: Vec<Option<&str>> = answers.iter().map(|e| e.reason.as_deref()).collect();
    sqlx::query(
        "INSERT INTO referral_deliveries (referral_id, agency_id, case_id, outcome, http_status, agency_reference, reason, recorded_at)
         SELECT d.referral_id, d.agency_id, d.case_id, d.outcome, d.http_status, d.agency_reference, d.reason, clock_timestamp()
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::text[], $7::text[])
                AS d (referral_id, agency_id, case_id, outcome, http_status, agency_reference, reason)
         ON CONFLICT (referral_id, agency_id) DO UPDATE
           SET outcome = EXCLUDED.outcome, http_status = EXCLUDED.http_status,
               agency_reference = EXCLUDED.agency_reference, reason = EXCLUDED.reason,
               recorded_at = clock_timestamp()",
    )
    .bind(column(|e| e.referral_id.as_str()))
    .bind(column(|e| e.agency_id.as_str()))
    .bind(column(|e| e.case_id.as_str()))
    .bind(column(|e| e.outcome.as_str()))
    .bind(&statuses)
    .bind(&references)
    .bind(&reasons)
    .execute(conn)
    .await?;
    Ok(())
}

/// A service referral's delivery reached the agency's system (received) or was refused
/// by it (rejected). Answers already given through the API win: a late delivery outcome
/// never moves a referral backwards.
async fn service_referral_answered(
    conn: &mut PgConnection,
    e: &DeliveryRecorded,
) -> Result<(), CasesError> {
    let Some(mut sr) = service_referrals::load_for_update(conn, &e.referral_id).await? else {
        return Err(CasesError::NotFound(msg!(
            "service-referral-not-found",
            service_referral_id = &e.referral_id
        )));
    };
    let (to, reason) = match e.outcome.as_str() {
        "delivered" => (TaskState::Received, None),
        "rejected" => (
            TaskState::Rejected,
            Some(format!(
                "the agency's system refused the delivery (HTTP {})",
                e.http_status
            )),
        ),
        _ => return Ok(()),
    };
    if !sr.state.next(Side::Receiver).contains(&to) {
        return Ok(());
    }
    service_referrals::move_to(
        conn,
        &mut sr,
        to,
        Side::Receiver,
        &e.agency_id,
        "connector",
        reason,
        e.agency_reference.clone(),
    )
    .await
}

/// Ids of withdrawal notices (set by the audit component).
pub const NOTICE_PREFIX: &str = "wdn_";
/// Ids of feedback to referrers (set by the router).
pub const FEEDBACK_PREFIX: &str = "fbk_";

/// Messages whose answers are recorded in one transaction, at most: a message holds one
/// answer or a connector's batch of them (`connectors.batch`), so as many messages as
/// keep a transaction within about [`MAX_ANSWERS`] answers, 1 to 64. A batch is what is
/// already waiting on the queue (never more is waited for), so under a light load each
/// is one answer.
pub fn batch(settings: &Settings) -> u16 {
    (MAX_ANSWERS / settings.connectors.batch.max(1)).clamp(1, 64)
}

/// About the most answers one transaction records when a backlog is drained.
pub const MAX_ANSWERS: u16 = 2_048;

/// Takes, in one order for every batch, a lock per case the batch answers for, before
/// any row is touched. Every row an answer locks (its delivery, its service referral,
/// the case's deadlines) belongs to its case, so two batches answering for the same
/// cases take their turns instead of each holding a row the other waits for (a
/// deadlock). Only batches of answers take these locks; a single answer is recorded as
/// it always was.
async fn lock_cases(
    conn: &mut PgConnection,
    events: &[DeliveryRecorded],
) -> Result<(), CasesError> {
    let cases: Vec<&str> = events.iter().map(|e| e.case_id.as_str()).collect();
    sqlx::query(
        "SELECT pg_advisory_xact_lock(k)
           FROM (SELECT DISTINCT hashtextextended('himaya.cases.outcomes:' || c, 0) AS k
                   FROM unnest($1::text[]) AS c
                  ORDER BY k) AS keys",
    )
    .bind(&cases)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One message's answers: one (`referral.delivery.recorded`) or a connector's
/// transaction's (`referral.deliveries.recorded`), with the message's string headers
/// (its trace and correlation id, carried by an answer parked alone).
pub struct Answers {
    answers: Vec<DeliveryRecorded>,
    headers: BTreeMap<String, String>,
}

/// Agencies' answers, a batch of waiting messages per transaction. An answer for a case
/// (or service referral) the hub does not hold fails its batch; the batch's messages are
/// then recorded one per transaction, and the message that holds it is parked with the
/// reason. A message of many answers is then recorded one answer per transaction, and
/// that answer alone is parked (a copy of it, as if it had come alone), the others
/// recorded.
impl BatchHandler for Outcomes {
    type Item = Answers;

    /// An answer is recorded after its referral reached the agency: it gives way to the
    /// stages on a referral's way there.
    fn stage(&self) -> himaya_bus::Stage {
        himaya_bus::Stage::Record
    }

    fn read(&self, msg: &Incoming) -> Result<Answers, HandleError> {
        let payload = msg.payload();
        let answers = match event_name(payload).map_err(HandleError::park)? {
            DeliveriesRecorded::NAME => decode::<DeliveriesRecorded>(payload).map(|b| b.answers),
            _ => decode::<DeliveryRecorded>(payload).map(|one| vec![one]),
        }
        .map_err(HandleError::park)?;
        Ok(Answers {
            answers,
            headers: msg.headers(),
        })
    }

    async fn handle_batch(&self, items: Vec<Answers>) -> Result<(), HandleError> {
        let alone = items.len() == 1;
        let mut headers = BTreeMap::new();
        let mut events = Vec::with_capacity(items.iter().map(|i| i.answers.len()).sum());
        for item in items {
            events.extend(item.answers);
            headers = item.headers;
        }
        match self.record_all(&events).await {
            Ok(()) => Ok(()),
            Err(e) if permanent(&e) && alone && events.len() > 1 => {
                self.record_each(&events, headers).await
            }
            Err(e) if permanent(&e) => Err(HandleError::park(e)),
            Err(e) => Err(HandleError::retry(e)),
        }
    }
}

impl Outcomes {
    /// The answers of one message, one transaction each; those that can never be
    /// recorded are parked alone with their reason, once the others are recorded. An
    /// error that may go away fails the message (redelivered, the answers recorded
    /// already are passed over by the inbox).
    async fn record_each(
        &self,
        events: &[DeliveryRecorded],
        headers: BTreeMap<String, String>,
    ) -> Result<(), HandleError> {
        let mut refused = Vec::new();
        for e in events {
            match self.record_all(std::slice::from_ref(e)).await {
                Ok(()) => {}
                Err(why) if permanent(&why) => refused.push((e, why.to_string())),
                Err(why) => return Err(HandleError::retry(why)),
            }
        }
        for (e, why) in refused {
            himaya_component::park_item(
                &self.bus,
                OUTCOMES_QUEUE,
                keys::DELIVERY_RECORDED,
                e,
                &e.message_id,
                headers.clone(),
                &why,
            )
            .await?;
        }
        Ok(())
    }
}

/// Whether `e` can never go away by trying again: the case or service referral an
/// answer names is not held by the hub.
fn permanent(e: &CasesError) -> bool {
    matches!(e, CasesError::NotFound(_))
}
