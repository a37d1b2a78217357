//! Starting and stopping components. Components talk only through gRPC and the bus, so
//! running them in one process (`himaya up`) or apart (`himaya serve <component>`) is
//! the same code.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use himaya_bus::{Bus, Topology};
use himaya_component::{listen, Component as _, StartError, Started};
use himaya_settings::Settings;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

use crate::observe;

/// The components of the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Component {
    /// Intake and case reads (gRPC), agencies' answers (bus).
    Cases,
    /// The agency directory (gRPC).
    Directory,
    /// Routing, consent decision and redaction of deliveries (bus).
    Router,
    /// The agency connectors: deliveries out in each agency's standard (bus → HTTP),
    /// answers in through the webhooks.
    Connectors,
    /// The hash-chained disclosure log and its signed checkpoints (bus), read through
    /// `himaya.v1.Audit` (gRPC).
    Audit,
    /// The web front people sign in to (HTML over HTTP), calling the others over gRPC.
    Web,
}

impl Component {
    pub const ALL: [Component; 6] = [
        Component::Cases,
        Component::Directory,
        Component::Router,
        Component::Connectors,
        Component::Audit,
        Component::Web,
    ];

    /// Starts this component: the one place a component of the hub is named.
    async fn start(self, ctx: himaya_component::Context) -> Result<Started, StartError> {
        match self {
            Component::Cases => himaya_cases::Cases::start(ctx).await,
            Component::Directory => himaya_directory::Directory::start(ctx).await,
            Component::Router => himaya_router::Routing::start(ctx).await,
            Component::Connectors => crate::connectors::Connectors::start(ctx).await,
            Component::Audit => himaya_audit::Audit::start(ctx).await,
            Component::Web => himaya_web::Web::start(ctx).await,
        }
    }

    /// What the operator should look at first when it does not start.
    fn needs(self) -> &'static str {
        match self {
            Component::Router | Component::Cases | Component::Directory => "is PostgreSQL running?",
            Component::Connectors | Component::Audit | Component::Web => {
                "is PostgreSQL running? are its settings right?"
            }
        }
    }
}

/// A running hub (or part of one).
pub struct Hub {
    /// Where the gRPC server listens (the real port when configured with port 0).
    pub grpc_addr: SocketAddr,
    /// Where the agencies' webhooks listen, when the connectors run here.
    pub webhook_addr: Option<SocketAddr>,
    /// Where the web front listens, when it runs here.
    pub web_addr: Option<SocketAddr>,
    /// Where `GET /metrics`, `/livez` and `/readyz` are served (`telemetry.metrics_listen`;
    /// the real port when configured with port 0).
    pub metrics_addr: SocketAddr,
    /// This hub's metrics (its own registry: hubs in one process count apart).
    pub metrics: Arc<himaya_metrics::Metrics>,
    /// Whether it is ready (what `/readyz` and gRPC health answer).
    pub readiness: Arc<himaya_metrics::Readiness>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    bus: Arc<Bus>,
    /// Where urgent work runs (`himaya_bus::urgent`); stopped last.
    urgent: himaya_bus::urgent::UrgentRuntime,
}

