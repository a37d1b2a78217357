//! The cases service: owns the normalized case record (schema `cases`). Serves
//! `himaya.v1.Intake` (referrals in), `himaya.v1.Cases` (a case as the calling agency may
//! see it), the case-owning ministry's `himaya.v1.CaseWork` (acceptance, caseloads,
//! reviews, closure), `Staff`, `Consents`, `Duplicates` and `Oversight`, and
//! `ServiceReferrals`; records what agencies answered to deliveries; runs the deadline
//! engine and the retention policy of closed cases.
//!
//! Intake lives here rather than in a service of its own: accepting a referral *is*
//! writing the case row, and splitting them would need a second copy of the record or a
//! cross-service read (see docs/decisions.md).

mod access;
mod backlog;
mod break_glass;
mod change;
mod db;
mod deadlines;
pub mod duplicates;
mod error;
mod export;
pub mod intake;
mod notices;
mod opening;
mod outcomes;
pub mod read;
pub mod retention;
pub mod service_map;
mod service_referrals;
mod undelivered;
pub mod work;

use std::sync::Arc;

use himaya_bus::Exchange;
use himaya_component::{Component, Context, StartError, Started};
use himaya_events::keys;
use himaya_proto::v1::case_work_server::CaseWorkServer;
use himaya_proto::v1::cases_server::CasesServer;
use himaya_proto::v1::consents_server::ConsentsServer;
use himaya_proto::v1::duplicates_server::DuplicatesServer;
use himaya_proto::v1::intake_server::IntakeServer;
use himaya_proto::v1::oversight_server::OversightServer;
use himaya_proto::v1::service_referrals_server::ServiceReferralsServer;
use himaya_proto::v1::staff_server::StaffServer;
use himaya_settings::Settings;
use sqlx::PgPool;

use crate::opening::Opening;

pub use error::CasesError;
pub use intake::IntakeApi;
pub use read::CasesApi;
pub use work::{
    CaseWorkApi, ConsentsApi, DuplicatesApi, OversightApi, ServiceReferralsApi, StaffApi,
};

/// The database schema this service owns.
pub const SCHEMA: &str = "cases";
/// The queue of agencies' answers.
pub const OUTCOMES_QUEUE: &str = himaya_bus::queues::CASES_ANSWERS;
/// The queue of withdrawal notices addressed to agencies (collected with ListNotices).
pub const NOTICES_QUEUE: &str = "cases.withdrawal-notices";
/// The queue of service-map changes (the copy referral proposals are made from).
pub const SERVICE_MAP_QUEUE: &str = "cases.service-map";

/// The cases service as a component of the hub.
pub struct Cases;

pub(crate) struct State {
    pub pool: PgPool,
    /// Intake's group writers, routine and urgent (each on its lane's connections: the
    /// urgent writer on `database.urgent_connections` alone).
    pub opening: Opening,
    pub urgent_opening: Opening,
    pub settings: Arc<Settings>,
    /// Exports running at once in this process: each holds a connection and a core
    /// busy, so a burst of them must not starve intake and reads.
    pub exports: Arc<tokio::sync::Semaphore>,
    /// The hub's metrics: intake, break-glass openings.
    pub metrics: Arc<himaya_metrics::Metrics>,
}

/// Exports that may run at once per cases process.
pub const MAX_EXPORTS: usize = 4;

impl State {
    /// Routine intake's writers and connections.
    pub(crate) fn routine(&self) -> &Opening {
        &self.opening
    }

    /// Hotline escalations' writers and connections.
    pub(crate) fn urgent(&self) -> &Opening {
        &self.urgent_opening
    }

    /// The agency making the call, which must be in the directory: unidentified calls are
    /// UNAUTHENTICATED, unknown agencies PERMISSION_DENIED.
    pub(crate) fn calling_agency(
        &self,
        meta: &tonic::metadata::MetadataMap,
    ) -> Result<(String, std::sync::Arc<himaya_settings::AgencySettings>), CasesError> {
        himaya_component::calling_agency(&self.settings, meta).map_err(|e| match e {
            himaya_component::CallerError::Unidentified => CasesError::Unauthenticated(e.msg()),
            himaya_component::CallerError::Unknown => CasesError::PermissionDenied(e.msg()),
        })
    }
}

impl Component for Cases {
    const NAME: &'static str = "cases";

