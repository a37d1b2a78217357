//! Bounds of the hub's servers (gRPC and the agencies' webhooks): what a slow, idle or
//! hostile client may hold, and for how long. Every one has a default a national hub
//! would accept, so `[limits]` may be left out of a configuration.

use std::time::Duration;

use serde::Deserialize;

use crate::{invalid, SettingsError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerLimits {
    /// Open connections per server. Past it the server stops accepting (the kernel's
    /// backlog holds the rest) instead of running out of file descriptors.
    pub max_connections: usize,
    /// A TLS handshake must finish within this, or the connection is closed.
    pub handshake_timeout_ms: u64,
    /// A connection on which nothing was read or written for this long is closed. The
    /// gRPC server pings its clients well within it, so a live client is never idle.
    pub idle_timeout_ms: u64,
    /// A whole gRPC call (reading its message included) must finish within this.
    pub request_timeout_ms: u64,
    /// HTTP/1.1 (webhooks): the request line and headers must arrive within this.
    pub header_read_timeout_ms: u64,
    /// HTTP/1.1 (webhooks): the body must arrive within this once its headers did.
    pub body_read_timeout_ms: u64,
    /// HTTP/2 streams (concurrent calls) per connection, advertised to clients.
    pub max_concurrent_streams: u32,
    /// A gRPC connection is closed gracefully after this long, so that no connection
    /// (nor a client trickling headers on it) lives for ever.
    pub max_connection_age_secs: u64,
    /// Routine intake calls (a school's or an agency's referral) the hub works on at
    /// once. One more is refused at once with RESOURCE_EXHAUSTED and a retry hint rather
    /// than queued: under a burst the hub answers every caller within its limits, and the
    /// caller (the CLI, the webhooks, an agency) sends it again later.
    pub intake_in_flight: usize,
    /// Hotline escalations worked on at once: a lane of their own, which routine intake
    /// cannot take, so an urgent call is never refused because routine ones filled it.
    pub urgent_in_flight: usize,
    /// The retry hint of a refused call (`google.rpc.RetryInfo`, `Retry-After`).
    pub busy_retry_after_ms: u64,
    /// Messages waiting on the hub's own queues behind intake (the routine lanes of the
    /// router's, the answers' and the disclosure log's queues) at which routine intake
    /// is refused as if its lane were full, until they are down to half: work the hub
    /// takes faster than it can pass on is refused at the door, not queued inside. An
    /// agency's own queue never counts (what waits for an agency that is down or slow is
    /// held for it, not a reason to refuse everyone else). Urgent referrals (hotline
    /// escalations, high-risk referrals) are never refused for it.
    pub backlog_max_messages: u64,
    /// How often the cases service reads those queues' depth from the broker.
    pub backlog_sample_ms: u64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 512,
            handshake_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            request_timeout_ms: 30_000,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 15_000,
            max_concurrent_streams: 64,
            max_connection_age_secs: 3_600,
            intake_in_flight: 64,
            urgent_in_flight: 16,
            busy_retry_after_ms: 1_000,
            backlog_max_messages: 256,
            backlog_sample_ms: 250,
        }
    }
}

impl ServerLimits {
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }
    pub fn max_connection_age(&self) -> Duration {
        Duration::from_secs(self.max_connection_age_secs)
    }
    pub fn busy_retry_after(&self) -> Duration {
        Duration::from_millis(self.busy_retry_after_ms)
    }
    pub fn backlog_sample(&self) -> Duration {
        Duration::from_millis(self.backlog_sample_ms)
    }

    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        let positive = [
            ("limits.max_connections", self.max_connections as u64),
            ("limits.handshake_timeout_ms", self.handshake_timeout_ms),
            ("limits.idle_timeout_ms", self.idle_timeout_ms),
            ("limits.request_timeout_ms", self.request_timeout_ms),
            ("limits.header_read_timeout_ms", self.header_read_timeout_ms),
            ("limits.body_read_timeout_ms", self.body_read_timeout_ms),
            (
                "limits.max_concurrent_streams",
                self.max_concurrent_streams as u64,
            ),
            (
                "limits.max_connection_age_secs",
                self.max_connection_age_secs,
            ),
            ("limits.intake_in_flight", self.intake_in_flight as u64),
            ("limits.urgent_in_flight", self.urgent_in_flight as u64),
            ("limits.busy_retry_after_ms", self.busy_retry_after_ms),
            ("limits.backlog_max_messages", self.backlog_max_messages),
            ("limits.backlog_sample_ms", self.backlog_sample_ms),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(invalid(*key, "must be greater than 0"));
        }
        // The server pings every idle_timeout / 3; a call longer than the idle timeout
        // would be cut by it, so calls must end first.
        if self.request_timeout_ms >= self.idle_timeout_ms {
            return Err(invalid(
                "limits.request_timeout_ms",
                "must be shorter than limits.idle_timeout_ms",
            ));
        }
        Ok(())
    }
}
