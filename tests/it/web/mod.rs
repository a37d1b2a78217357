//! The web front in a real Chromium (headless, through chromedriver) against the real hub,
//! PostgreSQL and RabbitMQ: a school protection officer signs in, refers a child in
//! Arabic, and the referral reaches the simulated health agency; the same screens in
//! English; and the security rules over plain HTTP (CSRF, session fixation, lockout,
//! sign-out, second factor). Screenshots go to target/screenshots/ (not committed).

mod admin;
mod casework;
mod directory;
mod oidc;
mod operator_audit;

use std::process::{Child, Command, Stdio};

use std::time::Duration;

use crate::helpers::*;
use fantoccini::{ClientBuilder, Locator};
use himaya_web::people::{self, Role};

const PASSWORD: &str = "correct horse battery staple";

/// chromedriver on a port of its own, killed when the test ends.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts chromedriver on a port it chooses itself (`--port=0`), read from the line it
/// prints once it listens.
async fn driver() -> Driver {
    use std::io::BufRead;
    let mut child = Command::new("chromedriver")
        .arg("--port=0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver must be installed (scripts/test installs chromium-driver)");
    let stdout = child.stdout.take().unwrap();
    let started = tokio::task::spawn_blocking(move || {
        let mut lines = std::io::BufReader::new(stdout);
        let mut port = None;
        let mut line = String::new();
        while port.is_none() && lines.read_line(&mut line).unwrap_or(0) > 0 {
            port = line
                .trim()
                .strip_prefix("ChromeDriver was started successfully on port ")
                .and_then(|p| p.trim_end_matches('.').parse::<u16>().ok());
            line.clear();
        }
        // Read on until the process ends, so that it never writes into a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
        port
    });
    let port = tokio::time::timeout(Duration::from_secs(60), started)
        .await
        .ok()
        .and_then(|p| p.ok())
        .flatten()
        .expect("chromedriver did not say which port it listens on");
    let url = format!("http://127.0.0.1:{port}");
    let status = format!("{url}/status");
    eventually(20, "chromedriver", || async {
        http()
            .get(&status)
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
    })
    .await;
    Driver { child, url }
}

async fn browser(d: &Driver, lang: &str) -> fantoccini::Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     format!("--lang={lang}"), "--window-size=1200,1800"],
        }),
    );
    ClientBuilder::new(hyper_util_connector())
        .capabilities(caps)
        .connect(&d.url)
        .await
        .expect("a Chromium session (scripts/test installs chromium)")
}

fn hyper_util_connector() -> hyper_util::client::legacy::connect::HttpConnector {
    hyper_util::client::legacy::connect::HttpConnector::new()
}

