//! The bulk exit and the notices that follow a withdrawal, against the real broker and
//! database: an export carries only the cases the agency has a part in, each redacted for
//! it and logged; a withdrawn consent leaves its case out (the refusal logged); and an
//! agency without a connector collects its withdrawal notice and acknowledges it.

use crate::helpers::*;
use himaya_proto::convert::codes;
use himaya_proto::v1 as pb;
use himaya_record::DataCategory;
use pb::cases_client::CasesClient;
use tonic::transport::Channel;
use tonic::Code;

async fn export(
    ch: &Channel,
    agency: &str,
    purpose: pb::Purpose,
    after: &str,
) -> Result<Vec<pb::SharedCase>, tonic::Status> {
    let mut stream = CasesClient::new(ch.clone())
        .export_cases(as_agency(
            agency,
            pb::ExportCasesRequest {
                purpose: purpose.into(),
                after_case_id: after.into(),
            },
        ))
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(c) = stream.message().await? {
        out.push(c);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_is_redacted_per_case_and_every_decision_logged() {
    let (agency, addr) = FakeAgency::start(&[]).await;
    let env = TestEnv::new(Some(addr)).await;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let mut cases = Vec::new();
    for i in 0..3 {
        cases.push(submit_school(&ch, &format!("export-{i}")).await);
    }
    let db = env.pool().await;
    eventually(20, "three answers from the health agency", || async {
        (agency.count() == 3
            && count(
                &db,
                "SELECT count(*) FROM cases.referral_deliveries WHERE agency_id = 'health-cairo'",
            )
            .await
                == 3)
            .then_some(())
    })
    .await;
    withdraw_demo_consent(&ch, &cases[2]).await;

    // Health: the two cases still under consent, with health's categories only.
    let health = export(&ch, "health-cairo", pb::Purpose::ServiceProvision, "")
        .await
        .unwrap();
    let ids: Vec<&str> = health.iter().map(|c| c.case_id.as_str()).collect();
    assert_eq!(
        ids,
        [cases[0].as_str(), cases[1].as_str()],
        "oldest first, withdrawn left out"
    );
    let allowed = [
        "reference",
        "identity",
        "contact",
        "location",
        "protection_concern",
        "health",
    ];
    for c in &health {
        assert!(
            codes::<DataCategory>(&c.categories)
                .iter()
                .all(|k| allowed.contains(k)),
            "{:?}",
            c.categories
        );
        let doc: serde_json::Value = serde_json::from_str(&c.document_json).unwrap();
        assert!(
            doc["referral"].get("narrative").is_none(),
            "case notes never leave for health"
        );
        assert!(
            doc.get("household").is_none(),
            "economic data never leaves for health"
        );
    }
    // Resumed after the first case: only the second.
    let resumed = export(
        &ch,
        "health-cairo",
        pb::Purpose::ServiceProvision,
        &cases[0],
    )
    .await
    .unwrap();
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0].case_id, cases[1]);

    // The referring school: references and location only.
    let school = export(
        &ch,
        "school-cairo-alnour",
        pb::Purpose::ServiceProvision,
        "",
    )
    .await
    .unwrap();
    assert_eq!(school.len(), 2);
    for c in &school {
        let mut cats = codes::<DataCategory>(&c.categories);
        cats.sort();
        assert_eq!(cats, ["location", "reference"]);
        let doc: serde_json::Value = serde_json::from_str(&c.document_json).unwrap();
        assert!(
            doc["child"].get("name").is_none(),
            "no identity for the school"
        );
    }
    // An agency with no part in any case gets nothing; statistics never get cases.
    assert!(
        export(&ch, "hotline-16000", pb::Purpose::EmergencyResponse, "")
            .await
            .unwrap()
            .is_empty()
    );
    let e = export(&ch, "takaful-cairo", pb::Purpose::Statistics, "")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = export(&ch, "health-cairo", pb::Purpose::Unspecified, "not-an-id")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("purpose") && e.message().contains("after_case_id"));

    // Every decision of every export is in the disclosure log: health 2 + resumed 1 +
    // school 2 permits; the withdrawn case refused to health, to the resumed health
    // export (it starts after the first case) and to the school.
    eventually(20, "the export decisions in the disclosure log", || async {
        let permits = count(&db, "SELECT count(*) FROM audit.log WHERE channel = 'export' AND decision = 'permit'").await;
        let denials = count(&db, &format!("SELECT count(*) FROM audit.log WHERE channel = 'export' AND decision = 'deny' AND case_id = '{}'", cases[2])).await;
        (permits == 5 && denials == 3).then_some(())
    })
    .await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agency_without_a_connector_collects_and_acknowledges_its_notice() {
    let (agency, addr) = FakeAgency::start(&[]).await;
    let env = TestEnv::new(Some(addr)).await;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let case = submit_school(&ch, "noticed").await;
    eventually(20, "the delivery", || async {
        (agency.count() == 1).then_some(())
    })
    .await;
    // The school (no connector) reads the case: it is now an earlier recipient.
    let mut cases = CasesClient::new(ch.clone());
    cases
        .get_case(as_agency(
            "school-cairo-alnour",
            pb::GetCaseRequest {
                case_id: case.clone(),
                purpose: pb::Purpose::ServiceProvision.into(),
            },
        ))
        .await
        .unwrap();
    let db = env.pool().await;
    wait_count(
        &db,
        "SELECT count(*) FROM audit.log WHERE decision = 'permit'",
        2,
        20,
        "both disclosures logged",
    )
    .await;
    withdraw_demo_consent(&ch, &case).await;

    let list = |agency: &'static str, all: bool| {
        let mut cases = cases.clone();
        async move {
            cases
                .list_notices(as_agency(
                    agency,
                    pb::ListNoticesRequest {
                        include_acknowledged: all,
                        after_notice_id: String::new(),
                    },
                ))
                .await
                .unwrap()
                .into_inner()
                .notices
        }
    };
    let notice = eventually(20, "the school's notice", || async {
        list("school-cairo-alnour", false).await.into_iter().next()
    })
    .await;
    assert_eq!(
        (notice.case_id.as_str(), notice.consent_id.as_str()),
        (case.as_str(), "cns_demo")
    );
    assert!(codes::<DataCategory>(&notice.categories).contains(&"location"));
    assert!(notice.acknowledged_at.is_none());
    // The health agency, whose connector was pushed the notice, sees its own as well,
    // and only its own.
    let health = eventually(20, "health's notice", || async {
        list("health-cairo", false).await.into_iter().next()
    })
    .await;
    assert_ne!(health.notice_id, notice.notice_id);

    let ack = |agency: &'static str, id: String, actor: &'static str| {
        let mut cases = cases.clone();
        async move {
            cases
                .acknowledge_notice(as_agency(
                    agency,
                    pb::AcknowledgeNoticeRequest {
                        notice_id: id,
                        actor: actor.into(),
                    },
                ))
                .await
        }
    };
    // Another agency's notice: refused before anything else, the refusal logged.
    let e = ack("health-cairo", notice.notice_id.clone(), "")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = ack("school-cairo-alnour", notice.notice_id.clone(), " ")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let done = ack(
        "school-cairo-alnour",
        notice.notice_id.clone(),
        "officer-17",
    )
    .await
    .unwrap()
    .into_inner();
    assert!(done.acknowledged_at.is_some());
    assert_eq!(done.acknowledged_by.as_deref(), Some("officer-17"));
    assert!(list("school-cairo-alnour", false).await.is_empty());
    assert_eq!(list("school-cairo-alnour", true).await.len(), 1);
    wait_count(&db, &format!("SELECT count(*) FROM audit.log WHERE decision = 'deny' AND recipient = 'health-cairo' AND case_id = '{case}' AND channel = 'grpc_call'"), 1, 20, "the refused acknowledgement in the disclosure log").await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_delivery_or_an_ended_service_referral_gives_no_part() {
    use pb::service_referrals_client::ServiceReferralsClient;
    // The health agency's system refuses the case referral (422): no part in the case.
    let (agency, addr) = FakeAgency::start(&[422]).await;
    let env = TestEnv::new(Some(addr)).await;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let case = submit_school(&ch, "refused").await;
    let db = env.pool().await;
    wait_count(
        &db,
        "SELECT count(*) FROM cases.referral_deliveries WHERE outcome = 'rejected'",
        1,
        20,
        "the refusal recorded",
    )
    .await;
    let read = |ch: &Channel| {
        let mut cases = CasesClient::new(ch.clone());
        let case = case.clone();
        async move {
            cases
                .get_case(as_agency(
                    "health-cairo",
                    pb::GetCaseRequest {
                        case_id: case,
                        purpose: pb::Purpose::ServiceProvision.into(),
                    },
                ))
                .await
        }
    };
    assert_eq!(read(&ch).await.unwrap_err().code(), Code::PermissionDenied);
    assert!(
        export(&ch, "health-cairo", pb::Purpose::ServiceProvision, "")
            .await
            .unwrap()
            .is_empty()
    );

    // A service referral to health, delivered (201): a part while it lives...
    plan_health_action(&ch, &case).await;
    let mut sr = ServiceReferralsClient::new(ch.clone());
    let referral = refer_health_action(&ch, &case).await;
    eventually(20, "the service referral delivered", || async {
        (agency.count() == 2
            && count(
                &db,
                "SELECT count(*) FROM cases.referral_deliveries WHERE outcome = 'delivered'",
            )
            .await
                == 1)
            .then_some(())
    })
    .await;
    read(&ch)
        .await
        .expect("a live service referral gives a part");
    assert_eq!(
        export(&ch, "health-cairo", pb::Purpose::ServiceProvision, "")
            .await
            .unwrap()
            .len(),
        1
    );
    // ...and none once the referrer cancels it, though its delivery row stays.
    let version = eventually(20, "the referral received", || async {
        let r = sr
            .clone()
            .get_service_referral(as_agency(
                "mosa-cairo",
                pb::GetServiceReferralRequest {
                    service_referral_id: referral.service_referral_id.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        (r.state() == pb::ServiceReferralState::Received).then_some(r.version)
    })
    .await;
    sr.update_service_referral(as_agency(
        "mosa-cairo",
        pb::UpdateServiceReferralRequest {
            service_referral_id: referral.service_referral_id.clone(),
            expected_version: version,
            state: pb::ServiceReferralState::Cancelled.into(),
            reason: Some("نُقل الطفل إلى محافظة أخرى".into()),
            actor: "sw-1".into(),
        },
    ))
    .await
    .unwrap();
    assert_eq!(read(&ch).await.unwrap_err().code(), Code::PermissionDenied);
    assert!(
        export(&ch, "health-cairo", pb::Purpose::ServiceProvision, "")
            .await
            .unwrap()
            .is_empty()
    );
    hub.stop().await;
}
