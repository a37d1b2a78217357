//! The delivery consumer every connector shares: takes a redacted delivery from the
//! agency's queue, maps it to the agency's standard, makes the call through the
//! executor, and records the agency's answer (schema `connectors`) together with a
//! `referral.delivery.recorded` event, in one transaction, before the message is acked.
//!
//! Exactly-once toward the agency is not possible over HTTP; what we give instead is a
//! stable `Idempotency-Key` (`<referral id>:<agency id>`) on every attempt, so the agency
//! can drop the duplicate a crash-and-redeliver would cause. The effect inside the hub is
//! exactly once: a delivery's row (its message id the primary key) and its answer's
//! event commit together.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use himaya_bus::{BatchHandler, Bus, Exchange, HandleError, Handler, Incoming, Outgoing};
use himaya_events::{
    decode, event_name, keys, new_message_id, DeliveriesRecorded, DeliveriesRequested,
    DeliveryRecorded, DeliveryRequested, Event as _,
};
use sqlx::PgPool;
use tracing::Instrument as _;

use crate::auth::Credentials;
use crate::executor::{Answered, Call, Executor, Method, Outcome, TransientError};
use crate::shared::SharedCase;
use crate::wire::{DeliveryKind, Wire};
use crate::ConnectError;
use himaya_store::outbox::{self, message_of};

pub struct DeliveryConnector {
    /// The urgent lane's connections on the urgent runtime (see `himaya_bus::urgent`).
    pub pools: himaya_store::Lanes,
    pub executor: Arc<Executor>,
    pub agency_id: String,
    /// The agency's base URL (or full URL for the hub's own envelope).
    pub endpoint: String,
    pub wire: Arc<dyn Wire>,
    /// The standard `wire` writes (recorded with each delivery).
    pub protocol: himaya_settings::Protocol,
    /// How the hub proves itself to the agency's system (shared with its poller).
    pub credentials: Arc<Credentials>,
    /// The agency's codes for governorates (`agencies.<id>.place_codes`).
    pub place_codes: std::collections::BTreeMap<String, String>,
    /// Ends a delivery's wait for its agency at shutdown (the message returns to the queue).
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Where a delivery of a message of many is parked alone, and the queue it came from.
    pub bus: Arc<Bus>,
    pub queue: String,
    /// Deliveries sent at once and recorded per transaction (`connectors.batch`).
    pub batch: usize,
    /// The calls to the agency in flight at once, at most `batch` whatever the path
    /// (a batch, or a message's deliveries one by one): routine deliveries' here...
    pub calls: Arc<tokio::sync::Semaphore>,
    /// ...and the urgent lane's apart, so an escalation never waits behind them.
    pub urgent_calls: Arc<tokio::sync::Semaphore>,
}

/// How long one delivery waits in place for its agency before it returns to the queue,
/// counted from when the broker may have sent its message (`Incoming::since`): every
/// pass over the message (a batch, the in-process retries, its deliveries one by one)
/// ends its waits by then, so the message is settled within the broker's 30-minute
/// consumer timeout (after the hold, a pass makes no call: the message goes back).
const MAX_HOLD: Duration = Duration::from_secs(20 * 60);
const MIN_PAUSE: Duration = Duration::from_millis(200);
const MAX_PAUSE: Duration = Duration::from_secs(60);

impl DeliveryConnector {
    fn pool(&self) -> &PgPool {
        self.pools.current()
    }

    async fn already_recorded(&self, message_id: &str) -> Result<bool, ConnectError> {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM deliveries WHERE message_id = $1")
                .bind(message_id)
                .fetch_optional(self.pool())
                .await?;
        Ok(found.is_some())
    }

