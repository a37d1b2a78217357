//! Prometheus itself watches a hub: the real server of Debian's `prometheus` package
//! (scripts/test installs it) scrapes a hub started here every second and evaluates the
//! alert rules of `deploy/observability/alerts.yml` against it. Through its HTTP API the
//! test sees a referral counted, then, once the simulated agency's system goes down, the
//! agency's breaker shown open and the breaker's alert pending; and every alert rule
//! evaluating without error on the hub's real series.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::Router;

use crate::helpers::*;

/// A Prometheus server of its own: a temporary directory for its configuration and
/// storage, killed and removed when dropped.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `prometheus` binary: `HIMAYA_TEST_PROMETHEUS`, else the one on `PATH`.
fn prometheus_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("HIMAYA_TEST_PROMETHEUS") {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("prometheus"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the prometheus binary is not installed: scripts/test installs it \
                 (scripts/observability-check runs `apt-get install prometheus`); \
                 or set HIMAYA_TEST_PROMETHEUS to its path"
            )
        })
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every second and evaluating the project's
    /// alert rules every second; returns once it says it is ready.
    async fn start(target: SocketAddr) -> Prometheus {
        let binary = prometheus_binary();
        let dir = std::env::temp_dir().join(format!(
            "himaya-prometheus-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/observability/alerts.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: himaya\n    static_configs:\n      - targets: [\"{target}\"]\n",
            rules = rules.display()
        );
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config).unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        // Held (bound, not listening) until Prometheus listens on it, so nothing else
        // takes the port meanwhile (Go's listeners bind with SO_REUSEADDR too).
        let (reserved, port) = reserved_port();
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let mut prometheus = Prometheus {
            child,
            dir,
            url: format!("http://127.0.0.1:{port}"),
        };
        let http = http();
        let ready = format!("{}/-/ready", prometheus.url);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = prometheus.child.try_wait() {
                panic!("prometheus exited ({status}):\n{}", prometheus.log());
            }
            let answer = http.get(&ready).send().await;
            if answer.is_ok_and(|r| r.status() == StatusCode::OK) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus not ready after 60 s:\n{}",
                prometheus.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(reserved);
        prometheus
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query: each series' labels and value.
    async fn query(&self, promql: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let answer: serde_json::Value = http()
            .post(format!("{}/api/v1/query", self.url))
            .form(&[("query", promql)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["status"], "success", "{promql}: {answer}");
        answer["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let labels = serde_json::from_value(s["metric"].clone()).unwrap();
                let value = s["value"][1].as_str().unwrap().parse().unwrap();
                (labels, value)
            })
            .collect()
    }

    /// The one value of `promql`, once it has one.
    async fn value(&self, promql: &str) -> Option<f64> {
        self.query(promql).await.first().map(|(_, v)| *v)
    }

    /// Waits until `promql` has a value `accept` takes; that value.
    async fn wait_for(&self, secs: u64, promql: &str, accept: impl Fn(f64) -> bool) -> f64 {
        eventually(secs, promql, || async {
            self.value(promql).await.filter(|v| accept(*v))
        })
        .await
    }
}

