//! The cases service's queries. Every write that must be announced enqueues its event
//! in the same transaction.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use himaya_bus::{Exchange, Outgoing};
use himaya_events::{keys, new_message_id, ReferralCreated, ReferralsCreated};
use himaya_record::{CaseId, CaseRecord};
use himaya_store::handover::{Handed, Handover};
use himaya_store::outbox::{message_of, Returned, Rows};
use himaya_store::StoreError;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};

use crate::duplicates::ChildRows;
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

/// A referral to store as a new case: the record, who submitted it under which
/// submission id, and the trace its event continues.
#[derive(Debug, Clone)]
pub struct NewCase {
    pub record: CaseRecord,
    pub submitter: String,
    pub submission_id: String,
    pub traceparent: Option<String>,
}

impl NewCase {
    /// The key that makes a submission idempotent.
    fn key(&self) -> String {
        submission_key(&self.submitter, &self.submission_id)
    }

    /// Its `referral.created` event.
    fn created(&self) -> ReferralCreated {
        let record = &self.record;
        ReferralCreated {
            message_id: new_message_id(),
            occurred_at: record.created_at.to_rfc3339(),
            case: record.clone(),
            service_request: None,
        }
    }

    /// The headers of the message that carries its event (first, when with others).
    fn headers(&self) -> BTreeMap<String, String> {
        let mut headers = BTreeMap::new();
        headers.insert(
            "x-correlation-id".to_owned(),
            self.record.referral.referral_id.to_string(),
        );
        if let Some(tp) = &self.traceparent {
            headers.insert("traceparent".to_owned(), tp.clone());
        }
        headers
    }

    fn submitted(&self) -> Submitted {
        Submitted {
            case_id: self.record.case_id.to_string(),
            referral_id: self.record.referral.referral_id.to_string(),
            version: self.record.version,
            priority: self.record.referral.priority.as_str().into(),
            replayed: false,
        }
    }
}

/// Stores a new case, its history entry and its `referral.created` event atomically,
/// unless this (submitter, submission id) was seen before: then the first answer is
/// returned and nothing is written. [`open_cases`] with a group of one.
pub async fn open_case(
    pool: &PgPool,
    case: &NewCase,
    wanted: &(dyn Fn() -> bool + Sync),
    handover: Option<&Handover>,
) -> Result<Option<(Submitted, Handed)>, CasesError> {
    Ok(open_cases(pool, &[case], wanted, handover)
        .await?
        .and_then(|(mut answers, handed)| Some((answers.pop()?, handed))))
}

/// A submission's key: its submitter and its id, one lock and one answer each.
fn submission_key(submitter: &str, submission_id: &str) -> String {
    format!("{submitter}\u{1f}{submission_id}")
}

fn opened_by(referral_id: &str) -> String {
    format!("opened by referral {referral_id}")
}

/// Stores new cases, their history entries and their `referral.created` events in one
/// transaction whatever their number (a group commit; see `opening.rs`): begin, one
/// statement that writes everything ([`write_new`]), commit, when none of them was seen
/// before, as almost always; two statements more to look first otherwise. A
/// submission already stored, or sent twice within the group, is answered from its first
/// case (`replayed`) and writes nothing: concurrent sendings of one submission wait on
/// its key, then queue up on its advisory lock instead of racing. The answers are in
/// the order of `cases`. A failure fails the whole group and writes nothing; so does a
/// `wanted` that says no just before the commit (`None`: a caller is gone, and a call
/// that times out takes its write with it). With a `handover`, the urgent events are
/// the writer's to publish once this returns (`Handed`; see `himaya_store::handover`).
pub async fn open_cases(
    pool: &PgPool,
    cases: &[&NewCase],
    wanted: &(dyn Fn() -> bool + Sync),
    handover: Option<&Handover>,
) -> Result<Option<(Vec<Submitted>, Handed)>, CasesError> {
    let keys: Vec<String> = cases.iter().map(|c| c.key()).collect();
    let distinct = keys.iter().collect::<std::collections::HashSet<_>>().len() == keys.len();
    if distinct {
        match open_new_cases(pool, cases, &keys, wanted, handover).await {
            Err(CasesError::Store(StoreError::Database(e))) if stored_before(&e) => {}
            written => return written,
        }
    }
    open_cases_checked(pool, cases, keys, wanted, handover).await
}

/// A submission that is stored already, or being stored by another transaction that
/// has now committed: the submissions' primary key refused it.
fn stored_before(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.code().as_deref() == Some("23505") && d.table() == Some("submissions"))
}