impl Hub {
    /// Starts `components`; returns once every one is ready to serve.
    pub async fn start(settings: Settings, components: &[Component]) -> anyhow::Result<Hub> {
        himaya_events::check_schemas().context("built-in Avro schemas")?;
        listen::raise_open_files_limit();
        let settings = Arc::new(settings);
        let shutdown = CancellationToken::new();
        // Should the start fail past here, what it started (the metrics port first of
        // all) stops with it.
        let stop_on_failure = shutdown.clone().drop_guard();
        let metrics = Arc::new(himaya_metrics::Metrics::new());
        let readiness = Arc::new(himaya_metrics::Readiness::new());
        for component in components {
            readiness.expect(component_name(*component));
        }
        // First, so that a slow start answers /livez (and /readyz: not yet, and why).
        let observed = observe::Observed {
            metrics: metrics.clone(),
            readiness: readiness.clone(),
        };
        let metrics_listener = bind(
            settings.telemetry.metrics_listen,
            "telemetry.metrics_listen",
        )
        .await?;
        let metrics_addr = metrics_listener.local_addr()?;
        let mut tasks = vec![tokio::spawn(listen::serve_http(
            observe::router(observed.clone()),
            metrics_listener,
            settings.limits.clone(),
            "metrics",
            shutdown.clone(),
        ))];
        let bus = Bus::connect_links(
            himaya_bus::Link::all_from_settings(&settings.bus)?,
            Topology::new(settings.bus.prefix.clone()),
            metrics.clone(),
        )
        .await
        .context("connecting to RabbitMQ (is it running? `scripts/setup` starts it)")?;
        readiness.set_broker(true);
        // Urgent work on threads and a broker connection of its own, set before any
        // consumer or relay starts (they look for it as they start).
        let urgent = himaya_bus::urgent::UrgentRuntime::start()
            .context("starting the runtime for urgent work")?;
        bus.set_urgent(
            himaya_bus::urgent::Urgent::connect(&urgent, &bus)
                .await
                .context("connecting to RabbitMQ for urgent work")?,
        );
        // Routine background transactions take turns, so intake's find a core.
        bus.set_background(settings.database.background_transactions);
        // Declared before any component starts: the directory announces the agencies it
        // seeds as it starts, and the announcements must have somewhere to wait.
        let queue = bus.topology().queue(DIRECTORY_FOLLOWERS);
        bus.declare_queue(
            &queue,
            himaya_bus::Exchange::Events,
            &[
                himaya_events::keys::AGENCY_CHANGED,
                himaya_events::keys::CERTIFICATE_REVOKED,
            ],
        )
        .await
        .context("declaring the directory followers' queue")?;
        // Bound first, so that every component knows where the hub serves gRPC.
        let listener = bind(settings.grpc.listen, "grpc.listen").await?;
        let grpc_addr = listener.local_addr()?;
        let ctx = himaya_component::Context {
            settings: settings.clone(),
            bus: bus.clone(),
            shutdown: shutdown.clone(),
            grpc_addr,
            metrics: metrics.clone(),
        };
        let (reporter, health) = tonic_health::server::health_reporter();
        // Both reflection versions: newer grpcurl asks v1, older tools v1alpha.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(himaya_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let mut routes = tonic::service::RoutesBuilder::default();
        routes
            .add_service(health)
            .add_service(
                reflection()
                    .build_v1()
                    .context("building gRPC reflection")?,
            )
            .add_service(
                reflection()
                    .build_v1alpha()
                    .context("building gRPC reflection")?,
            );
        let mut servers = Vec::new();
        let mut services: observe::Services = Vec::new();
        // The agencies as the directory's table has them (the configuration's until the
        // directory has created it), read again after each component starts: the
        // directory seeds its table from the configuration when it starts. A process whose
        // first component is the connectors starts their consumers from the configuration
        // and follows the table a second later.
        let directory_pool = himaya_store::extra_pool(&settings.database, "directory", 1)
            .context("the database URL (database.url)")?;
        let mut follower = himaya_store::agencies::Follower::new(&settings);
        for (n, component) in components.iter().enumerate() {
            // From the second component on: the first proved PostgreSQL answers (a
            // database that never does is the first component's error, within its bound).
            if n > 0 {
                if let Err(e) = follower.refresh(&directory_pool, &settings).await {
                    tracing::warn!(error = %e, "the directory's agencies could not be read yet; the configuration's stand");
                }
            }
            let started = component.start(ctx.clone()).await.map_err(|e| {
                anyhow::anyhow!(e).context(format!(
                    "starting the {} component ({})",
                    component_name(*component),
                    component.needs()
                ))
            })?;
            // Started: its migrations ran and its queues are declared, so PostgreSQL and
            // RabbitMQ answered just now. From here on the probe decides.
            for service in started.serving() {
                reporter
                    .set_service_status(*service, tonic_health::ServingStatus::Serving)
                    .await;
            }
            services.push((component_name(*component), started.serving().to_vec()));
            readiness.started(component_name(*component));
            let (t, s) = started.mount(&mut routes);
            tasks.extend(t);
            servers.extend(s);
        }
        if let Err(e) = follower.refresh(&directory_pool, &settings).await {
            tracing::warn!(error = %e, "the directory's agencies could not be read yet; the configuration's stand");
        }
        // The directory announces every change of an agency; whichever process takes the
        // announcement from the shared queue reads the directory at once (the others
        // within `directory.follow_ms`), and nothing announced is left unrouted.
        let nudged = Arc::new(tokio::sync::Notify::new());
        tasks.push(tokio::spawn(himaya_bus::consume(
            bus.clone(),
            queue,
            settings.bus.prefetch,
            Arc::new(Nudge(nudged.clone())),
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(himaya_store::agencies::follow(
            directory_pool,
            settings.clone(),
            follower,
            std::time::Duration::from_millis(settings.directory.follow_ms),
            nudged,
            shutdown.clone(),
        )));
        let router = server(&settings)
            .layer(himaya_gateway::GatewayLayer::new(
                settings.clone(),
                metrics.clone(),
            ))
            .add_routes(routes.routes());
        let (limits, stop) = (&settings.limits, shutdown.clone());
        let served = match tls_acceptor(&settings)? {
            Some(tls) => {
                let tls = Arc::new(std::sync::RwLock::new(tls));
                tasks.push(tokio::spawn(reload_tls(
                    settings.clone(),
                    tls.clone(),
                    shutdown.clone(),
                )));
                let handshake = move |c| {
                    // The acceptor of the moment: a connection keeps the certificates it
                    // was accepted with, the next one gets the files as they are now.
                    let tls = match tls.read() {
                        Ok(t) => t.clone(),
                        Err(poisoned) => poisoned.into_inner().clone(),
                    };
                    async move { tls.accept(c).await }
                };
                let incoming = listen::incoming(listener, limits, "grpc", handshake, stop.clone());
                match bus.urgent() {
                    Some(u) => {
                        let (incoming, urgent_callers) =
                            by_caller(incoming, settings.clone(), u.handle().clone());
                        tasks.push(u.spawn(serve_grpc(
                            router.clone(),
                            urgent_callers,
                            stop.clone(),
                        )));
                        tokio::spawn(serve_grpc(router, incoming, stop))
                    }
                    None => tokio::spawn(serve_grpc(router, incoming, stop)),
                }
            }
            None => {
                let incoming =
                    listen::incoming(listener, limits, "grpc", |c| async { Ok(c) }, stop.clone());
                tokio::spawn(serve_grpc(router, incoming, stop))
            }
        };
        tasks.push(served);
        let (mut webhook_addr, mut web_addr) = (None, None);
        for s in servers {
            let listener = bind(s.listen, s.setting).await?;
            let addr = listener.local_addr()?;
            tracing::info!(%addr, server = s.name, "{} listening", s.title);
            match s.name {
                "webhooks" => webhook_addr = Some(addr),
                "web" => web_addr = Some(addr),
                _ => {}
            }
            tasks.push(tokio::spawn(listen::serve_http(
                s.router,
                listener,
                settings.limits.clone(),
                s.name,
                shutdown.clone(),
            )));
        }
        readiness.set_database(true);
        tasks.push(tokio::spawn(observe::probe(
            settings.clone(),
            bus.clone(),
            observed,
            services,
            reporter,
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(observe::sample(
            settings.clone(),
            bus.clone(),
            metrics.clone(),
            observe::Sampling {
                cases: components.contains(&Component::Cases),
                audit: components.contains(&Component::Audit),
            },
            shutdown.clone(),
        )));
        tracing::info!(%grpc_addr, %metrics_addr, components = ?components, mutual_tls = settings.grpc.tls.is_some(), "himaya is up");
        stop_on_failure.disarm();
        Ok(Hub {
            grpc_addr,
            webhook_addr,
            web_addr,
            metrics_addr,
            metrics,
            readiness,
            shutdown,
            tasks,
            bus,
            urgent,
        })
    }

    /// A token that stops the hub when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, lets in-flight messages finish (up to 10 s), closes the broker
    /// connection. Unacknowledged messages return to their queues.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let all = futures_util::future::join_all(self.tasks);
        if tokio::time::timeout(Duration::from_secs(10), all)
            .await
            .is_err()
        {
            tracing::warn!("some tasks did not stop within 10 s");
        }
        self.bus.close().await;
        drop(self.urgent);
    }

    /// Runs until Ctrl-C or SIGTERM, then stops cleanly.
    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        wait_for_signal().await;
        tracing::info!("stopping");
        self.stop().await;
        Ok(())
    }
}

async fn bind(addr: SocketAddr, setting: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding port {addr} ({setting})"))
}

fn component_name(c: Component) -> &'static str {
    match c {
        Component::Cases => himaya_cases::Cases::NAME,
        Component::Directory => himaya_directory::Directory::NAME,
        Component::Router => himaya_router::Routing::NAME,
        Component::Connectors => crate::connectors::Connectors::NAME,
        Component::Audit => himaya_audit::Audit::NAME,
        Component::Web => himaya_web::Web::NAME,
    }
}

/// The gRPC server, bounded by `[limits]`: each call within the request timeout, a cap
/// on concurrent streams advertised to clients, pings that keep live connections from
/// looking idle (and find dead ones), and an age after which a connection is closed
/// gracefully. TLS is done by [`tls_acceptor`] before a connection reaches it.
fn server(settings: &Settings) -> Server {
    let l = &settings.limits;
    Server::builder()
        // The gateway ends a call at the request timeout with a message in the caller's
        // language (DEADLINE_EXCEEDED); this net, a second later, catches what runs
        // outside it (reflection, health).
        .timeout(l.request_timeout() + Duration::from_secs(1))
        .max_concurrent_streams(l.max_concurrent_streams)
        .http2_keepalive_interval(Some(l.idle_timeout() / 3))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .http2_max_header_list_size(16 * 1024)
        .max_connection_age(l.max_connection_age())
}

type GrpcRouter = tonic::transport::server::Router<
    tower_layer::Stack<himaya_gateway::GatewayLayer, tower_layer::Identity>,
>;

/// Serves gRPC on connections from [`listen::incoming`] until `stop`.
async fn serve_grpc<S, IO>(router: GrpcRouter, incoming: S, stop: CancellationToken)
where
    S: futures_util::Stream<Item = std::io::Result<IO>>,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    IO::ConnectInfo: Clone + Send + Sync + 'static,
{
    if let Err(e) = router
        .serve_with_incoming_shutdown(incoming, stop.cancelled())
        .await
    {
        tracing::error!(error = %e, "gRPC server stopped");
    }
}

/// A mutual TLS connection to the gRPC server.
type TlsConnection = tokio_rustls::server::TlsStream<listen::Guarded<tokio::net::TcpStream>>;

/// The emergency line's connections (told by the certificate they presented) apart:
/// moved to the urgent runtime `urgent` (`himaya_bus::urgent`) and served there, where
/// a hotline call never waits behind the routine calls queued on the other one. Every
/// other connection, and one that cannot be moved or taken at once, stays in
/// `incoming`.
fn by_caller<S>(
    incoming: S,
    settings: Arc<Settings>,
    urgent: tokio::runtime::Handle,
) -> (
    impl futures_util::Stream<Item = std::io::Result<TlsConnection>>,
    impl futures_util::Stream<Item = std::io::Result<TlsConnection>>,
)
where
    S: futures_util::Stream<Item = std::io::Result<TlsConnection>>,
{
    use futures_util::StreamExt;
    let (to_urgent, mut urgent_rx) = tokio::sync::mpsc::channel(64);
    let routine = incoming.filter_map(move |c| {
        let out = match c {
            Ok(mut io) if from_emergency_line(&settings, &io) => {
                match io.get_mut().0.move_to(&urgent) {
                    Ok(()) => match to_urgent.try_send(Ok(io)) {
                        Ok(()) => None,
                        Err(e) => Some(e.into_inner()),
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "an emergency line's connection could not be moved to the urgent threads; served with the others");
                        Some(Ok(io))
                    }
                }
            }
            other => Some(other),
        };
        std::future::ready(out)
    });
    let urgent = futures_util::stream::poll_fn(move |cx| urgent_rx.poll_recv(cx));
    (routine, urgent)
}

