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

/// Starts one delivery consumer per connected agency (one with an `endpoint`, not
/// suspended), each speaking the wire `wires` gives for its protocol, and the relay of
/// recorded answers. Each agency has its own queue and consumer: a slow or dead agency
/// delays only itself. The consumers follow the directory while the hub runs: an agency
/// added gets its consumer, one changed (endpoint, protocol, tokens) gets a new one, one
/// suspended or removed loses it (what waits on its queue stays there).
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
        himaya_bus::Stage::Record,
        shutdown.clone(),
    )
    .await?;
    let executor = Arc::new(Executor::new(&settings.connectors, bus.metrics().clone())?);
    let mut consumers = Consumers {
        pools: himaya_store::Lanes::of(pool.clone(), &settings.database, SCHEMA)?,
        settings: settings.clone(),
        bus,
        executor: executor.clone(),
        wires: wires.clone(),
        shutdown: shutdown.clone(),
        running: HashMap::new(),
    };
    consumers.reconcile(&settings.agencies.snapshot()).await?;
    let credentials = consumers
        .running
        .iter()
        .map(|(id, c)| (id.clone(), c.credentials.clone()))
        .collect();
    let every = std::time::Duration::from_millis(settings.directory.follow_ms);
    let following = tokio::spawn(consumers.follow(every));
    let words = tokio::spawn(retention::run(
        pool.clone(),
        settings.retention.agency_words_keep_days,
        shutdown.clone(),
    ));
    Ok(Running {
        pool,
        executor,
        credentials,
        tasks: vec![relay, following, words],
    })
}

/// One agency's running delivery consumer.
struct Consumer {
    /// The agency as it was when the consumer started (compared by pointer: the
    /// directory's follower keeps an unchanged agency's `Arc`).
    agency: Arc<himaya_settings::AgencySettings>,
    credentials: Arc<Credentials>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// The delivery consumers, kept in step with the directory.
struct Consumers {
    settings: Arc<Settings>,
    bus: Arc<Bus>,
    pools: himaya_store::Lanes,
    executor: Arc<Executor>,
    wires: HashMap<Protocol, Arc<dyn Wire>>,
    shutdown: CancellationToken,
    running: HashMap<String, Consumer>,
}

impl Consumers {
    /// Starts, restarts and stops consumers so that each agency of `agencies` that can
    /// be delivered to has one, as it is now.
    async fn reconcile(
        &mut self,
        agencies: &himaya_settings::AgencyMap,
    ) -> Result<(), ConnectError> {
        let wanted: HashMap<&String, &Arc<himaya_settings::AgencySettings>> = agencies
            .iter()
            .filter(|(_, a)| a.endpoint.is_some() && !a.suspended)
            .collect();
        let gone: Vec<String> = self
            .running
            .iter()
            .filter(|(id, c)| wanted.get(id).is_none_or(|a| !Arc::ptr_eq(a, &c.agency)))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(c) = self.running.remove(&id) {
                // It finishes the batch in hand; what waits stays on the agency's queue.
                c.stop.cancel();
                tracing::info!(agency = %id, "connector stopped (the directory changed the agency)");
            }
        }
        for (id, agency) in wanted {
            if self.running.contains_key(id) {
                continue;
            }
            let Some(endpoint) = agency.endpoint.clone() else {
                continue;
            };
            let wire = self
                .wires
                .get(&agency.protocol)
                .cloned()
                .ok_or(ConnectError::NoWire {
                    agency: id.clone(),
                    protocol: agency.protocol.as_str(),
                })?;
            let queue = self.bus.topology().delivery_queue(id);
            self.bus
                .declare_queue(&queue, Exchange::Delivery, &[id])
                .await?;
            let stop = self.shutdown.child_token();
            let credentials = Arc::new(Credentials::of(agency));
            // Each lane's calls in flight to the agency, at most a batch's.
            let batch = usize::from(self.settings.connectors.batch.max(1));
            let permits = || Arc::new(tokio::sync::Semaphore::new(batch));
            let handler = Arc::new(DeliveryConnector {
                pools: self.pools.clone(),
                executor: self.executor.clone(),
                agency_id: id.clone(),
                endpoint,
                wire,
                protocol: agency.protocol,
                credentials: credentials.clone(),
                place_codes: agency.place_codes.clone(),
                shutdown: stop.clone(),
                bus: self.bus.clone(),
                queue: queue.clone(),
                batch,
                calls: permits(),
                urgent_calls: permits(),
            });
            tracing::info!(agency = %id, protocol = agency.protocol.as_str(), "connector consuming");
            // What waits on the agency's queue is sent side by side and recorded at once.
            let task = tokio::spawn(himaya_bus::consume_batches(
                self.bus.clone(),
                queue,
                self.settings.bus.prefetch,
                self.settings.connectors.batch,
                handler,
                stop.clone(),
            ));
            self.running.insert(
                id.clone(),
                Consumer {
                    agency: agency.clone(),
                    credentials,
                    stop,
                    task,
                },
            );
        }
        Ok(())
    }

    /// Reconciles whenever the directory's set of agencies changed, until shutdown; then
    /// waits for every consumer to finish its batch.
    async fn follow(mut self, every: std::time::Duration) {
        let mut seen = self.settings.agencies.snapshot();
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                () = tokio::time::sleep(every) => {}
            }
            let now = self.settings.agencies.snapshot();
            if Arc::ptr_eq(&now, &seen) {
                continue;
            }
            match self.reconcile(&now).await {
                Ok(()) => seen = now,
                // Tried again at the next tick (the broker may be reconnecting); an agency
                // speaking a protocol this build lacks is refused by the directory's API.
                Err(e) => {
                    tracing::warn!(error = %e, "connectors could not follow the directory; trying again")
                }
            }
        }
        for (_, c) in self.running.drain() {
            c.stop.cancel();
            let _ = c.task.await;
        }
    }
}
