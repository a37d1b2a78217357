//! PostgreSQL plumbing shared by every service: one pool per service confined to the
//! service's own schema, the transactional outbox and its relay, and the inbox.
//!
//! The outbox is how "the row and its event are committed together": a service writes its
//! rows and [`outbox::enqueue`]s the event in one transaction; the relay publishes with
//! publisher confirms and marks the row sent only after the broker's ack (or, for
//! urgent rows, the writer itself as soon as it has committed: [`handover`]). The inbox is
//! how "exactly-once effect" follows from at-least-once delivery: a consumer claims the
//! message id in the same transaction as its effect.

pub mod agencies;
pub mod handover;
pub mod inbox;
pub mod outbox;
pub mod relay;

use std::str::FromStr;

use himaya_settings::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{Connection, PgConnection, PgPool};

pub use relay::run_relay;

/// `From<sqlx::Error>` for a service's error type, through its variant holding a
/// [`StoreError`], so that `?` works on a query directly:
/// `himaya_store::from_sqlx!(CasesError::Store);`
#[macro_export]
macro_rules! from_sqlx {
    ($error:ident :: $variant:ident) => {
        impl From<::sqlx::Error> for $error {
            fn from(e: ::sqlx::Error) -> Self {
                $error::$variant($crate::StoreError::from(e))
            }
        }
    };
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the database URL is not valid")]
    Url(#[source] sqlx::Error),
    #[error("configuration key `{key}`: {problem}")]
    Setting { key: &'static str, problem: String },
    #[error("no connection to the database within {} s (TCP, TLS and its start-up); is database.url's host and port right?", CONNECT_TIMEOUT.as_secs())]
    ConnectTimeout,
    #[error("`{0}` is not a valid schema or database name (a-z, 0-9, _)")]
    Name(String),
    #[error("a stored value is malformed: {0}")]
    Corrupt(&'static str),
    #[error("the event {0} could not be encoded")]
    Encode(&'static str),
}

impl StoreError {
    /// Transient failures (connection lost, pool exhausted, serialization conflict,
    /// deadlock, server shutting down) may succeed later; bad data and broken
    /// constraints never will.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(db)) => {
                // SQLSTATE classes: 08 connection, 40 rollback (serialization, deadlock),
                // 53 insufficient resources, 57 operator intervention, 58 system error.
                let code = db.code();
                let class = code.as_deref().map(|c| &c[..c.len().min(2)]);
                matches!(class, Some("08" | "40" | "53" | "57" | "58"))
            }
            StoreError::Database(e) => matches!(
                e,
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
                    | sqlx::Error::Tls(_)
            ),
            StoreError::ConnectTimeout => true,
            _ => false,
        }
    }
}

/// The longest one connection may take to open (TCP, TLS, PostgreSQL's start-up), like
/// the pools' `acquire_timeout`: a server that takes no packets or never finishes its
/// handshake fails the start instead of hanging it.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// One connection outside a pool, within [`CONNECT_TIMEOUT`].
async fn connect_one(opts: &PgConnectOptions) -> Result<PgConnection, StoreError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(opts)).await {
        Ok(conn) => Ok(conn?),
        Err(_) => Err(StoreError::ConnectTimeout),
    }
}

/// Checks a name we splice into DDL (schemas, databases): only `[a-z0-9_]`.
pub fn check_name(name: &str) -> Result<&str, StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(name)
    } else {
        Err(StoreError::Name(name.to_owned()))
    }
}

