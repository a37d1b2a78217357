//! What an operator (and Prometheus, and Kubernetes) sees of a running process: the
//! metrics port (`telemetry.metrics_listen`, plain HTTP apart from gRPC's mutual TLS)
//! serving `GET /metrics`, `/livez` and `/readyz`; the probe that keeps readiness true
//! (PostgreSQL and RabbitMQ asked every `telemetry.probe_interval_ms`) and makes the gRPC
//! health service follow it; and the sampler of the gauges that need SQL or the broker,
//! every `telemetry.sample_interval_ms`, each statement bounded (never per scrape).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use himaya_bus::Bus;
use himaya_metrics::{CasesOpen, ComponentLabel, KindLabel, KindRisk, Metrics, Readiness, Word};
use himaya_settings::Settings;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// What the metrics port answers from.
#[derive(Clone)]
pub struct Observed {
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
}

/// `GET /metrics`, `/livez`, `/readyz`.
pub fn router(o: Observed) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(o)
}

async fn metrics(State(o): State<Observed>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, himaya_metrics::CONTENT_TYPE)],
        o.metrics.encode(),
    )
}

/// The process answers: it is alive, whatever PostgreSQL and RabbitMQ do (restarting it
/// would not bring them back).
async fn livez() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "ok\n",
    )
}

/// 200 while ready; 503 naming what is down, in Arabic and English.
async fn readyz(State(o): State<Observed>) -> impl IntoResponse {
    let (ready, body) = o.readiness.report();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
}

/// The gRPC services of each component running here, for the health service.
pub type Services = Vec<(&'static str, Vec<&'static str>)>;