async fn screenshot(c: &fantoccini::Client, name: &str) {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

async fn officer(env: &TestEnv, login: &str) {
    let pool = himaya_web::connect(&env.settings).await.unwrap();
    people::add(
        &pool,
        "school-cairo-alnour",
        login,
        ("منى عبد الرحمن", Some("Mona Abdelrahman")),
        &[Role::SchoolOfficer],
        PASSWORD,
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_school_officer_refers_a_child_in_arabic_and_it_reaches_health() {
    let (agency, addr) = FakeAgency::start(&[]).await;
    let env = TestEnv::new(Some(addr)).await;
    let hub = env.start().await;
    officer(&env, "mona.nour").await;
    let base = format!("http://localhost:{}", hub.web_addr.unwrap().port());
    let d = driver().await;
    let c = browser(&d, "ar").await;

    c.goto(&base).await.unwrap();
    assert!(c.current_url().await.unwrap().path().ends_with("/signin"));
    let html = c.source().await.unwrap();
    assert!(html.contains("lang=\"ar\"") && html.contains("dir=\"rtl\""));
    screenshot(&c, "signin-ar").await;
    type_in(&c, Locator::Id("login"), "mona.nour").await;
    type_in(&c, Locator::Id("password"), PASSWORD).await;
    click(&c, Locator::Css("form button[type=submit]")).await;
    c.wait()
        .for_element(Locator::LinkText("إحالة طفل"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // First without a name or a place: the hub's own validation answers, next to the
    // fields, in Arabic; nothing is sent.
    click(&c, Locator::Css("form[action='/referrals'] button")).await;
    let error = c
        .wait()
        .for_element(Locator::Id("child_name-error"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(error.contains("حقل مطلوب"), "{error}");
    assert!(c.find(Locator::Id("governorate-error")).await.is_ok());
    screenshot(&c, "referral-errors-ar").await;

    // Then filled in: a name with a bidi override is refused too, then corrected.
    let fill = |id: &'static str, text: &'static str| {
        let c = c.clone();
        async move {
            let e = c.find(Locator::Id(id)).await.unwrap();
            e.clear().await.unwrap();
            e.send_keys(text).await.unwrap();
        }
    };
    fill("child_name", "سارة محمود").await;
    fill("age", "12").await;
    click(&c, Locator::Css("#sex option[value=female]")).await;
    click(&c, Locator::Css("#governorate option[value='القاهرة']")).await;
    fill("district", "شبرا").await;
    fill("caregiver_name", "هدى علي").await;
    click(
        &c,
        Locator::Css("#caregiver_relationship option[value=mother]"),
    )
    .await;
    for css in [
        "input[name=concern][value=exploitative_labour]",
        "input[name=labour][value=denies_education_or_play]",
        "input[name=risk][value=high]",
        "input[name=service][value=health]",
        "input[name=consent_caregiver]",
        "input[name=consent_child]",
    ] {
        click(&c, Locator::Css(css)).await;
    }
    click(&c, Locator::Css("form[action='/referrals'] button")).await;
    let h1 = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::XPath("//main/h1[not(contains(., 'إحالة طفل'))]"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(h1, "تم استلام الإحالة", "{}", c.source().await.unwrap());
    screenshot(&c, "referral-accepted-ar").await;
    eventually(30, "the referral at the health agency", || async {
        (agency.count() >= 1).then_some(())
    })
    .await;
    let pool = env.pool().await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM cases.cases").await,
        1,
        "one child, once"
    );
    // The person, not a typed string, made the referral.
    let officer_ref: String =
        sqlx::query_scalar("SELECT record->'referral'->'source'->>'staff_ref' FROM cases.cases")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(officer_ref.starts_with("psn_"), "{officer_ref}");

    // The school's list, then English.
    c.goto(&format!("{base}/referrals")).await.unwrap();
    assert!(c.source().await.unwrap().contains("case_"));
    c.goto(&format!("{base}/lang/en")).await.unwrap();
    c.goto(&format!("{base}/referrals/new")).await.unwrap();
    let html = c.source().await.unwrap();
    assert!(
        html.contains("lang=\"en\"")
            && html.contains("dir=\"ltr\"")
            && html.contains("Refer a child")
    );
    screenshot(&c, "referral-form-en").await;
    c.close().await.unwrap();
    hub.stop().await;
}

/// A plain HTTP client that keeps nothing: cookies are sent as the test says.
fn http() -> reqwest::Client {
    http_builder()
        .redirect(reqwest::redirect::Policy::none())
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

/// Signs in over plain HTTP; the session cookie, or the response refusing it.
async fn sign_in(
    base: &str,
    login: &str,
    password: &str,
    planted: Option<&str>,
) -> Result<String, reqwest::Response> {
    let page = http().get(format!("{base}/signin")).send().await.unwrap();
    let pre = set_cookie(&page, "himaya_pre").unwrap();
    let mut cookie = format!("himaya_pre={pre}");
    if let Some(p) = planted {
        cookie.push_str(&format!("; himaya_session={p}"));
    }
    let r = http()
        .post(format!("{base}/signin"))
        .header("cookie", cookie)
        .form(&[
            ("pre", pre.as_str()),
            ("login", login),
            ("password", password),
            ("code", ""),
        ])
        .send()
        .await
        .unwrap();
    match set_cookie(&r, "himaya_session") {
        Some(s) if r.status().is_redirection() => Ok(s),
        _ => Err(r),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_sessions_and_sign_ins_are_guarded() {
    let env = TestEnv::new(None).await;
    let hub = env.start().await;
    officer(&env, "guarded.officer").await;
    let base = format!("http://127.0.0.1:{}", hub.web_addr.unwrap().port());

    // Every page: a strict policy, never cached, never framed.
    let r = http().get(format!("{base}/signin")).send().await.unwrap();
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert_eq!(r.headers()["cache-control"], "no-store");
    let pre = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(pre.contains("HttpOnly") && pre.contains("SameSite=Strict") && pre.contains("Secure"));

    // Session fixation: a planted session cookie is not the one given at sign-in.
    let session = sign_in(&base, "guarded.officer", PASSWORD, Some("attacker-chosen"))
        .await
        .unwrap();
    assert_ne!(session, "attacker-chosen");
    let with = |s: &str| format!("himaya_session={s}");
    let form = http()
        .get(format!("{base}/referrals/new"))
        .header("cookie", with(&session))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);
    let page = form.text().await.unwrap();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();

    // A post without the form's CSRF token is refused, whatever its cookie.
    let r = http()
        .post(format!("{base}/referrals"))
        .header("cookie", with(&session))
        .form(&[("child_name", "x"), ("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // The same form posted twice (a double click, a retried post) refers the child once.
    let filled = [
        ("csrf", csrf.as_str()),
        ("submission_id", "web_double_click_1"),
        ("child_name", "سارة محمود"),
        ("sex", "female"),
        ("age", "9"),
        ("governorate", "القاهره"),
        ("concern", "neglect"),
        ("risk", "medium"),
        ("service", "health"),
        ("consent_caregiver", "yes"),
    ];
    for _ in 0..2 {
        let r = http()
            .post(format!("{base}/referrals"))
            .header("cookie", with(&session))
            .form(&filled)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let pool = env.pool().await;
    assert_eq!(count(&pool, "SELECT count(*) FROM cases.cases").await, 1);

    // Signed out: the old cookie is worth nothing.
    let out = http()
        .post(format!("{base}/signout"))
        .header("cookie", with(&session))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert!(out.status().is_redirection());
    let r = http()
        .get(format!("{base}/referrals/new"))
        .header("cookie", with(&session))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/signin");

    // Five wrong passwords lock the account, even against the right one, in Arabic.
    for _ in 0..5 {
        assert!(sign_in(&base, "guarded.officer", "wrong password!!", None)
            .await
            .is_err());
    }
    let refused = sign_in(&base, "guarded.officer", PASSWORD, None)
        .await
        .unwrap_err();
    assert_eq!(refused.status(), 429);
    assert!(refused.text().await.unwrap().contains("الحساب مقفل مؤقتًا"));
    // An unknown login gets the same answer as a wrong password.
    let unknown = sign_in(&base, "nobody.here", PASSWORD, None)
        .await
        .unwrap_err();
    assert_eq!(unknown.status(), 401);

    // A supervisor needs the second factor.
    let pool = himaya_web::connect(&env.settings).await.unwrap();
    let sup = people::add(
        &pool,
        "mosa-cairo",
        "sup.cairo",
        ("مشرف", None),
        &[Role::Supervisor],
        PASSWORD,
    )
    .await
    .unwrap();
    assert_eq!(
        sign_in(&base, "sup.cairo", PASSWORD, None)
            .await
            .unwrap_err()
            .status(),
        401
    );
    let code = people::current_code(&sup.totp_secret.unwrap()).unwrap();
    let page = http().get(format!("{base}/signin")).send().await.unwrap();
    let pre = set_cookie(&page, "himaya_pre").unwrap();
    let r = http()
        .post(format!("{base}/signin"))
        .header("cookie", format!("himaya_pre={pre}"))
        .form(&[
            ("pre", pre.as_str()),
            ("login", "sup.cairo"),
            ("password", PASSWORD),
            ("code", code.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection() && set_cookie(&r, "himaya_session").is_some());
    // A supervisor has no referral form.
    let sup_session = set_cookie(&r, "himaya_session").unwrap();
    let r = http()
        .get(format!("{base}/referrals/new"))
        .header("cookie", with(&sup_session))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    hub.stop().await;
}

/// axe-core (from npm, fetched once into target/axe) run in the page: the serious and
/// critical violations, as "rule: nodes".
async fn serious_violations(c: &fantoccini::Client) -> Vec<String> {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/axe");
    let script = dir.join("node_modules/axe-core/axe.min.js");
    if !script.exists() {
        let ok = Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .arg("axe-core@4")
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "npm could not install axe-core (scripts/test needs npm and the registry)"
        );
    }
    let source = std::fs::read_to_string(&script).unwrap();
    c.execute(&source, vec![]).await.unwrap();
    let found = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'best-practice']})
               .then(r => done(r.violations
                   .filter(v => v.impact === 'serious' || v.impact === 'critical')
                   .map(v => v.id + ': ' + v.nodes.length)))
               .catch(e => done(['axe failed: ' + e]));",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(found).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_escalates_a_call_from_the_keyboard_and_the_screens_pass_axe() {
    let (agency, addr) = FakeAgency::start(&[]).await;
    let env = TestEnv::new(Some(addr)).await;
    let hub = env.start().await;
    let pool = himaya_web::connect(&env.settings).await.unwrap();
    let op = people::add(
        &pool,
        "hotline-16000",
        "op.karim",
        ("كريم فؤاد", None),
        &[Role::HotlineOperator],
        PASSWORD,
    )
    .await
    .unwrap();
    let base = format!("http://localhost:{}", hub.web_addr.unwrap().port());
    let d = driver().await;
    let c = browser(&d, "ar").await;
    c.goto(&base).await.unwrap();
    assert_eq!(
        serious_violations(&c).await,
        Vec::<String>::new(),
        "sign-in page"
    );
    let code = people::current_code(&op.totp_secret.unwrap()).unwrap();
    // The second factor's code, and Enter: no pointer needed.
    sign_in_browser(&c, &base, "op.karim", Some(&code)).await;
    c.wait()
        .for_element(Locator::LinkText("تصعيد بلاغ"))
        .await
        .unwrap();
    c.goto(&format!("{base}/hotline")).await.unwrap();
    assert_eq!(
        serious_violations(&c).await,
        Vec::<String>::new(),
        "the console"
    );
    // The console opens on the call reference, typed into at once.
    let active = c.active_element().await.unwrap();
    assert_eq!(
        active.attr("id").await.unwrap().as_deref(),
        Some("call_ref")
    );
    escalate_by_keyboard(&c, "CALL-7731", ("طفل غير معروف الاسم", "7"), None).await;
    let answered = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::XPath("//main/h1[not(contains(., 'تصعيد'))]"))
        .await;
    let page = c.source().await.unwrap();
    let h1 = match answered {
        Ok(e) => e.text().await.unwrap(),
        Err(e) => panic!("{e}: {page}"),
    };
    assert_eq!(h1, "تم استلام الإحالة", "{page}");
    assert!(page.contains("عاجلة"), "an escalation is urgent");
    assert_eq!(
        serious_violations(&c).await,
        Vec::<String>::new(),
        "the answer"
    );
    screenshot(&c, "hotline-escalated-ar").await;
    // Found again by its call reference.
    c.goto(&format!("{base}/hotline/calls?call_ref=CALL-7731"))
        .await
        .unwrap();
    assert!(c.source().await.unwrap().contains("case_"));
    // An urgent case, made by the operator the web proved (no consent on a call: the
    // health agency gets it only once consent or break-glass allows, and the answer said so).
    let cases = env.pool().await;
    let (priority, staff): (String, String) = sqlx::query_as(
        "SELECT priority, record->'referral'->'source'->>'staff_ref' FROM cases.cases",
    )
    .fetch_one(&cases)
    .await
    .unwrap();
    assert_eq!(priority, "urgent");
    assert!(staff.starts_with("CALL-7731/psn_"), "{staff}");
    assert!(
        page.contains("لم تُرسل بعد"),
        "the operator is told it could not go yet"
    );
    assert_eq!(agency.count(), 0);
    // The form with errors, in English, passes too.
    c.goto(&format!("{base}/lang/en")).await.unwrap();
    c.goto(&format!("{base}/hotline")).await.unwrap();
    click(&c, Locator::Css("form[action='/hotline'] button")).await;
    // The empty form is there before the answer too: wait for the answer's errors.
    c.wait()
        .for_element(Locator::Id("call_ref-error"))
        .await
        .unwrap();
    assert_eq!(
        serious_violations(&c).await,
        Vec::<String>::new(),
        "errors in English"
    );
    screenshot(&c, "hotline-errors-en").await;
    c.close().await.unwrap();
    hub.stop().await;
}

/// Clicks the element `at` finds.
async fn click(c: &fantoccini::Client, at: Locator<'_>) {
    c.find(at).await.unwrap().click().await.unwrap();
}

/// Types a minimal escalation into the operator's console, which opens on the call
/// reference: the child (name, age), Cairo, physical abuse, health, an optional account
/// of the call; Enter in the last field sends it.
async fn escalate_by_keyboard(
    c: &fantoccini::Client,
    call_ref: &str,
    (child, age): (&str, &str),
    narrative: Option<&str>,
) {
    let active = c.active_element().await.unwrap();
    active.send_keys(call_ref).await.unwrap();
    type_in(c, Locator::Id("child_name"), child).await;
    type_in(c, Locator::Id("age"), age).await;
    type_in(c, Locator::Id("governorate"), "القاهرة").await;
    type_in(
        c,
        Locator::Css("input[name=concern][value=physical_abuse]"),
        " ",
    )
    .await;
    type_in(c, Locator::Css("input[name=service][value=health]"), " ").await;
    if let Some(n) = narrative {
        type_in(c, Locator::Id("narrative"), n).await;
    }
    type_in(c, Locator::Id("district"), "\u{E007}").await;
}

/// Types `text` into the element `at` finds, as keys.
async fn type_in(c: &fantoccini::Client, at: Locator<'_>, text: &str) {
    c.find(at).await.unwrap().send_keys(text).await.unwrap();
}

/// Signs `c` in at `url` as `login` (with the second factor's `code` when the role needs
/// one), by keyboard: Enter in the last field sends the form.
/// An administrator of the case-owning ministry, made and signed in (with the second
/// factor) in a real Chromium in Arabic: the driver (kept for the test's length), the
/// browser, the web front's address and the account.
async fn admin_signed_in(
    env: &TestEnv,
    hub: &himaya::hub::Hub,
    login: &str,
    name: &str,
) -> (Driver, fantoccini::Client, String, people::Created) {
    let pool = himaya_web::connect(&env.settings).await.unwrap();
    let admin = people::add(
        &pool,
        "mosa-cairo",
        login,
        (name, None),
        &[Role::Admin],
        PASSWORD,
    )
    .await
    .unwrap();
    let secret = admin
        .totp_secret
        .clone()
        .expect("administrators have a second factor");
    let base = format!("http://localhost:{}", hub.web_addr.unwrap().port());
    let d = driver().await;
    let c = browser(&d, "ar").await;
    let code = people::current_code(&secret).unwrap();
    sign_in_browser(&c, &base, login, Some(&code)).await;
    (d, c, base, admin)
}

async fn sign_in_browser(c: &fantoccini::Client, url: &str, login: &str, code: Option<&str>) {
    c.goto(url).await.unwrap();
    type_in(c, Locator::Id("login"), login).await;
    let (password, code) = match code {
        None => (format!("{PASSWORD}\u{E007}"), None),
        Some(code) => (PASSWORD.to_owned(), Some(format!("{code}\u{E007}"))),
    };
    type_in(c, Locator::Id("password"), &password).await;
    if let Some(code) = code {
        type_in(c, Locator::Id("code"), &code).await;
    }
}

/// The caseworker `sw-1` as a person, whose staff id in mosa-cairo is their person id
/// (under supervisor `sup-1`); `case` (version 1) registered and assigned to them, as
/// `register_and_assign` does (then at version 3); and a browser signed in as them:
/// (base URL, driver, browser).
async fn caseworker_signed_in(
    env: &TestEnv,
    hub: &himaya::hub::Hub,
    ch: &tonic::transport::Channel,
    case: &str,
) -> (String, Driver, fantoccini::Client) {
    let pool = himaya_web::connect(&env.settings).await.unwrap();
    let sw = people::add(
        &pool,
        "mosa-cairo",
        "sw-1",
        ("رنا سمير", None),
        &[Role::Caseworker],
        PASSWORD,
    )
    .await
    .unwrap();
    register_and_assign_to(ch, case, "exploitative_labour", &sw.person.person_id).await;
    let base = format!("http://localhost:{}", hub.web_addr.unwrap().port());
    let d = driver().await;
    let c = browser(&d, "ar").await;
    sign_in_browser(&c, &base, "sw-1", None).await;
    c.wait()
        .for_element(Locator::LinkText("حالاتي"))
        .await
        .unwrap();
    (base, d, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caseworker_sees_their_cases_overdue_first_and_only_their_own() {
    let env = TestEnv::new(None).await;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    // Two cases of the fixture; the first assigned to sw-1 (staff of mosa-cairo).
    let mine = submit_school(&ch, "mine").await;
    let other = submit_school(&ch, "other").await;
    let (base, _driver, c) = caseworker_signed_in(&env, &hub, &ch, &mine).await;
    c.wait()
        .for_element(Locator::LinkText("حالاتي"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait().for_element(Locator::Css("table")).await.unwrap();
    let list = c.source().await.unwrap();
    assert!(
        list.contains(&mine) && !list.contains(&other),
        "only their own case"
    );
    assert_eq!(
        serious_violations(&c).await,
        Vec::<String>::new(),
        "my cases"
    );
    screenshot(&c, "caseworker-cases-ar").await;
    click(&c, Locator::Css(&format!("a[href='/cases/{mine}']"))).await;
    c.wait().for_element(Locator::Css("main ol")).await.unwrap();
    let page = c.source().await.unwrap();
    assert!(
        page.contains("مريم أحمد عبد الله"),
        "the child's name, as given"
    );
    assert!(page.contains("<bdi>مريم أحمد عبد الله</bdi>"), "isolated");
    assert!(
        page.contains("sw-lead") || page.contains("sup-1"),
        "the history names who did what"
    );
    assert_eq!(
        serious_violations(&c).await,
        Vec::<String>::new(),
        "the case page"
    );
    screenshot(&c, "case-page-ar").await;
    // The read is in the disclosure log under the caseworker's name, not only the ministry's.
    let db = env.pool().await;
    wait_count(
        &db,
        &format!("SELECT count(*) FROM audit.log WHERE case_id = '{mine}' AND recipient = 'mosa-cairo' AND decision = 'permit' AND person LIKE 'psn\\_%'"),
        1,
        20,
        "the read logged with the person",
    )
    .await;
    // Another case, even of the same ministry, is refused to this caseworker.
    c.goto(&format!("{base}/cases/{other}")).await.unwrap();
    assert!(c.source().await.unwrap().contains("ليست من حالاتك"));
    c.close().await.unwrap();
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caseworker_reviews_and_closes_a_case_and_a_stale_form_is_said_plainly() {
    let env = TestEnv::new(None).await;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let case = submit_school(&ch, "to-close").await;
    let (base, _driver, c) = caseworker_signed_in(&env, &hub, &ch, &case).await;
    c.wait()
        .for_element(Locator::LinkText("حالاتي"))
        .await
        .unwrap();
    c.goto(&format!("{base}/cases/{case}")).await.unwrap();
    // A home visit, the child seen.
    click(&c, Locator::Css("input[name=child_seen]")).await;
    type_in(&c, Locator::Id("findings"), "الطفلة بخير وعادت إلى المدرسة").await;
    click(&c, Locator::Css("form[action$='/review'] button")).await;
    c.wait()
        .for_element(Locator::XPath("//li[contains(., 'مراجعة: زيارة منزلية')]"))
        .await
        .unwrap();
    // A form made against the version before the review is refused, plainly.
    let stale = c.source().await.unwrap();
    assert!(
        stale.contains("name=\"version\" value=\"4\""),
        "the page carries the version"
    );
    fill_closure(&c).await;
    // Someone else changes the case meanwhile.
    pb_review(&ch, &case, 4).await;
    click(&c, Locator::Css("form[action$='/close'] button")).await;
    let said = c
        .wait()
        .for_element(Locator::Css("p.error"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(said.contains("تغيّرت الحالة منذ أن فتحتها"), "{said}");
    screenshot(&c, "case-changed-ar").await;
    // Reloaded, it closes for one of the five reasons.
    c.goto(&format!("{base}/cases/{case}")).await.unwrap();
    fill_closure(&c).await;
    click(&c, Locator::Css("form[action$='/close'] button")).await;
    c.wait()
        .for_element(Locator::XPath("//dd[contains(., 'مغلقة')]"))
        .await
        .unwrap();
    let status: String = sqlx::query_scalar("SELECT status FROM cases.cases WHERE case_id = $1")
        .bind(&case)
        .fetch_one(&env.pool().await)
        .await
        .unwrap();
    assert_eq!(status, "closed");
    c.close().await.unwrap();
    hub.stop().await;
}

/// The closure form filled in: need ended, parents consulted, evaluation, recommendations.
async fn fill_closure(c: &fantoccini::Client) {
    click(c, Locator::Css("#reason option[value=need_ended]")).await;
    click(c, Locator::Css("input[name=parents_consulted]")).await;
    type_in(c, Locator::Id("final_evaluation"), "تحقق الهدف").await;
    type_in(c, Locator::Id("recommendations"), "متابعة مدرسية").await;
}

/// A review by someone else (the ministry's own system), bumping the case's version.
async fn pb_review(ch: &tonic::transport::Channel, case: &str, version: i64) {
    himaya_proto::v1::case_work_client::CaseWorkClient::new(ch.clone())
        .record_review(as_agency(
            "mosa-cairo",
            himaya_proto::v1::RecordReviewRequest {
                case_id: case.into(),
                expected_version: version,
                actor: "sw-2".into(),
                kind: himaya_proto::v1::ReviewKind::Phone.into(),
                child_seen: false,
                findings: "مكالمة متابعة".into(),
            },
        ))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_sees_the_team_and_a_partner_answers_a_service_referral() {
    let (_agency, addr) = FakeAgency::start(&[]).await;
    let env = TestEnv::new(Some(addr)).await;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let case = submit_school(&ch, "team").await;
    plan_health_action(&ch, &case).await;
    let sr = refer_health_action(&ch, &case).await;
    let pool = himaya_web::connect(&env.settings).await.unwrap();
    let sup = people::add(
        &pool,
        "mosa-cairo",
        "sup-1",
        ("سامي حسن", None),
        &[Role::Supervisor],
        PASSWORD,
    )
    .await
    .unwrap();
    let amal = people::add(
        &pool,
        "health-cairo",
        "dr.amal",
        ("أمل يوسف", None),
        &[Role::AgencyStaff],
        PASSWORD,
    )
    .await
    .unwrap();
    let port = hub.web_addr.unwrap().port();

    // The supervisor, in a browser: sw-1's caseload against the cap of 25.
    let d = driver().await;
    let c = browser(&d, "ar").await;
    let code = people::current_code(&sup.totp_secret.unwrap()).unwrap();
    sign_in_browser(
        &c,
        &format!("http://localhost:{port}/"),
        "sup-1",
        Some(&code),
    )
    .await;
    c.wait()
        .for_element(Locator::Css("a[href='/team']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("main table"))
        .await
        .unwrap();
    let team = c.source().await.unwrap();
    assert!(
        team.contains("sw-1") && team.contains(">25<"),
        "the caseload against the cap"
    );
    assert_eq!(
        serious_violations(&c).await,
        Vec::<String>::new(),
        "the team page"
    );
    screenshot(&c, "supervisor-team-ar").await;
    c.close().await.unwrap();

    // The partner agency's staff member, over plain HTTP: the referral is listed and
    // accepted; the answer is the hub's, named after the person.
    let base = format!("http://127.0.0.1:{port}");
    let db = env.pool().await;
    wait_count(
        &db,
        &format!("SELECT count(*) FROM cases.service_referrals WHERE service_referral_id = '{}' AND state = 'received'", sr.service_referral_id),
        1,
        30,
        "the service referral received by the agency's system",
    )
    .await;
    let session = sign_in(&base, "dr.amal", PASSWORD, None).await.unwrap();
    let cookie = format!("himaya_session={session}");
    let page = http()
        .get(format!("{base}/service-referrals"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let page = page.text().await.unwrap();
    assert!(
        page.contains(&sr.service_referral_id),
        "listed for its agency"
    );
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let version = page
        .split("name=\"version\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let r = http()
        .post(format!("{base}/service-referrals"))
        .header("cookie", &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("id", sr.service_referral_id.as_str()),
            ("version", version.as_str()),
            ("state", "accepted"),
            ("reason", ""),
        ])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    let (state, actor): (String, String) = sqlx::query_as(
        "SELECT s.state, e.actor FROM cases.service_referrals s JOIN cases.service_referral_events e USING (service_referral_id)
          WHERE s.service_referral_id = $1 ORDER BY e.at DESC LIMIT 1",
    )
    .bind(&sr.service_referral_id)
    .fetch_one(&db)
    .await
    .unwrap();
    // Recorded under the proven person, whatever the form said.
    assert_eq!(
        (state.as_str(), actor.as_str()),
        ("accepted", amal.person.person_id.as_str())
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_map_is_public_and_holds_no_personal_data() {
    use himaya_proto::v1 as pb;
    let env = TestEnv::new(None).await;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    pb::directory_client::DirectoryClient::new(ch.clone())
        .upsert_service(as_agency(
            "health-cairo",
            pb::UpsertServiceRequest {
                service_id: String::new(),
                expected_version: 0,
                service_type: pb::ServiceType::Health.into(),
                name_ar: "عيادة السمع للأطفال".into(),
                name_en: "Children's hearing clinic".into(),
                governorate: "القاهرة".into(),
                districts: vec!["شبرا".into()],
                capacity: 10,
                languages: vec!["ar".into()],
                accepting: true,
            },
        ))
        .await
        .unwrap();
    submit_school(&ch, "not-on-the-map").await;
    let base = format!("http://127.0.0.1:{}", hub.web_addr.unwrap().port());
    // No sign-in; a misspelt governorate is the gazetteer's place all the same.
    let page = http()
        .get(format!(
            "{base}/services?governorate=%D8%A7%D9%84%D9%82%D8%A7%D9%87%D8%B1%D9%87"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(
        page.contains("عيادة السمع للأطفال") && page.contains("الصحة"),
        "{page}"
    );
    assert!(!page.contains("مريم"), "no child's data on a public page");
    let d = driver().await;
    let c = browser(&d, "ar").await;
    c.goto(&format!(
        "http://localhost:{}/services?governorate=القاهرة",
        hub.web_addr.unwrap().port()
    ))
    .await
    .unwrap();
    assert_eq!(
        serious_violations(&c).await,
        Vec::<String>::new(),
        "the service map"
    );
    screenshot(&c, "service-map-ar").await;
    c.close().await.unwrap();
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_case_id_in_a_path_is_refused_without_a_panic() {
    let env = TestEnv::new(None).await;
    let hub = env.start().await;
    let pool = himaya_web::connect(&env.settings).await.unwrap();
    people::add(
        &pool,
        "mosa-cairo",
        "sw-9",
        ("رنا", None),
        &[Role::Caseworker],
        PASSWORD,
    )
    .await
    .unwrap();
    let base = format!("http://127.0.0.1:{}", hub.web_addr.unwrap().port());
    let session = sign_in(&base, "sw-9", PASSWORD, None).await.unwrap();
    let cookie = format!("himaya_session={session}");
    let home = http()
        .get(format!("{base}/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let home = home.text().await.unwrap();
    let csrf = home
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    // A newline (and a bidi override) where a case id goes: a page, not a broken connection.
    let r = http()
        .post(format!(
            "{base}/cases/x%0D%0ALocation:%20evil%E2%80%AE/close"
        ))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("version", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().get("location").is_none());
    hub.stop().await;
}
