//! The one contract every component of the hub starts by.
//!
//! A component (cases, directory, router, audit, connectors, web) is started with a
//! [`Context`] — the settings, the bus, the shutdown token and the address this process
//! serves gRPC on — and answers with what it [`Started`]: the gRPC services it serves
//! (the composition root mounts them behind the one gateway and reports them SERVING to
//! gRPC health), the HTTP servers it needs (the composition root binds and serves them
//! through [`listen::serve_http`]), and its background tasks (consumers, relays,
//! pollers), which end when the shutdown token is cancelled.
//!
//! Running one component per process (`himaya serve cases`) or all of them in one
//! (`himaya up`) is the same code: components reach each other only through gRPC and
//! the bus.

pub mod caller;
pub mod listen;

pub use caller::{calling_agency, CallerError};

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use himaya_bus::{BatchHandler, Bus, BusError, Exchange, HandleError, Handler, Incoming};
use himaya_events::{decode, Event};
use himaya_settings::Settings;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;

/// What every component starts from.
#[derive(Clone)]
pub struct Context {
    pub settings: Arc<Settings>,
    pub bus: Arc<Bus>,
    /// Cancelled when the process stops: consumers finish their message, servers close.
    pub shutdown: CancellationToken,
    /// Where this process serves gRPC. It is bound before any component starts, so a
    /// component that calls the hub back (the web front, the agencies' webhooks) knows
    /// where, even on a port chosen by the system.
    pub grpc_addr: SocketAddr,
    /// The hub's metrics (one registry per hub, served at `GET /metrics`): what the
    /// component counts goes here. The bus's consumers and relays count in the same one.
    pub metrics: Arc<himaya_metrics::Metrics>,
}

/// Why a component could not start (the composition root names the component).
pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// A component of the hub.
pub trait Component {
    /// Its name in logs and errors (`cases`, `web`, …).
    const NAME: &'static str;

    /// Connects to what it owns (its schema, its queues), then returns what it serves.
    /// Returning means ready: the composition root starts serving right after.
    fn start(ctx: Context) -> impl Future<Output = Result<Started, StartError>> + Send;
}

/// An HTTP server a component needs: bound by the composition root on `listen` and served
/// with the same bounds as every other server (`[limits]`).
pub struct HttpServer {
    /// `web`, `webhooks`: in logs and in the binding error.
    pub name: &'static str,
    /// What listens, for people reading the log: "web front", "agency webhooks".
    pub title: &'static str,
    /// The settings key `listen` comes from, for the error when it cannot be bound.
    pub setting: &'static str,
    pub listen: SocketAddr,
    pub router: axum::Router,
}

type Mount = Box<dyn FnOnce(&mut RoutesBuilder) + Send>;

/// What a started component serves and runs.
#[derive(Default)]
pub struct Started {
    mounts: Vec<Mount>,
    serving: Vec<&'static str>,
    tasks: Vec<JoinHandle<()>>,
    http: Vec<HttpServer>,
}

impl Started {
    /// A gRPC service, mounted behind the gateway and reported SERVING to gRPC health.
    pub fn grpc<S>(mut self, service: S) -> Self
    where
        S: tower_service::Service<
                http::Request<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.serving.push(S::NAME);
        self.mounts
            .push(Box::new(move |routes: &mut RoutesBuilder| {
                routes.add_service(service);
            }));
        self
    }

    /// A background task; it must end when the context's shutdown token is cancelled.
    pub fn task(mut self, task: JoinHandle<()>) -> Self {
        self.tasks.push(task);
        self
    }

    pub fn tasks(mut self, tasks: impl IntoIterator<Item = JoinHandle<()>>) -> Self {
        self.tasks.extend(tasks);
        self
    }

    /// An HTTP server for the composition root to bind and serve.
    pub fn http(mut self, server: HttpServer) -> Self {
        self.http.push(server);
        self
    }

    /// The gRPC service names to report SERVING.
    pub fn serving(&self) -> &[&'static str] {
        &self.serving
    }

    /// Mounts the gRPC services on `routes`; returns the tasks and the HTTP servers.
    pub fn mount(self, routes: &mut RoutesBuilder) -> (Vec<JoinHandle<()>>, Vec<HttpServer>) {
        for mount in self.mounts {
            mount(routes);
        }
        (self.tasks, self.http)
    }
}

impl Context {
    /// Declares the component's queue `name` (under the deployment's prefix) bound to
    /// `exchange` with `keys`, and starts consuming it with `handler` until shutdown: the
    /// declare-then-spawn step every consumer of the hub shares.
    pub async fn subscribe<H: Handler>(
        &self,
        name: &str,
        exchange: Exchange,
        keys: &[&str],
        handler: H,
    ) -> Result<JoinHandle<()>, BusError> {
        let queue = self.bus.topology().queue(name);
        self.bus.declare_queue(&queue, exchange, keys).await?;
        Ok(tokio::spawn(himaya_bus::consume(
            self.bus.clone(),
            queue,
            self.settings.bus.prefetch,
            Arc::new(handler),
            self.shutdown.clone(),
        )))
    }

