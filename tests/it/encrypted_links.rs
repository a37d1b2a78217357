//! The hub's links to the broker and the database, encrypted and checked: a school's
//! referral crosses `amqps://` and PostgreSQL with `sslmode=verify-full`, against the
//! local servers' TLS that `scripts/tls-servers` turns on with a test authority of its
//! own (`$HIMAYA_TEST_TLS_DIR/ca.pem`). A server whose certificate another authority
//! issued is refused, and so is a server that answers in plain text, each within the
//! connect timeouts and with an error naming the setting to look at.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::helpers::*;
use himaya::hub::{Component, Hub};
use himaya_settings::{ExposeSecret, SecretString, Settings};

/// Where `scripts/tls-servers` keeps its authority and the client certificate it issued.
fn tls_dir() -> PathBuf {
    PathBuf::from(env_or("HIMAYA_TEST_TLS_DIR", "/var/lib/himaya-test-tls"))
}

/// The authority the local servers' certificate is from.
fn authority() -> PathBuf {
    let ca = tls_dir().join("ca.pem");
    assert!(
        ca.exists(),
        "{} is missing: run scripts/tls-servers (scripts/test does)",
        ca.display()
    );
    ca
}

/// The local broker's TLS listener (`scripts/tls-servers`).
fn amqps_base() -> String {
    env_or("HIMAYA_TEST_AMQPS", "amqps://guest:guest@127.0.0.1:5671")
}

/// `env`'s settings switched to TLS on both links, trusting `bus_ca` and `db_ca`.
fn encrypted(env: &TestEnv, bus_ca: PathBuf, db_ca: PathBuf) -> Settings {
    let mut s = env.settings.clone();
    s.bus.url = SecretString::from(format!("{}/{}", amqps_base(), env.vhost));
    s.bus.ca_file = Some(bus_ca);
    s.database.ca_file = Some(db_ca);
    s.validate().expect("valid encrypted links");
    s
}

/// The client certificate `scripts/tls-servers` issued (CN `himaya_tls_client`), the
/// only way in for the PostgreSQL role of that name.
fn client_pair() -> (PathBuf, PathBuf) {
    (tls_dir().join("client.pem"), tls_dir().join("client.key"))
}

/// `env`'s database URL as the role that logs in by its certificate only.
fn as_certificate_role(env: &TestEnv) -> SecretString {
    SecretString::from(format!(
        "postgres://himaya_tls_client@127.0.0.1:5432/{}",
        env.db_name
    ))
}

/// An authority that never issued the local servers' certificate.
fn another_authority(env: &TestEnv) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{}-other-ca", env.db_name));
    himaya::dev_certs::generate(&dir, ["health-cairo"], 1)
        .expect("another authority")
        .ca()
}

