//! The health connector: delivers redacted referrals from each health agency's delivery
//! queue to that agency's HTTP endpoint, and records the answer (schema
//! `connector_health`) together with a `referral.delivery.recorded` event.
//!
//! Exactly-once toward the agency is not possible over HTTP; what we give instead is a
//! stable `Idempotency-Key` (`<referral id>:<agency id>`) on every attempt, so the agency
//! can drop the duplicate a crash-and-redeliver would cause.

pub mod mapping;
pub mod transport;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use himaya_bus::{Bus, Exchange, HandleError, Handler, Incoming, Outgoing};
use himaya_events::{
    decode, encode, keys, new_message_id, DeliveryRecorded, DeliveryRequested, Event,
};
use himaya_record::AgencyType;
use himaya_settings::Settings;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use mapping::ReferralMessage;
use transport::{DeliveryHeaders, Executor, Outcome};

pub const SCHEMA: &str = "connector_health";

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("storage failed")]
    Store(#[from] himaya_store::StoreError),
    #[error("the bus failed")]
    Bus(#[from] himaya_bus::BusError),
    #[error("an event could not be encoded")]
    Codec(#[from] himaya_events::CodecError),
    #[error("the HTTP client could not be built")]
    Http(#[from] reqwest::Error),
}

impl From<sqlx::Error> for ConnectorError {
    fn from(e: sqlx::Error) -> Self {
        ConnectorError::Store(e.into())
    }
}

/// Starts one consumer per connected health agency, and the relay of recorded outcomes.
pub async fn start(
    settings: Arc<Settings>,
    bus: Arc<Bus>,
    shutdown: CancellationToken,
) -> Result<Vec<JoinHandle<()>>, ConnectorError> {
    let (pool, relay) = himaya_store::start_service(
        &settings,
        SCHEMA,
        &sqlx::migrate!("./migrations"),
        bus.clone(),
        shutdown.clone(),
    )
    .await?;
    let executor = Arc::new(Executor::new(Duration::from_millis(
        settings.connectors.timeout_ms,
    ))?);
    let mut tasks = vec![relay];
    for (id, agency) in &settings.agencies {
        let (AgencyType::Health, Some(endpoint)) = (agency.agency_type, &agency.endpoint) else {
            continue;
        };
        let queue = bus.topology().delivery_queue(id);
        bus.declare_queue(&queue, Exchange::Delivery, &[id]).await?;
        let handler = Arc::new(HealthConnector {
            pool: pool.clone(),
            executor: executor.clone(),
            agency_id: id.clone(),
            endpoint: endpoint.clone(),
        });
        tracing::info!(agency = %id, "health connector consuming");
        tasks.push(tokio::spawn(himaya_bus::consume(
            bus.clone(),
            queue,
            settings.bus.prefetch,
            handler,
            shutdown.clone(),
        )));
    }
    Ok(tasks)
}

struct HealthConnector {
    pool: PgPool,
    executor: Arc<Executor>,
    agency_id: String,
    endpoint: String,
}

impl HealthConnector {
    async fn already_recorded(&self, message_id: &str) -> Result<bool, ConnectorError> {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM deliveries WHERE message_id = $1")
                .bind(message_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    /// Stores the agency's answer and its event in one transaction.
    async fn record(
        &self,
        d: &DeliveryRequested,
        outcome: &Outcome,
        latency: Duration,
        traceparent: Option<String>,
    ) -> Result<(), ConnectorError> {
        let (label, status, reference) = match outcome {
            Outcome::Delivered { status, reference } => ("delivered", *status, reference.clone()),
            Outcome::Rejected { status } => ("rejected", *status, None),
        };
        let mut tx = self.pool.begin().await?;
        if !himaya_store::inbox::claim(&mut tx, &self.agency_id, &d.message_id).await? {
            tx.rollback().await?;
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO deliveries (message_id, agency_id, case_id, referral_id, idempotency_key, outcome, http_status, agency_reference, latency_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&d.message_id)
        .bind(&d.agency_id)
        .bind(&d.case_id)
        .bind(&d.referral_id)
        .bind(&d.idempotency_key)
        .bind(label)
        .bind(i32::from(status))
        .bind(&reference)
        .bind(i32::try_from(latency.as_millis()).unwrap_or(i32::MAX))
        .execute(&mut *tx)
        .await?;
        let event = DeliveryRecorded {
            message_id: new_message_id(),
            occurred_at: Utc::now().to_rfc3339(),
            agency_id: d.agency_id.clone(),
            case_id: d.case_id.clone(),
            referral_id: d.referral_id.clone(),
            delivery_message_id: d.message_id.clone(),
            outcome: label.into(),
            http_status: i32::from(status),
            agency_reference: reference,
        };
        let mut headers = BTreeMap::new();
        headers.insert("x-correlation-id".to_owned(), d.referral_id.clone());
        if let Some(tp) = traceparent {
            headers.insert("traceparent".to_owned(), tp);
        }
        let msg = Outgoing {
            exchange: Exchange::Events,
            routing_key: keys::DELIVERY_RECORDED.into(),
            payload: encode(&event)?,
            message_id: event.message_id.clone(),
            event_type: DeliveryRecorded::NAME.into(),
            priority: 0,
            headers,
        };
        himaya_store::outbox::enqueue(&mut tx, &msg).await?;
        tx.commit().await?;
        Ok(())
    }
}

impl Handler for HealthConnector {
    async fn handle(&self, msg: &Incoming) -> Result<(), HandleError> {
        let park = |reason: String| HandleError::Park { reason };
        let retry = |e: ConnectorError| HandleError::Retry {
            reason: e.to_string(),
        };
        let d = decode::<DeliveryRequested>(msg.payload()).map_err(|e| park(e.to_string()))?;
        if d.agency_id != self.agency_id {
            return Err(park(format!(
                "delivery for `{}` arrived on the queue of `{}`",
                d.agency_id, self.agency_id
            )));
        }
        if self.already_recorded(&d.message_id).await.map_err(retry)? {
            return Ok(());
        }
        let body = ReferralMessage::try_from(&d).map_err(|e| park(e.to_string()))?;
        let traceparent = msg.header("traceparent");
        let headers = DeliveryHeaders {
            idempotency_key: &d.idempotency_key,
            traceparent: traceparent.as_deref(),
            priority: &d.priority,
        };
        let (outcome, latency) = self
            .executor
            .post(&self.agency_id, &self.endpoint, &headers, &body)
            .await
            .map_err(|e| HandleError::Retry {
                reason: format!("{}: {e}", self.agency_id),
            })?;
        if let Outcome::Rejected { status } = outcome {
            tracing::warn!(agency = %self.agency_id, referral_id = %d.referral_id, status, "agency rejected the referral");
        }
        self.record(&d, &outcome, latency, traceparent)
            .await
            .map_err(retry)
    }
}