/// The usual group: submissions never seen, each once. Written without looking first
/// (the answer path's round trips are what a referral waits for under load: two fewer
/// than [`open_cases_checked`]); the submissions' primary key refuses one stored before
/// or meanwhile, and the group is then written again the careful way. A concurrent
/// sending of the same submission waits on that key until the other transaction ends.
async fn open_new_cases(
    pool: &PgPool,
    cases: &[&NewCase],
    keys: &[String],
    wanted: &(dyn Fn() -> bool + Sync),
    handover: Option<&Handover>,
) -> Result<Option<(Vec<Submitted>, Handed)>, CasesError> {
    // Inserted in the order of their keys, as the careful way takes its locks: two
    // groups sharing submissions wait on each other's keys in one order, never in a circle.
    let mut by_key: Vec<(&String, &NewCase)> = keys.iter().zip(cases.iter().copied()).collect();
    by_key.sort_by_key(|(key, _)| *key);
    let ordered: Vec<&NewCase> = by_key.into_iter().map(|(_, case)| case).collect();
    let mut tx = pool.begin().await?;
    let handed = write_new(&mut tx, &ordered, handover).await?;
    if !wanted() {
        tx.rollback().await?;
        return Ok(None);
    }
    tx.commit().await?;
    let answers = cases.iter().map(|c| c.submitted()).collect();
    Ok(Some((answers, handed)))
}

/// [`open_cases`] looking first: the group's submission locks taken, the ones stored
/// before answered from their first case, the rest written.
async fn open_cases_checked(
    pool: &PgPool,
    cases: &[&NewCase],
    keys: Vec<String>,
    wanted: &(dyn Fn() -> bool + Sync),
    handover: Option<&Handover>,
) -> Result<Option<(Vec<Submitted>, Handed)>, CasesError> {
    let mut tx = pool.begin().await?;
    // The same locks as one at a time, taken in one order, so that two groups (or a
    // group and a single writer) never wait on each other in a circle.
    sqlx::query(
        "SELECT pg_advisory_xact_lock(h)
           FROM (SELECT DISTINCT hashtext(k) AS h FROM unnest($1::text[]) AS k ORDER BY 1) AS s",
    )
    .bind(&keys)
    .execute(&mut *tx)
    .await?;
    let submitters: Vec<&str> = cases.iter().map(|c| c.submitter.as_str()).collect();
    let submission_ids: Vec<&str> = cases.iter().map(|c| c.submission_id.as_str()).collect();
    let stored = sqlx::query_as::<_, (String, String, String, String, i64, String)>(
        "SELECT s.submitter, s.submission_id, s.case_id, s.referral_id, c.version, c.priority
           FROM unnest($1::text[], $2::text[]) AS k (submitter, submission_id)
           JOIN submissions s USING (submitter, submission_id)
           JOIN cases c USING (case_id)",
    )
    .bind(&submitters)
    .bind(&submission_ids)
    .fetch_all(&mut *tx)
    .await?;
    let mut answers: HashMap<String, Submitted> = stored
        .into_iter()
        .map(
            |(submitter, submission_id, case_id, referral_id, version, priority)| {
                let key = submission_key(&submitter, &submission_id);
                let s = Submitted {
                    case_id,
                    referral_id,
                    version,
                    priority,
                    replayed: true,
                };
                (key, s)
            },
        )
        .collect();
    // What is new: the first sending of each key not stored yet.
    let mut new = Vec::new();
    let mut opened = vec![false; cases.len()];
    for (i, (case, key)) in cases.iter().zip(&keys).enumerate() {
        if !answers.contains_key(key) {
            let later = Submitted {
                replayed: true,
                ..case.submitted()
            };
            answers.insert(key.clone(), later);
            new.push(*case);
            opened[i] = true;
        }
    }
    let mut handed = Handed::default();
    if !new.is_empty() {
        handed = write_new(&mut tx, &new, handover).await?;
    }
    if !wanted() {
        tx.rollback().await?;
        return Ok(None);
    }
    tx.commit().await?;
    keys.iter()
        .zip(opened)
        .map(|(key, opened)| {
            let mut a = answers
                .get(key)
                .cloned()
                .ok_or(StoreError::Corrupt("submissions"))?;
            a.replayed = !opened;
            Ok(a)
        })
        .collect::<Result<_, CasesError>>()
        .map(|answers| Some((answers, handed)))
}

