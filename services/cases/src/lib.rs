//! The cases service: owns the normalized case record (schema `cases`). Serves
//! `himaya.v1.Intake` (referrals in), `himaya.v1.Cases` (a case as the calling agency may
//! see it) and `himaya.v1.CaseWork` (acceptance, caseloads, reviews, closure); records
//! what agencies answered to deliveries; runs the deadline engine.
//!
//! Intake lives here rather than in a service of its own: accepting a referral *is*
//! writing the case row, and splitting them would need a second copy of the record or a
//! cross-service read (see docs/decisions.md).

mod access;
mod break_glass;
mod change;
mod db;
mod deadlines;
pub mod duplicates;
mod error;
mod export;
pub mod intake;
mod notices;
mod outcomes;
pub mod read;
mod service_map;
mod service_referrals;
mod undelivered;
pub mod work;

use std::sync::Arc;

use himaya_bus::{Bus, Exchange};
use himaya_events::keys;
use himaya_proto::v1::cases_server::CasesServer;
use himaya_proto::v1::intake_server::IntakeServer;
use himaya_settings::Settings;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use error::CasesError;
pub use intake::IntakeApi;
pub use read::CasesApi;
pub use work::{CaseWorkApi, ServiceReferralsApi};

/// The database schema this service owns.
pub const SCHEMA: &str = "cases";
/// The queue of agencies' answers.
pub const OUTCOMES_QUEUE: &str = "cases.delivery-recorded";
/// The queue of withdrawal notices addressed to agencies (collected with ListNotices).
pub const NOTICES_QUEUE: &str = "cases.withdrawal-notices";
/// The queue of service-map changes (the copy referral proposals are made from).
pub const SERVICE_MAP_QUEUE: &str = "cases.service-map";

/// A started cases service: its gRPC APIs and its background tasks.
pub struct CasesService {
    state: Arc<State>,
    pub tasks: Vec<JoinHandle<()>>,
}

pub(crate) struct State {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
    /// Exports running at once in this process: each holds a connection and a core
    /// busy, so a burst of them must not starve intake and reads.
    pub exports: Arc<tokio::sync::Semaphore>,
}

/// Exports that may run at once per cases process.
pub const MAX_EXPORTS: usize = 4;

impl State {
    /// The agency making the call, which must be in the directory: unidentified calls are
    /// UNAUTHENTICATED, unknown agencies PERMISSION_DENIED.
    pub(crate) fn calling_agency(
        &self,
        meta: &tonic::metadata::MetadataMap,
    ) -> Result<(String, &himaya_settings::AgencySettings), CasesError> {
        let id = intake::caller(meta).ok_or_else(|| {
            CasesError::Unauthenticated(
                "say which agency is calling (x-himaya-agency metadata, or `--as` on the CLI)"
                    .into(),
            )
        })?;
        match self.settings.agencies.get(&id) {
            Some(a) => Ok((id, a)),
            // The caller's claim is not repeated back.
            None => Err(CasesError::PermissionDenied(
                "x-himaya-agency: the agency named is not in the directory".into(),
            )),
        }
    }
}

impl CasesService {
    /// Connects, migrates, declares its queue and starts the outbox relay and the
    /// consumer of agencies' answers.
    pub async fn start(
        settings: Arc<Settings>,
        bus: Arc<Bus>,
        shutdown: CancellationToken,
    ) -> Result<CasesService, CasesError> {
        let (pool, relay) = himaya_store::start_service(
            &settings,
            SCHEMA,
            &sqlx::migrate!("./migrations"),
            bus.clone(),
            shutdown.clone(),
        )
        .await?;
        let indexed = duplicates::backfill(&pool).await?;
        if indexed > 0 {
            tracing::info!(cases = indexed, "children index backfilled");
        }
        let state = Arc::new(State {
            pool: pool.clone(),
            settings: settings.clone(),
            exports: Arc::new(tokio::sync::Semaphore::new(MAX_EXPORTS)),
        });
        let queue = bus.topology().queue(OUTCOMES_QUEUE);
        bus.declare_queue(&queue, Exchange::Events, &[keys::DELIVERY_RECORDED])
            .await?;
        let consumer = tokio::spawn(himaya_bus::consume(
            bus.clone(),
            queue,
            settings.bus.prefetch,
            Arc::new(outcomes::Outcomes::new(pool.clone(), settings.clone())),
            shutdown.clone(),
        ));
        let map_queue = bus.topology().queue(SERVICE_MAP_QUEUE);
        bus.declare_queue(&map_queue, Exchange::Events, &[keys::SERVICE_MAP_CHANGED])
            .await?;
        let map = tokio::spawn(himaya_bus::consume(
            bus.clone(),
            map_queue,
            settings.bus.prefetch,
            Arc::new(service_map::ServiceMap::new(pool.clone())),
            shutdown.clone(),
        ));
        let notices_queue = bus.topology().queue(NOTICES_QUEUE);
        bus.declare_queue(&notices_queue, Exchange::Events, &[keys::WITHDRAWAL_NOTICE])
            .await?;
        let notices = tokio::spawn(himaya_bus::consume(
            bus,
            notices_queue,
            settings.bus.prefetch,
            Arc::new(notices::Notices::new(pool.clone())),
            shutdown.clone(),
        ));
        let interval =
            std::time::Duration::from_millis(settings.lifecycle.deadline_check_interval_ms);
        // Undelivered referrals go out again if their agency was connected since.
        let again = tokio::spawn(undelivered::reroute_all(pool.clone(), settings.clone()));
        let engine = tokio::spawn(deadlines::run(pool, interval, shutdown));
        Ok(CasesService {
            state,
            tasks: vec![relay, consumer, map, notices, engine, again],
        })
    }

    pub fn intake(&self) -> IntakeServer<intake::IntakeApi> {
        IntakeServer::new(intake::IntakeApi(self.state.clone()))
            .max_decoding_message_size(self.state.settings.grpc.max_message_bytes)
    }

    pub fn case_work(
        &self,
    ) -> himaya_proto::v1::case_work_server::CaseWorkServer<work::CaseWorkApi> {
        himaya_proto::v1::case_work_server::CaseWorkServer::new(work::CaseWorkApi(
            self.state.clone(),
        ))
        .max_decoding_message_size(self.state.settings.grpc.max_message_bytes)
    }

    pub fn service_referrals(
        &self,
    ) -> himaya_proto::v1::service_referrals_server::ServiceReferralsServer<ServiceReferralsApi>
    {
        himaya_proto::v1::service_referrals_server::ServiceReferralsServer::new(
            ServiceReferralsApi(self.state.clone()),
        )
        .max_decoding_message_size(self.state.settings.grpc.max_message_bytes)
    }

    pub fn cases(&self) -> CasesServer<read::CasesApi> {
        CasesServer::new(read::CasesApi(self.state.clone()))
            .max_decoding_message_size(self.state.settings.grpc.max_message_bytes)
    }
}
