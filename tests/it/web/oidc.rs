//! Signing in through a ministry's own OpenID Connect provider, against a real, certified
//! provider: panva's `oidc-provider` from npm (installed once into target/oidc-provider,
//! as axe-core is into target/axe), started by `web/oidc-provider.cjs` on a free loopback
//! port with the web front as its one client (PKCE required). A real Chromium goes from
//! Himaya's sign-in page through the provider's own login and consent pages and back;
//! plain HTTP shows a wrong, replayed or foreign answer refused without a session, and an
//! unreachable provider leaving the web front and local sign-in working.

use super::*;

use std::io::BufRead;
use std::path::PathBuf;
use std::process::Child;

/// Pinned: the test installs exactly this, and only when it is not there yet.
const OIDC_PROVIDER_VERSION: &str = "9.13.3";
const CLIENT_ID: &str = "himaya-web";
const CLIENT_SECRET: &str = "test-only-client-secret-0123456789abcdef";

/// The node_modules folder holding oidc-provider, installed from npm the first time
/// (later runs need no network). One install at a time across this binary's tests.
fn oidc_provider_modules() -> PathBuf {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/oidc-provider");
    let installed = |dir: &PathBuf| {
        std::fs::read_to_string(dir.join("node_modules/oidc-provider/package.json"))
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .is_some_and(|p| p["version"] == OIDC_PROVIDER_VERSION)
    };
    if !installed(&dir) {
        let ok = Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .arg(format!("oidc-provider@{OIDC_PROVIDER_VERSION}"))
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok && installed(&dir),
            "npm could not install oidc-provider (scripts/test needs node, npm and the registry)"
        );
    }
    dir.join("node_modules")
}