    /// [`Context::subscribe`] for a handler that commits many messages at once: each
    /// batch is what is already waiting (at most `max_batch`, never waiting for more),
    /// acknowledged together after the handler commits (see [`himaya_bus::consume_batches`]).
    pub async fn subscribe_batches<H: BatchHandler>(
        &self,
        name: &str,
        exchange: Exchange,
        keys: &[&str],
        max_batch: u16,
        handler: H,
    ) -> Result<JoinHandle<()>, BusError> {
        let queue = self.bus.topology().queue(name);
        self.bus.declare_queue(&queue, exchange, keys).await?;
        Ok(tokio::spawn(himaya_bus::consume_batches(
            self.bus.clone(),
            queue,
            self.settings.bus.prefetch,
            max_batch,
            Arc::new(handler),
            self.shutdown.clone(),
        )))
    }
}

/// A consumer of one kind of event. [`Decoding`] turns it into a bus [`Handler`]: a
/// message that is not that event is parked (it can never succeed); a handler error is
/// retried unless [`EventHandler::permanent`] says otherwise.
pub trait EventHandler: Send + Sync + 'static {
    type Event: Event + Send;
    type Error: std::fmt::Display + Send;

    /// Processes the event and commits its effect before returning `Ok`.
    fn handle(
        &self,
        event: Self::Event,
        msg: &Incoming,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Whether `error` can never go away by trying again (the message is then parked
    /// with it for an operator). By default every error is retried.
    fn permanent(_error: &Self::Error) -> bool {
        false
    }
}

/// Parks one item of a message of many (an event the consumer of `queue` can never
/// handle, the message's other items handled) for an operator, alone: a message of its
/// own under `routing_key`, with its own message id and the headers of the message that
/// carried it, confirmed by the broker before this returns. A replay sends it back to
/// `queue` as one event. Logged with the reason (ids and the reason only).
pub async fn park_item<E: Event>(
    bus: &Bus,
    queue: &str,
    routing_key: &str,
    event: &E,
    message_id: &str,
    headers: BTreeMap<String, String>,
    reason: &str,
) -> Result<(), HandleError> {
    let out = himaya_bus::Outgoing {
        exchange: Exchange::Parking,
        routing_key: routing_key.into(),
        payload: himaya_events::encode(event).map_err(HandleError::retry)?,
        message_id: message_id.into(),
        event_type: E::NAME.into(),
        priority: 0,
        headers,
    };
    himaya_bus::park_copy(bus, queue, out, reason)
        .await
        .map_err(HandleError::retry)?;
    tracing::error!(
        queue,
        message_id,
        reason,
        "an item of a message parked alone, the others handled; an operator must look at it"
    );
    Ok(())
}

/// The decode-then-handle adapter from an [`EventHandler`] to a bus [`Handler`], and
/// from a [`BatchEventHandler`] to a bus [`BatchHandler`].
pub struct Decoding<H>(pub H);

impl<H: EventHandler> Handler for Decoding<H> {
    async fn handle(&self, msg: &Incoming) -> Result<(), HandleError> {
        let event = decode::<H::Event>(msg.payload()).map_err(HandleError::park)?;
        self.0.handle(event, msg).await.map_err(|e| {
            if H::permanent(&e) {
                HandleError::park(e)
            } else {
                HandleError::retry(e)
            }
        })
    }
}

/// One event of a batch, with the string headers of the message that carried it (its
/// `traceparent`, its correlation id).
pub struct Delivered<E> {
    pub event: E,
    pub headers: BTreeMap<String, String>,
}

impl<E> Delivered<E> {
    /// A string header of the event's message, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// A consumer of one kind of event that commits many at once, in one transaction.
/// [`Decoding`] turns it into a bus [`BatchHandler`] (subscribed with
/// [`Context::subscribe_batches`]): a message that is not that event is parked alone,
/// never with the batch; when a batch fails, its events are handled again one per
/// call, retried unless [`BatchEventHandler::permanent`] says otherwise.
pub trait BatchEventHandler: Send + Sync + 'static {
    type Event: Event + Send;
    type Error: std::fmt::Display + Send;

    /// Processes the events in the order they were delivered and commits all their
    /// effects at once before returning `Ok`; on an error, none of them.
    fn handle_batch(
        &self,
        events: Vec<Delivered<Self::Event>>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Whether `error` can never go away by trying again. By default every error is
    /// retried.
    fn permanent(_error: &Self::Error) -> bool {
        false
    }

    /// Which kind of stage its batches are when they take a background turn (see
    /// [`BatchHandler::stage`]): on a referral's way to its agency by default.
    fn stage(&self) -> himaya_bus::Stage {
        himaya_bus::Stage::OnTheWay
    }
}

impl<H: BatchEventHandler> BatchHandler for Decoding<H> {
    type Item = Delivered<H::Event>;

    fn stage(&self) -> himaya_bus::Stage {
        self.0.stage()
    }

    fn read(&self, msg: &Incoming) -> Result<Delivered<H::Event>, HandleError> {
        let event = decode::<H::Event>(msg.payload()).map_err(HandleError::park)?;
        Ok(Delivered {
            event,
            headers: msg.headers(),
        })
    }

    async fn handle_batch(&self, events: Vec<Delivered<H::Event>>) -> Result<(), HandleError> {
        self.0.handle_batch(events).await.map_err(|e| {
            if H::permanent(&e) {
                HandleError::park(e)
            } else {
                HandleError::retry(e)
            }
        })
    }
}