    /// Connects, migrates, starts the outbox relay, the consumers of agencies' answers,
    /// service-map changes and withdrawal notices, and the deadline engine.
    async fn start(ctx: Context) -> Result<Started, StartError> {
        let Context {
            settings,
            bus,
            shutdown,
            ..
        } = &ctx;
        let (pool, relay) = himaya_store::start_service(
            settings,
            SCHEMA,
            &sqlx::migrate!("./migrations"),
            bus.clone(),
            himaya_bus::Stage::OnTheWay,
            shutdown.clone(),
        )
        .await?;
        let indexed = duplicates::backfill(&pool).await?;
        if indexed > 0 {
            tracing::info!(cases = indexed, "children index backfilled");
        }
        let lanes = himaya_store::Lanes::of(pool.clone(), &settings.database, SCHEMA)?;
        // Two routine writers: one gathers the next group while the other commits.
        let (opening, mut writers) = Opening::start(lanes.routine, 2, shutdown.clone(), None, None);
        // The urgent writer publishes its escalations' events itself.
        let (urgent_opening, urgent_writers) = Opening::start(
            lanes.urgent,
            1,
            shutdown.clone(),
            bus.urgent(),
            Some(himaya_store::handover::Handover::new(bus.clone(), SCHEMA)),
        );
        writers.extend(urgent_writers);
        let state = Arc::new(State {
            pool: pool.clone(),
            opening,
            urgent_opening,
            settings: settings.clone(),
            exports: Arc::new(tokio::sync::Semaphore::new(MAX_EXPORTS)),
            metrics: ctx.metrics.clone(),
        });
        let outcomes = ctx
            .subscribe_batches(
                OUTCOMES_QUEUE,
                Exchange::Events,
                &[keys::DELIVERY_RECORDED, keys::DELIVERIES_RECORDED],
                outcomes::batch(settings),
                outcomes::Outcomes::new(pool.clone(), settings.clone(), ctx.bus.clone()),
            )
            .await?;
        let map = ctx
            .subscribe(
                SERVICE_MAP_QUEUE,
                Exchange::Events,
                &[keys::SERVICE_MAP_CHANGED],
                service_map::ServiceMap::new(pool.clone()),
            )
            .await?;
        let notices = ctx
            .subscribe(
                NOTICES_QUEUE,
                Exchange::Events,
                &[keys::WITHDRAWAL_NOTICE],
                notices::Notices::new(pool.clone()),
            )
            .await?;
        let interval =
            std::time::Duration::from_millis(settings.lifecycle.deadline_check_interval_ms);
        // Undelivered referrals go out again if their agency was connected since.
        let again = tokio::spawn(undelivered::reroute_all(pool.clone(), settings.clone()));
        let tidy = tokio::spawn(duplicates::keep_tidy(pool.clone(), shutdown.clone()));
        let retention = tokio::spawn(retention::run(
            pool.clone(),
            settings.retention,
            ctx.metrics.clone(),
            shutdown.clone(),
        ));
        let engine = tokio::spawn(deadlines::run(
            pool,
            interval,
            ctx.metrics.clone(),
            shutdown.clone(),
        ));
        // Routine intake refused while the hub's own queues behind it are too deep.
        let backlog = tokio::spawn(backlog::watch(
            bus.clone(),
            settings.limits.clone(),
            ctx.metrics.clone(),
            shutdown.clone(),
        ));
        let max = settings.grpc.max_message_bytes;
        Ok(Started::default()
            .grpc(
                IntakeServer::new(intake::IntakeApi(state.clone())).max_decoding_message_size(max),
            )
            .grpc(CasesServer::new(read::CasesApi(state.clone())).max_decoding_message_size(max))
            .grpc(
                CaseWorkServer::new(work::CaseWorkApi(state.clone()))
                    .max_decoding_message_size(max),
            )
            .grpc(StaffServer::new(work::StaffApi(state.clone())).max_decoding_message_size(max))
            .grpc(
                ConsentsServer::new(work::ConsentsApi(state.clone()))
                    .max_decoding_message_size(max),
            )
            .grpc(
                DuplicatesServer::new(work::DuplicatesApi(state.clone()))
                    .max_decoding_message_size(max),
            )
            .grpc(
                OversightServer::new(work::OversightApi(state.clone()))
                    .max_decoding_message_size(max),
            )
            .grpc(
                ServiceReferralsServer::new(ServiceReferralsApi(state))
                    .max_decoding_message_size(max),
            )
            .tasks([
                relay, outcomes, map, notices, engine, again, tidy, retention, backlog,
            ])
            .tasks(writers))
    }
}
