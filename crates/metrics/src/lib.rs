//! The hub's metrics, in the Prometheus / OpenMetrics text format, from one registry per
//! [`Metrics`] value: no global recorder, so every hub started in a process (the tests
//! run many) counts on its own. The composition root makes one per hub and hands it to
//! every component (through `himaya_component::Context` and the bus); the hub serves it
//! at `GET /metrics` on `telemetry.metrics_listen`, beside `/livez` and `/readyz`
//! ([`Readiness`]).
//!
//! The names and labels are a contract with the dashboards and alerts
//! (`deploy/observability/`, `docs/metrics.md`). Labels never carry personal data or an
//! unbounded value: agency ids come from the directory, governorates from the gazetteer,
//! every other label from a closed vocabulary; no case id, no name, no free text.
//!
//! The hot path is cheap: counters and gauges are atomics; the components resolve the
//! handles of a label set once (a queue's lane, an agency, an outbox) and keep them, so
//! a message costs an atomic increment, not a label lookup; where the labels vary per
//! event (a gRPC call's code) the cost is one hash lookup in the family.

pub mod ready;

use std::collections::BTreeSet;
use std::hash::Hash;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

pub use ready::{Down, Readiness};

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A gauge of seconds or timestamps.
pub type SecondsGauge = Gauge<f64, AtomicU64>;

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Call latencies, from a millisecond to half a minute.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// A label value that is one word of a closed vocabulary or configuration (never built
/// from what a caller sent): an agency id, a queue name, a governorate code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct Word(Arc<str>);