/// How every connection of the hub reaches PostgreSQL: `database.url`, and with
/// `database.ca_file` TLS with `sslmode=verify-full` (the server's certificate must chain
/// to that authority or to one of the system's, and name the URL's host), presenting
/// `database.client_cert_file` when set. Without `database.ca_file`, the URL's `sslmode`
/// applies; a URL that names none stays in plain text as before (not libpq's `prefer`,
/// which would encrypt without checking whom it talks to).
pub fn connect_options(
    db: &himaya_settings::DatabaseSettings,
) -> Result<PgConnectOptions, StoreError> {
    let mut opts = url_options(db.url.expose_secret())?;
    if let Some(ca) = &db.ca_file {
        readable(ca, "database.ca_file")?;
        opts = opts.ssl_mode(PgSslMode::VerifyFull).ssl_root_cert(ca);
    }
    if let (Some(cert), Some(key)) = (&db.client_cert_file, &db.client_key_file) {
        readable(cert, "database.client_cert_file")?;
        readable(key, "database.client_key_file")?;
        opts = opts.ssl_client_cert(cert).ssl_client_key(key);
    }
    Ok(opts)
}

/// A connection URL's options: its own `sslmode`, or plain text when it names none.
fn url_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    let opts = PgConnectOptions::from_str(url).map_err(StoreError::Url)?;
    Ok(if names_ssl_mode(url) {
        opts
    } else {
        opts.ssl_mode(PgSslMode::Disable)
    })
}

/// Whether a connection URL chooses its own `sslmode`.
fn names_ssl_mode(url: &str) -> bool {
    url.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|kv| kv.starts_with("sslmode=") || kv.starts_with("ssl-mode="))
    })
}

/// sqlx reads the certificate files at each connection: a missing one is named now.
fn readable(path: &std::path::Path, key: &'static str) -> Result<(), StoreError> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| StoreError::Setting {
            key,
            problem: format!("{} cannot be read: {e}", path.display()),
        })
}

/// A connection error said so that the operator knows which setting to look at: a
/// server certificate refused names `database.ca_file`, a server without TLS says so.
pub fn explain(e: StoreError, db: &himaya_settings::DatabaseSettings) -> StoreError {
    let StoreError::Database(inner) = &e else {
        return e;
    };
    let tls_error = match inner {
        sqlx::Error::Io(io) => io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    let refused = matches!(tls_error, Some(rustls::Error::InvalidCertificate(_)));
    // Under TLS 1.3 a server's alert over the hub's certificate comes after the
    // handshake, and can be lost when it closes at once: the reset is all that arrives.
    let reset =
        matches!(inner, sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionReset);
    if reset && db.ca_file.is_some() && db.client_cert_file.is_some() {
        return StoreError::Setting {
            key: "database.client_cert_file",
            problem: format!(
                "the database server closed the connection after the TLS handshake; if it \
                 checks client certificates, database.client_cert_file must be issued by an \
                 authority it trusts (its ssl_ca_file) and be valid now ({inner})"
            ),
        };
    }
    // The server ended the handshake over the hub's own certificate.
    if let Some(refusal) = tls_error {
        if himaya_bus::refuses_our_certificate(refusal) {
            return StoreError::Setting {
                key: "database.client_cert_file",
                problem: format!(
                    "the database server refused the hub's certificate: it must be issued \
                     by an authority the server trusts (its ssl_ca_file) and be valid now \
                     ({inner})"
                ),
            };
        }
    }
    // SQLSTATE 28000 (invalid authorization): pg_hba.conf's answer, worded by the server.
    if let sqlx::Error::Database(d) = inner {
        let said = d.message();
        if d.code().as_deref() == Some("28000") {
            if said.contains("client certificate") {
                return StoreError::Setting {
                    key: "database.client_cert_file",
                    problem: format!(
                        "the database server asks for the hub's certificate: set \
                         database.client_cert_file and database.client_key_file to one its \
                         authority issued, naming the URL's user ({said})"
                    ),
                };
            }
            if said.contains("no encryption") {
                return StoreError::Setting {
                    key: "database.ca_file",
                    problem: format!(
                        "the database server refuses plain text: set database.ca_file to the \
                         authority of its certificate ({said})"
                    ),
                };
            }
        }
    }
    let problem = match (&db.ca_file, refused, inner) {
        (Some(ca), true, _) => format!(
            "the database server's certificate was refused: it must be issued by the authority \
             in database.ca_file ({}) and name database.url's host ({inner})",
            ca.display()
        ),
        (Some(_), false, sqlx::Error::Tls(t)) => format!(
            "TLS with the database server failed: database.ca_file asks for \
             sslmode=verify-full; is TLS on in its postgresql.conf? ({t})"
        ),
        (None, true, _) => format!(
            "the database server's certificate was refused: database.url asks for a \
             certificate check; set database.ca_file to the server's authority ({inner})"
        ),
        _ => return e,
    };
    StoreError::Setting {
        key: "database.ca_file",
        problem,
    }
}

/// Creates the database named in `url` when it does not exist yet (first start).
pub async fn ensure_database(url: &str) -> Result<(), StoreError> {
    ensure_database_with(url_options(url)?).await
}

/// [`ensure_database`] with the connection's options (see [`connect_options`]).
pub async fn ensure_database_with(opts: PgConnectOptions) -> Result<(), StoreError> {
    let name = opts.get_database().unwrap_or("postgres").to_owned();
    let mut admin = connect_one(&opts.clone().database("postgres")).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let name = check_name(&name)?;
        // Two processes starting at once may both try; the loser's error is harmless.
        if let Err(e) = sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
        {
            tracing::debug!(error = %e, "database creation raced; continuing");
        }
    }
    admin.close().await?;
    Ok(())
}