/// The provider's node process, killed when the test ends.
struct Provider {
    child: Child,
    issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts oidc-provider with the web front at `web_port` as its client and these
/// accounts (by the login typed on the provider's page: their claims).
async fn provider(web_port: u16, accounts: serde_json::Value, name: &str) -> Provider {
    let modules = oidc_provider_modules();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let log_path = root.join(format!("target/oidc-provider/{name}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let config = serde_json::json!({
        "modules": modules,
        "client": {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uri": format!("http://localhost:{web_port}/signin/oidc/callback"),
        },
        "accounts": accounts,
    });
    let mut child = Command::new("node")
        .arg(root.join("tests/it/web/oidc-provider.cjs"))
        .arg(config.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("node must be installed (scripts/test installs nodejs and npm)");
    let stdout = child.stdout.take().unwrap();
    let first_line = tokio::task::spawn_blocking(move || {
        let mut lines = std::io::BufReader::new(stdout);
        let mut line = String::new();
        lines.read_line(&mut line).ok();
        // Read on until the process ends, so that it never writes into a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
        line
    });
    let line = tokio::time::timeout(Duration::from_secs(30), first_line)
        .await
        .ok()
        .and_then(|l| l.ok())
        .unwrap_or_default();
    let mut p = Provider {
        child,
        issuer: String::new(),
    };
    match serde_json::from_str::<serde_json::Value>(&line) {
        Ok(v) if v["issuer"].is_string() => p.issuer = v["issuer"].as_str().unwrap().to_owned(),
        _ => panic!(
            "oidc-provider did not start: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        ),
    }
    p
}

/// `[web.oidc]` for a provider at `issuer`, for mosa-cairo's people: the login is
/// `preferred_username`, roles come from `groups`.
fn oidc_settings(env: &mut TestEnv, web_port: u16, issuer: &str) {
    env.settings.web.listen = format!("127.0.0.1:{web_port}").parse().unwrap();
    env.settings.web.oidc = Some(
        serde_json::from_value(serde_json::json!({
            "issuer": issuer,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_url": format!("http://localhost:{web_port}/signin/oidc/callback"),
            "scopes": ["openid", "profile", "groups"],
            "agency_id": "mosa-cairo",
            "display_name_ar": "وزارة التضامن",
            "display_name_en": "the Ministry of Social Solidarity",
            "login_claim": "preferred_username",
            "roles_claim": "groups",
            "timeout_secs": 5,
            "roles": [
                {"value": "Himaya-Caseworkers", "role": "caseworker"},
                {"value": "Himaya-Supervisors", "role": "supervisor"},
                {"value": "Himaya-Supervisors", "role": "caseworker"},
            ],
        }))
        .unwrap(),
    );
    env.settings.validate().unwrap();
}

fn accounts() -> serde_json::Value {
    serde_json::json!({
        "emp-4711": {"sub": "emp-4711", "preferred_username": "rana.samir",
                     "name": "رنا سمير", "groups": ["Himaya-Caseworkers", "Printing"]},
        "emp-0002": {"sub": "emp-0002", "preferred_username": "sup.cairo",
                     "name": "سامي حسن", "groups": ["Himaya-Supervisors"]},
        "emp-0003": {"sub": "emp-0003", "preferred_username": "clerk.cairo",
                     "name": "هالة فؤاد", "groups": ["Printing", "himaya-caseworkers"]},
    })
}

/// From Himaya's sign-in page at `base` through the provider's own login (as `login`,
/// any password) and consent pages, back to Himaya.
async fn through_the_provider(c: &fantoccini::Client, base: &str, login: &str, shot: &str) {
    c.goto(&format!("{base}/signin")).await.unwrap();
    click(c, Locator::Css("a[href='/signin/oidc']")).await;
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("input[name=login]"))
        .await
        .unwrap();
    screenshot(c, &format!("{shot}-provider-login")).await;
    type_in(c, Locator::Css("input[name=login]"), login).await;
    type_in(c, Locator::Css("input[name=password]"), "any password").await;
    click(c, Locator::Css("button[type=submit]")).await;
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("input[name=prompt][value=consent]"))
        .await
        .unwrap();
    screenshot(c, &format!("{shot}-provider-consent")).await;
    click(c, Locator::Css("button[type=submit]")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caseworker_signs_in_through_the_ministry_provider_in_a_real_browser() {
    let (reserved, web_port) = reserved_port();
    let idp = provider(web_port, accounts(), "browser").await;
    let mut env = TestEnv::new(None).await;
    oidc_settings(&mut env, web_port, &idp.issuer);
    let hub = env.start().await;
    drop(reserved);
    let base = format!("http://localhost:{web_port}");
    let pool = env.pool().await;
    // A supervisor made here before, with a password and a second factor: their ministry
    // account takes over this person (same person id) by its login.
    let web_pool = himaya_web::connect(&env.settings).await.unwrap();
    let sup = people::add(
        &web_pool,
        "mosa-cairo",
        "sup.cairo",
        ("سامي حسن", None),
        &[Role::Supervisor],
        PASSWORD,
    )
    .await
    .unwrap();
    let d = driver().await;

    // 1. A caseworker the hub has never seen: made, with the mapped role, and signed in.
    let c = browser(&d, "ar").await;
    c.goto(&format!("{base}/signin")).await.unwrap();
    let link = c
        .find(Locator::Css("a[href='/signin/oidc']"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        link.contains("الدخول عبر") && link.contains("وزارة التضامن"),
        "{link}"
    );
    screenshot(&c, "oidc-signin-ar").await;
    let violations = serious_violations(&c).await;
    assert!(violations.is_empty(), "{violations:?}");
    through_the_provider(&c, &base, "emp-4711", "oidc-caseworker").await;
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::LinkText("حالاتي"))
        .await
        .unwrap();
    let url = c.current_url().await.unwrap();
    assert_eq!(
        (url.host_str(), url.port(), url.path()),
        (Some("localhost"), Some(web_port), "/")
    );
    assert!(c.source().await.unwrap().contains("رنا سمير"));
    screenshot(&c, "oidc-caseworker-signed-in-ar").await;
    let (agency, roles, subject): (String, Vec<String>, Option<String>) = sqlx::query_as(
        "SELECT agency_id, roles, oidc_subject FROM web.persons WHERE login = 'rana.samir'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(agency, "mosa-cairo");
    assert_eq!(roles, ["caseworker"], "Printing maps to nothing");
    assert_eq!(subject.as_deref(), Some("emp-4711"));
    c.close().await.unwrap();

    // 2. The supervisor: the same person as before, roles from the ministry's groups.
    let c = browser(&d, "ar").await;
    through_the_provider(&c, &base, "emp-0002", "oidc-supervisor").await;
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::LinkText("الفريق: الأعباء والتصعيدات"))
        .await
        .unwrap();
    let (person, roles): (String, Vec<String>) =
        sqlx::query_as("SELECT person_id, roles FROM web.persons WHERE oidc_subject = 'emp-0002'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(person, sup.person.person_id, "taken over, not made again");
    assert_eq!(roles, ["caseworker", "supervisor"]);
    c.close().await.unwrap();

    // 3. In English, an account whose groups map to no role: refused, in English, with
    // what to do; no person made, no session.
    let c = browser(&d, "en").await;
    c.goto(&format!("{base}/lang/en")).await.unwrap();
    through_the_provider(&c, &base, "emp-0003", "oidc-no-role").await;
    let alert = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("p.error[role=alert]"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(alert, "Your ministry's account has no role in Himaya.");
    let html = c.source().await.unwrap();
    assert!(html.contains("account administrator") && !html.contains("Printing"));
    screenshot(&c, "oidc-no-role-en").await;
    assert!(c.get_named_cookie("himaya_session").await.is_err());
    c.close().await.unwrap();

    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM web.persons WHERE login = 'clerk.cairo'"
        )
        .await,
        0
    );
    let outcomes: Vec<String> = sqlx::query_scalar("SELECT outcome FROM web.signins ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        ["oidc_signed_in", "oidc_signed_in", "oidc_no_role"]
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM web.oidc_starts").await,
        0,
        "every started sign-in was used once"
    );
    hub.stop().await;
}

/// The start of a sign-in over plain HTTP: (the state sent to the provider, the binding
/// cookie).
async fn start(base: &str, issuer: &str) -> (String, String) {
    let r = http()
        .get(format!("{base}/signin/oidc"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let to = reqwest::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert!(to.as_str().starts_with(issuer), "{to}");
    let q: std::collections::HashMap<String, String> = to.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["response_type"], "code");
    assert!(q["nonce"].len() >= 32 && q["code_challenge"].len() >= 43);
    let binding = set_cookie(&r, "himaya_oidc").unwrap();
    (q["state"].clone(), binding)
}

async fn callback(base: &str, query: &str, binding: Option<&str>) -> reqwest::Response {
    let mut req = http().get(format!("{base}/signin/oidc/callback?{query}"));
    if let Some(b) = binding {
        req = req.header("cookie", format!("himaya_oidc={b}"));
    }
    req.send().await.unwrap()
}

/// Refused: a 4xx or 5xx page in Arabic saying `what`, and no session.
async fn refused(r: reqwest::Response, status: u16, what: &str) {
    assert_eq!(r.status(), status);
    assert!(set_cookie(&r, "himaya_session").is_none());
    let html = r.text().await.unwrap();
    assert!(
        html.contains("lang=\"ar\"") && html.contains(what),
        "{html}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_replayed_or_foreign_oidc_answer_is_refused_without_a_session() {
    let (reserved, web_port) = reserved_port();
    let idp = provider(web_port, accounts(), "http").await;
    let mut env = TestEnv::new(None).await;
    oidc_settings(&mut env, web_port, &idp.issuer);
    let hub = env.start().await;
    drop(reserved);
    let base = format!("http://127.0.0.1:{web_port}");
    let pool = env.pool().await;
    let not_here = "لم يبدأ طلب الدخول هذا من هذا المتصفح";

    // The sign-in page offers the ministry as a plain link.
    let page = http().get(format!("{base}/signin")).send().await.unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains("href=\"/signin/oidc\"") && !html.contains("<script"));

    // A state the web front never gave: refused.
    let (state, binding) = start(&base, &idp.issuer).await;
    let r = callback(&base, "code=abc&state=never-given", Some(&binding)).await;
    refused(r, 400, not_here).await;
    // The right state from another browser (without the binding cookie): refused, and
    // used up: the same answer with the cookie is then a replay, refused as well.
    let answer = format!("code=abc&state={state}");
    refused(callback(&base, &answer, None).await, 400, not_here).await;
    refused(
        callback(&base, &answer, Some(&binding)).await,
        400,
        not_here,
    )
    .await;

    // The provider's refusal: said plainly, its own words never shown.
    let (state, binding) = start(&base, &idp.issuer).await;
    let r = callback(
        &base,
        &format!("error=access_denied&error_description=%3Cb%3Eno%3C%2Fb%3E&state={state}"),
        Some(&binding),
    )
    .await;
    let status = r.status();
    let html = r.text().await.unwrap();
    assert_eq!(status, 403);
    assert!(html.contains("ألغيت عملية الدخول لدى الجهة أو رُفضت") && !html.contains("<b>no"));

    // A code the provider never issued: the real provider refuses the exchange.
    let (state, binding) = start(&base, &idp.issuer).await;
    let r = callback(&base, &format!("code=forged&state={state}"), Some(&binding)).await;
    refused(r, 502, "لم تُجب خدمة الدخول لدى الجهة كما ينبغي").await;

    // A bloated or repeated query is not read.
    let r = callback(
        &base,
        &format!("state={}", "a".repeat(5000)),
        Some(&binding),
    )
    .await;
    refused(r, 400, not_here).await;
    let r = callback(&base, "state=a&state=b", Some(&binding)).await;
    refused(r, 400, not_here).await;

    let outcomes: Vec<String> = sqlx::query_scalar("SELECT outcome FROM web.signins ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [
            "oidc_unknown_state",
            "oidc_other_browser",
            "oidc_unknown_state",
            "oidc_provider_refused",
            "oidc_code_refused",
            "oidc_bad_answer",
            "oidc_bad_answer",
        ]
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM web.sessions").await, 0);
    assert_eq!(count(&pool, "SELECT count(*) FROM web.persons").await, 0);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_oidc_provider_leaves_the_web_front_and_local_sign_in_working() {
    let (reserved, web_port) = reserved_port();
    // Nothing listens there.
    let (_nobody, nowhere_port) = reserved_port();
    let nowhere = format!("http://127.0.0.1:{nowhere_port}");
    let mut env = TestEnv::new(None).await;
    oidc_settings(&mut env, web_port, &nowhere);
    let hub = env.start().await;
    drop(reserved);
    officer(&env, "local.officer").await;
    let base = format!("http://127.0.0.1:{web_port}");

    let notice = eventually(
        15,
        "the sign-in page to say the ministry is unavailable",
        || async {
            let html = http()
                .get(format!("{base}/signin"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            html.contains("غير متاح الآن").then_some(html)
        },
    )
    .await;
    assert!(notice.contains("وزارة التضامن") && !notice.contains("href=\"/signin/oidc\""));
    let r = http()
        .get(format!("{base}/signin/oidc"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("غير متاح الآن"));
    // In English too.
    let en = http()
        .get(format!("{base}/signin"))
        .header("cookie", "himaya_lang=en")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(en.contains("is unavailable right now"), "{en}");
    // Local sign-in is untouched.
    sign_in(&base, "local.officer", PASSWORD, None)
        .await
        .unwrap();
    hub.stop().await;
}