/// The `referral.created` events of a group's new cases in as few messages as their
/// lanes allow: a priority's referrals together in one `referrals.created` (one outbox
/// row and one broker message for them, each referral with its own message id and
/// trace), a referral alone in its own `referral.created` as before. Urgent first.
fn referral_messages(new: &[&NewCase]) -> Result<Vec<Outgoing>, CasesError> {
    let mut lanes: BTreeMap<u8, Vec<&NewCase>> = BTreeMap::new();
    for c in new {
        lanes
            .entry(c.record.referral.priority.amqp_priority())
            .or_default()
            .push(c);
    }
    let mut msgs = Vec::with_capacity(lanes.len());
    for (priority, cases) in lanes.into_iter().rev() {
        let headers = cases[0].headers();
        let msg = if let [one] = cases[..] {
            message_of(
                Exchange::Events,
                keys::REFERRAL_CREATED,
                &one.created(),
                priority,
                headers,
            )?
        } else {
            let batch = ReferralsCreated {
                message_id: new_message_id(),
                occurred_at: Utc::now().to_rfc3339(),
                traceparents: cases.iter().map(|c| c.traceparent.clone()).collect(),
                referrals: cases.iter().map(|c| c.created()).collect(),
            };
            message_of(
                Exchange::Events,
                keys::REFERRALS_CREATED,
                &batch,
                priority,
                headers,
            )?
        };
        msgs.push(msg);
    }
    Ok(msgs)
}

/// Writes new cases (in `new`'s order), their submissions, first history entries and
/// children's index rows, and their `referral.created` events to the outbox, in one
/// statement: one round trip, whatever their number (the foreign keys are checked at
/// its end, when the cases are there). With a `handover`, the urgent events are held
/// for the writer (see `himaya_store::handover`).
async fn write_new(
    conn: &mut PgConnection,
    new: &[&NewCase],
    handover: Option<&Handover>,
) -> Result<Handed, CasesError> {
    static STATEMENT: LazyLock<String> = LazyLock::new(|| {
        let children = 1 + CASE_PARAMS;
        let before = format!("{},\n         {}", case_ctes(), ChildRows::ctes(children));
        Rows::statement(&before, children + ChildRows::PARAMS)
    });
    let records = || new.iter().map(|c| &c.record);
    let case_ids: Vec<String> = records().map(|r| r.case_id.to_string()).collect();
    let referral_ids: Vec<String> = records()
        .map(|r| r.referral.referral_id.to_string())
        .collect();
    // Each record serialized straight into the statement's buffer (no `Value` between).
    let json: Vec<Json<&CaseRecord>> = records().map(Json).collect();
    let changes: Vec<String> = referral_ids.iter().map(|r| opened_by(r)).collect();
    let children = ChildRows::of(records());
    let msgs = referral_messages(new)?;
    let outbox = match handover {
        Some(h) => h.rows(&msgs)?,
        None => Rows::new(&msgs, None)?,
    };
    let q = sqlx::query_as(&STATEMENT)
        .bind(&case_ids)
        .bind(records().map(|r| r.version).collect::<Vec<_>>())
        .bind(records().map(|r| r.status.as_str()).collect::<Vec<_>>())
        .bind(records().map(|r| r.risk_level.as_str()).collect::<Vec<_>>())
        .bind(
            records()
                .map(|r| r.referral.priority.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            records()
                .map(|r| r.child.governorate.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(&json)
        .bind(records().map(|r| r.created_at).collect::<Vec<_>>())
        .bind(new.iter().map(|c| c.submitter.as_str()).collect::<Vec<_>>())
        .bind(
            new.iter()
                .map(|c| c.submission_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(&referral_ids)
        .bind(&changes);
    let returned: Returned = outbox.bind(children.bind(q)).fetch_all(conn).await?;
    // Without a handover no row is held, and nothing is handed.
    Ok(Handed::of(outbox.held(returned)))
}

/// The parameters of [`case_ctes`].
const CASE_PARAMS: usize = 12;

/// The common table expressions writing new cases, their submissions and their first
/// history entries; [`CASE_PARAMS`] parameters from `$1`.
fn case_ctes() -> &'static str {
    "new_cases AS (
           SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
                                $7::jsonb[], $8::timestamptz[], $9::text[], $10::text[], $11::text[], $12::text[])
             WITH ORDINALITY AS n (case_id, version, status, risk_level, priority, governorate,
                                   record, created_at, submitter, submission_id, referral_id, change, i)),
         case_rows AS (
           INSERT INTO cases (case_id, version, status, risk_level, priority, governorate, record, created_at, updated_at)
           SELECT case_id, version, status, risk_level, priority, governorate, record, created_at, created_at
             FROM new_cases ORDER BY i),
         submission_rows AS (
           INSERT INTO submissions (submitter, submission_id, case_id, referral_id)
           SELECT submitter, submission_id, case_id, referral_id FROM new_cases ORDER BY i),
         history_rows AS (
           INSERT INTO case_history (case_id, version, actor, change)
           SELECT case_id, version, submitter, change FROM new_cases ORDER BY i)"
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
