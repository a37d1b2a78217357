//! `[telemetry.traces]`: where this process sends its OpenTelemetry traces, if anywhere.

use serde::Deserialize;

use crate::{invalid, SettingsError};

/// Traces over OTLP/HTTP (protobuf). Off while `otlp_endpoint` is empty.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceSettings {
    /// A collector's OTLP/HTTP base address, e.g. `http://otel-collector:4318`; spans
    /// are posted to `<otlp_endpoint>/v1/traces`. Empty: no traces are made or sent.
    #[serde(default)]
    pub otlp_endpoint: String,
    /// The `service.name` of this process's spans; empty: `himaya` for `himaya up`,
    /// `himaya-<component>` for `himaya serve <component>`.
    #[serde(default)]
    pub service_name: String,
    /// The share of new traces kept, 0.0 to 1.0. A trace continued from a caller's
    /// `traceparent` follows the caller's sampled flag instead.
    #[serde(default = "all")]
    pub sample_ratio: f64,
    /// Spans held for export at most; past it new spans are dropped (never waited for).
    #[serde(default = "queue")]
    pub max_queue_size: usize,
    /// Spans sent in one export at most.
    #[serde(default = "batch")]
    pub max_export_batch_size: usize,
    /// How often the batch is sent, in milliseconds.
    #[serde(default = "delay")]
    pub scheduled_delay_ms: u64,
    /// How long one export may take, in milliseconds.
    #[serde(default = "timeout")]
    pub export_timeout_ms: u64,
}

fn all() -> f64 {
    1.0
}
fn queue() -> usize {
    8192
}
fn batch() -> usize {
    512
}
fn delay() -> u64 {
    2000
}
fn timeout() -> u64 {
    5000
}

impl Default for TraceSettings {
    fn default() -> Self {
        TraceSettings {
            otlp_endpoint: String::new(),
            service_name: String::new(),
            sample_ratio: all(),
            max_queue_size: queue(),
            max_export_batch_size: batch(),
            scheduled_delay_ms: delay(),
            export_timeout_ms: timeout(),
        }
    }
}

impl TraceSettings {
    /// Whether traces are made and sent.
    pub fn enabled(&self) -> bool {
        !self.otlp_endpoint.trim().is_empty()
    }

    /// Where spans are posted: `<otlp_endpoint>/v1/traces`.
    pub fn traces_url(&self) -> String {
        format!(
            "{}/v1/traces",
            self.otlp_endpoint.trim().trim_end_matches('/')
        )
    }

    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        let e = self.otlp_endpoint.trim();
        let http = e.starts_with("http://") || e.starts_with("https://");
        if !(e.is_empty() || http) {
            return Err(invalid(
                "telemetry.traces.otlp_endpoint",
                "must be an http:// or https:// address (an OTLP/HTTP collector, e.g. \
                 http://otel-collector:4318), or empty for no traces",
            ));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(invalid(
                "telemetry.traces.sample_ratio",
                "must be between 0.0 and 1.0",
            ));
        }
        if self.max_queue_size == 0
            || self.max_export_batch_size == 0
            || self.max_export_batch_size > self.max_queue_size
        {
            return Err(invalid(
                "telemetry.traces.max_export_batch_size",
                "must be at least 1 and at most telemetry.traces.max_queue_size",
            ));
        }
        if self.scheduled_delay_ms == 0 || self.export_timeout_ms == 0 {
            return Err(invalid(
                "telemetry.traces.scheduled_delay_ms",
                "telemetry.traces.scheduled_delay_ms and export_timeout_ms must be at least 1",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_a_bad_value_is_named() {
        let t = TraceSettings::default();
        assert!(!t.enabled());
        assert!(t.validate().is_ok());
        let on = TraceSettings {
            otlp_endpoint: "http://collector:4318/".into(),
            ..Default::default()
        };
        assert!(on.enabled());
        assert_eq!(on.traces_url(), "http://collector:4318/v1/traces");
        for (bad, key) in [
            (
                TraceSettings {
                    otlp_endpoint: "collector:4318".into(),
                    ..Default::default()
                },
                "telemetry.traces.otlp_endpoint",
            ),
            (
                TraceSettings {
                    sample_ratio: 1.5,
                    ..Default::default()
                },
                "telemetry.traces.sample_ratio",
            ),
            (
                TraceSettings {
                    max_export_batch_size: 10_000,
                    ..Default::default()
                },
                "telemetry.traces.max_export_batch_size",
            ),
        ] {
            let e = bad.validate().expect_err("refused").to_string();
            assert!(e.contains(key), "{e}");
        }
    }
}