/// Whether the connection's certificate proves an emergency-line agency. The gateway
/// still checks every call on it (revocation, the agency's rules).
fn from_emergency_line<T>(settings: &Settings, io: &tokio_rustls::server::TlsStream<T>) -> bool {
    let Some(leaf) = io.get_ref().1.peer_certificates().and_then(|c| c.first()) else {
        return false;
    };
    himaya_gateway::certified_agency(settings, leaf, None)
        .ok()
        .and_then(|id| settings.agencies.get(&id))
        .is_some_and(|a| a.agency_type == himaya_record::AgencyType::EmergencyLine)
}

/// Mutual TLS when `grpc.tls` is set: a client presenting no certificate still reaches
/// health and reflection, never a `himaya.v1` RPC (the gateway refuses it). The peer's
/// certificates reach the gateway as tonic's `TlsConnectInfo`.
fn tls_acceptor(settings: &Settings) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let Some(tls) = &settings.grpc.tls else {
        return Ok(None);
    };
    let read = |path: &std::path::Path, key: &str| {
        std::fs::read(path).with_context(|| {
            format!(
                "reading grpc.tls.{key} ({}); `himaya dev-certs` makes a development set",
                path.display()
            )
        })
    };
    let not_pem = |key: &'static str| move |_| anyhow::anyhow!("grpc.tls.{key} is not valid PEM");
    let chain = CertificateDer::pem_slice_iter(&read(&tls.cert_file, "cert_file")?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(not_pem("cert_file"))?;
    let key = PrivateKeyDer::from_pem_slice(&read(&tls.key_file, "key_file")?)
        .map_err(not_pem("key_file"))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&read(&tls.client_ca_file, "client_ca_file")?) {
        roots
            .add(ca.map_err(not_pem("client_ca_file"))?)
            .context("grpc.tls.client_ca_file: not a CA certificate")?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .context("grpc.tls.client_ca_file: no usable CA certificate")?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("grpc.tls: the certificate does not match its key")?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
}

