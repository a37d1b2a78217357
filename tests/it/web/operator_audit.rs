//! The emergency line's screens after an escalation (break-glass, follow-ups) and the
//! auditor's view of the disclosure log, in a real Chromium against the real hub; and the
//! read API of the log (`himaya.v1.Audit`) over gRPC: who sees which entries, paging, and
//! the chain's verification catching a changed entry.

use super::*;

use himaya_proto::v1 as pb;

/// The case number an accepted referral page shows (the first `dd code`).
async fn shown_case(c: &fantoccini::Client) -> String {
    c.find(Locator::Css("main dd code"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_breaks_the_glass_on_a_call_and_an_auditor_sees_it_in_the_log() {
    let env = TestEnv::new(None).await;
    let hub = env.start().await;
    let pool = himaya_web::connect(&env.settings).await.unwrap();
    let op = people::add(
        &pool,
        "hotline-16000",
        "op.salma",
        ("سلمى فؤاد", None),
        &[Role::HotlineOperator],
        PASSWORD,
    )
    .await
    .unwrap();
    // The national ministry's auditor: no second factor for this role.
    assert!(!Role::Auditor.needs_second_factor());
    people::add(
        &pool,
        "mosa-cairo",
        "aud.nour",
        ("نور الهدى سالم", None),
        &[Role::Auditor],
        PASSWORD,
    )
    .await
    .unwrap();
    let base = format!("http://localhost:{}", hub.web_addr.unwrap().port());
    let d = driver().await;
    let c = browser(&d, "ar").await;

    // The operator escalates a call, from the keyboard.
    let code = people::current_code(&op.totp_secret.unwrap()).unwrap();
    sign_in_browser(&c, &base, "op.salma", Some(&code)).await;
    c.wait()
        .for_element(Locator::Css("a[href='/hotline/follow-ups']"))
        .await
        .unwrap();
    c.goto(&format!("{base}/hotline")).await.unwrap();
    escalate_by_keyboard(
        &c,
        "CALL-9120",
        ("يوسف بلا اسم عائلة", "6"),
        Some("سمع الجيران صراخًا ليلًا"),
    )
    .await;
    let accepted = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::XPath("//main/h1[contains(., 'تم استلام الإحالة')]"))
        .await;
    if let Err(e) = accepted {
        panic!("{e}: {}", c.source().await.unwrap());
    }
    let case = shown_case(&c).await;
    assert!(case.starts_with("case_"), "{case}");

    // Found again by its call, then break-glass from that row.
    c.goto(&format!("{base}/hotline/calls?call_ref=CALL-9120"))
        .await
        .unwrap();
    click(
        &c,
        Locator::Css(&format!("a[href='/hotline/break-glass?case_id={case}']")),
    )
    .await;
    c.wait()
        .for_element(Locator::Id("justification"))
        .await
        .unwrap();
    let form = c.source().await.unwrap();
    assert!(
        form.contains(&format!("value=\"{case}\"")),
        "the case is filled in"
    );
    for code in ["imminent_danger", "medical_emergency", "missing_child"] {
        assert!(
            form.contains(&format!("value=\"{code}\"")),
            "{code} offered"
        );
    }
    assert_eq!(
        serious_violations(&c).await,
        Vec::<String>::new(),
        "the break-glass form"
    );
    // Without a justification: refused next to the field, in Arabic; nothing opened.
    type_in(
        &c,
        Locator::Css("input[name=reason_code][value=missing_child]"),
        " ",
    )
    .await;
    click(
        &c,
        Locator::Css("form[action='/hotline/break-glass'] button"),
    )
    .await;
    let said = c
        .wait()
        .for_element(Locator::Id("justification-error"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(said.contains("مطلوب"), "{said}");
    let kept = c
        .find(Locator::Css("input[name=reason_code][value=missing_child]"))
        .await
        .unwrap();
    assert!(
        kept.is_selected().await.unwrap(),
        "the reason chosen is kept"
    );
    // With one: the minimal emergency set, and the time left on the opening.
    type_in(
        &c,
        Locator::Id("justification"),
        "الطفل في خطر داهم بحسب المتصل ولا يرد الأهل",
    )
    .await;
    click(
        &c,
        Locator::Css("form[action='/hotline/break-glass'] button"),
    )
    .await;
    let h1 = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::XPath("//main/h1[contains(., 'بيانات الطوارئ')]"))
        .await;
    let page = c.source().await.unwrap();
    if let Err(e) = h1 {
        panic!("{e}: {page}");
    }
    assert!(
        page.contains("<bdi>يوسف بلا اسم عائلة</bdi>"),
        "the child's name, isolated"
    );
    assert!(
        page.contains("الوقت المتبقي: 60 دقيقة") || page.contains("الوقت المتبقي: 59 دقيقة"),
        "the time left: {page}"
    );
    assert!(page.contains("bkg_"), "the access's number");
    assert!(
        !page.contains("سمع الجيران"),
        "the narrative (case notes) is not in the minimal set"
    );
    screenshot(&c, "break-glass-opened-ar").await;

    // The follow-ups: the case of the call, with what the line may see of it.
    c.goto(&format!("{base}/hotline/follow-ups")).await.unwrap();
    let follow = c.source().await.unwrap();
    assert!(
        follow.contains(&case) && follow.contains("CALL-9120"),
        "{follow}"
    );
    assert!(!follow.contains("يوسف"), "no child's data on the list");
    // The call gave no consent: the line is told so plainly, in its language; the
    // emergency data set stays behind break-glass.
    assert!(follow.contains("غير متاحة للخط"), "{follow}");
    assert_eq!(
        serious_violations(&c).await,
        Vec::<String>::new(),
        "the follow-ups"
    );
    screenshot(&c, "hotline-follow-ups-ar").await;
    click(&c, Locator::Css("header form button")).await;

    // The break-glass reaches the log; its head is signed.
    let db = env.pool().await;
    wait_count(
        &db,
        &format!(
            "SELECT count(*) FROM audit.log WHERE case_id = '{case}' AND decision = 'break_glass'"
        ),
        1,
        30,
        "the break-glass in the disclosure log",
    )
    .await;
    let audit = himaya_audit::connect(&env.settings).await.unwrap();
    let key = himaya_audit::signing_key(&env.settings.audit.signing_key_file).unwrap();
    himaya_audit::checkpoint(&audit, &key).await.unwrap();

    // The auditor: the log, filtered by the case and the kind, from the keyboard.
    sign_in_browser(&c, &base, "aud.nour", None).await;
    c.wait()
        .for_element(Locator::LinkText("سجل الإفصاح"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait().for_element(Locator::Id("case_id")).await.unwrap();
    type_in(&c, Locator::Id("case_id"), &case).await;
    click(&c, Locator::Css("#kind option[value=break_glass]")).await;
    click(&c, Locator::Css("form.filters button")).await;
    // The unfiltered page has rows too: wait for the page the filter answered, which
    // marks the kind chosen (the attribute, not the option the click selected).
    c.wait()
        .for_element(Locator::Css("#kind option[value=break_glass][selected]"))
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("main table tbody tr"))
        .await
        .unwrap();
    let url = c.current_url().await.unwrap();
    assert!(
        url.query().unwrap_or("").contains("kind=break_glass"),
        "{url}"
    );
    let log = c.source().await.unwrap();
    let rows = c
        .find_all(Locator::Css("main table tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "the refused attempt and the access: {log}");
    for r in &rows {
        assert!(r.text().await.unwrap().contains(&case));
    }
    assert!(log.contains("خط نجدة الطفل"), "the recipient, by name");
    assert!(
        log.contains("وصول طارئ دون سبب أو مبرر"),
        "the refusal's reason"
    );
    assert!(log.contains("طفل مفقود"), "the access's reason");
    assert!(
        log.contains("<bdi>سلمى فؤاد</bdi>"),
        "the operator who broke the glass"
    );
    assert!(!log.contains("يوسف"), "no child's data in the log");
    assert!(
        log.contains("سليم") && log.contains("التوقيع صحيح"),
        "the chain's state and the last checkpoint: {log}"
    );
    assert_eq!(
        serious_violations(&c).await,
        Vec::<String>::new(),
        "the audit page"
    );
    screenshot(&c, "audit-log-ar").await;

    // The same page in English.
    let filtered = c.current_url().await.unwrap().to_string();
    c.goto(&format!("{base}/lang/en")).await.unwrap();
    c.goto(&filtered).await.unwrap();
    let en = c.source().await.unwrap();
    assert!(
        en.contains("lang=\"en\"")
            && en.contains("dir=\"ltr\"")
            && en.contains("Disclosure log")
            && en.contains("Intact")
            && en.contains("Missing child")
            && en.contains("signature valid"),
        "{en}"
    );
    assert_eq!(
        serious_violations(&c).await,
        Vec::<String>::new(),
        "the audit page in English"
    );
    screenshot(&c, "audit-log-en").await;
    c.close().await.unwrap();
    hub.stop().await;
}

/// A request as `agency`, for a person holding `roles`, as the web front makes it.
fn as_person<T>(agency: &str, roles: &str, msg: T) -> tonic::Request<T> {
    let mut r = as_agency(agency, msg);
    let m = r.metadata_mut();
    m.insert(
        himaya_proto::status::PERSON_HEADER,
        "psn_0190f1b2c3d47e8f9a0b1c2d3e4f5a6b".parse().unwrap(),
    );
    m.insert(himaya_proto::status::ROLES_HEADER, roles.parse().unwrap());
    r
}

fn listing(
    filter: pb::DisclosureFilter,
    page_size: i32,
    before_seq: i64,
) -> pb::ListDisclosuresRequest {
    pb::ListDisclosuresRequest {
        filter: Some(filter),
        page_size,
        before_seq,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_of_an_agency_sees_only_its_own_entries_and_the_chain_is_checked() {
    let env = TestEnv::new(None).await;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let case = submit_school(&ch, "audit-scope").await;
    let mut cases = pb::cases_client::CasesClient::new(ch.clone());
    // Three recipients: the line breaks the glass, the ministry reads, the health
    // directorate (no part in the case) is refused.
    cases
        .break_glass(as_agency(
            "hotline-16000",
            pb::BreakGlassRequest {
                case_id: case.clone(),
                reason_code: "imminent_danger".into(),
                justification: "بلاغ عن خطر داهم على الطفلة".into(),
                actor: "op-3".into(),
            },
        ))
        .await
        .unwrap();
    let read = |purpose: pb::Purpose| pb::GetCaseRequest {
        case_id: case.clone(),
        purpose: purpose.into(),
    };
    cases
        .get_case(as_agency("mosa-cairo", read(pb::Purpose::ServiceProvision)))
        .await
        .unwrap();
    let refused = cases
        .get_case(as_agency(
            "health-cairo",
            read(pb::Purpose::ServiceProvision),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let db = env.pool().await;
    wait_count(
        &db,
        &format!("SELECT count(DISTINCT recipient) FROM audit.log WHERE case_id = '{case}'"),
        3,
        30,
        "three recipients' entries in the log",
    )
    .await;

    let mut audit = pb::audit_client::AuditClient::new(ch.clone());
    let all = |f: pb::DisclosureFilter| listing(f, 200, 0);
    // The health directorate: its own entries only, whatever it filters on.
    let own = audit
        .list_disclosures(as_agency("health-cairo", all(Default::default())))
        .await
        .unwrap()
        .into_inner();
    assert!(!own.whole_log);
    assert!(!own.entries.is_empty());
    assert!(
        own.entries.iter().all(|e| e.recipient == "health-cairo"),
        "{:?}",
        own.entries
    );
    let on_case = audit
        .list_disclosures(as_agency(
            "health-cairo",
            all(pb::DisclosureFilter {
                case_id: case.clone(),
                ..Default::default()
            }),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(on_case.entries.iter().all(|e| e.case_id == case));
    assert!(
        on_case
            .entries
            .iter()
            .any(|e| e.decision == "deny" && e.reason.as_deref() == Some("no_part_in_case")),
        "{:?}",
        on_case.entries
    );
    let e = audit
        .list_disclosures(as_agency(
            "health-cairo",
            all(pb::DisclosureFilter {
                recipient: "mosa-cairo".into(),
                ..Default::default()
            }),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert!(!e.message().contains("mosa-cairo"), "{}", e.message());
    // The emergency line covers every governorate but is no ministry: its own too.
    let line = audit
        .list_disclosures(as_agency("hotline-16000", all(Default::default())))
        .await
        .unwrap()
        .into_inner();
    assert!(!line.whole_log);
    assert!(line.entries.iter().all(|e| e.recipient == "hotline-16000"));
    assert!(line.entries.iter().any(|e| e.decision == "break_glass"));

    // The national ministry: the whole log, any recipient, newest first, page by page.
    let whole = audit
        .list_disclosures(as_agency(
            "mosa-cairo",
            all(pb::DisclosureFilter {
                case_id: case.clone(),
                ..Default::default()
            }),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(whole.whole_log);
    let recipients: std::collections::BTreeSet<&str> =
        whole.entries.iter().map(|e| e.recipient.as_str()).collect();
    for r in ["health-cairo", "hotline-16000", "mosa-cairo"] {
        assert!(recipients.contains(r), "{r}: {recipients:?}");
    }
    assert!(whole.entries.windows(2).all(|w| w[0].seq > w[1].seq));
    let first = audit
        .list_disclosures(as_agency("mosa-cairo", listing(Default::default(), 1, 0)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.entries.len(), 1);
    assert_eq!(first.next_before_seq, first.entries[0].seq);
    let second = audit
        .list_disclosures(as_agency(
            "mosa-cairo",
            listing(Default::default(), 1, first.next_before_seq),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(second.entries[0].seq < first.entries[0].seq);
    let glass = audit
        .list_disclosures(as_agency(
            "mosa-cairo",
            all(pb::DisclosureFilter {
                decision: "break_glass".into(),
                ..Default::default()
            }),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(glass.entries.iter().all(|e| e.recipient == "hotline-16000"));
    assert_eq!(glass.entries[0].reason.as_deref(), Some("imminent_danger"));
    // A time range: nothing after the far future, everything before it.
    let far = "2999-01-01T00:00:00+02:00";
    for (filter, empty) in [
        (
            pb::DisclosureFilter {
                from: far.into(),
                ..Default::default()
            },
            true,
        ),
        (
            pb::DisclosureFilter {
                until: far.into(),
                case_id: case.clone(),
                ..Default::default()
            },
            false,
        ),
    ] {
        let found = audit
            .list_disclosures(as_agency("mosa-cairo", all(filter)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(found.entries.is_empty(), empty);
    }
    // A filter that is not one is refused, naming the field, not echoing the value.
    let bad = audit
        .list_disclosures(as_agency(
            "mosa-cairo",
            all(pb::DisclosureFilter {
                decision: "whatever-i-like".into(),
                ..Default::default()
            }),
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("filter.decision") && !bad.message().contains("whatever"));

    // From the web front: an auditor reads within their agency's scope; a person without
    // the role does not read the log at all.
    let as_auditor = audit
        .list_disclosures(as_person(
            "health-cairo",
            "auditor",
            all(Default::default()),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(as_auditor
        .entries
        .iter()
        .all(|e| e.recipient == "health-cairo"));
    let e = audit
        .list_disclosures(as_person(
            "mosa-cairo",
            "caseworker",
            all(Default::default()),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);

    // The chain: verified whole (a short log fits one call), then a changed entry is found.
    let status = audit
        .get_chain_status(as_agency("health-cairo", pb::GetChainStatusRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.state(), pb::ChainState::Intact, "{status:?}");
    assert!(status.length >= 3 && status.checked_now >= status.length);
    assert!(status.last_full_pass_length >= status.length);
    assert!(status.last_full_pass_at.is_some());
    let mut conn = db.acquire().await.unwrap();
    sqlx::query("ALTER TABLE audit.log DISABLE TRIGGER log_append_only")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("UPDATE audit.log SET recipient = 'someone-else' WHERE seq = 2")
        .execute(&mut *conn)
        .await
        .unwrap();
    let status = audit
        .get_chain_status(as_agency("mosa-cairo", pb::GetChainStatusRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.state(), pb::ChainState::Tampered, "{status:?}");
    assert_eq!(
        (status.problem_seq, status.problem.as_str()),
        (2, "modified")
    );
    hub.stop().await;
}
