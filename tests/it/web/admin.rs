//! An agency's administrator keeps its accounts in a real Chromium against the real hub:
//! field errors first, a supervisor and a caseworker made (each also the ministry's staff
//! record under the person's id), hostile names refused or rendered inert, and a
//! disabled account signed out at once.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_makes_a_supervisor_and_a_caseworker_and_disables_an_account() {
    let mut env = TestEnv::new(None).await;
    // One caseworker per supervisor, so that the second is refused.
    env.settings.lifecycle.max_caseworkers_per_supervisor = 1;
    let hub = env.start().await;
    let (_d, c, base, admin) = admin_signed_in(&env, &hub, "admin.cairo", "هدى كامل").await;
    let pool = himaya_web::connect(&env.settings).await.unwrap();
    c.wait()
        .for_element(Locator::LinkText("حسابات جهتك"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // Nothing filled in: every field says what it needs, in Arabic; nothing is made.
    let make = Locator::Css("form[action='/admin/people'] button[type=submit]");
    c.wait().for_element(make).await.unwrap();
    click(&c, make).await;
    for id in ["login-error", "name_ar-error", "roles-error"] {
        c.wait().for_element(Locator::Id(id)).await.unwrap();
    }
    assert_eq!(
        serious_violations(&c).await,
        Vec::<String>::new(),
        "the accounts page with errors"
    );
    screenshot(&c, "admin-errors-ar").await;

    // A supervisor, then a caseworker under them. The caseworker's name first carries a
    // right-to-left override and the Latin one a script: the first is refused, the second
    // shown as text.
    let fill =
        |login: &'static str, name: &'static str, latin: &'static str, role: &'static str| {
            let c = c.clone();
            async move {
                for id in ["login", "name_ar", "name_latin"] {
                    c.find(Locator::Id(id))
                        .await
                        .unwrap()
                        .clear()
                        .await
                        .unwrap();
                }
                type_in(&c, Locator::Id("login"), login).await;
                type_in(&c, Locator::Id("name_ar"), name).await;
                type_in(&c, Locator::Id("name_latin"), latin).await;
                click(
                    &c,
                    Locator::Css(&format!("input[name=roles][value={role}]")),
                )
                .await;
            }
        };
    fill("sup.one", "سامي حسن", "Sami Hassan", "supervisor").await;
    click(&c, make).await;
    let shown = c
        .wait()
        .for_element(Locator::Css("section.created"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(shown.contains("sup.one"), "{shown}");
    fill(
        "cw.one",
        "ليلى\u{202E}محمود",
        "<script>alert(1)</script>",
        "caseworker",
    )
    .await;
    click(&c, Locator::Css("#supervisor option[value='sup.one']")).await;
    click(&c, make).await;
    let error = c
        .wait()
        .for_element(Locator::Id("name_ar-error"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !error.contains("محمود"),
        "the value is never quoted: {error}"
    );
    c.find(Locator::Id("name_ar"))
        .await
        .unwrap()
        .clear()
        .await
        .unwrap();
    type_in(&c, Locator::Id("name_ar"), "ليلى محمود").await;
    click(&c, Locator::Css("#supervisor option[value='sup.one']")).await;
    click(&c, make).await;
    let created = c
        .wait()
        .for_element(Locator::Css("section.created"))
        .await
        .unwrap();
    let password = created
        .find(Locator::Css("code"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let page = c.source().await.unwrap();
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the script is text"
    );
    screenshot(&c, "admin-accounts-ar").await;

    // One list: the caseworker's staff record is the person, under their supervisor.
    let db = env.pool().await;
    let (staff, sup): (String, Option<String>) = sqlx::query_as(
        "SELECT staff_id, supervisor_id FROM cases.staff WHERE agency_id = 'mosa-cairo' AND role = 'caseworker'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let person: String =
        sqlx::query_scalar("SELECT person_id FROM web.persons WHERE login = 'cw.one'")
            .fetch_one(&db)
            .await
            .unwrap();
    let supervisor: String =
        sqlx::query_scalar("SELECT person_id FROM web.persons WHERE login = 'sup.one'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!((staff, sup), (person.clone(), Some(supervisor)));

    // A second caseworker under the same supervisor is one too many: the hub's refusal is
    // shown, naming the supervisor, and the account is not kept.
    c.goto(&format!("{base}/admin/people")).await.unwrap();
    fill("cw.two", "رنا سمير", "", "caseworker").await;
    click(&c, Locator::Css("#supervisor option[value='sup.one']")).await;
    click(&c, make).await;
    let refused = c
        .wait()
        .for_element(Locator::Css("p.error"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        refused.contains("سامي حسن"),
        "the supervisor named: {refused}"
    );
    screenshot(&c, "admin-sixth-caseworker-refused-ar").await;
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM web.persons WHERE login = 'cw.two'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(kept, 0, "the refused account is taken back");

    // The new caseworker signs in with the password shown once; disabling the account
    // ends that session at once.
    let cookie = sign_in(&base, "cw.one", &password, None)
        .await
        .unwrap_or_else(|r| panic!("sign-in refused: {}", r.status()));
    let home = |cookie: String| {
        let base = base.clone();
        async move {
            http()
                .get(format!("{base}/cases"))
                .header("cookie", format!("himaya_session={cookie}"))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(home(cookie.clone()).await, 200);
    c.goto(&format!("{base}/admin/people")).await.unwrap();
    click(
        &c,
        Locator::Css(&format!(
            "form[action='/admin/people/{person}/disable'] button"
        )),
    )
    .await;
    c.wait()
        .for_element(Locator::Css(&format!(
            "form[action='/admin/people/{person}/enable']"
        )))
        .await
        .unwrap();
    assert!(home(cookie).await.is_redirection(), "signed out");
    assert!(sign_in(&base, "cw.one", &password, None).await.is_err());
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM web.account_events WHERE by_person = $1")
            .bind(&admin.person.person_id)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(events, 3, "two made, one disabled");

    // In English, and not for anyone but an administrator.
    c.goto(&format!("{base}/lang/en")).await.unwrap();
    c.goto(&format!("{base}/admin/people")).await.unwrap();
    assert!(c.source().await.unwrap().contains("Your agency's accounts"));
    screenshot(&c, "admin-accounts-en").await;
    people::add(
        &pool,
        "mosa-cairo",
        "staff.one",
        ("كريم عادل", None),
        &[Role::AgencyStaff],
        PASSWORD,
    )
    .await
    .unwrap();
    let staff_cookie = sign_in(&base, "staff.one", PASSWORD, None).await.unwrap();
    let r = http()
        .get(format!("{base}/admin/people"))
        .header("cookie", format!("himaya_session={staff_cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    c.close().await.unwrap();
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hotline_escalation_jumps_the_supervisors_queue() {
    let env = TestEnv::new(None).await;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    // Two routine school referrals first, then a call the emergency line escalates.
    let first = submit_school(&ch, "routine-1").await;
    let second = submit_school(&ch, "routine-2").await;
    let call = pb_escalation("call-77");
    let urgent = himaya_proto::v1::intake_client::IntakeClient::new(ch.clone())
        .escalate_hotline_call(as_agency("hotline-16000", call))
        .await
        .unwrap()
        .into_inner()
        .case_id;
    // The ministry's supervisor, whose account is their staff record.
    let pool = himaya_web::connect(&env.settings).await.unwrap();
    let sup = people::add(
        &pool,
        "mosa-cairo",
        "sup.queue",
        ("سامي حسن", None),
        &[Role::Supervisor],
        PASSWORD,
    )
    .await
    .unwrap();
    himaya_proto::v1::staff_client::StaffClient::new(ch.clone())
        .add_staff(as_agency(
            "mosa-cairo",
            himaya_proto::v1::AddStaffRequest {
                staff_id: sup.person.person_id.clone(),
                role: himaya_proto::v1::StaffRole::Supervisor.into(),
                supervisor_id: None,
            },
        ))
        .await
        .unwrap();
    let base = format!("http://localhost:{}", hub.web_addr.unwrap().port());
    let d = driver().await;
    let c = browser(&d, "ar").await;
    let code = people::current_code(sup.totp_secret.as_deref().unwrap()).unwrap();
    sign_in_browser(&c, &base, "sup.queue", Some(&code)).await;
    c.wait()
        .for_element(Locator::Css("a[href='/cases']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let rows = c
        .wait()
        .for_element(Locator::Css("table tbody"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = |id: &str| {
        rows.find(id)
            .unwrap_or_else(|| panic!("{id} in the queue: {rows}"))
    };
    assert!(
        at(&urgent) < at(&first) && at(&urgent) < at(&second),
        "the escalation first: {rows}"
    );
    screenshot(&c, "supervisor-queue-ar").await;
    c.close().await.unwrap();
    hub.stop().await;
}

/// The fixture's child, escalated by the emergency line on call `call_ref`.
fn pb_escalation(call_ref: &str) -> himaya_proto::v1::HotlineEscalationRequest {
    himaya_proto::v1::HotlineEscalationRequest {
        submission_id: format!("sub-{call_ref}"),
        call_ref: call_ref.into(),
        operator_ref: "op-3".into(),
        referral: school_request(call_ref).referral,
        hotline_agency_id: "hotline-16000".into(),
    }
}

/// The value of the first `name="…"` input of `html` (the form's hidden fields).
fn hidden(html: &str, name: &str) -> String {
    let at = html.find(&format!("name=\"{name}\" value=\"")).unwrap();
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_community_committee_member_refers_a_child_as_their_committee() {
    let mut env = TestEnv::new(None).await;
    // One of the seeds' community committees: an agency of its own, without a system.
    let mut committee = (*env.settings.agencies.get("school-cairo-alnour").unwrap()).clone();
    committee.agency_type = himaya_record::AgencyType::Community;
    committee.services = vec![];
    env.settings
        .agencies
        .insert("committee-shubra".into(), committee);
    let hub = env.start().await;
    let pool = himaya_web::connect(&env.settings).await.unwrap();
    let member = people::add(
        &pool,
        "committee-shubra",
        "member.shubra",
        ("عادل فهمي", None),
        &[Role::CommitteeMember],
        PASSWORD,
    )
    .await
    .unwrap();
    let base = format!("http://localhost:{}", hub.web_addr.unwrap().port());
    let cookie = format!(
        "himaya_session={}",
        sign_in(&base, "member.shubra", PASSWORD, None)
            .await
            .unwrap()
    );
    let form = http()
        .get(format!("{base}/referrals/new"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (csrf, submission) = (hidden(&form, "csrf"), hidden(&form, "submission_id"));
    let fields = [
        ("csrf", csrf.as_str()),
        ("submission_id", submission.as_str()),
        ("child_name", "سارة محمود"),
        ("age", "12"),
        ("sex", "female"),
        ("governorate", "القاهرة"),
        ("district", "شبرا"),
        ("caregiver_name", "هدى علي"),
        ("caregiver_relationship", "mother"),
        ("concern", "exploitative_labour"),
        ("labour", "denies_education_or_play"),
        ("risk", "high"),
        ("service", "health"),
        ("consent_caregiver", "yes"),
        ("consent_child", "yes"),
    ];
    // Sent twice (a retried post): one child, once.
    for _ in 0..2 {
        let r = http()
            .post(format!("{base}/referrals"))
            .header("cookie", &cookie)
            .form(&fields)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let page = r.text().await.unwrap();
        assert!(status.is_success(), "{status}: {page}");
        assert!(page.contains("تم استلام الإحالة"), "{page}");
    }
    let db = env.pool().await;
    let (kind, agency, staff): (String, String, String) = sqlx::query_as(
        "SELECT record->'referral'->'source'->>'kind', record->'referral'->'source'->>'agency_id',
                record->'referral'->'source'->>'staff_ref' FROM cases.cases",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(
        (kind.as_str(), agency.as_str(), staff.as_str()),
        (
            "community_committee",
            "committee-shubra",
            member.person.person_id.as_str()
        )
    );
    hub.stop().await;
}
