//! The caseworker's and the supervisor's screens in a real Chromium, against the real hub:
//! a case worked from the acceptance decision to its reopening (the health action reaching
//! the simulated health agency), the case page in English with its history in words, a
//! supervisor reviewing a break-glass opening beside the missed deadlines and the area's
//! indicators, and an assignment to a full caseworker refused next to the field, naming
//! who has room. Staff ids are person ids (`psn_…`).

use super::*;

use fantoccini::Client;
use himaya_proto::v1 as pb;
use himaya_web::people::Created;
use pb::case_work_client::CaseWorkClient;
use tonic::transport::Channel;

const MINISTRY: &str = "mosa-cairo";

/// A person of the ministry, with the staff record that makes them one of its staff: the
/// staff id is the person's id.
async fn staff_person(
    env: &TestEnv,
    ch: &Channel,
    login: &str,
    names: (&str, Option<&str>),
    role: Role,
    supervisor: Option<&str>,
) -> Created {
    let pool = himaya_web::connect(&env.settings).await.unwrap();
    let created = people::add(&pool, MINISTRY, login, names, &[role], PASSWORD)
        .await
        .unwrap();
    pb::staff_client::StaffClient::new(ch.clone())
        .add_staff(as_agency(
            MINISTRY,
            pb::AddStaffRequest {
                staff_id: created.person.person_id.clone(),
                // The person's role names the staff role (caseworker or supervisor).
                role: himaya_proto::convert::wire::<himaya_record::lifecycle::StaffRole>(
                    role.as_str(),
                ),
                supervisor_id: supervisor.map(str::to_owned),
            },
        ))
        .await
        .unwrap();
    created
}

/// The ministry's own system registers `case` (at version 1).
async fn register(ch: &Channel, case: &str) {
    CaseWorkClient::new(ch.clone())
        .decide_acceptance(as_agency(MINISTRY, crate::helpers::register(case, 1)))
        .await
        .unwrap();
}

/// The ministry's own system assigns `case` (at `version`) to `caseworker`.
async fn assign(ch: &Channel, case: &str, version: i64, caseworker: &str) {
    CaseWorkClient::new(ch.clone())
        .assign_case(as_agency(
            MINISTRY,
            pb::AssignCaseRequest {
                case_id: case.into(),
                expected_version: version,
                actor: "sup-system".into(),
                caseworker_id: caseworker.into(),
            },
        ))
        .await
        .unwrap();
}

/// A browser signed in as the supervisor `login` (with the second factor), in Arabic.
async fn supervisor_browser(d: &Driver, base: &str, login: &str, who: &Created) -> Client {
    let c = browser(d, "ar").await;
    let code = people::current_code(who.totp_secret.as_deref().unwrap()).unwrap();
    sign_in_browser(&c, base, login, Some(&code)).await;
    c.wait()
        .for_element(Locator::Css("a[href='/team']"))
        .await
        .unwrap();
    c
}

/// A browser signed in as the caseworker `login`, in Arabic.
async fn caseworker_browser(d: &Driver, base: &str, login: &str) -> Client {
    let c = browser(d, "ar").await;
    sign_in_browser(&c, base, login, None).await;
    c.wait()
        .for_element(Locator::LinkText("حالاتي"))
        .await
        .unwrap();
    c
}

/// Waits for the page's confirmation saying `text`.
async fn confirmed(c: &Client, text: &str) {
    let xpath = format!("//p[contains(@class, 'confirm') and contains(., '{text}')]");
    if c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::XPath(&xpath))
        .await
        .is_err()
    {
        panic!("no confirmation “{text}”: {}", c.source().await.unwrap());
    }
}

/// Waits for the problem shown next to the element `id`; its text.
async fn problem_at(c: &Client, id: &str) -> String {
    let found = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Id(&format!("{id}-error")))
        .await;
    match found {
        Ok(e) => e.text().await.unwrap(),
        Err(_) => panic!("no problem next to #{id}: {}", c.source().await.unwrap()),
    }
}

/// Sets a date input (typing into one depends on the browser's locale).
async fn set_date(c: &Client, id: &str, date: &str) {
    c.execute(
        "document.getElementById(arguments[0]).value = arguments[1];",
        vec![serde_json::json!(id), serde_json::json!(date)],
    )
    .await
    .unwrap();
}