/// A pool whose connections see only `schema` (its `search_path`), with the schema, the
/// outbox and the inbox created if missing. The service then runs its own migrations.
pub async fn connect(url: &str, schema: &str, max_connections: u32) -> Result<PgPool, StoreError> {
    connect_with(url_options(url)?, schema, max_connections).await
}

/// [`connect`] with the connection's options (see [`connect_options`]).
pub async fn connect_with(
    opts: PgConnectOptions,
    schema: &str,
    max_connections: u32,
) -> Result<PgPool, StoreError> {
    let schema = check_name(schema)?;
    let opts = opts.options([("search_path", schema)]);
    let mut conn = connect_one(&opts).await?;
    prepare_schema(&mut conn, schema).await?;
    conn.close().await?;
    let pool = options(max_connections).connect_with(opts).await?;
    Ok(pool)
}

/// Another pool of a service on its schema (prepared by [`connect_service`]), of
/// `max_connections`, connecting as it needs: the relay's, the urgent lane's.
pub fn extra_pool(
    db: &himaya_settings::DatabaseSettings,
    schema: &str,
    max_connections: u32,
) -> Result<PgPool, StoreError> {
    let schema = check_name(schema)?;
    let opts = connect_options(db)?.options([("search_path", schema)]);
    Ok(options(max_connections).connect_lazy_with(opts))
}

/// A service's pools for its two lanes: urgent work on the urgent runtime (see
/// `himaya_bus::urgent`) takes connections of its own, opened there, so that it never
/// waits for one behind a routine burst, nor for a routine runtime to read its socket.
#[derive(Clone)]
pub struct Lanes {
    pub routine: PgPool,
    pub urgent: PgPool,
}

impl Lanes {
    /// `routine`, and `database.urgent_connections` (at least one) of the same schema
    /// for urgent work, connecting as it needs.
    pub fn of(
        routine: PgPool,
        db: &himaya_settings::DatabaseSettings,
        schema: &str,
    ) -> Result<Lanes, StoreError> {
        let urgent = extra_pool(db, schema, db.urgent_connections.max(1))?;
        Ok(Lanes { routine, urgent })
    }

    /// The urgent pool on the urgent runtime, the routine one elsewhere.
    pub fn current(&self) -> &PgPool {
        match himaya_bus::urgent::is_current() {
            true => &self.urgent,
            false => &self.routine,
        }
    }
}

/// Another pool on a schema [`connect`] prepared, connecting as it needs.
pub fn pool_of(url: &str, schema: &str, max_connections: u32) -> Result<PgPool, StoreError> {
    let schema = check_name(schema)?;
    let opts = url_options(url)?.options([("search_path", schema)]);
    Ok(options(max_connections).connect_lazy_with(opts))
}