/// A simulated agency's system that answers every call with 201 until it goes down:
/// then it stops listening and closes its connections, so calls are refused.
async fn agency_until_down() -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (down, went_down) = tokio::sync::oneshot::channel::<()>();
    let app = Router::new().fallback(|| async {
        (
            StatusCode::CREATED,
            axum::Json(serde_json::json!({"reference": "SIM-1"})),
        )
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = went_down.await;
            })
            .await;
    });
    (addr, down)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sees_a_referral_counted_and_the_agencys_breaker_open() {
    let (agency, down) = agency_until_down().await;
    let mut env = TestEnv::new(Some(agency)).await;
    let c = &mut env.settings.connectors;
    c.timeout_ms = 500;
    c.attempts = 1;
    c.backoff_ms = 50;
    c.breaker_failures = 2;
    // Long enough that the breaker stays open (2), not half-open, while the test looks.
    c.breaker_cooldown_ms = 600_000;
    let hub = env.start().await;
    let prometheus = Prometheus::start(hub.metrics_addr).await;
    prometheus
        .wait_for(30, r#"up{job="himaya"}"#, |v| v == 1.0)
        .await;

    // A referral in, and delivered: Prometheus counts both.
    let ch = channel(&hub).await;
    submit_school(&ch, "prom-1").await;
    let accepted = prometheus
        .wait_for(
            30,
            r#"sum(himaya_intake_referrals_total{priority="urgent"})"#,
            |v| v >= 1.0,
        )
        .await;
    assert_eq!(accepted, 1.0, "one referral counted");
    prometheus
        .wait_for(
            30,
            r#"sum(himaya_agency_deliveries_total{agency="health-cairo", outcome="delivered"})"#,
            |v| v >= 1.0,
        )
        .await;

    // The agency's system goes down; the next referrals fail to reach it and its
    // breaker opens, as Prometheus sees it, and the breaker's alert is pending.
    down.send(()).unwrap();
    eventually(10, "the agency refusing connections", || async {
        tokio::net::TcpStream::connect(agency)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    submit_school(&ch, "prom-2").await;
    submit_school(&ch, "prom-3").await;
    prometheus
        .wait_for(
            60,
            r#"max(himaya_agency_breaker_state{agency="health-cairo"})"#,
            |v| v == 2.0,
        )
        .await;
    prometheus
        .wait_for(
            30,
            r#"sum(himaya_agency_deliveries_total{agency="health-cairo", outcome="transient"})"#,
            |v| v >= 1.0,
        )
        .await;
    let pending = eventually(30, "HimayaAgencyBreakerOpen pending", || async {
        let alerts = prometheus
            .query(r#"ALERTS{alertname="HimayaAgencyBreakerOpen"}"#)
            .await;
        (!alerts.is_empty()).then_some(alerts)
    })
    .await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    let labels = &pending[0].0;
    assert_eq!(labels["agency"], "health-cairo");
    assert_eq!(labels["alertstate"], "pending", "it fires after 10 minutes");
    assert_eq!(labels["severity"], "critical");

    // Every alert rule evaluates on the hub's real series without error.
    let http = http();
    let rules_url = format!("{}/api/v1/rules", prometheus.url);
    let rules = eventually(30, "every alert rule evaluated", || async {
        let answer: serde_json::Value =
            http.get(&rules_url).send().await.ok()?.json().await.ok()?;
        let rules: Vec<serde_json::Value> = answer["data"]["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        (!rules.is_empty() && rules.iter().all(|r| r["health"] != "unknown")).then_some(rules)
    })
    .await;
    let failing: Vec<String> = rules
        .iter()
        .filter(|r| r["health"] != "ok")
        .map(|r| format!("{}: {}", r["name"], r["lastError"]))
        .collect();
    assert!(failing.is_empty(), "rules failing: {failing:?}");
    assert!(
        rules.len() >= 11,
        "alerts.yml loaded: {} rules",
        rules.len()
    );

    // Every series the hub exported carries only the labels the contract lists for its
    // metric: the labels the dashboards and rules group and filter by.
    let contract = contract();
    let answer: serde_json::Value = http
        .post(format!("{}/api/v1/series", prometheus.url))
        .form(&[("match[]", r#"{__name__=~"himaya_.+"}"#)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let series: Vec<BTreeMap<String, String>> =
        serde_json::from_value(answer["data"].clone()).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for s in &series {
        let name = &s["__name__"];
        let Some(allowed) = contract.get(name.as_str()) else {
            continue;
        };
        seen.insert(name.clone());
        for label in s.keys() {
            assert!(
                ["__name__", "job", "instance"].contains(&label.as_str())
                    || allowed.contains(label),
                "{name} has label {label}, which deploy/observability/metrics.md does not list"
            );
        }
    }
    println!(
        "{} of the contract's series names exported, every label in the contract",
        seen.len()
    );
    assert!(
        seen.len() >= 20,
        "only {} contract metrics exported: {seen:?}",
        seen.len()
    );
    hub.stop().await;
}

/// The contract's labels per series name (`deploy/observability/metrics.md`): a
/// histogram's series are its `_bucket` (with `le`), `_sum` and `_count`.
fn contract() -> BTreeMap<String, std::collections::BTreeSet<String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/observability/metrics.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut names = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("himaya_")) {
        let (head, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let (name, labels) = head.split_once('{').unwrap_or((head, "}"));
        let labels: std::collections::BTreeSet<String> = labels
            .trim_end_matches('}')
            .split(',')
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        if rest.trim_start().starts_with("histogram") {
            let mut bucket = labels.clone();
            bucket.insert("le".to_owned());
            names.insert(format!("{name}_bucket"), bucket);
            names.insert(format!("{name}_sum"), labels.clone());
            names.insert(format!("{name}_count"), labels);
        } else {
            names.insert(name.to_owned(), labels);
        }
    }
    assert!(names.len() > 30, "{}: no contract read", path.display());
    names
}
