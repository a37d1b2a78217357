//! `cargo bench --bench pages`: the web front's pages as a signed-in person gets them from
//! a real hub (PostgreSQL, RabbitMQ, the gRPC it calls with the person's headers), next to
//! a raw axum handler returning the same bytes, in the same run.
//!
//! Pages: a caseworker's list of their 25 cases (`/cases`), one of those cases
//! (`/cases/<id>`), and the operator's console (`/hotline`). Open loop: the send times are
//! fixed in advance at a steady rate, and each latency runs from its scheduled send time
//! to the last byte of the answer, so a slow answer delays none of the later sends and
//! queueing shows in the figures. Bytes: the HTML alone (a later visit: the stylesheet and
//! the fonts are cached), and a first visit's HTML + stylesheet + the fonts it names.
//! Rate and length: HIMAYA_BENCH_PAGE_RATE (default 50 per second),
//! HIMAYA_BENCH_PAGE_SECS (default 20 seconds per page and per side).

#[path = "../tests/it/helpers/mod.rs"]
mod helpers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use helpers::*;
use himaya_proto::v1 as pb;
use himaya_web::people::{self, Role};
use pb::case_work_client::CaseWorkClient;
use tokio::time::Instant;

const PASSWORD: &str = "correct horse battery staple";
const MINISTRY: &str = "mosa-cairo";
const CASES: usize = 25;

fn env_num(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn http() -> reqwest::Client {
    http_builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

/// The value a response sets for `name`.
fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            c.strip_prefix(&format!("{name}="))?
                .split(';')
                .next()
                .map(str::to_owned)
        })
        .filter(|v| !v.is_empty())
}

/// Signs in over plain HTTP as the web tests do; the `cookie` header of the session.
async fn sign_in(base: &str, login: &str, code: &str) -> String {
    let page = http().get(format!("{base}/signin")).send().await.unwrap();
    let pre = set_cookie(&page, "himaya_pre").unwrap();
    let r = http()
        .post(format!("{base}/signin"))
        .header("cookie", format!("himaya_pre={pre}"))
        .form(&[
            ("pre", pre.as_str()),
            ("login", login),
            ("password", PASSWORD),
            ("code", code),
        ])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "signed in as {login}");
    format!(
        "himaya_session={}",
        set_cookie(&r, "himaya_session").unwrap()
    )
}

/// A caseworker of the ministry as a person and as its staff (staff id = person id), with
/// 25 cases of the fixture registered and assigned to them by the ministry's own system.
/// Their session cookie and the cases' ids.
async fn caseworker_with_cases(
    env: &TestEnv,
    ch: &tonic::transport::Channel,
    base: &str,
) -> (String, Vec<String>) {
    let pool = himaya_web::connect(&env.settings).await.unwrap();
    let me = people::add(
        &pool,
        MINISTRY,
        "bench.caseworker",
        ("رنا سمير", Some("Rana Samir")),
        &[Role::Caseworker],
        PASSWORD,
    )
    .await
    .unwrap()
    .person
    .person_id;
    let mut work = CaseWorkClient::new(ch.clone());
    let mut staff = pb::staff_client::StaffClient::new(ch.clone());
    for (id, role, sup) in [
        ("sup-bench", pb::StaffRole::Supervisor, None),
        (me.as_str(), pb::StaffRole::Caseworker, Some("sup-bench")),
    ] {
        staff
            .add_staff(as_agency(
                MINISTRY,
                pb::AddStaffRequest {
                    staff_id: id.into(),
                    role: role.into(),
                    supervisor_id: sup.map(str::to_owned),
                },
            ))
            .await
            .unwrap();
    }
    let mut cases = Vec::new();
    for i in 0..CASES {
        let case = submit_school(ch, &format!("bench-{i}")).await;
        work.decide_acceptance(as_agency(MINISTRY, register(&case, 1)))
            .await
            .unwrap();
        work.assign_case(as_agency(
            MINISTRY,
            pb::AssignCaseRequest {
                case_id: case.clone(),
                expected_version: 2,
                actor: "sup-bench".into(),
                caseworker_id: me.clone(),
            },
        ))
        .await
        .unwrap();
        cases.push(case);
    }
    (sign_in(base, "bench.caseworker", "").await, cases)
}

/// An operator of the emergency line, signed in with their second factor.
async fn operator(env: &TestEnv, base: &str) -> String {
    let pool = himaya_web::connect(&env.settings).await.unwrap();
    let op = people::add(
        &pool,
        "hotline-16000",
        "bench.operator",
        ("كريم فؤاد", Some("Karim Fouad")),
        &[Role::HotlineOperator],
        PASSWORD,
    )
    .await
    .unwrap();
    let code = people::current_code(&op.totp_secret.unwrap()).unwrap();
    sign_in(base, "bench.operator", &code).await
}

/// One page as the person gets it: 200 and its body.
async fn get(client: &reqwest::Client, url: &str, cookie: &str) -> Vec<u8> {
    let r = client
        .get(url)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{url}");
    r.bytes().await.unwrap().to_vec()
}