/// Every pool's options. No ping before each acquire: sqlx already pings a connection
/// when it is released (and drops it if broken), so the ping at acquire was a second
/// round trip per transaction (the pings were ~9.5 round trips per referral, measured in
/// issue 14). A connection that broke while idle fails its statement instead, which
/// every caller treats as retryable (the relay's next round, a redelivery, the client's
/// retry with the same submission id).
fn options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(CONNECT_TIMEOUT)
        .test_before_acquire(false)
}

async fn prepare_schema(conn: &mut PgConnection, schema: &str) -> Result<(), StoreError> {
    let mut tx = conn.begin().await?;
    // Serialise DDL across processes starting together.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('himaya.prepare_schema'))")
        .execute(&mut *tx)
        .await?;
    let ddl = [
        format!("CREATE SCHEMA IF NOT EXISTS {schema}"),
        format!(
            "CREATE TABLE IF NOT EXISTS {schema}.outbox (
                id BIGSERIAL PRIMARY KEY,
                message_id TEXT NOT NULL UNIQUE,
                exchange TEXT NOT NULL,
                routing_key TEXT NOT NULL,
                event_type TEXT NOT NULL,
                priority SMALLINT NOT NULL DEFAULT 0,
                headers JSONB NOT NULL DEFAULT '{{}}',
                payload BYTEA NOT NULL,
                created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                attempts INT NOT NULL DEFAULT 0,
                next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                last_error TEXT,
                sent_at TIMESTAMPTZ
            )"
        ),
        // The relay's lease on the rows it claimed (relay.rs): it holds no transaction
        // while the broker confirms. Added to outboxes made before the leases, and only
        // then: ALTER TABLE locks out every reader, even when there is nothing to add.
        format!(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_attribute
                               WHERE attrelid = '{schema}.outbox'::regclass
                                 AND attname = 'lease_until' AND NOT attisdropped) THEN
                 ALTER TABLE {schema}.outbox
                   ADD COLUMN lease_until TIMESTAMPTZ,
                   ADD COLUMN leased_by TEXT;
               END IF;
             END $$"
        ),
        // Each row is written three times: inserted, leased, sent. With room left on
        // each page the lease, which touches no indexed column, is a HOT update: a new
        // version beside the old on the same page and no index entries, where a full
        // page puts it elsewhere and adds an entry to each of the outbox's indexes. Set
        // once (ALTER TABLE locks out readers); pages written before keep their fill.
        format!(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_class
                               WHERE oid = '{schema}.outbox'::regclass
                                 AND reloptions @> ARRAY['fillfactor=60']) THEN
                 ALTER TABLE {schema}.outbox SET (fillfactor = 60);
               END IF;
             END $$"
        ),
        // A payload of many items (a group's referrals, an agency's deliveries) is
        // several kilobytes and compressed as it is stored. PostgreSQL's own method
        // (pglz) took 2.4 % of the machine at 1,000 referrals/s, half of it for these
        // payloads; lz4 does the same work in a fraction of the time, for a payload a
        // tenth larger, which stays on the row's page where pglz's did (a group's) and
        // goes to the TOAST table where pglz's did (an agency's deliveries). The cases'
        // records keep pglz: lz4's are about 2,000 bytes against 1,800 and would no
        // longer fit on the row's page (two more WAL records a referral, measured).
        // Where the server was built without lz4 the column keeps its method. Set once
        // (ALTER TABLE locks out readers); rows written before keep theirs.
        lz4_column(schema, "outbox", "payload"),
        // The claim's order is the index below. This one, of an older claim's order, led
        // the planner (without statistics) to sort the whole backlog for every claim.
        format!("DROP INDEX IF EXISTS {schema}.outbox_unsent"),
        // The relay claims urgent rows first (see relay.rs), in this index's order; the
        // rows leased by other relays (a batch or so each) are passed over.
        format!("CREATE INDEX IF NOT EXISTS outbox_unsent_urgent_first ON {schema}.outbox (priority DESC, id) WHERE sent_at IS NULL"),
        // Sent rows are pruned by age (relay.keep_sent_secs), inbox ids too.
        format!("CREATE INDEX IF NOT EXISTS outbox_sent_at ON {schema}.outbox (sent_at) WHERE sent_at IS NOT NULL"),
        format!(
            "CREATE TABLE IF NOT EXISTS {schema}.inbox (
                consumer TEXT NOT NULL,
                message_id TEXT NOT NULL,
                processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                PRIMARY KEY (consumer, message_id)
            )"
        ),
        format!("CREATE INDEX IF NOT EXISTS inbox_processed_at ON {schema}.inbox (processed_at)"),
    ];
    for statement in &ddl {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The statement that has `schema.table`'s `column` compressed with lz4 from now on, if
/// it is not already and the server has lz4. Whether it has is asked first, of a
/// setting that accepts `lz4` only then (`default_toast_compression`, for the rest of
/// this transaction alone): the `ALTER TABLE` locks the table before it looks at the
/// method, so a server without lz4 would otherwise have every start lock the outbox
/// for nothing.
fn lz4_column(schema: &str, table: &str, column: &str) -> String {
    format!(
        "DO $$ BEGIN
           PERFORM set_config('default_toast_compression', 'lz4', true);
           IF NOT EXISTS (SELECT 1 FROM pg_attribute
                           WHERE attrelid = '{schema}.{table}'::regclass
                             AND attname = '{column}' AND attcompression = 'l') THEN
             ALTER TABLE {schema}.{table} ALTER COLUMN {column} SET COMPRESSION lz4;
           END IF;
         EXCEPTION WHEN invalid_parameter_value OR feature_not_supported THEN NULL;
         END $$"
    )
}

/// The notification channel that wakes a schema's relay.
pub(crate) fn channel_of(schema: &str) -> String {
    format!("himaya_outbox_{schema}")
}

/// The schema a pool was connected to (its `search_path`).
pub async fn current_schema(pool: &PgPool) -> Result<String, StoreError> {
    let s: Option<String> = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(pool)
        .await?;
    s.ok_or(StoreError::Corrupt("no current schema"))
}

/// What every service does first: its pool (database created if missing, schema
/// prepared), its migrations, and its outbox relay running until `shutdown`, whose
/// claims take background turns as `stage` (see [`relay::RelayConfig::stage`]).
pub async fn start_service(
    settings: &himaya_settings::Settings,
    schema: &str,
    migrator: &sqlx::migrate::Migrator,
    bus: std::sync::Arc<himaya_bus::Bus>,
    stage: himaya_bus::Stage,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(PgPool, tokio::task::JoinHandle<()>), StoreError> {
    let pool = connect_service(&settings.database, schema).await?;
    migrator.run(&pool).await?;
    // The relay's own connections, apart from the handlers' pool.
    let relay_pool = extra_pool(&settings.database, schema, settings.relay.connections)?;
    let outbox = bus.metrics().outbox.of(schema);
    let sampling = sample_outbox(
        pool.clone(),
        outbox,
        settings.telemetry.sample_interval(),
        settings.telemetry.sample_timeout(),
        bus.metrics().clone(),
        shutdown.clone(),
    );
    let cfg = relay::RelayConfig {
        stage,
        ..(&settings.relay).into()
    };
    let relaying = run_relay(relay_pool, bus, cfg, shutdown);
    let relay = tokio::spawn(async move {
        tokio::join!(relaying, sampling);
    });
    Ok((pool, relay))
}

/// Samples the outbox of `pool`'s schema every `every` until `shutdown`: rows waiting and
/// the age of the oldest (`himaya_outbox_waiting`, `himaya_outbox_oldest_age_seconds`),
/// each sample one statement bounded by `timeout` (a slow database delays no one).
pub async fn sample_outbox(
    pool: PgPool,
    outbox: himaya_metrics::OutboxHandles,
    every: std::time::Duration,
    timeout: std::time::Duration,
    metrics: std::sync::Arc<himaya_metrics::Metrics>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        let sample = async {
            let mut tx = sample_transaction(&pool, timeout).await?;
            let row = sqlx::query_as::<_, (i64, f64)>(
                "SELECT count(*), COALESCE(extract(epoch FROM now() - min(created_at))::float8, 0)
                   FROM outbox WHERE sent_at IS NULL",
            )
            .fetch_one(&mut *tx)
            .await?;
            Ok::<_, StoreError>(row)
        };
        match tokio::time::timeout(timeout * 2, sample).await {
            Ok(Ok((waiting, oldest))) => {
                outbox.waiting.set(waiting);
                outbox.oldest_age.set(oldest.max(0.0));
            }
            Ok(Err(e)) => {
                metrics.lifecycle.sample_failed("outbox");
                tracing::debug!(error = %e, "outbox not sampled");
            }
            Err(_) => metrics.lifecycle.sample_failed("outbox"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// A read-only transaction whose statements may take `timeout` at most
/// (`statement_timeout`), for the periodic samples of the metrics: they never hold a
/// connection or a lock for long. Rolled back when dropped.
pub async fn sample_transaction(
    pool: &PgPool,
    timeout: std::time::Duration,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query(&format!(
        "SET LOCAL statement_timeout = {}",
        timeout.as_millis().max(1)
    ))
    .execute(&mut *tx)
    .await?;
    sqlx::query("SET TRANSACTION READ ONLY")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// A service's pool from settings: database created if missing, schema prepared.
pub async fn connect_service(
    db: &himaya_settings::DatabaseSettings,
    schema: &str,
) -> Result<PgPool, StoreError> {
    let opts = connect_options(db)?;
    let connected = async {
        ensure_database_with(opts.clone()).await?;
        connect_with(opts, schema, db.max_connections).await
    };
    connected.await.map_err(|e| explain(e, db))
}

impl From<&himaya_settings::RelaySettings> for relay::RelayConfig {
    fn from(s: &himaya_settings::RelaySettings) -> Self {
        relay::RelayConfig {
            poll_interval: std::time::Duration::from_millis(s.poll_interval_ms),
            batch_size: s.batch_size,
            keep_sent: std::time::Duration::from_secs(s.keep_sent_secs),
            inbox_keep: std::time::Duration::from_secs(s.inbox_keep_hours * 3_600),
            lease: std::time::Duration::from_secs(s.lease_secs),
            stage: himaya_bus::Stage::OnTheWay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_reach_ddl() {
        assert!(check_name("cases").is_ok());
        assert!(check_name("connector_health").is_ok());
        for bad in ["", "Cases", "cases; DROP TABLE x", "a-b", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_url_without_sslmode_stays_plain_and_a_ca_file_asks_verify_full() {
        let mut db = himaya_settings::DatabaseSettings {
            url: "postgres://hub:pw@db:5432/himaya".to_owned().into(),
            max_connections: 2,
            urgent_connections: 1,
            background_transactions: 2,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
        };
        assert!(matches!(
            connect_options(&db).unwrap().get_ssl_mode(),
            PgSslMode::Disable
        ));
        db.url = "postgres://hub:pw@db:5432/himaya?sslmode=require"
            .to_owned()
            .into();
        assert!(matches!(
            connect_options(&db).unwrap().get_ssl_mode(),
            PgSslMode::Require
        ));
        db.ca_file = Some("/nonexistent/ca.pem".into());
        let e = connect_options(&db).unwrap_err().to_string();
        assert!(
            e.contains("database.ca_file") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
        db.ca_file = Some(std::env::current_exe().unwrap());
        assert!(matches!(
            connect_options(&db).unwrap().get_ssl_mode(),
            PgSslMode::VerifyFull
        ));
    }

    #[test]
    fn the_relay_channel_is_per_schema() {
        assert_eq!(channel_of("router"), "himaya_outbox_router");
    }
}
