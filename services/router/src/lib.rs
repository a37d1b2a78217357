//! The router (the "exchange" of the design): for each new referral, decides which
//! agencies should receive it, asks the sharing layer what each may see, and queues a
//! redacted delivery per agency through its outbox. It is the only publisher to the
//! delivery exchange, so no data reaches an agency's queue without a decision.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use chrono::Utc;
use himaya_bus::{BatchHandler, Exchange, HandleError, Incoming, Outgoing};
use himaya_component::{
    Component, Context, Decoding, Delivered, EventHandler, StartError, Started,
};
use himaya_events::{
    decode, event_name, keys, new_message_id, DeliveriesRequested, DeliveryRecorded,
    DeliveryRequested, DisclosureRecorded, DisclosuresRecorded, Event, ReferralCreated,
    ReferralsCreated, WithdrawalNotice,
};
use himaya_record::{CaseRecord, Purpose};
use himaya_settings::{AgencySettings, Obstacle, Settings};
use himaya_sharing::{disclose, Decision, Recipient};
use himaya_store::handover::{Handed, Handover};
use himaya_store::outbox::{message_of, Returned, Rows};
use sqlx::{PgConnection, PgPool};

pub mod feedback;

pub const SCHEMA: &str = "router";
pub const QUEUE: &str = himaya_bus::queues::ROUTER_REFERRALS;
pub const NOTICE_QUEUE: &str = "router.withdrawal-notice";
/// Messages whose referrals are routed in one transaction, at most (a message holds one
/// referral or an intake group's, up to 64). A batch is what is already waiting on the
/// queue (never more is waited for), so under a light load each is one referral; under
/// a heavy one the commit (and its flush to disk) is paid once per batch instead of once
/// per referral.
pub const BATCH: u16 = 32;

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("storage failed")]
    Store(#[from] himaya_store::StoreError),
    #[error("the bus failed")]
    Bus(#[from] himaya_bus::BusError),
    #[error("an event could not be encoded")]
    Codec(#[from] himaya_events::CodecError),
    #[error("the record could not be redacted")]
    Redact(#[from] himaya_sharing::RedactError),
}

himaya_store::from_sqlx!(RouterError::Store);

/// The router as a component of the hub.
pub struct Routing;

impl Component for Routing {
    const NAME: &'static str = "router";

    /// Schema, queues (its own and every connected agency's delivery queue, so deliveries
    /// wait safely for a connector that is not up yet), relay, consumers.
    async fn start(ctx: Context) -> Result<Started, StartError> {
        let Context { settings, bus, .. } = &ctx;
        let (pool, relay) = himaya_store::start_service(
            settings,
            SCHEMA,
            &sqlx::migrate!("./migrations"),
            bus.clone(),
            himaya_bus::Stage::OnTheWay,
            ctx.shutdown.clone(),
        )
        .await?;
        let topo = bus.topology();
        let mut declared = HashSet::new();
        for (id, _) in settings.connected() {
            bus.declare_queue(&topo.delivery_queue(&id), Exchange::Delivery, &[&id])
                .await?;
            declared.insert(id);
        }
        let router = Arc::new(Router {
            bus: bus.clone(),
            handover: himaya_store::handover::Handover::new(bus.clone(), SCHEMA),
            declared: tokio::sync::Mutex::new(declared),
            pools: himaya_store::Lanes::of(pool, &settings.database, SCHEMA)?,
            settings: settings.clone(),
            metrics: ctx.metrics.clone(),
        });
        let notices = ctx
            .subscribe(
                NOTICE_QUEUE,
                Exchange::Events,
                &[keys::WITHDRAWAL_NOTICE],
                Decoding(Notices(router.clone())),
            )
            .await?;
        let feedback = ctx
            .subscribe(
                feedback::QUEUE,
                Exchange::Events,
                &[keys::CASE_UPDATED],
                feedback::Feedback(router.clone()),
            )
            .await?;
        let referrals = ctx
            .subscribe_batches(
                QUEUE,
                Exchange::Events,
                &[
                    keys::REFERRAL_CREATED,
                    keys::REFERRALS_CREATED,
                    keys::SERVICE_REFERRAL_REQUESTED,
                ],
                BATCH,
                Referrals(router),
            )
            .await?;
        Ok(Started::default().tasks([relay, referrals, notices, feedback]))
    }
}

struct Router {
    bus: Arc<himaya_bus::Bus>,
    /// The agencies whose delivery queue this process has declared: an agency added to
    /// the directory while the hub runs gets its queue before its first delivery is
    /// committed, so the delivery waits there even before its connector consumes.
    declared: tokio::sync::Mutex<HashSet<String>>,
    pools: himaya_store::Lanes,
    /// Urgent deliveries are published by the transaction that routed them, as soon as
    /// it commits (`himaya_store::handover`), not by the relay.
    handover: himaya_store::handover::Handover,
    settings: Arc<Settings>,
    metrics: Arc<himaya_metrics::Metrics>,
}

impl Router {
    /// The urgent lane's pool on the urgent runtime, the routine one elsewhere.
    fn pool(&self) -> &PgPool {
        self.pools.current()
    }

    /// Declares the delivery queues of `agencies` this process has not declared yet.
    async fn ensure_queues<'a>(
        &self,
        agencies: impl IntoIterator<Item = &'a str> + Send,
    ) -> Result<(), himaya_bus::BusError> {
        let mut declared = self.declared.lock().await;
        for id in agencies {
            if declared.contains(id) {
                continue;
            }
            let queue = self.bus.topology().delivery_queue(id);
            self.bus
                .declare_queue(&queue, Exchange::Delivery, &[id])
                .await?;
            tracing::info!(agency = %id, "delivery queue declared for an agency new to this router");
            declared.insert(id.to_owned());
        }
        Ok(())
    }

    /// Routes the referrals in the order given, in one transaction: all of them or, on
    /// an error, none. Each message id is routed once, whether it was routed before (a
    /// redelivery) or is given twice (the first counts). A handful of statements for the
    /// whole batch: the inbox claims, the agencies each referral already reached, then
    /// the decisions and the outbox rows, each in one insert. Once it has committed, the
    /// urgent deliveries are published from here (`himaya_store::handover`).
    async fn route_all(&self, events: &[Delivered<ReferralCreated>]) -> Result<(), RouterError> {
        let mut tx = self.pool().begin().await?;
        let ids: Vec<&str> = events.iter().map(|d| d.event.message_id.as_str()).collect();
        let mut claimed = himaya_store::inbox::claim_all(&mut tx, QUEUE, &ids).await?;
        let fresh: Vec<&Delivered<ReferralCreated>> = events
            .iter()
            .filter(|d| {
                let first = claimed.remove(&d.event.message_id);
                if !first {
                    tracing::debug!(message_id = %d.event.message_id, "duplicate referral.created dropped");
                }
                first
            })
            .collect();
        let referrals: Vec<String> = fresh.iter().map(|d| referral_id(&d.event)).collect();
        let mut plan = Plan {
            sent: already_sent(&mut tx, &referrals).await?,
            ..Plan::default()
        };
        for d in fresh {
            // Each referral of the batch continues its own trace.
            let span = tracing::info_span!(
                "route",
                case_id = %d.event.case.case_id,
                referral_id = %referral_id(&d.event),
            );
            himaya_trace::continue_from(&span, d.header("traceparent"));
            let _in_span = span.enter();
            let traceparent = himaya_trace::onward(d.header("traceparent").map(str::to_owned));
            self.route(&mut plan, &d.event, traceparent.as_deref())?;
        }
        plan.bundle()?;
        plan.log_all()?;
        let recipients: Vec<String> = plan
            .outbox
            .iter()
            .filter(|m| m.exchange == Exchange::Delivery)
            .map(|m| m.routing_key.clone())
            .collect();
        self.ensure_queues(recipients.iter().map(String::as_str))
            .await?;
        let handed = write_plan(&mut tx, &self.handover, &plan).await?;
        tx.commit().await?;
        self.count(&plan.decisions);
        self.handover.publish(self.pool(), handed).await;
        Ok(())
    }

    /// Counts committed decisions by purpose, recipient agency type and decision
    /// (`himaya_consent_decisions_total`): vocabulary words only.
    fn count(&self, decisions: &[DisclosureRecorded]) {
        for d in decisions {
            let Some(agency) = self.settings.agencies.get(&d.recipient) else {
                continue;
            };
            let purpose = Purpose::parse(&d.purpose).map_or("other", Purpose::as_str);
            self.metrics.consent.decided(
                purpose,
                agency.agency_type.as_str(),
                d.decision == "permit",
            );
        }
    }

    /// Decides where one referral goes and adds what that writes to `plan`: the
    /// deliveries, the decisions (for the router's table and the disclosure log), or the
    /// word that it reaches no agency.
    fn route(
        &self,
        plan: &mut Plan,
        event: &ReferralCreated,
        traceparent: Option<&str>,
    ) -> Result<(), RouterError> {
        let record = &event.case;
        let purpose = Purpose::ServiceProvision;
        let service = event.service_request.as_ref();
        // A case referral goes to every agency offering a requested service; a service
        // referral between agencies only to the agency it names.
        let targets: Vec<(String, Arc<AgencySettings>)> = match service {
            None => self.settings.recipients(record),
            Some(s) => self
                .settings
                .connected()
                .into_iter()
                .filter(|(id, _)| *id == s.agency_id)
                .collect(),
        };
        let referral_id = referral_id(event);
        // A referral routed again (once consent was granted, or an agency connected)
        // goes only to the agencies that have not had it yet.
        let sent = plan.sent.get(&referral_id).cloned().unwrap_or_default();
        let mut obstacle = match (targets.is_empty(), service) {
            (true, None) if self.settings.owner_takes(record) => None,
            (true, None) => Some(("", Obstacle::NoAgency)),
            (true, Some(s)) => {
                tracing::info!(case_id = %record.case_id, agency = %s.agency_id, service_referral_id = %s.service_referral_id, "the agency has no connector: it answers the service referral through the API");
                None
            }
            (false, _) => None,
        };
        let mut reached = targets.iter().any(|(id, _)| sent.contains(id));
        for (agency_id, agency) in &targets {
            if sent.contains(agency_id) {
                continue;
            }
            let to = Recipient {
                agency_id: agency_id.as_str(),
                agency_type: agency.agency_type,
            };
            match disclose(
                &self.settings.sharing,
                &self.settings.consent,
                record,
                to,
                purpose,
                Utc::now(),
            )? {
                Decision::Permit(d) => {
                    let delivery = DeliveryRequested {
                        message_id: new_message_id(),
                        occurred_at: Utc::now().to_rfc3339(),
                        agency_id: agency_id.clone(),
                        case_id: record.case_id.to_string(),
                        referral_id: referral_id.clone(),
                        purpose: purpose.as_str().into(),
                        priority: record.referral.priority.as_str().into(),
                        idempotency_key: format!("{referral_id}:{agency_id}"),
                        categories: d.categories.iter().map(|c| c.as_str().to_owned()).collect(),
                        document_json: d.document.to_string(),
                        service_type: service.map(|s| s.service_type.clone()),
                        kind: "referral".into(),
                        medical_coverage: service.and_then(|s| s.medical_coverage),
                    };
                    let logged = DisclosureRecorded {
                        categories: delivery.categories.clone(),
                        basis: d.basis.clone(),
                        delivery_message_id: Some(delivery.message_id.clone()),
                        ..decision(record, &referral_id, agency_id, purpose, None)
                    };
                    plan.log(logged);
                    plan.sent
                        .entry(referral_id.clone())
                        .or_default()
                        .insert(agency_id.clone());
                    reached = true;
                    tracing::info!(case_id = %record.case_id, agency = %agency_id, categories = delivery.categories.len(), "delivery queued");
                    plan.deliveries.push(Queued {
                        delivery,
                        traceparent: traceparent.map(str::to_owned),
                        priority: record.referral.priority.amqp_priority(),
                    });
                }
                Decision::Deny { reason } => {
                    let logged = decision(
                        record,
                        &referral_id,
                        agency_id,
                        purpose,
                        Some(reason.as_str()),
                    );
                    plan.log(logged);
                    obstacle = Some((agency_id.as_str(), Obstacle::Refused(reason)));
                    tracing::info!(case_id = %record.case_id, agency = %agency_id, reason = reason.as_str(), "disclosure denied");
                }
            }
        }
        match obstacle {
            Some((agency_id, why)) if !reached => {
                plan.outbox
                    .push(undelivered(record, &referral_id, agency_id, why)?);
            }
            _ => {}
        }
        Ok(())
    }
}

/// What routing a batch writes, in the order decided, and the agencies each of its
/// referrals has reached so far (those released earlier, and in this batch).
#[derive(Default)]
struct Plan {
    sent: HashMap<String, HashSet<String>>,
    decisions: Vec<DisclosureRecorded>,
    /// The deliveries decided, in order, put into messages by [`Plan::bundle`].
    deliveries: Vec<Queued>,
    outbox: Vec<Outgoing>,
}

/// A delivery decided, with the trace it continues and its priority on the bus.
struct Queued {
    delivery: DeliveryRequested,
    traceparent: Option<String>,
    priority: u8,
}

/// Deliveries to one agency at one priority sent in one message, at most: a connector
/// takes `connectors.batch` messages at once and calls its agency for that many
/// deliveries at a time, so a message is a small part of its batch.
const DELIVERIES_PER_MESSAGE: usize = 32;

/// Decisions sent to the disclosure log in one message, at most (about 400 bytes each).
const DISCLOSURES_PER_MESSAGE: usize = 256;

impl Plan {
    /// The batch's deliveries as outbox messages: those for the same agency at the same
    /// priority together, up to [`DELIVERIES_PER_MESSAGE`] a message, in the order
    /// decided; a delivery alone as `DeliveryRequested`, several as
    /// `DeliveriesRequested`, each keeping its message id and trace. Under load a
    /// routing transaction holds many referrals for each agency, and one broker message
    /// and outbox row then carry many of them instead of one each.
    fn bundle(&mut self) -> Result<(), RouterError> {
        let mut groups: Vec<((String, u8), Vec<Queued>)> = Vec::new();
        for q in self.deliveries.drain(..) {
            let key = (q.delivery.agency_id.clone(), q.priority);
            match groups
                .iter_mut()
                .find(|(k, g)| *k == key && g.len() < DELIVERIES_PER_MESSAGE)
            {
                Some((_, g)) => g.push(q),
                None => groups.push((key, vec![q])),
            }
        }
        for ((agency_id, priority), mut group) in groups {
            let first = &group[0];
            let mut headers = BTreeMap::new();
            headers.insert(
                "x-correlation-id".to_owned(),
                first.delivery.referral_id.clone(),
            );
            if let Some(tp) = &first.traceparent {
                headers.insert("traceparent".to_owned(), tp.clone());
            }
            let msg = if group.len() == 1 {
                let Some(q) = group.pop() else { continue };
                message_of(
                    Exchange::Delivery,
                    &agency_id,
                    &q.delivery,
                    priority,
                    headers,
                )?
            } else {
                let (deliveries, traceparents) = group
                    .into_iter()
                    .map(|q| (q.delivery, q.traceparent))
                    .unzip();
                let batch = DeliveriesRequested {
                    message_id: new_message_id(),
                    occurred_at: Utc::now().to_rfc3339(),
                    deliveries,
                    traceparents,
                };
                message_of(Exchange::Delivery, &agency_id, &batch, priority, headers)?
            };
            self.outbox.push(msg);
        }
        Ok(())
    }

    /// A decision for the router's table and the hub's disclosure log.
    fn log(&mut self, e: DisclosureRecorded) {
        self.decisions.push(e);
    }

    /// The batch's decisions for the hub's hash-chained disclosure log, through the
    /// outbox in the same transaction: one message for up to
    /// [`DISCLOSURES_PER_MESSAGE`] of them instead of one each (a quarter of a
    /// referral's outbox rows and broker messages), each decision with its own id.
    fn log_all(&mut self) -> Result<(), RouterError> {
        for chunk in self.decisions.chunks(DISCLOSURES_PER_MESSAGE) {
            let batch = DisclosuresRecorded {
                message_id: new_message_id(),
                occurred_at: Utc::now().to_rfc3339(),
                disclosures: chunk.to_vec(),
            };
            self.outbox.push(himaya_store::outbox::event_message(
                Exchange::Events,
                keys::DISCLOSURES_RECORDED,
                &batch,
                1,
                &batch.message_id,
            )?);
        }
        Ok(())
    }
}

/// The referral an event routes: a case's referral, or a service referral.
fn referral_id(event: &ReferralCreated) -> String {
    match &event.service_request {
        None => event.case.referral.referral_id.to_string(),
        Some(s) => s.service_referral_id.clone(),
    }
}

/// The agencies each of these referrals was already released to.
async fn already_sent(
    conn: &mut PgConnection,
    referral_ids: &[String],
) -> Result<HashMap<String, HashSet<String>>, RouterError> {
    let mut sent: HashMap<String, HashSet<String>> = HashMap::new();
    if referral_ids.is_empty() {
        return Ok(sent);
    }
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT DISTINCT referral_id, agency_id FROM disclosures
          WHERE referral_id = ANY($1) AND decision = 'permit'",
    )
    .bind(referral_ids)
    .fetch_all(&mut *conn)
    .await?;
    for (referral_id, agency_id) in rows {
        sent.entry(referral_id).or_default().insert(agency_id);
    }
    Ok(sent)
}

/// A referral that reaches no agency is announced as such, with the reason, as the
/// answer of no one (`referral.delivery.recorded`, outcome `undelivered`): the case shows
/// it, the ministry gets an escalation, the referrer is told, and it is routed again once
/// the cause is fixed. Silence is the failure the hub exists to prevent.
fn undelivered(
    record: &CaseRecord,
    referral_id: &str,
    agency_id: &str,
    why: Obstacle,
) -> Result<Outgoing, RouterError> {
    tracing::warn!(case_id = %record.case_id, referral_id, agency = agency_id, reason = why.code(), "the referral reaches no agency: the case and its owner are told");
    let event = DeliveryRecorded {
        message_id: new_message_id(),
        occurred_at: Utc::now().to_rfc3339(),
        agency_id: agency_id.to_owned(),
        case_id: record.case_id.to_string(),
        referral_id: referral_id.to_owned(),
        delivery_message_id: String::new(),
        outcome: "undelivered".into(),
        http_status: 0,
        agency_reference: None,
        reason: Some(why.code().to_owned()),
    };
    Ok(himaya_store::outbox::event_message(
        Exchange::Events,
        keys::DELIVERY_RECORDED,
        &event,
        record.referral.priority.amqp_priority(),
        &event.case_id,
    )?)
}

/// A disclosure decision, for the router's own table and the hub's disclosure log.
fn decision(
    record: &CaseRecord,
    referral_id: &str,
    agency_id: &str,
    purpose: Purpose,
    deny_reason: Option<&str>,
) -> DisclosureRecorded {
    DisclosureRecorded {
        message_id: new_message_id(),
        occurred_at: Utc::now().to_rfc3339(),
        source: "router".into(),
        channel: "bus_delivery".into(),
        case_id: record.case_id.to_string(),
        referral_id: Some(referral_id.to_owned()),
        recipient: agency_id.to_owned(),
        purpose: purpose.as_str().into(),
        decision: if deny_reason.is_some() {
            "deny"
        } else {
            "permit"
        }
        .into(),
        reason: deny_reason.map(str::to_owned),
        categories: Vec::new(),
        basis: Vec::new(),
        delivery_message_id: None,
        person: None,
    }
}

/// Records the decision in the router's table and, through the outbox in the same
/// transaction, in the hub's hash-chained disclosure log.
async fn log_decision(conn: &mut PgConnection, e: &DisclosureRecorded) -> Result<(), RouterError> {
    sqlx::query(
        "INSERT INTO disclosures (case_id, referral_id, agency_id, purpose, decision, reason, categories, message_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&e.case_id)
    .bind(&e.referral_id)
    .bind(&e.recipient)
    .bind(&e.purpose)
    .bind(&e.decision)
    .bind(&e.reason)
    .bind(&e.categories)
    .bind(&e.delivery_message_id)
    .execute(&mut *conn)
    .await?;
    himaya_store::outbox::enqueue_event(
        conn,
        Exchange::Events,
        keys::DISCLOSURE_RECORDED,
        e,
        1,
        &e.case_id,
    )
    .await?;
    Ok(())
}

/// The decisions of a batch for the router's table, and its outbox rows, in one
/// statement (the urgent rows held for this router's [`Handover`]).
async fn write_plan(
    conn: &mut PgConnection,
    handover: &Handover,
    plan: &Plan,
) -> Result<Handed, RouterError> {
    // A batch of redeliveries only: nothing to write.
    if plan.decisions.is_empty() && plan.outbox.is_empty() {
        return Ok(Handed::default());
    }
    static STATEMENT: LazyLock<String> = LazyLock::new(|| {
        Rows::statement(
            "disclosure_rows AS (
           INSERT INTO disclosures (case_id, referral_id, agency_id, purpose, decision, reason, categories, message_id)
           SELECT r->>'case_id', r->>'referral_id', r->>'agency_id', r->>'purpose', r->>'decision', r->>'reason',
                  ARRAY(SELECT c FROM jsonb_array_elements_text(r->'categories') WITH ORDINALITY AS cs(c, n) ORDER BY n),
                  r->>'message_id'
             FROM jsonb_array_elements($1) WITH ORDINALITY AS rows(r, i)
            ORDER BY i)",
            2,
        )
    });
    let rows: Vec<serde_json::Value> = plan
        .decisions
        .iter()
        .map(|e| {
            serde_json::json!({
                "case_id": e.case_id,
                "referral_id": e.referral_id,
                "agency_id": e.recipient,
                "purpose": e.purpose,
                "decision": e.decision,
                "reason": e.reason,
                "categories": e.categories,
                "message_id": e.delivery_message_id,
            })
        })
        .collect();
    let outbox = handover.rows(&plan.outbox)?;
    let q = sqlx::query_as(&STATEMENT).bind(serde_json::Value::Array(rows));
    let returned: Returned = outbox.bind(q).fetch_all(&mut *conn).await?;
    Ok(Handed::of(outbox.held(returned)))
}

/// Withdrawal notices (from the disclosure log) to the agencies' delivery queues: no
/// case data, only which case, which consent, which categories and from when.
struct Notices(Arc<Router>);

impl Notices {
    async fn deliver(&self, n: &WithdrawalNotice) -> Result<(), RouterError> {
        let r = &self.0;
        let mut tx = r.pool().begin().await?;
        if !himaya_store::inbox::claim(&mut tx, NOTICE_QUEUE, &n.message_id).await? {
            tx.rollback().await?;
            return Ok(());
        }
        let connected = r
            .settings
            .agencies
            .get(&n.agency_id)
            .is_some_and(|a| a.endpoint.is_some());
        if connected {
            r.ensure_queues([n.agency_id.as_str()]).await?;
        }
        if !connected {
            // Nothing to push to: the agency collects the notice with Cases.ListNotices
            // (the cases service keeps every notice for its addressee).
            tracing::info!(case_id = %n.case_id, agency = %n.agency_id, notice_id = %n.notice_id, "the agency has no connector: the notice waits for it in ListNotices");
            tx.commit().await?;
            return Ok(());
        }
        let document = serde_json::json!({
            "notice_id": n.notice_id,
            "case_id": n.case_id,
            "consent_id": n.consent_id,
            "categories": n.categories,
            "withdrawn_at": n.withdrawn_at,
            "message_en": "Consent behind data you received about this case was withdrawn: stop using and sharing those categories from the time given.",
            "message_ar": "سُحبت الموافقة التي استندت إليها بيانات تلقيتموها عن هذه الحالة: أوقفوا استخدام هذه الفئات ومشاركتها اعتبارًا من الوقت المذكور.",
        });
        let delivery = DeliveryRequested {
            message_id: new_message_id(),
            occurred_at: Utc::now().to_rfc3339(),
            agency_id: n.agency_id.clone(),
            case_id: n.case_id.clone(),
            referral_id: n.notice_id.clone(),
            purpose: "consent_withdrawal".into(),
            priority: "urgent".into(),
            idempotency_key: n.notice_id.clone(),
            categories: vec!["reference".into()],
            document_json: document.to_string(),
            service_type: None,
            kind: "withdrawal_notice".into(),
            medical_coverage: None,
        };
        himaya_store::outbox::enqueue_event(
            &mut tx,
            Exchange::Delivery,
            &n.agency_id,
            &delivery,
            9,
            &n.case_id,
        )
        .await?;
        tx.commit().await?;
        tracing::info!(case_id = %n.case_id, agency = %n.agency_id, "withdrawal notice queued for delivery");
        Ok(())
    }
}

impl EventHandler for Notices {
    type Event = WithdrawalNotice;
    type Error = RouterError;
    async fn handle(&self, n: WithdrawalNotice, _: &Incoming) -> Result<(), RouterError> {
        self.deliver(&n).await
    }
}

/// The consumer of referrals (agencies' and service referrals) to route, a batch of
/// waiting messages per transaction. A message holds one referral (`referral.created`,
/// `service.referral.requested`) or an intake group's (`referrals.created`, each with
/// its own trace). A referral that can never be routed (its record cannot be redacted
/// or encoded) fails its batch; the batch's messages are then routed one per
/// transaction, and the message that holds it is parked; out of a message of many
/// referrals, the others are routed one per transaction and that one alone is parked
/// (a copy of it, as if it had come alone).
struct Referrals(Arc<Router>);

impl BatchHandler for Referrals {
    type Item = Vec<Delivered<ReferralCreated>>;

    fn read(&self, msg: &Incoming) -> Result<Self::Item, HandleError> {
        let payload = msg.payload();
        if event_name(payload).map_err(HandleError::park)? != ReferralsCreated::NAME {
            let event = decode::<ReferralCreated>(payload).map_err(HandleError::park)?;
            return Ok(vec![Delivered {
                event,
                headers: msg.headers(),
            }]);
        }
        let batch = decode::<ReferralsCreated>(payload).map_err(HandleError::park)?;
        if batch.traceparents.len() != batch.referrals.len() {
            return Err(HandleError::park(format!(
                "referrals.created: {} traceparents for {} referrals (one each expected)",
                batch.traceparents.len(),
                batch.referrals.len()
            )));
        }
        Ok(batch
            .referrals
            .into_iter()
            .zip(batch.traceparents)
            .map(|(event, traceparent)| {
                let mut headers = BTreeMap::new();
                headers.insert("x-correlation-id".to_owned(), referral_id(&event));
                if let Some(tp) = traceparent {
                    headers.insert("traceparent".to_owned(), tp);
                }
                Delivered { event, headers }
            })
            .collect())
    }

    async fn handle_batch(&self, items: Vec<Self::Item>) -> Result<(), HandleError> {
        let alone = items.len() == 1;
        let events: Vec<Delivered<ReferralCreated>> = items.into_iter().flatten().collect();
        match self.0.route_all(&events).await {
            Ok(()) => Ok(()),
            Err(e) if unroutable(&e) && alone && events.len() > 1 => self.route_each(&events).await,
            Err(e) if unroutable(&e) => Err(HandleError::park(e)),
            Err(e) => Err(HandleError::retry(e)),
        }
    }
}

impl Referrals {
    /// The referrals of one message, one transaction each; those that can never be
    /// routed are parked alone with their reason, once the others are routed. An error
    /// that may go away fails the message (redelivered, the referrals routed already
    /// are passed over by the inbox).
    async fn route_each(&self, events: &[Delivered<ReferralCreated>]) -> Result<(), HandleError> {
        let mut refused = Vec::new();
        for d in events {
            match self.0.route_all(std::slice::from_ref(d)).await {
                Ok(()) => {}
                Err(why) if unroutable(&why) => refused.push((d, why.to_string())),
                Err(why) => return Err(HandleError::retry(why)),
            }
        }
        for (d, why) in refused {
            himaya_component::park_item(
                &self.0.bus,
                QUEUE,
                keys::REFERRAL_CREATED,
                &d.event,
                &d.event.message_id,
                d.headers.clone(),
                &why,
            )
            .await?;
        }
        Ok(())
    }
}

/// Whether a referral can never be routed: its record cannot be redacted or encoded.
fn unroutable(e: &RouterError) -> bool {
    matches!(e, RouterError::Codec(_) | RouterError::Redact(_))
}