/// Open loop at `rate` per second for `secs`: send i at start + i/rate whatever the
/// answers before it; each latency from that scheduled time to the answer's last byte.
async fn open_loop(url: &str, cookie: &str, len: usize, rate: u64, secs: u64) -> Vec<Duration> {
    let client = http();
    for _ in 0..20 {
        get(&client, url, cookie).await;
    }
    let n = rate * secs;
    let start = Instant::now() + Duration::from_millis(100);
    let url: Arc<str> = url.into();
    let cookie: Arc<str> = cookie.into();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let at = start + Duration::from_secs_f64(i as f64 / rate as f64);
            let (client, url, cookie) = (client.clone(), url.clone(), cookie.clone());
            tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                let body = get(&client, &url, &cookie).await;
                (at.elapsed(), body.len())
            })
        })
        .collect();
    let mut lat = Vec::with_capacity(tasks.len());
    for t in tasks {
        let (d, got) = t.await.unwrap();
        // The list and the console are the same bytes each time; only a timestamp of
        // the case page could move, by a character or two.
        assert!(got.abs_diff(len) < 64, "{url}: {got} bytes, first {len}");
        lat.push(d);
    }
    lat.sort();
    lat
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// A raw axum server answering each path with the bytes the hub gave for it.
async fn raw_server(pages: Vec<(String, Vec<u8>)>) -> SocketAddr {
    let mut app = axum::Router::new();
    for (path, body) in pages {
        let body = axum::body::Bytes::from(body);
        app = app.route(
            &path,
            axum::routing::get(move || {
                let body = body.clone();
                async move { ([("content-type", "text/html; charset=utf-8")], body) }
            }),
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// The stylesheet and the fonts it names, as a first visit downloads them: their bytes.
async fn static_bytes(base: &str) -> (usize, Vec<(String, usize)>) {
    let client = http();
    let css = get(&client, &format!("{base}/static/himaya.css"), "").await;
    let text = String::from_utf8(css.clone()).unwrap();
    let mut names: Vec<&str> = text
        .split("url(\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    names.sort();
    names.dedup();
    let mut fonts = Vec::new();
    for path in names {
        let r = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], "font/woff2");
        assert_eq!(
            r.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
        fonts.push((path.to_owned(), r.bytes().await.unwrap().len()));
    }
    (css.len(), fonts)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let rate = env_num("HIMAYA_BENCH_PAGE_RATE", 50).max(1);
        let secs = env_num("HIMAYA_BENCH_PAGE_SECS", 20).max(1);
        let env = TestEnv::new(None).await;
        let hub = env.start().await;
        let ch = channel(&hub).await;
        let base = format!("http://127.0.0.1:{}", hub.web_addr.unwrap().port());
        let (caseworker, cases) = caseworker_with_cases(&env, &ch, &base).await;
        let operator = operator(&env, &base).await;

        let client = http();
        let pages = [
            ("/cases".to_owned(), caseworker.clone()),
            (format!("/cases/{}", cases[0]), caseworker.clone()),
            ("/hotline".to_owned(), operator.clone()),
        ];
        let mut bodies = Vec::new();
        for (path, cookie) in &pages {
            let body = get(&client, &format!("{base}{path}"), cookie).await;
            let html = String::from_utf8_lossy(&body);
            if path == "/cases" {
                let listed = cases.iter().filter(|c| html.contains(c.as_str())).count();
                assert_eq!(listed, CASES, "the list shows all 25 cases");
            }
            bodies.push((path.clone(), body));
        }
        let (css, fonts) = static_bytes(&base).await;
        let font_bytes: usize = fonts.iter().map(|(_, n)| n).sum();
        let raw = raw_server(bodies.clone()).await;

        let mut rows = Vec::new();
        for ((path, cookie), (_, body)) in pages.iter().zip(&bodies) {
            let hub_lat = open_loop(&format!("{base}{path}"), cookie, body.len(), rate, secs).await;
            let raw_lat =
                open_loop(&format!("http://{raw}{path}"), "", body.len(), rate, secs).await;
            rows.push((path.clone(), body.len(), hub_lat, raw_lat));
        }
        hub.stop().await;

        println!(
            "\nHimaya web pages ({rate}/s for {secs} s per page and side, open loop; \
             latency from the scheduled send to the last byte)"
        );
        println!(
            "stylesheet {css} bytes; fonts {}",
            fonts
                .iter()
                .map(|(p, n)| format!("{} {n} bytes", p.rsplit('/').next().unwrap_or(p)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "{:<14} {:>10} {:>16} {:>12} {:>12} {:>12} {:>12}",
            "page",
            "HTML bytes",
            "first visit bytes",
            "hub p50 ms",
            "hub p99 ms",
            "raw p50 ms",
            "raw p99 ms"
        );
        for (path, len, hub_lat, raw_lat) in rows {
            let shown = if path.starts_with("/cases/") {
                "/cases/<id>".to_owned()
            } else {
                path
            };
            println!(
                "{:<14} {:>10} {:>16} {:>12.1} {:>12.1} {:>12.1} {:>12.1}",
                shown,
                len,
                len + css + font_bytes,
                percentile(&hub_lat, 0.5),
                percentile(&hub_lat, 0.99),
                percentile(&raw_lat, 0.5),
                percentile(&raw_lat, 0.99),
            );
        }
    });
}
