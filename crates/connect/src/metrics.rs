//! Counters per agency, kept by the executor: calls delivered, rejected and failed, calls
//! the open circuit spared, and latency. `log_every` writes them as one tracing event per
//! agency, so any log pipeline can chart them; tests and `snapshot` read them directly.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

#[derive(Debug, Default)]
pub struct AgencyMetrics {
    delivered: AtomicU64,
    rejected: AtomicU64,
    transient: AtomicU64,
    breaker_refusals: AtomicU64,
    latency_us_total: AtomicU64,
    latency_us_max: AtomicU64,
}

/// One agency's counters at a moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub delivered: u64,
    pub rejected: u64,
    /// 5xx, 429, 408, timeouts and refused connections.
    pub transient: u64,
    /// Calls not made because the agency's circuit was open.
    pub breaker_refusals: u64,
    pub mean_latency_ms: u64,
    pub max_latency_ms: u64,
}

impl AgencyMetrics {
    fn latency(&self, d: Duration) {
        let us = d.as_micros() as u64;
        self.latency_us_total.fetch_add(us, Ordering::Relaxed);
        self.latency_us_max.fetch_max(us, Ordering::Relaxed);
    }
    pub(crate) fn count_delivered(&self, d: Duration) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.latency(d);
    }
    pub(crate) fn count_rejected(&self, d: Duration) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        self.latency(d);
    }
    pub(crate) fn count_transient(&self, d: Duration) {
        self.transient.fetch_add(1, Ordering::Relaxed);
        self.latency(d);
    }
    pub(crate) fn count_breaker_refusal(&self) {
        self.breaker_refusals.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let calls = get(&self.delivered) + get(&self.rejected) + get(&self.transient);
        Snapshot {
            delivered: get(&self.delivered),
            rejected: get(&self.rejected),
            transient: get(&self.transient),
            breaker_refusals: get(&self.breaker_refusals),
            mean_latency_ms: get(&self.latency_us_total).checked_div(calls).unwrap_or(0) / 1000,
            max_latency_ms: get(&self.latency_us_max) / 1000,
        }
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    by_agency: Mutex<BTreeMap<String, Arc<AgencyMetrics>>>,
}

impl Metrics {
    pub fn of(&self, agency: &str) -> Arc<AgencyMetrics> {
        let mut all = self.by_agency.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(agency.to_owned()).or_default().clone()
    }

    pub fn snapshot(&self) -> BTreeMap<String, Snapshot> {
        let all = self.by_agency.lock().unwrap_or_else(|p| p.into_inner());
        all.iter().map(|(k, v)| (k.clone(), v.snapshot())).collect()
    }

    /// Logs every agency's counters each `every` until `shutdown`.
    pub async fn log_every(&self, every: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            for (agency, s) in self.snapshot() {
                tracing::info!(
                    agency = %agency,
                    delivered = s.delivered,
                    rejected = s.rejected,
                    transient = s.transient,
                    breaker_refusals = s.breaker_refusals,
                    mean_latency_ms = s.mean_latency_ms,
                    max_latency_ms = s.max_latency_ms,
                    "connector metrics"
                );
            }
        }
    }
}