/// The start's whole error chain, and how long it took to fail.
async fn refused(settings: Settings) -> (String, Duration) {
    let started = Instant::now();
    let result = tokio::time::timeout(
        himaya_bus::CONNECT_TIMEOUT + Duration::from_secs(20),
        Hub::start(settings, &Component::ALL),
    )
    .await
    .expect("the start ends (it does not hang on a refused link)");
    match result {
        Ok(_) => panic!("the hub started over a link it should have refused"),
        Err(e) => {
            let e = format!("{e:#}");
            println!("refused in {:?}: {e}", started.elapsed());
            (e, started.elapsed())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referral_crosses_amqps_and_verify_full() {
    let (agency, addr) = FakeAgency::start(&[]).await;
    let env = TestEnv::new(Some(addr)).await;
    let ca = authority();
    let mut settings = encrypted(&env, ca.clone(), ca);
    // Both servers check a client certificate when one is presented: the hub's is.
    let (cert, key) = client_pair();
    settings.bus.client_cert_file = Some(cert.clone());
    settings.bus.client_key_file = Some(key.clone());
    settings.database.client_cert_file = Some(cert);
    settings.database.client_key_file = Some(key);
    settings.validate().unwrap();
    let hub = Hub::start(settings, &Component::ALL)
        .await
        .expect("the hub starts over TLS to both servers");
    let ch = channel(&hub).await;
    let case = submit_school(&ch, "sub-encrypted").await;
    assert!(case.starts_with("case_"));
    eventually(30, "the delivery at the agency", || async {
        (agency.count() >= 1).then_some(())
    })
    .await;

    // Every connection the hub holds to its database is TLS with its certificate...
    let pool = env.pool().await;
    let (encrypted, with_cert, all): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE s.ssl),
                count(*) FILTER (WHERE s.client_dn = '/CN=himaya_tls_client'), count(*)
           FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
          WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(all > 0, "the hub holds connections to its database");
    assert_eq!(
        encrypted, all,
        "every database connection of the hub is TLS"
    );
    assert_eq!(with_cert, all, "and presents the hub's certificate");

    // ...and so is every connection to its vhost.
    let api = env_or("HIMAYA_TEST_RABBIT_API", "http://127.0.0.1:15672");
    let connections: serde_json::Value =
        eventually(30, "the hub's broker connections listed", || async {
            let list: serde_json::Value = http()
                .get(format!("{api}/api/vhosts/{}/connections", env.vhost))
                .basic_auth("guest", Some("guest"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (!list.as_array()?.is_empty()).then_some(list)
        })
        .await;
    for c in connections.as_array().unwrap() {
        assert_eq!(c["ssl"], serde_json::Value::Bool(true), "{c}");
        assert_eq!(c["port"], serde_json::json!(5671), "{c}");
        let subject = c["peer_cert_subject"].as_str().unwrap_or_default();
        assert!(subject.contains("himaya_tls_client"), "{c}");
    }

    // The broker drops every connection: the hub comes back over TLS, and the next
    // referral arrives too.
    close_connections(&env.vhost).await;
    submit_school(&ch, "sub-encrypted-after-reconnect").await;
    eventually(60, "the second delivery, after reconnecting", || async {
        (agency.count() >= 2).then_some(())
    })
    .await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_from_another_authority_is_refused() {
    let env = TestEnv::new(None).await;
    let ours = authority();
    let other = another_authority(&env);

    // The broker's certificate against another authority: refused, naming bus.ca_file.
    let (e, took) = refused(encrypted(&env, other.clone(), ours.clone())).await;
    assert!(e.contains("bus.ca_file") && e.contains("refused"), "{e}");
    assert!(
        took < himaya_bus::CONNECT_TIMEOUT,
        "refused at once, not timed out: {took:?}"
    );

    // The database's: refused, naming database.ca_file.
    let (e, took) = refused(encrypted(&env, ours.clone(), other.clone())).await;
    assert!(
        e.contains("database.ca_file") && e.contains("refused"),
        "{e}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(
        !e.contains("guest:guest") && !e.contains("postgres:postgres"),
        "{e}"
    );

    // The hub's own certificate from another authority: the broker refuses it (it
    // checks a certificate presented to it), naming bus.client_cert_file.
    let mut s = encrypted(&env, ours.clone(), ours);
    let (cert, key) = himaya::dev_certs::DevCerts {
        dir: other.parent().unwrap().to_owned(),
    }
    .pair("hub");
    s.bus.client_cert_file = Some(cert);
    s.bus.client_key_file = Some(key);
    let (e, took) = refused(s.clone()).await;
    assert!(e.contains("bus.client_cert_file"), "{e}");
    assert!(took < himaya_bus::CONNECT_TIMEOUT, "{took:?}");

    // And the database, which checks one too: naming database.client_cert_file.
    s.database.client_cert_file = s.bus.client_cert_file.take();
    s.database.client_key_file = s.bus.client_key_file.take();
    let (e, took) = refused(s).await;
    assert!(e.contains("database.client_cert_file"), "{e}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let _ = std::fs::remove_dir_all(other.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_text_is_refused_where_tls_is_asked() {
    let env = TestEnv::new(None).await;
    let ca = authority();

    // amqps:// to the broker's plain AMQP port: the handshake fails, no fall back.
    let mut s = encrypted(&env, ca.clone(), ca.clone());
    let plain_port = s.bus.url.expose_secret().replace(":5671/", ":5672/");
    s.bus.url = SecretString::from(plain_port);
    let (e, took) = refused(s).await;
    assert!(e.contains("TLS listener"), "{e}");
    assert!(took < himaya_bus::CONNECT_TIMEOUT, "{took:?}");

    // A database server that does not speak TLS (it answers `N` to the TLS request, as
    // PostgreSQL with ssl = off does): refused, naming database.ca_file.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let plain_server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut c, _)) = listener.accept().await {
            let mut request = [0u8; 8];
            if c.read_exact(&mut request).await.is_ok() {
                let _ = c.write_all(b"N").await;
            }
        }
    });
    let mut s = encrypted(&env, ca.clone(), ca);
    s.database.url = SecretString::from(format!(
        "postgres://postgres:postgres@127.0.0.1:{port}/{}",
        env.db_name
    ));
    let (e, took) = refused(s).await;
    assert!(e.contains("database.ca_file") && e.contains("TLS"), "{e}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    plain_server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_asks_for_the_hubs_certificate_gets_it() {
    let env = TestEnv::new(None).await;
    let ca = authority();
    let (cert, key) = client_pair();

    // The role logs in by its certificate only: without one, refused naming the setting.
    let mut s = encrypted(&env, ca.clone(), ca.clone());
    s.database.url = as_certificate_role(&env);
    let (e, _) = refused(s.clone()).await;
    assert!(e.contains("database.client_cert_file"), "{e}");

    // In plain text (no database.ca_file), refused naming database.ca_file.
    let mut plain = s.clone();
    plain.database.ca_file = None;
    let (e, _) = refused(plain).await;
    assert!(
        e.contains("database.ca_file") && e.contains("plain text"),
        "{e}"
    );

    // With it, the hub starts and works on its database as that role.
    s.database.client_cert_file = Some(cert);
    s.database.client_key_file = Some(key);
    let hub = Hub::start(s, &Component::ALL)
        .await
        .expect("the hub starts with its client certificate");
    let case = submit_school(&channel(&hub).await, "sub-client-cert").await;
    assert!(case.starts_with("case_"));
    let pool = env.pool().await;
    let users: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT usename::text FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(users, ["himaya_tls_client"]);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_finishes_its_handshake_stops_the_start_within_the_bound() {
    let env = TestEnv::new(None).await;
    let ca = authority();
    // A server that takes the connection and never answers (as behind a firewall that
    // lets the SYN through, or a wedged server).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((c, _)) = listener.accept().await {
            held.push(c);
        }
    });

    // Both links at once: each start ends at its own bound.
    let mut to_broker = encrypted(&env, ca.clone(), ca.clone());
    to_broker.bus.url = SecretString::from(format!(
        "amqps://guest:guest@127.0.0.1:{port}/{}",
        env.vhost
    ));
    let mut to_database = encrypted(&env, ca.clone(), ca);
    to_database.database.url = SecretString::from(format!(
        "postgres://postgres:postgres@127.0.0.1:{port}/{}",
        env.db_name
    ));
    let ((e, took), (db_e, db_took)) = tokio::join!(refused(to_broker), refused(to_database));
    assert!(e.contains("within 10 s") && e.contains("bus.url"), "{e}");
    assert!(
        took < himaya_bus::CONNECT_TIMEOUT + Duration::from_secs(3),
        "{took:?}"
    );
    assert!(
        db_e.contains("within 10 s") && db_e.contains("database.url"),
        "{db_e}"
    );
    assert!(
        db_took < himaya_store::CONNECT_TIMEOUT + Duration::from_secs(3),
        "{db_took:?}"
    );
    silent.abort();
}
