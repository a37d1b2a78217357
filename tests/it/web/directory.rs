//! The directory's agencies in a real Chromium against the real hub: the national
//! ministry's administrator suspends an agency (its calls are refused at once, across the
//! hub), reactivates it, and asks for an enrolment code, which a hub without an issuing
//! authority refuses in the person's language; the page passes axe.

use super::*;
use himaya_proto::v1 as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_suspends_and_reactivates_an_agency_from_the_directory_page() {
    let env = TestEnv::new(None).await;
    let hub = env.start().await;
    let (_d, c, base, admin) = admin_signed_in(&env, &hub, "admin.directory", "منى سالم").await;
    c.wait()
        .for_element(Locator::LinkText("دليل الجهات"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let row = "//tr[td/bdi[text()='legal-aid-cairo']]";
    c.wait().for_element(Locator::XPath(row)).await.unwrap();
    assert_eq!(
        serious_violations(&c).await,
        Vec::<String>::new(),
        "the directory page"
    );
    screenshot(&c, "directory-ar").await;

    // The ministry's own row has no suspend button: an administrator cannot cut off
    // its own agency.
    assert!(c
        .find(Locator::XPath(
            "//tr[td/bdi[text()='mosa-cairo']]//form[contains(@action, '/status')]"
        ))
        .await
        .is_err());

    // Suspended, with a reason: the agency's next calls are refused across the hub.
    let ch = channel(&hub).await;
    let agency_calls = || {
        let ch = ch.clone();
        async move {
            pb::directory_client::DirectoryClient::new(ch)
                .get_agency(as_agency(
                    "legal-aid-cairo",
                    pb::GetAgencyRequest {
                        agency_id: "mosa-cairo".into(),
                    },
                ))
                .await
        }
    };
    assert!(agency_calls().await.is_ok());
    click(
        &c,
        Locator::XPath(&format!("{row}//option[@value='compromised_key']")),
    )
    .await;
    click(
        &c,
        Locator::XPath(&format!(
            "{row}//form[contains(@action, '/status')]//button"
        )),
    )
    .await;
    let state = c
        .wait()
        .for_element(Locator::XPath(&format!("{row}/td[5]/strong")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(state, "موقوفة");
    let e = eventually(10, "the suspended agency is refused", || async {
        agency_calls().await.err()
    })
    .await;
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");

    // Reactivated from the same row.
    click(
        &c,
        Locator::XPath(&format!(
            "{row}//form[contains(@action, '/status')]//button"
        )),
    )
    .await;
    c.wait()
        .for_element(Locator::XPath(&format!("{row}[td[4][text()='3']]")))
        .await
        .unwrap();
    eventually(10, "the reactivated agency calls again", || async {
        agency_calls().await.ok()
    })
    .await;

    // This hub has no issuing authority: the code is refused, saying so in Arabic.
    click(
        &c,
        Locator::XPath(&format!(
            "{row}//form[contains(@action, '/enrolment')]//button"
        )),
    )
    .await;
    // The answer page replaces the list: until it is there, `main` may be the list's,
    // gone stale between finding it and reading it.
    let said = eventually(10, "the refusal of the enrolment code", || async {
        let text = c.find(Locator::Css("main")).await.ok()?.text().await.ok()?;
        text.contains("grpc.issuer").then_some(text)
    })
    .await;
    assert!(said.contains("الشهادات"), "{said}");
    // A new agency from the page's form: the hub's field errors next to their fields, in
    // Arabic, the value not repeated; then added.
    c.goto(&format!("{base}/admin/agencies")).await.unwrap();
    type_in(&c, Locator::Id("agency_id"), "Clinic_Web").await;
    type_in(&c, Locator::Id("name_ar"), "عيادة الويب").await;
    type_in(&c, Locator::Id("name_en"), "Web Clinic").await;
    click(&c, Locator::Css("#agency_type option[value=health]")).await;
    click(&c, Locator::Css("input[name=services][value=health]")).await;
    click(
        &c,
        Locator::Css("form[action='/admin/agencies'] button[type=submit]"),
    )
    .await;
    for field in ["agency_id", "governorates"] {
        let said = c
            .wait()
            .for_element(Locator::Id(&format!("{field}-error")))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!said.contains("Clinic_Web"), "{field}: {said}");
        assert!(
            said.chars()
                .any(|ch| ('\u{0600}'..='\u{06FF}').contains(&ch)),
            "{field} in Arabic: {said}"
        );
    }
    assert_eq!(
        serious_violations(&c).await,
        Vec::<String>::new(),
        "the form with its errors"
    );
    let id = c.find(Locator::Id("agency_id")).await.unwrap();
    id.clear().await.unwrap();
    type_in(&c, Locator::Id("agency_id"), "clinic-web").await;
    click(
        &c,
        Locator::Css("input[name=governorates][value='القاهرة']"),
    )
    .await;
    click(
        &c,
        Locator::Css("form[action='/admin/agencies'] button[type=submit]"),
    )
    .await;
    c.wait()
        .for_element(Locator::Css("section.created"))
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::XPath("//tr[td/bdi[text()='clinic-web']]"))
        .await
        .unwrap();
    let history: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT version, status, updated_by FROM directory.agency_changes
          WHERE agency_id = 'legal-aid-cairo' ORDER BY version",
    )
    .fetch_all(&env.pool().await)
    .await
    .unwrap();
    let by = format!("mosa-cairo/{}", admin.person.person_id);
    assert_eq!(
        history,
        vec![
            (1, "active".into(), "configuration".into()),
            (2, "suspended".into(), by.clone()),
            (3, "active".into(), by),
        ]
    );
    c.close().await.unwrap();
    hub.stop().await;
}