    /// The agency's own ids of a case: the records the hub's deliveries made there, and
    /// the one the agency gave when it sent the case (webhook or pull).
    async fn records_of(&self, case_id: &str) -> Result<Vec<String>, ConnectError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT r FROM (
                 SELECT agency_reference AS r FROM deliveries
                  WHERE agency_id = $1 AND case_id = $2 AND outcome = 'delivered'
                    AND agency_reference IS NOT NULL
                    AND (referral_id LIKE 'ref\\_%' OR referral_id LIKE 'srv\\_%')
                 UNION ALL
                 SELECT agency_record FROM inbound_messages
                  WHERE agency_id = $1 AND answer->>'case_ref' = $2 AND agency_record IS NOT NULL
             ) known ORDER BY r LIMIT 100",
        )
        .bind(&self.agency_id)
        .bind(case_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// What the agency's answer means: (outcome, HTTP status, its reference, why refused).
    /// `chosen`: the id the hub gave the agency's record, if it chose one: the reference
    /// when the answer names none (Primero's 204, or its 409 for a record an earlier
    /// attempt made, which the executor counts as delivered).
    fn verdict(
        &self,
        answered: &Answered,
        chosen: Option<&str>,
    ) -> (&'static str, u16, Option<String>, Option<String>) {
        let refused = match &answered.outcome {
            Outcome::Delivered {
                answer: Some(a), ..
            } => self.wire.refused_in_body(a),
            _ => None,
        };
        match &answered.outcome {
            Outcome::Delivered { status, .. } if refused.is_some() => {
                ("rejected", *status, None, refused)
            }
            Outcome::Delivered { status, answer } => (
                "delivered",
                *status,
                answer
                    .as_ref()
                    .and_then(|a| self.wire.reference(a))
                    .or_else(|| chosen.map(str::to_owned)),
                None,
            ),
            Outcome::Rejected { status, answer } => (
                "rejected",
                *status,
                None,
                answer.as_ref().and_then(|a| self.wire.rejection_reason(a)),
            ),
        }
    }

    /// Stores the agencies' answers and their events in one transaction: the rows, then
    /// the answers' message. The deliveries' own table is this consumer's inbox: a
    /// delivery's message id is its primary key, so a delivery is recorded, and its
    /// answer told, at most once. A redelivery is passed over before its call
    /// (`not_recorded`); a copy recorded meanwhile elsewhere (the same message handled
    /// by another consumer after a lost channel) is passed over by the insert, which
    /// waits for the other's commit and skips its rows, and only the deliveries
    /// recorded here are told. The rows go in in message id order, so two transactions
    /// recording some of the same deliveries wait for each other instead of
    /// deadlocking. (An inbox row per delivery beside it said the same again: a row
    /// per referral written, and kept a week.)
    async fn record_all(&self, answers: &[Made<'_>]) -> Result<(), ConnectError> {
        let mut taken = HashSet::with_capacity(answers.len());
        let mut rows = Rows::default();
        let mut told = Vec::with_capacity(answers.len());
        for a in answers {
            // Each delivery once, should the same one come twice.
            if !taken.insert(a.d.message_id.as_str()) {
                continue;
            }
            let (label, status, reference, reason) = self.verdict(&a.answered, a.chosen);
            rows.push(a, label, status, &reference, reason);
            let reason = (label == "rejected").then(|| "rejected".to_owned());
            told.push((a, answer(a.d, label, i32::from(status), reference, reason)));
        }
        if told.is_empty() {
            return Ok(());
        }
        // No background turn for the record (nor for the calls): the deliveries are the
        // stage the hub's ceiling is set by, and what they fall behind by waits on the
        // agency's queue, which the backlog watch does not count; waiting here behind
        // the other stages' turns let intake take what the hub could not deliver
        // (`docs/decisions.md`, "At the ceiling the deliveries waited for turns").
        let mut tx = self.pool().begin().await?;
        let recorded: HashSet<String> = sqlx::query_scalar(
            "INSERT INTO deliveries (message_id, agency_id, protocol, case_id, referral_id, idempotency_key, outcome, http_status, agency_reference, reason, attempts, latency_ms)
             SELECT r.message_id, $1, $2, r.case_id, r.referral_id, r.idempotency_key, r.outcome, r.http_status, r.agency_reference, r.reason, r.attempts, r.latency_ms
               FROM UNNEST($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int[], $9::text[], $10::text[], $11::int[], $12::int[])
                    AS r(message_id, case_id, referral_id, idempotency_key, outcome, http_status, agency_reference, reason, attempts, latency_ms)
              ORDER BY r.message_id
             ON CONFLICT (message_id) DO NOTHING
             RETURNING message_id",
        )
        .bind(&self.agency_id)
        .bind(self.protocol.as_str())
        .bind(&rows.message_id)
        .bind(&rows.case_id)
        .bind(&rows.referral_id)
        .bind(&rows.idempotency_key)
        .bind(&rows.outcome)
        .bind(&rows.http_status)
        .bind(&rows.agency_reference)
        .bind(&rows.reason)
        .bind(&rows.attempts)
        .bind(&rows.latency_ms)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        // The message's trace and correlation: its first answer's.
        let mut first: Option<&Made<'_>> = None;
        let mut events = Vec::with_capacity(recorded.len());
        for (a, event) in told {
            if recorded.contains(&a.d.message_id) {
                first.get_or_insert(a);
                events.push(event);
            }
        }
        if let Some(first) = first {
            // An urgent delivery's answer (a refusal raises the supervisor's escalation)
            // takes the answers' urgent lane and the urgent relay: a message holds the
            // answers of one lane's batch.
            let urgent = answers
                .iter()
                .any(|a| a.urgent && recorded.contains(&a.d.message_id));
            let message = [answers_message(events, first, lane_priority(urgent))?];
            outbox::Rows::new(&message, None)?.insert(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A delivery this connector cannot make (its document unreadable, its kind unknown,
    /// the agency's standard unable to carry it) is parked for an operator, and the case
    /// is told at once (`undelivered`, reason `parked`), so that no referral waits in the
    /// parking queue unseen. A replay that then goes through records it as delivered.
    async fn parked(
        &self,
        d: &DeliveryRequested,
        urgent: bool,
        why: impl std::fmt::Display,
    ) -> Result<(), HandleError> {
        self.told_undelivered(d, urgent).await?;
        Err(HandleError::park(why))
    }

    /// Tells the case of `d` it is `undelivered` (reason `parked`), before `d` is parked:
    /// once, should the message that holds it be handled again (its inbox entry under
    /// `<agency>:undelivered`, apart from the deliveries' own, so that a replay that goes
    /// through is still recorded). An urgent delivery's notice takes the urgent lane.
    async fn told_undelivered(
        &self,
        d: &DeliveryRequested,
        urgent: bool,
    ) -> Result<(), HandleError> {
        let event = answer(d, "undelivered", 0, None, Some("parked".into()));
        let mut tx = self.pool().begin().await.map_err(HandleError::retry)?;
        let told = format!("{}:undelivered", self.agency_id);
        let first = himaya_store::inbox::claim_all(&mut tx, &told, &[d.message_id.as_str()])
            .await
            .map_err(HandleError::retry)?;
        if first.is_empty() {
            return Ok(());
        }
        himaya_store::outbox::enqueue_event(
            &mut tx,
            Exchange::Events,
            keys::DELIVERY_RECORDED,
            &event,
            lane_priority(urgent),
            &d.referral_id,
        )
        .await
        .map_err(HandleError::retry)?;
        tx.commit().await.map_err(HandleError::retry)
    }

    /// Calls the agency until it answers (delivered or refused). While it cannot answer
    /// (down, timing out, its circuit open) the delivery waits here, holding its place,
    /// instead of going back to the queue: each return to the queue counts towards the
    /// queue's delivery limit, after which a message is parked. Past `until` (at most
    /// `MAX_HOLD` after its message may have arrived, below RabbitMQ's 30-minute consumer
    /// timeout) it does go back, and at shutdown at once.
    async fn call_until_answered(
        &self,
        call: &mut Call<'_>,
        referral_id: &str,
        until: Instant,
        urgent: bool,
    ) -> Result<Answered, HandleError> {
        // Once the agency has failed this delivery, stopping ends the wait at once, a
        // call in flight included: the message goes back to its queue, and the agency
        // drops a repeated call by its `Idempotency-Key`. A first call is let finish.
        let mut waiting = false;
        loop {
            let attempt = self.attempt(call, urgent, until);
            let answered = if waiting {
                tokio::select! {
                    biased;
                    _ = self.shutdown.cancelled() => return Err(self.stopping()),
                    answered = attempt => answered,
                }
            } else {
                attempt.await
            };
            let e = match answered {
                Ok(a) => return Ok(a),
                Err(e) => e,
            };
            waiting = true;
            // The wait is over, or the hub stops: back to the queue at once, since
            // no call would be begun in the consumer's retries either.
            let give_back = || HandleError::Requeue {
                reason: format!("{}: {e}", self.agency_id),
            };
            if Instant::now() >= until {
                return Err(give_back());
            }
            // Not past `until`: the next call, if any, is begun before it.
            let pause = self
                .executor
                .reopens_in(&self.agency_id)
                .clamp(MIN_PAUSE, MAX_PAUSE)
                .min(until.saturating_duration_since(Instant::now()));
            tracing::warn!(agency = %self.agency_id, referral_id, error = %e, pause_ms = pause.as_millis() as u64, "the agency cannot answer; the delivery waits for it");
            tokio::select! {
                _ = self.shutdown.cancelled() => return Err(give_back()),
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// What a delivery not made because the hub is stopping fails with: its message goes
    /// back to the queue.
    fn stopping(&self) -> HandleError {
        HandleError::Requeue {
            reason: format!("{}: the hub is stopping", self.agency_id),
        }
    }

    /// One executor call with the current credentials; a 401 makes the next one log in
    /// again. None is begun while the hub stops (a retry, a batch handled again one by
    /// one) or once the delivery's wait is over (`until`): its message goes back to the
    /// queue, settled well within the broker's consumer timeout.
    async fn attempt(
        &self,
        call: &mut Call<'_>,
        urgent: bool,
        until: Instant,
    ) -> Result<Answered, TransientError> {
        if self.shutdown.is_cancelled() || Instant::now() >= until {
            return Err(TransientError::NotCalled);
        }
        call.headers.retain(|(name, _)| *name != "Authorization");
        if let Some(a) = self
            .credentials
            .authorization(&self.executor, &self.agency_id)
            .await?
        {
            call.headers.push(("Authorization", a));
        }
        let answered = {
            let lane = if urgent {
                &self.urgent_calls
            } else {
                &self.calls
            };
            // Never closed, so a permit comes; but not once the delivery's wait is over
            // (its agency is too slow for the calls waiting on it) nor while the hub
            // stops: then it goes back to the queue without a call.
            let _permit = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Err(TransientError::NotCalled),
                permit = tokio::time::timeout_at(until.into(), lane.acquire()) => match permit {
                    Ok(p) => p,
                    Err(_) => return Err(TransientError::NotCalled),
                },
            };
            self.executor.call(call).await
        };
        if answered.as_ref().err() == Some(&TransientError::Unauthorized) {
            self.credentials
                .rejected(call.header("Authorization"))
                .await;
        }
        answered
    }

    fn url(&self, path: &str) -> String {
        if path.is_empty() {
            self.endpoint.clone()
        } else {
            format!("{}{}", self.endpoint.trim_end_matches('/'), path)
        }
    }
}

/// `referral.delivery.recorded` for delivery `d`.
fn answer(
    d: &DeliveryRequested,
    outcome: &str,
    http_status: i32,
    agency_reference: Option<String>,
    reason: Option<String>,
) -> DeliveryRecorded {
    DeliveryRecorded {
        message_id: new_message_id(),
        occurred_at: Utc::now().to_rfc3339(),
        agency_id: d.agency_id.clone(),
        case_id: d.case_id.clone(),
        referral_id: d.referral_id.clone(),
        delivery_message_id: d.message_id.clone(),
        outcome: outcome.into(),
        http_status,
        agency_reference,
        reason,
    }
}

/// The priority of an answer's message: its delivery's lane, as the record's priority
/// puts a referral on the bus.
fn lane_priority(urgent: bool) -> u8 {
    let priority = if urgent {
        himaya_record::Priority::Urgent
    } else {
        himaya_record::Priority::Routine
    };
    priority.amqp_priority()
}

/// The outbox message of a transaction's answers: one answer alone as
/// `referral.delivery.recorded`, several together as `referral.deliveries.recorded` (one
/// outbox row and one broker message for the lot, each answer keeping its message id).
/// It carries the first answer's trace and correlation id.
fn answers_message(
    events: Vec<DeliveryRecorded>,
    first: &Made<'_>,
    priority: u8,
) -> Result<Outgoing, ConnectError> {
    let mut headers = BTreeMap::new();
    headers.insert("x-correlation-id".to_owned(), first.d.referral_id.clone());
    if let Some(tp) = &first.traceparent {
        headers.insert("traceparent".to_owned(), tp.clone());
    }
    let msg = if events.len() == 1 {
        message_of(
            Exchange::Events,
            keys::DELIVERY_RECORDED,
            &events[0],
            priority,
            headers,
        )?
    } else {
        let batch = DeliveriesRecorded {
            message_id: new_message_id(),
            occurred_at: Utc::now().to_rfc3339(),
            answers: events,
        };
        message_of(
            Exchange::Events,
            keys::DELIVERIES_RECORDED,
            &batch,
            priority,
            headers,
        )?
    };
    Ok(msg)
}

/// A message as it came off the queue: its deliveries (one, or those one routing
/// transaction queued for this agency), each with its trace context and lane, and the
/// message's string headers (a delivery of it parked alone carries them).
pub struct Arrived {
    deliveries: Vec<One>,
    headers: BTreeMap<String, String>,
    /// See `Incoming::since`.
    since: Instant,
}

/// One delivery, with the trace it continues and its lane.
struct One {
    d: DeliveryRequested,
    traceparent: Option<String>,
    urgent: bool,
}

/// A delivery ready to be sent: the agency's document and where it goes.
struct Ready {
    url: String,
    body: Vec<u8>,
    content_type: &'static str,
    reference: Option<String>,
}

/// What preparing a delivery came to.
enum Prepared {
    Send(Ready),
    /// It cannot be made: parked for an operator, with the reason.
    Unmakeable(String),
}

/// A delivery made, with the agency's answer.
struct Made<'a> {
    d: &'a DeliveryRequested,
    /// Came on the urgent lane: its answer goes back on the urgent lane too.
    urgent: bool,
    answered: Answered,
    chosen: Option<&'a str>,
    /// What the recorded answer's event carries on (see [`DeliveryConnector::send`]).
    traceparent: Option<String>,
}

/// The `deliveries` rows of a batch, column by column (one UNNEST insert).
#[derive(Default)]
struct Rows {
    message_id: Vec<String>,
    case_id: Vec<String>,
    referral_id: Vec<String>,
    idempotency_key: Vec<String>,
    outcome: Vec<&'static str>,
    http_status: Vec<i32>,
    agency_reference: Vec<Option<String>>,
    reason: Vec<Option<String>>,
    attempts: Vec<i32>,
    latency_ms: Vec<i32>,
}

impl Rows {
    fn push(
        &mut self,
        a: &Made<'_>,
        outcome: &'static str,
        status: u16,
        reference: &Option<String>,
        reason: Option<String>,
    ) {
        self.message_id.push(a.d.message_id.clone());
        self.case_id.push(a.d.case_id.clone());
        self.referral_id.push(a.d.referral_id.clone());
        self.idempotency_key.push(a.d.idempotency_key.clone());
        self.outcome.push(outcome);
        self.http_status.push(i32::from(status));
        self.agency_reference.push(reference.clone());
        self.reason.push(reason);
        self.attempts
            .push(i32::try_from(a.answered.attempts).unwrap_or(i32::MAX));
        self.latency_ms
            .push(i32::try_from(a.answered.latency.as_millis()).unwrap_or(i32::MAX));
    }
}

impl DeliveryConnector {
    /// Maps a delivery to the agency's standard, or says why it cannot be made.
    async fn prepare(&self, d: &DeliveryRequested) -> Result<Prepared, HandleError> {
        let kind = match DeliveryKind::of(d) {
            Ok(k) => k,
            Err(e) => return Ok(Prepared::Unmakeable(e.to_string())),
        };
        let mut case = match kind {
            DeliveryKind::WithdrawalNotice | DeliveryKind::Outcome => SharedCase::default(),
            _ => match SharedCase::parse(&d.document_json) {
                Ok(c) => c,
                Err(e) => return Ok(Prepared::Unmakeable(e.to_string())),
            },
        };
        // The agency's own code for the place, where it has one.
        if let Some(g) = case.child.governorate.as_mut() {
            if let Some(code) = self.place_codes.get(g.as_str()) {
                *g = code.clone();
            }
        }
        let out = match kind {
            DeliveryKind::WithdrawalNotice | DeliveryKind::Outcome => {
                let records = self
                    .records_of(&d.case_id)
                    .await
                    .map_err(HandleError::retry)?;
                self.wire.outbound_about(d, &case, &records)
            }
            _ => self.wire.outbound(d, &case),
        };
        let out = match out {
            Ok(o) => o,
            Err(e) => return Ok(Prepared::Unmakeable(e.to_string())),
        };
        let body = match serde_json::to_vec(&out.body) {
            Ok(b) => b,
            // Its text could quote a value of the document: a fixed reason instead.
            Err(_) => {
                return Ok(Prepared::Unmakeable(
                    "the agency's document could not be written as JSON".into(),
                ))
            }
        };
        Ok(Prepared::Send(Ready {
            url: self.url(&out.path),
            body,
            content_type: out.content_type,
            reference: out.reference,
        }))
    }

    /// Sends one prepared delivery. `hold`: wait in place until the agency answers, until
    /// `until` (see [`Self::call_until_answered`]); without it, one call (with the
    /// executor's own retries) and a retry error if the agency cannot answer. Past
    /// `until` no call is begun (the message goes back to its queue). Returns the answer and
    /// the `traceparent` its recorded event carries on: the call's own span's when
    /// traces are on, else the one that came with the message.
    async fn send(
        &self,
        a: &One,
        ready: &Ready,
        until: Instant,
        hold: bool,
    ) -> Result<(Answered, Option<String>), HandleError> {
        let (d, traceparent) = (&a.d, a.traceparent.as_deref());
        // The call to the agency is a span of its own, a child of this delivery's message
        // (also when it came in a batch with others' traces), and its `traceparent` is
        // what the agency receives; with traces off, the message's is passed on.
        let call_span = tracing::info_span!(
            "agency call",
            otel.name = %format_args!("POST {}", self.agency_id),
            otel.kind = "client",
            agency_id = %self.agency_id,
            case_id = %d.case_id,
            referral_id = %d.referral_id,
            http.request.method = "POST",
            http.response.status_code = tracing::field::Empty,
            attempts = tracing::field::Empty,
        );
        himaya_trace::continue_from(&call_span, traceparent);
        let onward = himaya_trace::traceparent_of(&call_span).or(traceparent.map(str::to_owned));
        let mut headers = vec![
            ("Idempotency-Key", d.idempotency_key.clone()),
            ("X-Himaya-Priority", d.priority.clone()),
        ];
        if let Some(tp) = &onward {
            headers.push(("traceparent", tp.clone()));
        }
        let mut call = Call {
            agency_id: &self.agency_id,
            method: Method::Post,
            url: &ready.url,
            headers,
            content_type: ready.content_type,
            body: ready.body.clone(),
        };
        let answered = if hold {
            self.call_until_answered(&mut call, &d.referral_id, until, a.urgent)
                .instrument(call_span.clone())
                .await?
        } else {
            self.attempt(&mut call, a.urgent, until)
                .instrument(call_span.clone())
                .await
                .map_err(|e| HandleError::Retry {
                    reason: format!("{}: {e}", self.agency_id),
                })?
        };
        let (Outcome::Delivered { status, .. } | Outcome::Rejected { status, .. }) =
            &answered.outcome;
        call_span.record("http.response.status_code", i64::from(*status));
        call_span.record("attempts", i64::from(answered.attempts));
        drop(call_span);
        if let Outcome::Rejected { status, .. } = answered.outcome {
            tracing::warn!(agency = %self.agency_id, referral_id = %d.referral_id, status, "agency rejected the delivery; recorded as its answer");
        }
        Ok((answered, onward))
    }

    /// The deliveries of `ids` recorded before (redeliveries), in one statement.
    async fn recorded_among(&self, ids: &[&str]) -> Result<HashSet<String>, ConnectError> {
        let found: Vec<String> =
            sqlx::query_scalar("SELECT message_id FROM deliveries WHERE message_id = ANY($1)")
                .bind(ids)
                .fetch_all(self.pool())
                .await?;
        Ok(found.into_iter().collect())
    }
}

impl Handler for DeliveryConnector {
    async fn handle(&self, msg: &Incoming) -> Result<(), HandleError> {
        let a = self.read(msg)?;
        self.handle_batch(vec![a]).await
    }
}

/// Deliveries are taken as they wait on the agency's queue (up to `connectors.batch`
/// messages, each of one delivery or of many): mapped one by one, sent to the agency side
/// by side, and their answers recorded `connectors.batch` at a time, one transaction
/// each. A batch with a delivery that cannot be made, or whose agency does not answer in
/// time, fails before anything more is recorded, and its messages are then handled one
/// at a time; a message of many deliveries then handles each of its deliveries on its own
/// (the agency drops a repeated call by its `Idempotency-Key`, and what was recorded is
/// passed over).
impl BatchHandler for DeliveryConnector {
    type Item = Arrived;

    /// Its batches wait on an agency's answers, and its record takes no turn either.
    fn takes_turns(&self) -> bool {
        false
    }

    fn read(&self, msg: &Incoming) -> Result<Arrived, HandleError> {
        let payload = msg.payload();
        let urgent = msg.routing_key().starts_with("urgent.");
        let deliveries = match event_name(payload).map_err(HandleError::park)? {
            DeliveriesRequested::NAME => {
                let b = decode::<DeliveriesRequested>(payload).map_err(HandleError::park)?;
                if b.traceparents.len() != b.deliveries.len() || b.deliveries.is_empty() {
                    return Err(HandleError::park(
                        "a message of deliveries whose traces do not match its deliveries",
                    ));
                }
                b.deliveries
                    .into_iter()
                    .zip(b.traceparents)
                    .map(|(d, traceparent)| One {
                        d,
                        traceparent,
                        urgent,
                    })
                    .collect()
            }
            _ => vec![One {
                d: decode::<DeliveryRequested>(payload).map_err(HandleError::park)?,
                traceparent: msg.header("traceparent"),
                urgent,
            }],
        };
        if let Some(o) = deliveries.iter().find(|o| o.d.agency_id != self.agency_id) {
            return Err(HandleError::park(format!(
                "delivery for `{}` arrived on the queue of `{}`",
                o.d.agency_id, self.agency_id
            )));
        }
        Ok(Arrived {
            deliveries,
            headers: msg.headers(),
            since: msg.since(),
        })
    }

    async fn handle_batch(&self, mut items: Vec<Arrived>) -> Result<(), HandleError> {
        let alone = match items.as_mut_slice() {
            [one] => Some(std::mem::take(&mut one.headers)),
            _ => None,
        };
        // The waits end `MAX_HOLD` after the earliest of the messages may have come.
        let until = items
            .iter()
            .map(|i| i.since)
            .min()
            .unwrap_or_else(Instant::now)
            + MAX_HOLD;
        let all: Vec<One> = items.into_iter().flat_map(|i| i.deliveries).collect();
        match (self.send_all(&all, until).await, alone) {
            (
                Err(
                    HandleError::Retry { reason }
                    | HandleError::Park { reason }
                    | HandleError::Requeue { reason },
                ),
                Some(headers),
            ) if all.len() > 1 => {
                tracing::warn!(agency = %self.agency_id, deliveries = all.len(), reason = %reason, "a message of deliveries failed together; handling each on its own");
                self.one_by_one(&all, headers, until).await
            }
            (done, _) => done,
        }
    }
}

impl DeliveryConnector {
    /// The deliveries of `all` not recorded before (a redelivery, or one given twice
    /// counts once), in order.
    async fn not_recorded<'a>(&self, all: &'a [One]) -> Result<Vec<&'a One>, HandleError> {
        let ids: Vec<&str> = all.iter().map(|a| a.d.message_id.as_str()).collect();
        let recorded = if ids.len() == 1 {
            match self.already_recorded(ids[0]).await {
                Ok(true) => ids.iter().map(|id| (*id).to_owned()).collect(),
                Ok(false) => HashSet::new(),
                Err(e) => return Err(HandleError::retry(e)),
            }
        } else {
            self.recorded_among(&ids)
                .await
                .map_err(HandleError::retry)?
        };
        // A redelivery in the same batch as its original is sent once.
        let mut taken = HashSet::with_capacity(all.len());
        Ok(all
            .iter()
            .filter(|a| {
                !recorded.contains(&a.d.message_id) && taken.insert(a.d.message_id.as_str())
            })
            .collect())
    }

    /// Sends `ready` side by side (the calls in flight bounded by the lane's permits) and
    /// records the answers that came in one transaction, also when another call failed;
    /// then the first failure, if any.
    async fn send_and_record(
        &self,
        ready: &[(&One, Ready)],
        until: Instant,
        hold: bool,
    ) -> Result<(), HandleError> {
        let sent =
            futures_util::future::join_all(ready.iter().map(|(a, r)| self.send(a, r, until, hold)))
                .await;
        let mut made = Vec::with_capacity(sent.len());
        let mut failed = None;
        for ((a, r), sent) in ready.iter().zip(sent) {
            match sent {
                Ok((answered, traceparent)) => made.push(Made {
                    d: &a.d,
                    urgent: a.urgent,
                    answered,
                    chosen: r.reference.as_deref(),
                    traceparent,
                }),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        if !made.is_empty() {
            self.record_all(&made).await.map_err(HandleError::retry)?;
        }
        failed.map_or(Ok(()), Err)
    }

    /// The batch's way, `batch` deliveries at a time: mapped (one that cannot be made
    /// fails the batch, unless it is alone: then it is parked and its case told), sent
    /// and recorded. Only a delivery alone waits in place for an agency that cannot
    /// answer (until `until`): a batch that meets one fails at once and is handled again
    /// message by message (what it recorded is passed over then).
    async fn send_all(&self, all: &[One], until: Instant) -> Result<(), HandleError> {
        let hold = all.len() == 1;
        for chunk in self.not_recorded(all).await?.chunks(self.batch.max(1)) {
            let mut ready = Vec::with_capacity(chunk.len());
            for a in chunk {
                match self.prepare(&a.d).await? {
                    Prepared::Send(r) => ready.push((*a, r)),
                    Prepared::Unmakeable(why) if all.len() == 1 => {
                        return self.parked(&a.d, a.urgent, why).await
                    }
                    Prepared::Unmakeable(_) => {
                        return Err(HandleError::retry(
                            "a delivery of the batch cannot be made; handled one by one",
                        ))
                    }
                }
            }
            self.send_and_record(&ready, until, hold).await?;
        }
        Ok(())
    }

    /// One message of many deliveries whose batch failed, each delivery on its own,
    /// `batch` at a time: one that cannot be made has its case told `undelivered` and is
    /// parked alone (a copy of it, as if it had come alone, which a replay sends back to
    /// the lane it came from); the others are sent, each waiting in place for an agency
    /// that cannot answer (the waits ending together, at `until`), and recorded. An
    /// error that may go away fails the message: it is redelivered, and what was
    /// recorded (or told) is passed over.
    async fn one_by_one(
        &self,
        all: &[One],
        headers: BTreeMap<String, String>,
        until: Instant,
    ) -> Result<(), HandleError> {
        for chunk in self.not_recorded(all).await?.chunks(self.batch.max(1)) {
            let mut ready = Vec::with_capacity(chunk.len());
            let mut unmakeable = Vec::new();
            for a in chunk {
                match self.prepare(&a.d).await? {
                    Prepared::Send(r) => ready.push((*a, r)),
                    Prepared::Unmakeable(why) => unmakeable.push((*a, why)),
                }
            }
            self.send_and_record(&ready, until, true).await?;
            for (a, why) in unmakeable {
                self.told_undelivered(&a.d, a.urgent).await?;
                let mut headers = headers.clone();
                headers.insert("x-correlation-id".to_owned(), a.d.referral_id.clone());
                match &a.traceparent {
                    Some(tp) => headers.insert("traceparent".to_owned(), tp.clone()),
                    None => headers.remove("traceparent"),
                };
                // Its lane's queue and routing key, as the message's own parking would.
                let (queue, routing_key) = if a.urgent {
                    let key = himaya_bus::lane_key(
                        Exchange::Delivery,
                        &self.agency_id,
                        himaya_bus::URGENT_PRIORITY,
                    );
                    (himaya_bus::urgent_queue(&self.queue), key.into_owned())
                } else {
                    (self.queue.clone(), self.agency_id.clone())
                };
                himaya_component::park_item(
                    &self.bus,
                    &queue,
                    &routing_key,
                    &a.d,
                    &a.d.message_id,
                    headers,
                    &why,
                )
                .await?;
            }
        }
        Ok(())
    }
}
