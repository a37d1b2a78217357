//! The walking skeleton end to end: a school's referral crosses the hub over real
//! RabbitMQ and PostgreSQL and arrives, redacted and exactly once, at a simulated health
//! agency; bad input is refused with field violations and writes nothing.

use std::time::Instant;

use crate::helpers::*;
use himaya_proto::v1 as pb;
use pb::cases_client::CasesClient;
use pb::intake_client::IntakeClient;
use tonic::{Code, Request};
use tonic_types::StatusExt;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn unsent(pool: &sqlx::PgPool) -> i64 {
    count(
        pool,
        "SELECT (SELECT count(*) FROM cases.outbox WHERE sent_at IS NULL)
              + (SELECT count(*) FROM router.outbox WHERE sent_at IS NULL)
              + (SELECT count(*) FROM connectors.outbox WHERE sent_at IS NULL)",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_school_referral_arrives_at_the_health_agency_exactly_once() {
    let (agency, addr) = FakeAgency::start(&[]).await;
    let env = TestEnv::new(Some(addr)).await;
    let hub = env.start().await;
    let mut intake = IntakeClient::new(channel(&hub).await);
    let mut req = from_school(school_request("sub-exactly-once"));
    req.metadata_mut()
        .insert("traceparent", TRACEPARENT.parse().unwrap());

    let started = Instant::now();
    let r = intake
        .submit_school_referral(req)
        .await
        .unwrap()
        .into_inner();
    assert!(!r.replayed);
    assert_eq!(
        r.priority,
        pb::Priority::Urgent as i32,
        "high risk is urgent"
    );
    let arrived = eventually(30, "the delivery at the agency", || async {
        agency.requests().first().map(|s| s.at)
    })
    .await;
    println!(
        "end-to-end latency (gRPC submit -> agency HTTP receipt): {:?}",
        arrived.duration_since(started)
    );

    let pool = env.pool().await;
    wait_count(
        &pool,
        "SELECT count(*) FROM cases.referral_deliveries WHERE outcome = 'delivered'",
        1,
        30,
        "the agency's answer recorded on the case",
    )
    .await;

    // A retried submission creates nothing new.
    let again = intake
        .submit_school_referral(from_school(school_request("sub-exactly-once")))
        .await
        .unwrap()
        .into_inner();
    assert!(again.replayed);
    assert_eq!(
        (again.case_id.as_str(), again.referral_id.as_str()),
        (r.case_id.as_str(), r.referral_id.as_str())
    );

    // Quiescent: every outbox drained, every answer recorded. Then count.
    eventually(30, "every outbox drained", || async {
        (unsent(&pool).await == 0).then_some(())
    })
    .await;
    let seen = agency.requests();
    assert_eq!(seen.len(), 1, "exactly one delivery");
    let d = &seen[0];
    assert_eq!(
        d.idempotency_key.as_deref(),
        Some(format!("{}:health-cairo", r.referral_id).as_str())
    );
    assert_eq!(d.traceparent.as_deref(), Some(TRACEPARENT));
    assert_eq!(d.body["referral_id"], r.referral_id);
    // Redacted for health: identity and health present (Arabic intact), notes and economics absent.
    assert_eq!(
        d.body["case"]["child"]["name"]["as_given"],
        "مريم أحمد عبد الله"
    );
    assert_eq!(d.body["case"]["child"]["disability"], "ضعف سمع");
    assert!(d.body["case"].get("household").is_none());
    assert!(d.body["case"]["referral"].get("narrative").is_none());
    assert!(
        d.body["case"]["referral"].get("source").is_some(),
        "protection concern: who referred"
    );
    let leaked: Vec<_> = himaya_sharing::leaf_paths(&d.body["case"])
        .into_iter()
        .filter(|p| {
            let c = himaya_record::category_of(p)
                .map(|c| c.as_str())
                .unwrap_or("uncategorised");
            ![
                "reference",
                "identity",
                "contact",
                "location",
                "protection_concern",
                "health",
            ]
            .contains(&c)
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "fields outside the health policy: {leaked:?}"
    );

    assert_eq!(count(&pool, "SELECT count(*) FROM cases.cases").await, 1);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM router.disclosures WHERE decision = 'permit'"
        )
        .await,
        1
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM connectors.deliveries").await,
        1
    );

    // The case as the health agency sees it now lists the answer.
    let mut cases = CasesClient::new(channel(&hub).await);
    let mut get = Request::new(pb::GetCaseRequest {
        case_id: r.case_id.clone(),
        purpose: pb::Purpose::ServiceProvision.into(),
    });
    get.metadata_mut()
        .insert("x-himaya-agency", "health-cairo".parse().unwrap());
    let shared = cases.get_case(get).await.unwrap().into_inner();
    assert_eq!(shared.deliveries.len(), 1);
    assert_eq!(
        shared.deliveries[0].outcome(),
        pb::DeliveryOutcome::Delivered
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_referral_gets_field_violations_and_writes_nothing() {
    let env = TestEnv::new(None).await;
    let hub = env.start().await;
    let mut intake = IntakeClient::new(channel(&hub).await);
    let mut bad = school_request("");
    let child = bad.referral.as_mut().unwrap().child.as_mut().unwrap();
    child.sex = 0;
    child.date_of_birth = Some("2030-01-01".into());
    child.name = None;
    bad.school_agency_id = "health-cairo".into();
    let mut req = from_school(bad);
    req.metadata_mut()
        .insert("accept-language", "ar".parse().unwrap());
    let status = intake.submit_school_referral(req).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields: Vec<String> = status
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    for f in [
        "submission_id",
        "school_agency_id",
        "referral.child.sex",
        "referral.child.date_of_birth",
        "referral.child.name.as_given",
    ] {
        assert!(fields.iter().any(|x| x == f), "{f} missing from {fields:?}");
    }
    assert!(
        status.message().contains("حقل مطلوب"),
        "Arabic when asked: {}",
        status.message()
    );
    assert!(!status.message().contains("2030"), "values never echoed");

    // Oversized: refused before decoding.
    let mut big = school_request("sub-big");
    big.referral.as_mut().unwrap().narrative = Some("أ".repeat(200_000));
    let status = intake
        .submit_school_referral(from_school(big))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    let pool = env.pool().await;
    assert_eq!(count(&pool, "SELECT count(*) FROM cases.cases").await, 0);
    assert_eq!(count(&pool, "SELECT count(*) FROM cases.outbox").await, 0);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agency_5xx_is_retried_with_the_same_key_and_a_4xx_is_recorded_as_rejection() {
    let (agency, addr) = FakeAgency::start(&[503, 502]).await;
    let env = TestEnv::new(Some(addr)).await;
    let hub = env.start().await;
    let mut intake = IntakeClient::new(channel(&hub).await);
    intake
        .submit_school_referral(from_school(school_request("sub-retry")))
        .await
        .unwrap();
    let pool = env.pool().await;
    wait_count(
        &pool,
        "SELECT count(*) FROM cases.referral_deliveries WHERE outcome = 'delivered'",
        1,
        30,
        "delivered after two 5xx",
    )
    .await;
    let seen = agency.requests();
    assert_eq!(seen.len(), 3, "two failures then one success");
    assert!(seen
        .iter()
        .all(|s| s.idempotency_key == seen[0].idempotency_key));
    assert_eq!(
        count(&pool, "SELECT count(*) FROM connectors.deliveries").await,
        1
    );
    hub.stop().await;

    // A 4xx is the agency saying no: recorded once, never retried.
    let (agency, addr) = FakeAgency::start(&[422]).await;
    let env = TestEnv::new(Some(addr)).await;
    let hub = env.start().await;
    let mut intake = IntakeClient::new(channel(&hub).await);
    intake
        .submit_school_referral(from_school(school_request("sub-reject")))
        .await
        .unwrap();
    let pool = env.pool().await;
    wait_count(&pool, "SELECT count(*) FROM cases.referral_deliveries WHERE outcome = 'rejected' AND http_status = 422", 1, 30, "the rejection recorded").await;
    eventually(30, "every outbox drained", || async {
        (unsent(&pool).await == 0).then_some(())
    })
    .await;
    assert_eq!(agency.count(), 1);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_authorized_per_agency_and_per_case() {
    let (_agency, addr) = FakeAgency::start(&[]).await;
    let env = TestEnv::new(Some(addr)).await;
    let hub = env.start().await;
    let mut intake = IntakeClient::new(channel(&hub).await);
    let r = intake
        .submit_school_referral(from_school(school_request("sub-authz")))
        .await
        .unwrap()
        .into_inner();
    let mut cases = CasesClient::new(channel(&hub).await);
    let get = |case_id: &str, agency: Option<&str>, purpose: pb::Purpose| {
        let mut req = Request::new(pb::GetCaseRequest {
            case_id: case_id.into(),
            purpose: purpose.into(),
        });
        if let Some(a) = agency {
            req.metadata_mut()
                .insert("x-himaya-agency", a.parse().unwrap());
        }
        req
    };
    let sp = pb::Purpose::ServiceProvision;
    assert_eq!(
        cases
            .get_case(get(&r.case_id, None, sp))
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    assert_eq!(
        cases
            .get_case(get(&r.case_id, Some("nobody"), sp))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        cases
            .get_case(get(&r.case_id, Some("hotline-16000"), sp))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        cases
            .get_case(get("case_x", Some("mosa-cairo"), sp))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    assert_eq!(
        cases
            .get_case(get(
                &r.case_id,
                Some("mosa-cairo"),
                pb::Purpose::Unspecified
            ))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    let missing = himaya_record::CaseId::new().to_string();
    assert_eq!(
        cases
            .get_case(get(&missing, Some("mosa-cairo"), sp))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    // The referring school sees only references and location; never the child's name.
    let school = cases
        .get_case(get(&r.case_id, Some("school-cairo-alnour"), sp))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        school.categories,
        vec![
            i32::from(pb::DataCategory::Reference),
            pb::DataCategory::Location.into()
        ]
    );
    assert!(!school.document_json.contains("مريم"));
    // The ministry owning the case sees the narrative; statistics gets nothing by default.
    let mosa = cases
        .get_case(get(&r.case_id, Some("mosa-cairo"), sp))
        .await
        .unwrap()
        .into_inner();
    assert!(mosa
        .categories
        .contains(&pb::DataCategory::CaseNotes.into()));
    let stats = cases
        .get_case(get(&r.case_id, Some("mosa-cairo"), pb::Purpose::Statistics))
        .await
        .unwrap_err();
    assert_eq!(stats.code(), Code::PermissionDenied);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_short_answers_with_the_right_code_and_stall_nothing() {
    let env = TestEnv::new(None).await;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let mut intake = IntakeClient::new(ch.clone());
    let mut directory = pb::directory_client::DirectoryClient::new(ch.clone());

    // 129,000 empty caregivers: 258 KB, under the size limit. Refused for the count
    // alone, with a short answer, while another caller is served at once.
    let mut flood = school_request("sub-flood");
    flood.referral.as_mut().unwrap().caregivers = vec![pb::Caregiver::default(); 129_000];
    let mut req = from_school(flood);
    req.metadata_mut()
        .insert("accept-language", "ar".parse().unwrap());
    let started = Instant::now();
    let (flooded, listed) = tokio::join!(intake.submit_school_referral(req), async {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let t = Instant::now();
        let r = directory
            .list_agencies(as_agency(
                "health-cairo",
                pb::ListAgenciesRequest::default(),
            ))
            .await;
        (r, t.elapsed())
    });
    let status = flooded.unwrap_err();
    assert_eq!(
        status.code(),
        Code::InvalidArgument,
        "{}",
        &status.message()[..status.message().len().min(500)]
    );
    assert!(
        status.message().len() < 8 * 1024,
        "{} bytes",
        status.message().len()
    );
    assert!(
        status.message().contains("referral.caregivers"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("أكثر من 20"),
        "{}",
        status.message()
    );
    let violations = status.get_details_bad_request().unwrap().field_violations;
    assert!(violations.len() <= 50, "{} violations", violations.len());
    let (listed, waited) = listed;
    println!(
        "129,000 caregivers: refused in {:?}, message {} bytes, {} field violations; ListAgencies meanwhile {:?}",
        started.elapsed(),
        status.message().len(),
        violations.len(),
        waited
    );
    assert!(listed.is_ok());
    assert!(waited.as_millis() < 2_000, "ListAgencies waited {waited:?}");
    assert!(started.elapsed().as_secs() < 5);

    // Bytes that are not this call's message (invalid UTF-8 in field 1): INVALID_ARGUMENT,
    // in the caller's language, not INTERNAL.
    let mut raw = tonic::client::Grpc::new(ch.clone());
    raw.ready().await.unwrap();
    let mut req = from_school(NotUtf8 {
        value: vec![0xff, 0xfe, 0xfd],
    });
    req.metadata_mut()
        .insert("accept-language", "ar".parse().unwrap());
    let status = raw
        .unary::<_, pb::SubmitReferralResponse, _>(
            req,
            http::uri::PathAndQuery::from_static("/himaya.v1.Intake/SubmitSchoolReferral"),
            himaya_proto::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("protocol buffers"),
        "{}",
        status.message()
    );

    // Over the size limit: RESOURCE_EXHAUSTED naming the limit, in Arabic when asked.
    let mut big = school_request("sub-big");
    big.referral.as_mut().unwrap().narrative = Some("أ".repeat(200_000));
    let mut req = from_school(big);
    req.metadata_mut()
        .insert("accept-language", "ar".parse().unwrap());
    let status = intake.submit_school_referral(req).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("262144"), "{}", status.message());
    assert!(
        status.message().contains("الحد المسموح"),
        "{}",
        status.message()
    );
    hub.stop().await;
}

/// Field 1 as raw bytes: where the intake expects a string, bytes that are not UTF-8.
#[derive(Clone, PartialEq, prost::Message)]
struct NotUtf8 {
    #[prost(bytes = "vec", tag = "1")]
    value: Vec<u8>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn places_are_the_gazetteers_a_misspelling_is_folded_and_an_invented_place_refused() {
    let (agency, addr) = FakeAgency::start(&[]).await;
    let env = TestEnv::new(Some(addr)).await;
    let hub = env.start().await;
    let mut intake = IntakeClient::new(channel(&hub).await);

    // "القاهره" (ه for ة) is Cairo: stored as "القاهرة" and delivered to Cairo's agency.
    let mut misspelt = school_request("sub-misspelt");
    misspelt
        .referral
        .as_mut()
        .unwrap()
        .child
        .as_mut()
        .unwrap()
        .governorate = "القاهره".into();
    let r = intake
        .submit_school_referral(from_school(misspelt))
        .await
        .unwrap()
        .into_inner();
    eventually(30, "the delivery at Cairo's health agency", || async {
        (agency.count() == 1).then_some(())
    })
    .await;
    let pool = env.pool().await;
    let stored: String =
        sqlx::query_scalar("SELECT governorate FROM cases.cases WHERE case_id = $1")
            .bind(&r.case_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stored, "القاهرة", "one row in the statistics, not two");

    // An invented governorate, and a district Cairo does not have: refused, naming the
    // field and the allowed values, never the value sent.
    for (governorate, district, field) in [
        ("أطلانطس", "شبرا", "referral.child.governorate"),
        ("Cairo", "حي لا وجود له", "referral.child.district"),
    ] {
        let mut bad = school_request("sub-atlantis");
        let child = bad.referral.as_mut().unwrap().child.as_mut().unwrap();
        child.governorate = governorate.into();
        child.district = Some(district.into());
        let mut req = from_school(bad);
        req.metadata_mut()
            .insert("accept-language", "ar".parse().unwrap());
        let status = intake.submit_school_referral(req).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        let fields: Vec<String> = status
            .get_details_bad_request()
            .unwrap()
            .field_violations
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(fields, vec![field.to_owned()]);
        assert!(
            status.message().contains("دليل الأماكن"),
            "{}",
            status.message()
        );
        assert!(!status.message().contains(governorate) || governorate == "Cairo");
        assert!(!status.message().contains(district));
    }
    assert_eq!(count(&pool, "SELECT count(*) FROM cases.cases").await, 1);
    hub.stop().await;
}

/// Intake writes what arrives together in one transaction (a group commit): a burst of
/// concurrent submissions, some sent twice at the same instant and some again after, is
/// stored once per submission, each caller answered with its own case, the first
/// sending of each as new and every other as replayed, and one event per case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_submissions_is_stored_once_each_and_answered_each_with_its_own_case() {
    let env = TestEnv::new(None).await;
    let hub = env.start().await;
    let channel = channel(&hub).await;
    // One call first, so the server's settings reach the client before the burst: until
    // they do, an HTTP/2 client assumes no cap on concurrent streams, and the streams past
    // the server's (`limits.max_concurrent_streams`, 64) are refused (REFUSED_STREAM).
    tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap();
    // 80 submissions; the first 30 also sent a second time within the same burst.
    let ids: Vec<String> = (0..80)
        .map(|i| format!("sub-burst-{i}"))
        .chain((0..30).map(|i| format!("sub-burst-{i}")))
        .collect();
    let sends = ids.iter().map(|id| {
        let mut intake = IntakeClient::new(channel.clone());
        let id = id.clone();
        async move {
            let r = intake
                .submit_school_referral(from_school(school_request(&id)))
                .await
                .unwrap()
                .into_inner();
            (id, r)
        }
    });
    let answers = futures_util::future::join_all(sends).await;
    let mut by_id: std::collections::BTreeMap<String, Vec<pb::SubmitReferralResponse>> =
        Default::default();
    for (id, r) in answers {
        by_id.entry(id).or_default().push(r);
    }
    assert_eq!(by_id.len(), 80);
    let mut cases = std::collections::HashSet::new();
    for (id, rs) in &by_id {
        let new = rs.iter().filter(|r| !r.replayed).count();
        assert_eq!(new, 1, "{id}: exactly one answer opened the case");
        assert!(
            rs.iter()
                .all(|r| r.case_id == rs[0].case_id && r.referral_id == rs[0].referral_id),
            "{id}: every answer names the same case"
        );
        assert!(
            cases.insert(rs[0].case_id.clone()),
            "{id}: a case of its own"
        );
    }
    // Sent again after the burst: replayed, nothing written.
    let mut intake = IntakeClient::new(channel.clone());
    let again = intake
        .submit_school_referral(from_school(school_request("sub-burst-7")))
        .await
        .unwrap()
        .into_inner();
    assert!(again.replayed);
    assert_eq!(again.case_id, by_id["sub-burst-7"][0].case_id);

    let pool = env.pool().await;
    for (sql, what) in [
        ("SELECT count(*) FROM cases.cases", "cases"),
        ("SELECT count(*) FROM cases.submissions", "submissions"),
        ("SELECT count(*) FROM cases.case_history", "history entries"),
        ("SELECT count(*) FROM cases.children", "children indexed"),
        (
            "SELECT count(DISTINCT child_no) FROM cases.child_blocks",
            "children with name blocks",
        ),
    ] {
        assert_eq!(count(&pool, sql).await, 80, "{what}");
    }
    // One event per case, alone (`referral.created`) or with its group's
    // (`referrals.created`); a message is named by its (first) referral.
    let rows: Vec<(String, Vec<u8>, String)> = sqlx::query_as(
        "SELECT routing_key, payload, headers->>'x-correlation-id' FROM cases.outbox
          WHERE routing_key IN ('referral.created', 'referrals.created')",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut events = Vec::new();
    for (key, payload, correlation) in rows {
        let created = if key == "referrals.created" {
            let group = himaya_events::decode::<himaya_events::ReferralsCreated>(&payload).unwrap();
            assert_eq!(group.traceparents.len(), group.referrals.len());
            group.referrals
        } else {
            vec![himaya_events::decode::<himaya_events::ReferralCreated>(&payload).unwrap()]
        };
        assert_eq!(
            created[0].case.referral.referral_id.to_string(),
            correlation
        );
        events.extend(created);
    }
    let stored: std::collections::HashSet<(String, String)> =
        sqlx::query_as("SELECT case_id, referral_id FROM cases.submissions")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let announced: std::collections::HashSet<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e.case.case_id.to_string(),
                e.case.referral.referral_id.to_string(),
            )
        })
        .collect();
    assert_eq!(events.len(), 80, "one event per case");
    assert_eq!(announced, stored, "each event its own case's");
}