/// Asks PostgreSQL and RabbitMQ every probe interval until `shutdown`; on every change
/// of readiness sets `himaya_ready{component}` and the gRPC health of each component's
/// services (and of the whole server, `""`): SERVING while ready, NOT_SERVING otherwise.
pub async fn probe(
    settings: Arc<Settings>,
    bus: Arc<Bus>,
    observed: Observed,
    services: Services,
    health: tonic_health::server::HealthReporter,
    shutdown: CancellationToken,
) {
    let every = settings.telemetry.probe_interval();
    let within = every.max(Duration::from_secs(1));
    let pool = himaya_store::extra_pool(&settings.database, "public", 1).ok();
    let mut shown: HashMap<&'static str, bool> = HashMap::new();
    let mut first = true;
    loop {
        let database = match &pool {
            Some(p) => matches!(
                tokio::time::timeout(within, sqlx::query("SELECT 1").execute(p)).await,
                Ok(Ok(_))
            ),
            None => false,
        };
        let broker = bus.probe(within).await;
        let r = &observed.readiness;
        let changed = r.set_database(database) | r.set_broker(broker);
        if changed || first {
            if !first {
                let down: Vec<&str> = r.down().iter().map(|d| d.name()).collect();
                tracing::warn!(ready = down.is_empty(), down = ?down, "readiness changed");
            }
            let all_ready = r.is_ready();
            for (component, ready) in r.components() {
                observed
                    .metrics
                    .process
                    .ready
                    .get_or_create(&ComponentLabel { component })
                    .set(i64::from(ready));
                if shown.insert(component, ready) == Some(ready) {
                    continue;
                }
                let status = serving(ready);
                for (c, names) in &services {
                    if *c == component {
                        for name in names {
                            health.set_service_status(*name, status).await;
                        }
                    }
                }
            }
            health.set_service_status("", serving(all_ready)).await;
            first = false;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

fn serving(ready: bool) -> tonic_health::ServingStatus {
    if ready {
        tonic_health::ServingStatus::Serving
    } else {
        tonic_health::ServingStatus::NotServing
    }
}

/// What the sampler reads: the broker's queue depths always; the cases service's
/// lifecycle and the disclosure log where those components run in this process.
pub struct Sampling {
    pub cases: bool,
    pub audit: bool,
}

/// Samples every sample interval until `shutdown`. A sample that fails or times out is
/// counted (`himaya_sample_failures_total{sample}`) and its gauges keep their last value.
pub async fn sample(
    settings: Arc<Settings>,
    bus: Arc<Bus>,
    metrics: Arc<Metrics>,
    what: Sampling,
    shutdown: CancellationToken,
) {
    let every = settings.telemetry.sample_interval();
    let timeout = settings.telemetry.sample_timeout();
    metrics
        .audit
        .checkpoint_interval
        .set(settings.audit.checkpoint_interval_secs as f64);
    let pool = match himaya_store::extra_pool(&settings.database, "public", 1) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(error = %e, "the metrics sampler has no database pool");
            None
        }
    };
    loop {
        if !matches!(
            tokio::time::timeout(timeout * 2, bus.sample_queues()).await,
            Ok(true)
        ) {
            metrics.lifecycle.sample_failed("queues");
        }
        if let Some(pool) = &pool {
            if what.cases {
                let done = tokio::time::timeout(
                    timeout * 2,
                    lifecycle(pool, &settings, &metrics, timeout),
                )
                .await;
                if !matches!(done, Ok(Ok(()))) {
                    metrics.lifecycle.sample_failed("cases");
                    if let Ok(Err(e)) = done {
                        tracing::debug!(error = %e, "lifecycle gauges not sampled");
                    }
                }
            }
            if what.audit {
                let done = tokio::time::timeout(timeout * 2, audit(pool, &metrics, timeout)).await;
                if !matches!(done, Ok(Ok(()))) {
                    metrics.lifecycle.sample_failed("audit");
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// The statuses of an open case.
const OPEN: &str = "('referred', 'registered')";

/// Open cases, deadlines, caseloads and pending withdrawal notices, from the cases
/// service's schema, in one read-only transaction.
async fn lifecycle(
    pool: &PgPool,
    settings: &Settings,
    metrics: &Metrics,
    timeout: Duration,
) -> Result<(), himaya_store::StoreError> {
    let mut tx = himaya_store::sample_transaction(pool, timeout).await?;
    let cases: Vec<(String, String, String, i64)> = sqlx::query_as(&format!(
        "SELECT status, risk_level, governorate, count(*) FROM cases.cases
          WHERE status IN {OPEN} GROUP BY 1, 2, 3"
    ))
    .fetch_all(&mut *tx)
    .await?;
    let due: Vec<(String, i64)> = sqlx::query_as(
        "SELECT kind, count(*) FROM cases.deadlines
          WHERE state = 'open' AND due_at >= now() GROUP BY 1",
    )
    .fetch_all(&mut *tx)
    .await?;
    // Passed and not met: open past due (the engine fires them within its interval), or
    // fired (escalated) on a case still open and not followed by a newer deadline of the
    // same kind and reference (the thing done, or rescheduled); an escalated assignment
    // ends with the assignment.
    let missed: Vec<(String, String, i64)> = sqlx::query_as(&format!(
        "SELECT d.kind, c.risk_level, count(*) FROM cases.deadlines d
           JOIN cases.cases c USING (case_id)
          WHERE c.status IN {OPEN}
            AND ((d.state = 'open' AND d.due_at < now())
              OR (d.state = 'fired'
                  AND NOT (d.kind = 'assignment' AND c.caseworker_id IS NOT NULL)
                  AND NOT EXISTS (SELECT 1 FROM cases.deadlines n
                                   WHERE n.case_id = d.case_id AND n.kind = d.kind
                                     AND n.ref_id IS NOT DISTINCT FROM d.ref_id
                                     AND n.id > d.id)))
          GROUP BY 1, 2"
    ))
    .fetch_all(&mut *tx)
    .await?;
    let max = settings.lifecycle.max_cases_per_caseworker;
    let (over, assigned, caseworkers): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE n > $1), COALESCE(sum(n), 0)::bigint, count(*)
           FROM (SELECT count(c.case_id) AS n FROM cases.staff s
                   LEFT JOIN cases.cases c ON c.caseworker_agency = s.agency_id
                        AND c.caseworker_id = s.staff_id AND c.status = 'registered'
                  WHERE s.role = 'caseworker' GROUP BY s.agency_id, s.staff_id) t",
    )
    .bind(max)
    .fetch_one(&mut *tx)
    .await?;
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM cases.agency_notices WHERE acknowledged_at IS NULL",
    )
    .fetch_one(&mut *tx)
    .await?;
    drop(tx);
    let l = &metrics.lifecycle;
    // Labels from closed vocabularies and the gazetteer only: anything else is `other`.
    let status = |s: &str| word(himaya_record::CaseStatus::parse(s).map(|v| v.as_str()));
    let risk = |s: &str| word(himaya_record::RiskLevel::parse(s).map(|v| v.as_str()));
    let kind = |s: &str| word(himaya_record::lifecycle::DeadlineKind::parse(s).map(|v| v.as_str()));
    let governorate = |s: &str| word(settings.gazetteer.governorate(s).map(|g| g.code.as_str()));
    l.cases_open.replace(sum(cases.iter().map(|(s, r, g, n)| {
        (
            CasesOpen {
                status: status(s),
                risk: risk(r),
                governorate: governorate(g),
            },
            *n,
        )
    })));
    l.deadlines_due.replace(sum(due
        .iter()
        .map(|(k, n)| (KindLabel { kind: kind(k) }, *n))));
    l.deadlines_missed
        .replace(sum(missed.iter().map(|(k, r, n)| {
            (
                KindRisk {
                    kind: kind(k),
                    risk: risk(r),
                },
                *n,
            )
        })));
    l.caseworkers_over_cap.set(over);
    l.caseload_assigned.set(assigned);
    l.caseload_capacity.set(caseworkers.saturating_mul(max));
    metrics.consent.withdrawal_notices_pending.set(pending);
    Ok(())
}

/// The disclosure log's length and its last signed checkpoint.
async fn audit(
    pool: &PgPool,
    metrics: &Metrics,
    timeout: Duration,
) -> Result<(), himaya_store::StoreError> {
    let mut tx = himaya_store::sample_transaction(pool, timeout).await?;
    let length: i64 = sqlx::query_scalar("SELECT COALESCE(max(seq), 0)::bigint FROM audit.log")
        .fetch_one(&mut *tx)
        .await?;
    let last: f64 = sqlx::query_scalar(
        "SELECT COALESCE(extract(epoch FROM max(signed_at::timestamptz))::float8, 0) FROM audit.checkpoints",
    )
    .fetch_one(&mut *tx)
    .await?;
    metrics.audit.chain_length.set(length);
    metrics.audit.last_checkpoint.set(last);
    Ok(())
}

fn word(known: Option<&str>) -> Word {
    Word::new(known.unwrap_or("other"))
}

/// Adds up the values of label sets that fold to the same labels (two spellings of a
/// governorate, two unknown statuses).
fn sum<L: std::hash::Hash + Eq>(values: impl Iterator<Item = (L, i64)>) -> Vec<(L, i64)> {
    let mut out: HashMap<L, i64> = HashMap::new();
    for (l, n) in values {
        *out.entry(l).or_default() += n;
    }
    out.into_iter().collect()
}
