//! What every agency connector shares (`connectors/<agency>/` holds only its mapping):
//! - `executor`: the one outbound HTTP executor (timeouts, retry classification, backoff,
//!   a circuit breaker per agency, masked logging, the agencies' metrics in the hub's
//!   registry);
//! - `shared`: the view of a case as the consent layer redacted it for an agency;
//! - `wire`: the trait a mapping implements;
//! - `delivery`: the consumer of an agency's delivery queue, which records every answer.

pub mod auth;
pub mod breaker;
pub mod delivery;
pub mod envelope;
pub mod executor;
pub mod inbound;
pub mod retention;
pub mod shared;
pub mod standard;
pub mod submission;
pub mod testing;
pub mod wire;

use std::collections::HashMap;
use std::sync::Arc;

use himaya_bus::{Bus, Exchange};
use himaya_settings::{Protocol, Settings};
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use auth::Credentials;
pub use delivery::DeliveryConnector;
pub use executor::{install_crypto_provider, Call, Executor, Method, Outcome, TransientError};
/// The catalogue's messages, for the mappings' refusals ([`InboundError`]).
pub use himaya_words::{msg, Lang, Msg};
pub use inbound::{InboundError, StatusChange};
pub use shared::{MappingError, SharedCase, SharedNotice, SharedOutcome};
pub use standard::{Ask, Inbound, Intake, Standard};
pub use wire::{plain_outbound, DeliveryKind, Outbound, PlainPaths, Wire};

/// The schema of the connectors' own tables.
pub const SCHEMA: &str = "connectors";

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("storage failed")]
    Store(#[from] himaya_store::StoreError),
    #[error("the bus failed")]
    Bus(#[from] himaya_bus::BusError),
    #[error("an event could not be encoded")]
    Codec(#[from] himaya_events::CodecError),
    /// The usual cause: no CA certificates on the system (Debian's `ca-certificates`),
    /// which the client checks agencies' server certificates against.
    #[error("the HTTP client for the agencies could not be built (are the system's CA certificates installed?)")]
    Http(#[from] reqwest::Error),
    #[error("agency `{agency}` speaks `{protocol}`, which has no connector in this build")]
    NoWire {
        agency: String,
        protocol: &'static str,
    },
}

himaya_store::from_sqlx!(ConnectError::Store);

/// The running delivery side: its pool (for the webhooks' inbox), executor (metrics) and
/// each connected agency's credentials (for its poller).
pub struct Running {
    pub pool: PgPool,
    pub executor: Arc<Executor>,
    pub credentials: HashMap<String, Arc<Credentials>>,
    pub tasks: Vec<JoinHandle<()>>,
}

/// Starts one delivery consumer per connected agency (one with an `endpoint`), each
/// speaking the wire `wires` gives for its protocol, and the relay of recorded answers.
/// Each agency has its own queue and consumer: a slow or dead agency delays only itself.
pub async fn start(
    settings: Arc<Settings>,
    bus: Arc<Bus>,
    wires: &HashMap<Protocol, Arc<dyn Wire>>,
    shutdown: CancellationToken,
) -> Result<Running, ConnectError> {
    let (pool, relay) = himaya_store::start_service(
        &settings,
        SCHEMA,
        &sqlx::migrate!("./migrations"),
        bus.clone(),
        shutdown.clone(),
    )
    .await?;
    let executor = Arc::new(Executor::new(&settings.connectors, bus.metrics().clone())?);
    let words = tokio::spawn(retention::run(
        pool.clone(),
        settings.retention.agency_words_keep_days,
        shutdown.clone(),
    ));
    let mut tasks = vec![relay, words];
    let mut credentials = HashMap::new();
    for (id, agency) in &settings.agencies {
        let Some(endpoint) = &agency.endpoint else {
            continue;
        };
        let wire = wires
            .get(&agency.protocol)
            .cloned()
            .ok_or(ConnectError::NoWire {
                agency: id.clone(),
                protocol: agency.protocol.as_str(),
            })?;
        let queue = bus.topology().delivery_queue(id);
        bus.declare_queue(&queue, Exchange::Delivery, &[id]).await?;
        let handler = Arc::new(DeliveryConnector {
            pool: pool.clone(),
            executor: executor.clone(),
            agency_id: id.clone(),
            endpoint: endpoint.clone(),
            wire,
            protocol: agency.protocol,
            credentials: credentials
                .entry(id.clone())
                .or_insert_with(|| Arc::new(Credentials::of(agency)))
                .clone(),
            place_codes: agency.place_codes.clone(),
            shutdown: shutdown.clone(),
        });
        tracing::info!(agency = %id, protocol = agency.protocol.as_str(), "connector consuming");
        // What waits on the agency's queue is sent side by side and recorded at once.
        tasks.push(tokio::spawn(himaya_bus::consume_batches(
            bus.clone(),
            queue,
            settings.bus.prefetch,
            settings.bus.prefetch,
            handler,
            shutdown.clone(),
        )));
    }
    Ok(Running {
        pool,
        executor,
        credentials,
        tasks,
    })
}