impl Word {
    pub fn new(s: &str) -> Word {
        Word(Arc::from(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Word {
    fn from(s: &str) -> Word {
        Word::new(s)
    }
}

impl EncodeLabelValue for Word {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&&*self.0, encoder)
    }
}

macro_rules! labels {
    ($($(#[$m:meta])* $name:ident { $($field:ident: $ty:ty),+ $(,)? })+) => {$(
        $(#[$m])*
        #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
        pub struct $name { $(pub $field: $ty),+ }
    )+};
}

labels! {
    ComponentLabel { component: &'static str }
    VersionLabel { version: &'static str }
    GrpcMethod { service: Word, method: Word }
    GrpcCall { service: Word, method: Word, code: &'static str }
    IntakeLabels { source_kind: &'static str, priority: &'static str }
    ReasonLabel { reason: &'static str }
    OutboxLabel { outbox: Word }
    LaneLabels { queue: Word, lane: &'static str }
    QueueLabel { queue: Word }
    AgencyOutcome { agency: Word, outcome: &'static str }
    AgencyLabel { agency: Word }
    WebhookCall { route: Word, status: u16 }
    ConsentDecision { purpose: &'static str, agency_type: &'static str, decision: &'static str }
    CasesOpen { status: Word, risk: Word, governorate: Word }
    KindLabel { kind: Word }
    KindRisk { kind: Word, risk: Word }
    SampleLabel { sample: &'static str }
    EscalatedLabels { kind: &'static str, risk: &'static str }
}

/// Every metric of one hub.
pub struct Metrics {
    registry: Registry,
    list: Vec<(String, String, String)>,
    pub process: Process,
    pub grpc: Grpc,
    pub intake: Intake,
    pub outbox: Outbox,
    pub bus: BusMetrics,
    pub agencies: Agencies,
    pub webhooks: Webhooks,
    pub consent: Consent,
    pub lifecycle: Lifecycle,
    pub audit: Audit,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Registers `metric` under `name` and gives it back (families and metrics are handles
/// to shared atomics: the registry's copy and the one kept count together).
fn reg<M: Metric + Clone>(r: &mut Reg, name: &str, help: &str, metric: M) -> M {
    let kind = metric.metric_type().as_str().to_owned();
    let shown = if kind == "counter" {
        format!("{name}_total")
    } else {
        name.to_owned()
    };
    r.list.push((shown, kind, help.to_owned()));
    r.registry.register(name, help, metric.clone());
    metric
}

/// The registry being filled, and what it holds (for [`Metrics::catalogue`]).
#[derive(Default)]
struct Reg {
    registry: Registry,
    list: Vec<(String, String, String)>,
}

fn histograms<L>() -> Histograms<L>
where
    L: Clone + Hash + Eq,
{
    Family::new_with_constructor(latency_histogram as fn() -> Histogram)
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Reg::default();
        let process = Process {
            ready: reg(
                &mut r,
                "himaya_ready",
                "1 while the component is ready (PostgreSQL and RabbitMQ reachable, migrations and declarations done), else 0",
                Family::default(),
            ),
            build_info: reg(
                &mut r,
                "himaya_build_info",
                "Always 1; the version of the running build in its label",
                Family::default(),
            ),
        };
        process
            .build_info
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        let grpc = Grpc {
            requests: reg(
                &mut r,
                "himaya_grpc_requests",
                "gRPC calls answered, by service, method and status code name (OK, InvalidArgument, ...), counted by the gateway",
                Family::default(),
            ),
            duration: reg(
                &mut r,
                "himaya_grpc_request_duration_seconds",
                "Time from a gRPC call's arrival at the gateway to its last byte (its trailers), by service and method",
                histograms(),
            ),
        };
        let intake = Intake {
            referrals: reg(
                &mut r,
                "himaya_intake_referrals",
                "Referrals accepted (a new case), by source kind and priority (urgent|routine)",
                Family::default(),
            ),
            refusals: reg(
                &mut r,
                "himaya_intake_refusals",
                "Intake calls not taken, by reason: invalid (field violations), overload (past limits.intake_in_flight), backlog (the hub's own queues behind intake at limits.backlog_max_messages), unauthorized, duplicate (a resubmission answered as before), unavailable (storage)",
                Family::default(),
            ),
            backlog: reg(
                &mut r,
                "himaya_intake_backlog_messages",
                "Messages ready on the hub's own queues behind intake (the routine lanes of the router's, the answers' and the disclosure log's queues), read by the cases service every limits.backlog_sample_ms; from limits.backlog_max_messages routine intake is refused until it is down to half",
                Gauge::default(),
            ),
            backlogged: Default::default(),
        };
        let outbox = Outbox {
            waiting: reg(
                &mut r,
                "himaya_outbox_waiting",
                "Outbox rows not yet sent, by outbox (the service's schema); sampled every telemetry.sample_interval_ms",
                Family::default(),
            ),
            oldest_age: reg(
                &mut r,
                "himaya_outbox_oldest_age_seconds",
                "Age of the oldest unsent outbox row (0 when none), by outbox; sampled",
                Family::default(),
            ),
            publish: reg(
                &mut r,
                "himaya_outbox_publish_duration_seconds",
                "Time to publish a relay's batch (or a writer's own urgent rows) and receive every broker confirm, by outbox",
                histograms(),
            ),
            confirms_failed: reg(
                &mut r,
                "himaya_outbox_confirms_failed",
                "Outbox rows the broker did not confirm (nack, unroutable, no answer within the lease), by outbox; they are sent again",
                Family::default(),
            ),
        };
        let bus = BusMetrics {
            consumed: reg(
                &mut r,
                "himaya_bus_consumed",
                "Messages delivered to the hub's consumers, by queue and lane (urgent|routine)",
                Family::default(),
            ),
            acked: reg(
                &mut r,
                "himaya_bus_acked",
                "Messages handled and acknowledged, by queue and lane",
                Family::default(),
            ),
            retried: reg(
                &mut r,
                "himaya_bus_retried",
                "Handler failures retried (in process, or requeued), by queue and lane",
                Family::default(),
            ),
            parked: reg(
                &mut r,
                "himaya_bus_parked",
                "Messages parked for an operator (himaya parked list), by queue and lane",
                Family::default(),
            ),
            restarted: reg(
                &mut r,
                "himaya_bus_consumer_restarts",
                "A lane's consumer lost its channel (the broker or its connection gone, an acknowledgement left unanswered) and subscribed again; what it held is delivered again. By queue and lane",
                Family::default(),
            ),
            ready: reg(
                &mut r,
                "himaya_bus_queue_ready_messages",
                "Messages ready on a queue the process consumes, read from the broker (passive declare) every telemetry.sample_interval_ms",
                Family::default(),
            ),
            queues: Mutex::default(),
        };
        let agencies = Agencies {
            deliveries: reg(
                &mut r,
                "himaya_agency_deliveries",
                "Calls to an agency's system by outcome: delivered (2xx/409), rejected (other 4xx), transient (5xx, 429, 408, timeouts, unreachable)",
                Family::default(),
            ),
            duration: reg(
                &mut r,
                "himaya_agency_request_duration_seconds",
                "Time of one HTTP call to an agency's system, by agency",
                histograms(),
            ),
            breaker: reg(
                &mut r,
                "himaya_agency_breaker_state",
                "An agency's circuit breaker: 0 closed, 1 half-open (one trial call), 2 open (calls paused)",
                Family::default(),
            ),
            spared: reg(
                &mut r,
                "himaya_agency_breaker_refusals",
                "Calls not made because the agency's circuit was open",
                Family::default(),
            ),
        };
        let webhooks = Webhooks {
            calls: reg(
                &mut r,
                "himaya_webhook_calls",
                "Requests to the agencies' webhooks, by route template and HTTP status answered",
                Family::default(),
            ),
        };
        let consent = Consent {
            decisions: reg(
                &mut r,
                "himaya_consent_decisions",
                "Disclosure decisions of the router (policy and consent), by purpose, recipient agency type and decision (permit|deny)",
                Family::default(),
            ),
            break_glass: reg(
                &mut r,
                "himaya_break_glass_openings",
                "Break-glass accesses opened (emergency access without consent)",
                Counter::default(),
            ),
            withdrawal_notices_pending: reg(
                &mut r,
                "himaya_withdrawal_notices_pending",
                "Withdrawal notices not yet acknowledged by their agency; sampled",
                Gauge::default(),
            ),
        };
        let samples_failed = reg(
            &mut r,
            "himaya_sample_failures",
            "Periodic samples (SQL gauges, queue depths) that failed or timed out, by sample",
            Family::default(),
        );
        let lifecycle = Lifecycle {
            samples_failed,
            cases_open: Sampled::new(reg(
                &mut r,
                "himaya_cases_open",
                "Open cases (referred or registered) by status, risk and governorate code; sampled",
                Family::default(),
            )),
            deadlines_due: Sampled::new(reg(
                &mut r,
                "himaya_deadlines_due",
                "Deadlines open and not yet passed, by kind; sampled",
                Family::default(),
            )),
            deadlines_missed: Sampled::new(reg(
                &mut r,
                "himaya_deadlines_missed",
                "Deadlines of open cases passed and not met, by kind and case risk: open past due (about to be escalated) or escalated and not followed by a newer deadline of the same kind (met or rescheduled); sampled",
                Family::default(),
            )),
            escalated: reg(
                &mut r,
                "himaya_deadlines_escalated",
                "Deadlines the deadline engine found passed and escalated to the supervisor, by kind and case risk (an alert on a missed high-risk deadline watches its increase)",
                Family::default(),
            ),
            anonymised: reg(
                &mut r,
                "himaya_cases_anonymised",
                "Closed cases anonymised by the retention policy (retention.anonymise_after_years): personal data removed, what statistics count kept",
                Counter::default(),
            ),
            caseworkers_over_cap: reg(
                &mut r,
                "himaya_caseworkers_over_cap",
                "Caseworkers holding more open cases than lifecycle.max_cases_per_caseworker; sampled",
                Gauge::default(),
            ),
            caseload_assigned: reg(
                &mut r,
                "himaya_caseload_assigned",
                "Open cases assigned to caseworkers; sampled",
                Gauge::default(),
            ),
            caseload_capacity: reg(
                &mut r,
                "himaya_caseload_capacity",
                "Caseworkers times lifecycle.max_cases_per_caseworker; sampled",
                Gauge::default(),
            ),
        };
        let audit = Audit {
            chain_length: reg(
                &mut r,
                "himaya_audit_chain_length",
                "Entries in the disclosure log's hash chain; sampled",
                Gauge::default(),
            ),
            last_checkpoint: reg(
                &mut r,
                "himaya_audit_last_checkpoint_timestamp_seconds",
                "Unix time of the last signed checkpoint of the disclosure log (0: none yet); sampled",
                SecondsGauge::default(),
            ),
            checkpoint_interval: reg(
                &mut r,
                "himaya_audit_checkpoint_interval_seconds",
                "The configured interval between signed checkpoints (audit.checkpoint_interval_secs)",
                SecondsGauge::default(),
            ),
            verification_failures: reg(
                &mut r,
                "himaya_audit_verification_failures",
                "Verifications of the disclosure log's chain or checkpoint signature that failed",
                Counter::default(),
            ),
        };
        Metrics {
            registry: r.registry,
            list: r.list,
            process,
            grpc,
            intake,
            outbox,
            bus,
            agencies,
            webhooks,
            consent,
            lifecycle,
            audit,
        }
    }

    /// The whole registry in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail; an encoder error would be a label bug.
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
            out.push_str("# EOF\n");
        }
        out
    }

    /// Every metric's name (as its samples are named: counters end in `_total`), type
    /// and help text, in the order registered: what `docs/metrics.md` lists.
    pub fn catalogue(&self) -> &[(String, String, String)] {
        &self.list
    }
}

/// Readiness and the build.
pub struct Process {
    pub ready: Family<ComponentLabel, Gauge>,
    pub build_info: Family<VersionLabel, Gauge>,
}

/// gRPC RED, recorded by the gateway.
pub struct Grpc {
    requests: Family<GrpcCall, Counter>,
    duration: Histograms<GrpcMethod>,
}

impl Grpc {
    /// One answered call of `method` with the gRPC status `code` (its number).
    pub fn record(&self, method: &GrpcMethod, code: i32, took: Duration) {
        self.requests
            .get_or_create(&GrpcCall {
                service: method.service.clone(),
                method: method.method.clone(),
                code: grpc_code_name(code),
            })
            .inc();
        self.duration
            .get_or_create(method)
            .observe(took.as_secs_f64());
    }
}

/// The name of a gRPC status code, as the label `code` shows it.
pub fn grpc_code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "Cancelled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        _ => "Unknown",
    }
}

/// Referrals in.
pub struct Intake {
    referrals: Family<IntakeLabels, Counter>,
    refusals: Family<ReasonLabel, Counter>,
    backlog: Gauge,
    /// Routine intake is refused for the backlog behind it (set by the cases service's
    /// watch, read by intake on every routine referral).
    backlogged: std::sync::atomic::AtomicBool,
}

impl Intake {
    pub fn accepted(&self, source_kind: &'static str, priority: &'static str) {
        self.referrals
            .get_or_create(&IntakeLabels {
                source_kind,
                priority,
            })
            .inc();
    }

    /// `reason`: invalid, overload, backlog, unauthorized, duplicate, unavailable.
    pub fn refused(&self, reason: &'static str) {
        self.refusals.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// The backlog behind intake as last read (messages), and whether routine intake is
    /// to be refused for it.
    pub fn set_backlog(&self, messages: u64, refusing: bool) {
        self.backlog
            .set(i64::try_from(messages).unwrap_or(i64::MAX));
        self.backlogged
            .store(refusing, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether routine intake is refused for the backlog behind it.
    pub fn backlogged(&self) -> bool {
        self.backlogged.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Each service's outbox.
pub struct Outbox {
    waiting: Family<OutboxLabel, Gauge>,
    oldest_age: Family<OutboxLabel, SecondsGauge>,
    publish: Histograms<OutboxLabel>,
    confirms_failed: Family<OutboxLabel, Counter>,
}

/// The metrics of one outbox, resolved once by its relay.
#[derive(Clone, Debug)]
pub struct OutboxHandles {
    pub waiting: Gauge,
    pub oldest_age: SecondsGauge,
    pub publish: Histogram,
    pub confirms_failed: Counter,
}

impl Outbox {
    pub fn of(&self, outbox: &str) -> OutboxHandles {
        let l = OutboxLabel {
            outbox: Word::new(outbox),
        };
        OutboxHandles {
            waiting: self.waiting.get_or_create_owned(&l),
            oldest_age: self.oldest_age.get_or_create_owned(&l),
            publish: self.publish.get_or_create_owned(&l),
            confirms_failed: self.confirms_failed.get_or_create_owned(&l),
        }
    }
}

/// The consumers.
pub struct BusMetrics {
    consumed: Family<LaneLabels, Counter>,
    acked: Family<LaneLabels, Counter>,
    retried: Family<LaneLabels, Counter>,
    parked: Family<LaneLabels, Counter>,
    restarted: Family<LaneLabels, Counter>,
    ready: Family<QueueLabel, Gauge>,
    /// Every queue consumed here, whose depth the sampler reads from the broker.
    queues: Mutex<BTreeSet<String>>,
}

/// The counters of one lane of one queue, resolved once by its consumer.
#[derive(Clone, Debug)]
pub struct LaneHandles {
    pub consumed: Counter,
    pub acked: Counter,
    pub retried: Counter,
    pub parked: Counter,
    pub restarted: Counter,
}

impl BusMetrics {
    /// The counters of `queue`'s lane (`urgent` or `routine`); the queue (its actual
    /// name, `lane_queue`) is watched for its depth from now on.
    pub fn lane(&self, queue: &str, lane: &'static str, lane_queue: &str) -> LaneHandles {
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(lane_queue.to_owned());
        let l = LaneLabels {
            queue: Word::new(queue),
            lane,
        };
        LaneHandles {
            consumed: self.consumed.get_or_create_owned(&l),
            acked: self.acked.get_or_create_owned(&l),
            retried: self.retried.get_or_create_owned(&l),
            parked: self.parked.get_or_create_owned(&l),
            restarted: self.restarted.get_or_create_owned(&l),
        }
    }

    /// The queues consumed in this process (each lane's own queue).
    pub fn watched_queues(&self) -> Vec<String> {
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    pub fn set_ready_messages(&self, queue: &str, n: u32) {
        self.ready
            .get_or_create(&QueueLabel {
                queue: Word::new(queue),
            })
            .set(i64::from(n));
    }
}

/// The connectors' calls to agencies.
pub struct Agencies {
    deliveries: Family<AgencyOutcome, Counter>,
    duration: Histograms<AgencyLabel>,
    breaker: Family<AgencyLabel, Gauge>,
    spared: Family<AgencyLabel, Counter>,
}

/// One agency's metrics, resolved once by the executor.
#[derive(Clone, Debug)]
pub struct AgencyHandles {
    pub delivered: Counter,
    pub rejected: Counter,
    pub transient: Counter,
    pub breaker_refusals: Counter,
    pub duration: Histogram,
    /// 0 closed, 1 half-open, 2 open.
    pub breaker: Gauge,
}

impl Agencies {
    pub fn of(&self, agency: &str) -> AgencyHandles {
        let agency = Word::new(agency);
        let outcome = |outcome| {
            self.deliveries.get_or_create_owned(&AgencyOutcome {
                agency: agency.clone(),
                outcome,
            })
        };
        let l = AgencyLabel {
            agency: agency.clone(),
        };
        AgencyHandles {
            delivered: outcome("delivered"),
            rejected: outcome("rejected"),
            transient: outcome("transient"),
            breaker_refusals: self.spared.get_or_create_owned(&l),
            duration: self.duration.get_or_create_owned(&l),
            breaker: self.breaker.get_or_create_owned(&l),
        }
    }
}

/// The agencies' webhooks.
pub struct Webhooks {
    calls: Family<WebhookCall, Counter>,
}

impl Webhooks {
    /// `route` is the route's template (`/agencies/{agency}/fhir/Task`), never the path
    /// as sent.
    pub fn answered(&self, route: &Word, status: u16) {
        self.calls
            .get_or_create(&WebhookCall {
                route: route.clone(),
                status,
            })
            .inc();
    }
}

/// Consent and disclosure.
pub struct Consent {
    decisions: Family<ConsentDecision, Counter>,
    pub break_glass: Counter,
    pub withdrawal_notices_pending: Gauge,
}

impl Consent {
    pub fn decided(&self, purpose: &'static str, agency_type: &'static str, permit: bool) {
        self.decisions
            .get_or_create(&ConsentDecision {
                purpose,
                agency_type,
                decision: if permit { "permit" } else { "deny" },
            })
            .inc();
    }
}

/// A family of gauges set whole by each sample: label sets absent from the latest
/// sample are removed, so a governorate whose last open case closed shows no series
/// rather than its old count.
pub struct Sampled<L> {
    family: Family<L, Gauge>,
    last: Mutex<Vec<L>>,
}

impl<L: Clone + Hash + Eq> Sampled<L> {
    fn new(family: Family<L, Gauge>) -> Self {
        Sampled {
            family,
            last: Mutex::default(),
        }
    }

    /// Sets every value of this sample; removes the label sets it no longer has.
    pub fn replace(&self, values: impl IntoIterator<Item = (L, i64)>) {
        let mut seen = Vec::new();
        for (labels, v) in values {
            self.family.get_or_create(&labels).set(v);
            seen.push(labels);
        }
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        for old in last.iter() {
            if !seen.contains(old) {
                self.family.remove(old);
            }
        }
        *last = seen;
    }
}

/// Cases, deadlines and caseloads, sampled from PostgreSQL.
pub struct Lifecycle {
    pub cases_open: Sampled<CasesOpen>,
    pub deadlines_due: Sampled<KindLabel>,
    pub deadlines_missed: Sampled<KindRisk>,
    escalated: Family<EscalatedLabels, Counter>,
    anonymised: Counter,
    pub caseworkers_over_cap: Gauge,
    pub caseload_assigned: Gauge,
    pub caseload_capacity: Gauge,
    samples_failed: Family<SampleLabel, Counter>,
}

impl Lifecycle {
    /// A deadline escalated (`kind`, `risk`: vocabulary words).
    pub fn escalated(&self, kind: &'static str, risk: &'static str) {
        self.escalated
            .get_or_create(&EscalatedLabels { kind, risk })
            .inc();
    }

    /// `n` closed cases anonymised by the retention policy (committed).
    pub fn anonymised(&self, n: u64) {
        self.anonymised.inc_by(n);
    }

    /// A periodic sample (`sample`: cases, audit, outbox, queues) failed or timed out.
    pub fn sample_failed(&self, sample: &'static str) {
        self.samples_failed
            .get_or_create(&SampleLabel { sample })
            .inc();
    }
}

/// The disclosure log.
pub struct Audit {
    pub chain_length: Gauge,
    pub last_checkpoint: SecondsGauge,
    pub checkpoint_interval: SecondsGauge,
    pub verification_failures: Counter,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_as_the_contract_says_and_end_the_text() {
        let m = Metrics::new();
        m.intake.accepted("school", "urgent");
        let a = m.agencies.of("health-cairo");
        a.delivered.inc();
        a.breaker.set(2);
        let lane = m.bus.lane(
            "router.referral-created",
            "urgent",
            "router.referral-created.urgent",
        );
        lane.consumed.inc();
        let text = m.encode();
        assert!(
            text.contains(
                "himaya_intake_referrals_total{source_kind=\"school\",priority=\"urgent\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains(
            "himaya_agency_deliveries_total{agency=\"health-cairo\",outcome=\"delivered\"} 1"
        ));
        assert!(text.contains("himaya_agency_breaker_state{agency=\"health-cairo\"} 2"));
        assert!(text.contains("himaya_build_info{version="));
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(
            m.bus.watched_queues(),
            vec!["router.referral-created.urgent"]
        );
    }

    #[test]
    fn two_registries_count_apart() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.consent.break_glass.inc();
        assert!(a.encode().contains("himaya_break_glass_openings_total 1"));
        assert!(b.encode().contains("himaya_break_glass_openings_total 0"));
    }

    #[test]
    fn a_sample_removes_what_it_no_longer_has() {
        let m = Metrics::new();
        let kind = |k: &str| KindLabel { kind: Word::new(k) };
        m.lifecycle
            .deadlines_due
            .replace([(kind("assignment"), 3), (kind("review"), 1)]);
        m.lifecycle.deadlines_due.replace([(kind("review"), 2)]);
        let text = m.encode();
        assert!(!text.contains("kind=\"assignment\""), "{text}");
        assert!(text.contains("himaya_deadlines_due{kind=\"review\"} 2"));
    }

    /// `docs/metrics.md` lists what the registry holds, with its help texts; run with
    /// `HIMAYA_WRITE_METRICS_DOC=1` to write it again after changing a metric.
    #[test]
    fn the_metrics_document_lists_the_registry() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md");
        let mut doc = String::from(DOC_HEAD);
        for (name, kind, help) in Metrics::new().catalogue() {
            let help = help.replace('|', "\\|");
            doc.push_str(&format!("| `{name}` | {kind} | {help} |\n"));
        }
        if std::env::var_os("HIMAYA_WRITE_METRICS_DOC").is_some() {
            std::fs::write(path, &doc).unwrap();
        }
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert_eq!(
            on_disk, doc,
            "docs/metrics.md is not the registry's list: run `HIMAYA_WRITE_METRICS_DOC=1 cargo test -p himaya-metrics`"
        );
    }

    const DOC_HEAD: &str = "# Metrics\n\n\
Every process of the hub serves these at `GET /metrics` on `telemetry.metrics_listen` \
(`127.0.0.1:9464` by default), in the OpenMetrics text format, beside `GET /livez` \
and `GET /readyz`. A process shows the metrics of the components it runs (a gauge \
sampled from PostgreSQL by the process that owns its tables). Labels never carry \
personal data or an unbounded value: `agency` is a directory id, `governorate` a \
gazetteer code, `queue` and `outbox` the hub's own names, every other label a closed \
vocabulary. Generated from the registry's help texts (`crates/metrics`, test \
`the_metrics_document_lists_the_registry`).\n\n\
| metric | type | meaning |\n|---|---|---|\n";
}
