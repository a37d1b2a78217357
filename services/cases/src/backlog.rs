//! The backlog behind intake. Intake bounds the calls it works on at once, but a
//! referral it takes goes on through the router, its agency's connector, the answers'
//! queue and the disclosure log; if one of those stages passes on less than intake
//! takes, the difference waits on the broker and every referral behind it waits longer,
//! for as long as the burst lasts. So the cases service reads, every
//! `limits.backlog_sample_ms`, how many messages are ready on the routine lanes of the
//! hub's own queues behind intake ([`himaya_bus::queues::BEHIND_INTAKE`]); from
//! `limits.backlog_max_messages` on, intake refuses routine referrals as the gateway
//! does past its bound on calls (RESOURCE_EXHAUSTED with a retry hint, nothing stored),
//! until the backlog is down to half. Urgent referrals (hotline escalations, high-risk
//! referrals) are never refused for it: they pass every queue in a lane of their own.
//!
//! An agency's own queue is not counted: what waits there for an agency that is down or
//! slow is held for that agency (and its delivery limit), and refusing every school's
//! referrals for it would stop the referrals to every other agency as well.

use std::sync::Arc;
use std::time::Duration;

use himaya_bus::Bus;
use himaya_metrics::Metrics;
use himaya_settings::ServerLimits;
use tokio_util::sync::CancellationToken;

/// Reads the backlog until shutdown and says in `metrics.intake` whether routine intake
/// is to be refused for it.
pub(crate) async fn watch(
    bus: Arc<Bus>,
    limits: ServerLimits,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let queues: Vec<String> = himaya_bus::queues::BEHIND_INTAKE
        .iter()
        .map(|q| bus.topology().queue(q))
        .collect();
    let max = limits.backlog_max_messages;
    // A broker that does not answer within this is read as "not known".
    let bound = limits.backlog_sample().max(Duration::from_secs(2));
    let mut tick = tokio::time::interval(limits.backlog_sample());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refusing = false;
    let mut unknown = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let read = tokio::time::timeout(bound, bus.ready_messages(&queues))
            .await
            .ok()
            .flatten();
        let Some(ready) = read else {
            // Not known: intake is not refused for a backlog no one can see (what it
            // takes waits in its outbox until the broker is back).
            if !unknown {
                tracing::warn!("the backlog behind intake could not be read from the broker; intake is not refused for it until it can");
            }
            unknown = true;
            refusing = false;
            metrics.intake.set_backlog(0, false);
            continue;
        };
        unknown = false;
        let waiting: u64 = ready.iter().flatten().map(|n| u64::from(*n)).sum();
        let now = refuses(refusing, waiting, max);
        if now != refusing {
            if now {
                tracing::warn!(waiting, max, "routine intake refused: the backlog behind intake reached limits.backlog_max_messages");
            } else {
                tracing::info!(waiting, max, "routine intake taken again: the backlog behind intake is down to half its bound");
            }
        }
        refusing = now;
        metrics.intake.set_backlog(waiting, refusing);
    }
}

/// Whether routine intake is refused with `waiting` messages behind it: from `max` on,
/// and, once refused, until they are down to half (so that it does not flap at the
/// bound).
fn refuses(refusing: bool, waiting: u64, max: u64) -> bool {
    if refusing {
        waiting > max / 2
    } else {
        waiting >= max
    }
}

#[cfg(test)]
mod tests {
    use super::refuses;

    #[test]
    fn refused_from_the_bound_until_down_to_half() {
        assert!(!refuses(false, 0, 256));
        assert!(!refuses(false, 255, 256));
        assert!(refuses(false, 256, 256));
        assert!(refuses(true, 200, 256));
        assert!(refuses(true, 129, 256));
        assert!(!refuses(true, 128, 256));
        assert!(!refuses(false, 200, 256));
    }
}