/// The queue every process of the hub shares for `directory.agency.changed`.
const DIRECTORY_FOLLOWERS: &str = "directory-followers";

/// Takes an agency's change announcement: the process reads the directory now.
struct Nudge(Arc<tokio::sync::Notify>);

impl himaya_bus::Handler for Nudge {
    async fn handle(&self, _msg: &himaya_bus::Incoming) -> Result<(), himaya_bus::HandleError> {
        // Idempotent: a read of the directory, however many times it is asked for.
        self.0.notify_one();
        Ok(())
    }
}

/// How often the gRPC server looks whether its certificate, key or client authorities
/// changed on disk.
const TLS_RELOAD_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// The size and modification time of the TLS files: what tells a change.
fn tls_stamp(settings: &Settings) -> Vec<Option<(u64, std::time::SystemTime)>> {
    let Some(tls) = &settings.grpc.tls else {
        return Vec::new();
    };
    [&tls.cert_file, &tls.key_file, &tls.client_ca_file]
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.len(), m.modified().ok()?)))
        })
        .collect()
}

/// Reads `grpc.tls`' files again whenever they change, so that the hub's certificate is
/// replaced, and an issuing authority added to or removed from `client_ca_file`, without
/// a restart. Files caught half-written (a certificate without its new key) are tried
/// again at the next look; until then the server goes on with what it had.
async fn reload_tls(
    settings: Arc<Settings>,
    current: Arc<std::sync::RwLock<tokio_rustls::TlsAcceptor>>,
    shutdown: CancellationToken,
) {
    let mut seen = tls_stamp(&settings);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(TLS_RELOAD_EVERY) => {}
        }
        let now = tls_stamp(&settings);
        if now == seen {
            continue;
        }
        match tls_acceptor(&settings) {
            Ok(Some(tls)) => {
                match current.write() {
                    Ok(mut c) => *c = tls,
                    Err(poisoned) => *poisoned.into_inner() = tls,
                }
                seen = now;
                tracing::info!("grpc.tls: certificate and client authorities read again");
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "grpc.tls changed but cannot be used yet; the server goes on with the previous files");
            }
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
        match term {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