fn in_days(n: i64) -> String {
    (chrono::Utc::now().date_naive() + chrono::Duration::days(n))
        .format("%Y-%m-%d")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_is_worked_from_decision_to_reopening_in_arabic_and_its_health_action_reaches_the_agency(
) {
    let (agency, addr) = FakeAgency::start(&[]).await;
    let mut env = TestEnv::new(Some(addr)).await;
    // This deployment writes its Arabic pages in Arabic-Indic digits.
    env.settings.web.digits = himaya_settings::Digits::ArabicIndic;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let sup = staff_person(
        &env,
        &ch,
        "sup.huda",
        ("هدى كمال", Some("Huda Kamal")),
        Role::Supervisor,
        None,
    )
    .await;
    let cw = staff_person(
        &env,
        &ch,
        "cw.rana",
        ("رنا سمير", Some("Rana Samir")),
        Role::Caseworker,
        Some(&sup.person.person_id),
    )
    .await;
    let cw_id = cw.person.person_id.clone();
    let case = submit_school(&ch, "worked-in-the-browser").await;
    let base = format!("http://localhost:{}", hub.web_addr.unwrap().port());
    let d = driver().await;

    // The supervisor takes the case from the queue: the decision (first without a
    // criterion: the hub's words, in Arabic, next to the criteria), then the assignment.
    let s = supervisor_browser(&d, &base, "sup.huda", &sup).await;
    s.goto(&format!("{base}/cases/{case}")).await.unwrap();
    click(&s, Locator::Css("form[action$='/decide'] button")).await;
    let said = problem_at(&s, "criteria").await;
    assert!(said.contains("واحد على الأقل"), "{said}");
    click(
        &s,
        Locator::Css("input[name=criteria][value=exploitative_labour]"),
    )
    .await;
    click(&s, Locator::Css("form[action$='/decide'] button")).await;
    confirmed(&s, "سُجّل قرار القبول").await;
    click(
        &s,
        Locator::Css(&format!("#caseworker option[value='{cw_id}']")),
    )
    .await;
    click(&s, Locator::Css("form[action$='/assign'] button")).await;
    confirmed(&s, "أُسندت الحالة").await;
    s.close().await.unwrap();

    // The caseworker works it.
    let c = caseworker_browser(&d, &base, "cw.rana").await;
    c.goto(&format!("{base}/cases/{case}")).await.unwrap();
    // An assessment without a need is refused next to the needs.
    click(&c, Locator::Css("form[action$='/assess'] button")).await;
    let said = problem_at(&c, "needs").await;
    assert!(said.contains("واحد على الأقل"), "{said}");
    screenshot(&c, "case-assessment-refused-ar").await;
    assert_eq!(
        serious_violations(&c).await,
        Vec::<String>::new(),
        "the case page with a refused form"
    );
    type_in(
        &c,
        Locator::Id("risk_factors"),
        "تعمل في ورشة\nتغيب عن المدرسة",
    )
    .await;
    type_in(&c, Locator::Id("protective_factors"), "أم داعمة").await;
    type_in(&c, Locator::Id("need_health"), "فحص السمع").await;
    type_in(&c, Locator::Id("need_education"), "العودة إلى المدرسة").await;
    click(&c, Locator::Css("form[action$='/assess'] button")).await;
    confirmed(&c, "سُجّل التقييم الشامل").await;

    // The plan: a health action for the health directorate, a follow-up of the ministry's.
    type_in(&c, Locator::Id("g0_desc"), "صحة الطفلة وعودتها إلى المدرسة").await;
    type_in(&c, Locator::Id("g0_a0_desc"), "فحص السمع").await;
    click(
        &c,
        Locator::Css("#g0_a0_agency option[value='health-cairo']"),
    )
    .await;
    click(&c, Locator::Css("#g0_a0_service option[value=health]")).await;
    set_date(&c, "g0_a0_due", &in_days(14)).await;
    type_in(&c, Locator::Id("g0_a1_desc"), "متابعة مدرسية").await;
    click(&c, Locator::Css("#g0_a1_agency option[value='mosa-cairo']")).await;
    click(
        &c,
        Locator::Css("#g0_a1_service option[value=case_management]"),
    )
    .await;
    set_date(&c, "g0_a1_due", &in_days(30)).await;
    click(&c, Locator::Css("form[action$='/plan'] button")).await;
    confirmed(&c, "حُفظت خطة الحماية").await;
    dates_in_arabic_indic_digits(&c, &case).await;

    // The health action referred: without what the family can pay, refused next to it.
    click(&c, Locator::Css("#do-refer-a1 button")).await;
    let said = problem_at(&c, "ability_to_pay-a1").await;
    assert!(!said.is_empty());
    click(&c, Locator::Css("#ability_to_pay-a1 option[value=none]")).await;
    click(&c, Locator::Css("#do-refer-a1 button")).await;
    confirmed(&c, "أُرسلت إحالة الخدمة").await;
    let db = env.pool().await;
    let srv: String = sqlx::query_scalar(
        "SELECT service_referral_id FROM cases.service_referrals WHERE case_id = $1",
    )
    .bind(&case)
    .fetch_one(&db)
    .await
    .unwrap();
    let seen = eventually(30, "the service referral at the health agency", || {
        let (agency, srv) = (agency.clone(), srv.clone());
        async move {
            agency
                .requests()
                .into_iter()
                .find(|s| s.body["referral_id"] == srv.as_str())
        }
    })
    .await;
    assert_eq!(seen.body["service_type"], "health");
    wait_count(
        &db,
        &format!("SELECT count(*) FROM cases.service_referrals WHERE service_referral_id = '{srv}' AND state = 'received'"),
        1,
        30,
        "the service referral received",
    )
    .await;
    // The ministry's own action is done; a review sees the child.
    click(&c, Locator::Css("#do-complete-a2 button")).await;
    confirmed(&c, "سُجّل الإجراء منجزًا").await;
    click(&c, Locator::Css("input[name=child_seen]")).await;
    type_in(&c, Locator::Id("findings"), "الطفلة بخير وعادت إلى المدرسة").await;
    click(&c, Locator::Css("form[action$='/review'] button")).await;
    confirmed(&c, "حُفظت المراجعة").await;
    let page = c.source().await.unwrap();
    assert!(page.contains(&srv), "the service referral is listed");
    assert!(
        page.contains("استلمتها الجهة"),
        "its FHIR Task state, in words"
    );
    assert!(
        page.contains("تغطية كاملة"),
        "who pays: high risk and a family that cannot pay"
    );
    assert!(page.contains("cns_demo"), "the consents");
    assert!(
        page.contains("<li dir=\"auto\">تعمل في ورشة</li>"),
        "the assessment"
    );
    assert_eq!(
        serious_violations(&c).await,
        Vec::<String>::new(),
        "the worked case page"
    );
    screenshot(&c, "case-worked-ar").await;

    // Closed for one of the five reasons, then reopened.
    fill_closure(&c).await;
    click(&c, Locator::Css("form[action$='/close'] button")).await;
    confirmed(&c, "أُغلقت الحالة").await;
    assert!(c
        .find(Locator::Css("form[action$='/review']"))
        .await
        .is_err());
    type_in(
        &c,
        Locator::Id("reopen_reason"),
        "عادت الطفلة إلى العمل في الورشة",
    )
    .await;
    click(&c, Locator::Css("form[action$='/reopen'] button")).await;
    confirmed(&c, "أُعيد فتح الحالة").await;
    let page = c.source().await.unwrap();
    assert!(page.contains("أُعيد فتحها"), "the history, in Arabic");
    assert!(page.contains("<bdi>عادت الطفلة إلى العمل في الورشة</bdi>"));
    assert!(!page.contains("reopened:") && !page.contains("plan set: "));
    c.execute(
        "document.querySelector('ol.history').scrollIntoView();",
        vec![],
    )
    .await
    .unwrap();
    screenshot(&c, "case-reopened-history-ar").await;
    let (status, actor): (String, String) = sqlx::query_as(
        "SELECT c.status, h.actor FROM cases.cases c JOIN cases.case_history h USING (case_id)
          WHERE c.case_id = $1 AND h.change LIKE 'reopened:%'",
    )
    .bind(&case)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(
        (status.as_str(), actor.as_str()),
        ("registered", cw_id.as_str())
    );
    c.close().await.unwrap();
    hub.stop().await;
}

/// The case page of a deployment set to Arabic-Indic digits: its dates read with Arabic
/// month names and those digits, their machine-readable forms and the ids as they are.
async fn dates_in_arabic_indic_digits(c: &Client, case: &str) {
    const MONTHS: [&str; 12] = [
        "يناير",
        "فبراير",
        "مارس",
        "أبريل",
        "مايو",
        "يونيو",
        "يوليو",
        "أغسطس",
        "سبتمبر",
        "أكتوبر",
        "نوفمبر",
        "ديسمبر",
    ];
    let indic = |s: &str| s.chars().any(|ch| ('٠'..='٩').contains(&ch));
    let latin = |s: &str| s.chars().any(|ch| ch.is_ascii_digit());
    let mut seen = 0;
    for e in c.find_all(Locator::Css("ol.history time")).await.unwrap() {
        let text = e.text().await.unwrap();
        let datetime = e.attr("datetime").await.unwrap().unwrap_or_default();
        assert!(
            MONTHS.iter().any(|m| text.contains(m)) && indic(&text) && !latin(&text),
            "a history time in Arabic words and digits: {text}"
        );
        assert!(
            chrono::DateTime::parse_from_rfc3339(&datetime).is_ok(),
            "its datetime stays RFC 3339: {datetime}"
        );
        seen += 1;
    }
    assert!(seen >= 4, "the history's times: {seen}");
    // The plan's due dates: the day in words, the attribute and the date input ISO.
    let due = in_days(14);
    let shown = c
        .find(Locator::Css(&format!("table time[datetime='{due}']")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        MONTHS.iter().any(|m| shown.contains(m)) && indic(&shown) && !latin(&shown),
        "the due date {due}: {shown}"
    );
    let min = c
        .find(Locator::Id("g0_a0_due"))
        .await
        .unwrap()
        .attr("min")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(
        chrono::NaiveDate::parse_from_str(&min, "%Y-%m-%d").is_ok(),
        "a date input's min stays ISO: {min}"
    );
    let legend = c
        .find(Locator::Css("fieldset#g0 > legend"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(legend, "الهدف ١");
    // The case id (Latin hex) is as it is, in the heading and in the forms' addresses.
    assert!(case.is_ascii() && !indic(case), "{case}");
    let heading = c
        .find(Locator::Css("h1 code"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(heading, case);
    let page = c.source().await.unwrap();
    assert!(page.contains(&format!("action=\"/cases/{case}/plan\"")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_case_page_reads_in_english_with_its_history_in_words() {
    let (_agency, addr) = FakeAgency::start(&[]).await;
    let env = TestEnv::new(Some(addr)).await;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let sup = staff_person(
        &env,
        &ch,
        "sup.en",
        ("هدى كمال", None),
        Role::Supervisor,
        None,
    )
    .await;
    let cw = staff_person(
        &env,
        &ch,
        "cw.en",
        ("رنا سمير", Some("Rana Samir")),
        Role::Caseworker,
        Some(&sup.person.person_id),
    )
    .await;
    let cw_id = cw.person.person_id.clone();
    let case = submit_school(&ch, "read-in-english").await;
    register(&ch, &case).await;
    assign(&ch, &case, 2, &cw_id).await;
    let mut work = CaseWorkClient::new(ch.clone());
    work.record_assessment(as_agency(
        MINISTRY,
        pb::RecordAssessmentRequest {
            case_id: case.clone(),
            expected_version: 3,
            actor: "sw-system".into(),
            risk_factors: vec!["عمل في ورشة".into()],
            protective_factors: vec![],
            needs: vec![pb::NeedInput {
                domain: pb::NeedDomain::Health.into(),
                description: "فحص السمع".into(),
            }],
        },
    ))
    .await
    .unwrap();
    work.set_plan(as_agency(
        MINISTRY,
        pb::SetPlanRequest {
            case_id: case.clone(),
            expected_version: 4,
            actor: "sw-system".into(),
            goals: vec![pb::GoalInput {
                description: "الصحة".into(),
                actions: vec![pb::ActionInput {
                    description: "فحص".into(),
                    responsible_agency: "health-cairo".into(),
                    service_type: pb::ServiceType::Health.into(),
                    due_on: in_days(7),
                }],
            }],
        },
    ))
    .await
    .unwrap();
    pb::service_referrals_client::ServiceReferralsClient::new(ch.clone())
        .create_service_referral(as_agency(
            MINISTRY,
            pb::CreateServiceReferralRequest {
                case_id: case.clone(),
                action_id: "a1".into(),
                actor: "sw-system".into(),
                ability_to_pay: pb::AbilityToPay::Part.into(),
            },
        ))
        .await
        .unwrap();
    let base = format!("http://localhost:{}", hub.web_addr.unwrap().port());
    let d = driver().await;
    let c = caseworker_browser(&d, &base, "cw.en").await;
    c.goto(&format!("{base}/lang/en")).await.unwrap();
    c.goto(&format!("{base}/cases/{case}")).await.unwrap();
    c.wait()
        .for_element(Locator::Css("ol.history"))
        .await
        .unwrap();
    let page = c.source().await.unwrap();
    assert!(page.contains("lang=\"en\"") && page.contains("dir=\"ltr\""));
    for words in [
        "Opened by referral",
        "Acceptance decision: Registered for case management",
        "Assigned to <bdi>Rana Samir</bdi>",
        "Comprehensive assessment recorded",
        "Protection plan set",
        "Service referral",
        "Cairo Health Directorate",
        "Consents and legal bases",
        "partly covered",
    ] {
        assert!(page.contains(words), "{words}: {page}");
    }
    for code in [
        "assigned: ",
        "plan set: 1",
        ">assessed<",
        "service referral srv_",
    ] {
        assert!(!page.contains(code), "{code} is not shown as a code");
    }
    assert_eq!(
        serious_violations(&c).await,
        Vec::<String>::new(),
        "the case page in English"
    );
    screenshot(&c, "case-page-en").await;
    c.execute(
        "document.querySelector('ol.history').scrollIntoView();",
        vec![],
    )
    .await
    .unwrap();
    screenshot(&c, "case-history-en").await;
    c.close().await.unwrap();
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_reviews_a_break_glass_opening_beside_the_missed_deadlines() {
    let mut env = TestEnv::new(None).await;
    // The fixture is high risk: assigned within a second, or the deadline is missed.
    env.settings.lifecycle.deadlines.high.assign_within_secs = 1;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let sup = staff_person(
        &env,
        &ch,
        "sup.bg",
        ("سامي حسن", None),
        Role::Supervisor,
        None,
    )
    .await;
    let case = submit_school(&ch, "broken-glass").await;
    register(&ch, &case).await;
    let opened = pb::cases_client::CasesClient::new(ch.clone())
        .break_glass(as_agency(
            "hotline-16000",
            pb::BreakGlassRequest {
                case_id: case.clone(),
                reason_code: "imminent_danger".into(),
                justification: "المتصل يقول إن الطفلة في خطر الآن".into(),
                actor: "op-44".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let bkg = opened.break_glass_id.unwrap();
    let db = env.pool().await;
    wait_count(
        &db,
        &format!("SELECT count(*) FROM cases.escalations WHERE case_id = '{case}' AND kind = 'assignment'"),
        1,
        30,
        "the missed assignment escalated",
    )
    .await;
    let base = format!("http://localhost:{}", hub.web_addr.unwrap().port());
    let d = driver().await;
    let c = supervisor_browser(&d, &base, "sup.bg", &sup).await;
    click(&c, Locator::Css("a[href='/team']")).await;
    c.wait()
        .for_element(Locator::Css(&format!(
            "form[action='/team/break-glass/{bkg}']"
        )))
        .await
        .unwrap();
    let page = c.source().await.unwrap();
    assert!(page.contains("خطر وشيك"), "the reason, in words");
    assert!(
        page.contains("المتصل يقول إن الطفلة في خطر الآن"),
        "the justification"
    );
    assert!(
        page.contains("المواعيد الفائتة") && page.contains("إسناد الحالة إلى أخصائي"),
        "the missed deadline, in words"
    );
    assert!(page.contains("مؤشرات المنطقة"), "the area's indicators");
    assert_eq!(
        serious_violations(&c).await,
        Vec::<String>::new(),
        "the team page"
    );
    screenshot(&c, "supervisor-break-glass-ar").await;
    // Without a finding: refused next to it.
    click(
        &c,
        Locator::Css(&format!("form[action='/team/break-glass/{bkg}'] button")),
    )
    .await;
    let said = problem_at(&c, &format!("outcome-{bkg}")).await;
    assert!(said.contains("justified"), "the choices are named: {said}");
    type_in(
        &c,
        Locator::Id(&format!("notes-{bkg}")),
        "تحققت من سجل المكالمة",
    )
    .await;
    click(&c, Locator::Css("input[name=outcome][value=justified]")).await;
    click(
        &c,
        Locator::Css(&format!("form[action='/team/break-glass/{bkg}'] button")),
    )
    .await;
    confirmed(&c, "سُجّلت مراجعة الوصول الطارئ").await;
    assert!(
        c.find(Locator::Css(&format!(
            "form[action='/team/break-glass/{bkg}']"
        )))
        .await
        .is_err(),
        "reviewed: no longer in the queue"
    );
    assert!(c.source().await.unwrap().contains("رُوجع مؤخرًا"));
    let (by, outcome): (String, String) = sqlx::query_as(
        "SELECT reviewed_by, outcome FROM cases.break_glass WHERE break_glass_id = $1",
    )
    .bind(&bkg)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(
        (by.as_str(), outcome.as_str()),
        (sup.person.person_id.as_str(), "justified")
    );
    screenshot(&c, "supervisor-break-glass-reviewed-ar").await;
    c.close().await.unwrap();
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assigning_to_a_full_caseworker_is_refused_next_to_the_field_naming_who_has_room() {
    let mut env = TestEnv::new(None).await;
    // The seeds' cap is 25; the rule is the same at 2.
    env.settings.lifecycle.max_cases_per_caseworker = 2;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let sup = staff_person(
        &env,
        &ch,
        "sup.cap",
        ("سامي حسن", None),
        Role::Supervisor,
        None,
    )
    .await;
    let sup_id = sup.person.person_id.clone();
    let full = staff_person(
        &env,
        &ch,
        "cw.full",
        ("منى فؤاد", Some("Mona Fouad")),
        Role::Caseworker,
        Some(&sup_id),
    )
    .await;
    let room = staff_person(
        &env,
        &ch,
        "cw.room",
        ("ليلى عادل", Some("Laila Adel")),
        Role::Caseworker,
        Some(&sup_id),
    )
    .await;
    let (full_id, room_id) = (full.person.person_id.clone(), room.person.person_id.clone());
    let mut cases = Vec::new();
    for n in 0..3 {
        let case = submit_school(&ch, &format!("cap-{n}")).await;
        register(&ch, &case).await;
        cases.push(case);
    }
    for case in &cases[..2] {
        assign(&ch, case, 2, &full_id).await;
    }
    let third = &cases[2];
    let base = format!("http://localhost:{}", hub.web_addr.unwrap().port());
    let d = driver().await;
    let c = supervisor_browser(&d, &base, "sup.cap", &sup).await;
    c.goto(&format!("{base}/cases/{third}")).await.unwrap();
    click(
        &c,
        Locator::Css(&format!("#caseworker option[value='{full_id}']")),
    )
    .await;
    click(&c, Locator::Css("form[action$='/assign'] button")).await;
    let said = problem_at(&c, "caseworker").await;
    assert!(said.contains("الحد الأقصى 2"), "{said}");
    assert!(
        said.contains("ليلى عادل") && said.contains(&room_id),
        "who has room: {said}"
    );
    assert_eq!(
        serious_violations(&c).await,
        Vec::<String>::new(),
        "the refused assignment"
    );
    screenshot(&c, "assignment-refused-at-cap-ar").await;
    // The same in English.
    c.goto(&format!("{base}/lang/en")).await.unwrap();
    c.goto(&format!("{base}/cases/{third}")).await.unwrap();
    click(
        &c,
        Locator::Css(&format!("#caseworker option[value='{full_id}']")),
    )
    .await;
    click(&c, Locator::Css("form[action$='/assign'] button")).await;
    let said = problem_at(&c, "caseworker").await;
    assert!(
        said.contains("the limit is 2") && said.contains("Laila Adel"),
        "{said}"
    );
    screenshot(&c, "assignment-refused-at-cap-en").await;
    // To the one with room, it goes through.
    click(
        &c,
        Locator::Css(&format!("#caseworker option[value='{room_id}']")),
    )
    .await;
    click(&c, Locator::Css("form[action$='/assign'] button")).await;
    confirmed(&c, "The case was assigned.").await;
    let assigned: String =
        sqlx::query_scalar("SELECT caseworker_id FROM cases.cases WHERE case_id = $1")
            .bind(third)
            .fetch_one(&env.pool().await)
            .await
            .unwrap();
    assert_eq!(assigned, room_id);
    c.close().await.unwrap();
    hub.stop().await;
}
