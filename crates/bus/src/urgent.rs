//! Urgent work on threads of its own.
//!
//! Tokio has no priorities: a task woken on a busy runtime waits behind every task
//! already queued on it, and under a routine backlog that is tens of milliseconds at
//! each hop. So a hub process runs its urgent work (the urgent lanes' consumers, the
//! urgent outbox relays and their notifications, the urgent intake writer, the
//! connectors' urgent calls) on a runtime of its own, with a broker connection of its
//! own: the operating system's scheduler, which favours a thread that was sleeping,
//! runs it as soon as it is woken, whatever the routine runtime has queued.
//!
//! The sockets a task opens are driven by the runtime it runs on, so whatever urgent
//! work talks through (the broker connection, a database pool, an HTTP client) is
//! opened from this runtime, not shared with routine work.

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;

use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinHandle;

use crate::Bus;

/// The urgent runtime's threads' name.
pub const THREAD_NAME: &str = "himaya-urgent";

thread_local! {
    static ON_URGENT: Cell<bool> = const { Cell::new(false) };
}

/// Whether the caller runs on an urgent runtime's thread.
pub fn is_current() -> bool {
    ON_URGENT.with(Cell::get)
}

/// A runtime for urgent work, owned by the process that runs it (the hub). Dropping it
/// stops its threads without waiting: its tasks end with the process's shutdown token,
/// and their owners await them before it is dropped.
pub struct UrgentRuntime {
    rt: Option<Runtime>,
}

impl UrgentRuntime {
    /// One worker: urgent work is a trickle beside the routine flood, and one thread
    /// woken at once serves it better than two competing with the routine ones.
    pub fn start() -> std::io::Result<UrgentRuntime> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(THREAD_NAME)
            .on_thread_start(|| ON_URGENT.with(|u| u.set(true)))
            .enable_all()
            .build()?;
        Ok(UrgentRuntime { rt: Some(rt) })
    }

    pub fn handle(&self) -> Handle {
        match &self.rt {
            Some(rt) => rt.handle().clone(),
            // Only after drop; a handle to the current runtime keeps callers working.
            None => Handle::current(),
        }
    }
}

impl Drop for UrgentRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Runs `f` on the urgent runtime of `place` if there is one, else beside the caller.
pub fn spawn<F>(place: Option<&Urgent>, f: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match place {
        Some(u) => u.spawn(f),
        None => tokio::spawn(f),
    }
}

/// Where a bus's urgent work runs: the urgent runtime, and the broker connection opened
/// from it (see [`Bus::set_urgent`]).
#[derive(Clone)]
pub struct Urgent {
    handle: Handle,
    bus: Arc<Bus>,
}

impl Urgent {
    /// Connects `bus`'s twin from `rt` (the same nodes, topology and metrics, its own
    /// connection, driven by `rt`).
    pub async fn connect(rt: &UrgentRuntime, bus: &Bus) -> Result<Urgent, crate::BusError> {
        let handle = rt.handle();
        let twin = Bus::twin(bus);
        let connected = handle
            .spawn(async move {
                twin.channel().await?;
                Ok::<_, crate::BusError>(twin)
            })
            .await
            .map_err(|_| crate::BusError::Link("the urgent runtime stopped".into()))??;
        Ok(Urgent {
            handle,
            bus: Arc::new(connected),
        })
    }

    /// The broker connection urgent work publishes and consumes through.
    pub fn bus(&self) -> &Arc<Bus> {
        &self.bus
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `f` on the urgent runtime.
    pub fn spawn<F>(&self, f: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(f)
    }
}
