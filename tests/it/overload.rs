//! Overload is refused at once, not queued, and urgent work keeps a lane of its own
//! (`limits.intake_in_flight`, `urgent_in_flight`; `database.urgent_connections`).

use std::time::Duration;

use himaya_proto::v1 as pb;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::*;
use himaya::hub::{Component, Hub};

/// Backends of this test's database waiting on a lock.
async fn waiting_on_locks(pool: &sqlx::PgPool) -> i64 {
    count(
        pool,
        "SELECT count(*) FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .await
}

fn escalation(call_ref: &str) -> pb::HotlineEscalationRequest {
    pb::HotlineEscalationRequest {
        submission_id: format!("sub-{call_ref}"),
        call_ref: call_ref.into(),
        operator_ref: "op-3".into(),
        referral: school_request(call_ref).referral,
        hotline_agency_id: "hotline-16000".into(),
    }
}

/// A refusal for overload: RESOURCE_EXHAUSTED with the retry hint, in Arabic, naming the
/// wait and what to send again.
fn assert_busy_in_arabic(refused: &tonic::Status, retry_after_ms: u64) {
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(
        refused.get_details_retry_info().and_then(|r| r.retry_delay),
        Some(Duration::from_millis(retry_after_ms))
    );
    assert!(
        refused.message().contains(&retry_after_ms.to_string())
            && refused.message().contains("submission_id")
            && refused
                .message()
                .chars()
                .any(|c| ('\u{0600}'..='\u{06FF}').contains(&c)),
        "in Arabic, naming the wait and what to send again: {}",
        refused.message()
    );
    assert_eq!(
        refused.get_details_error_info().map(|i| i.reason),
        Some("GATEWAY_BUSY".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_bound_routine_intake_is_refused_with_a_retry_hint_while_an_escalation_goes_through(
) {
    let mut env = TestEnv::new(None).await;
    env.settings.limits.intake_in_flight = 1;
    env.settings.limits.busy_retry_after_ms = 1_500;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let pool = env.pool().await;
    let intake = || pb::intake_client::IntakeClient::new(ch.clone());

    // Hold the cases table: a referral admitted now waits inside the hub, in its lane.
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE cases.cases IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let first = tokio::spawn({
        let mut c = intake();
        async move {
            c.submit_school_referral(from_school(school_request("sub-first")))
                .await
        }
    });
    eventually(20, "the first referral waits in the hub", || async {
        (waiting_on_locks(&pool).await == 1).then_some(())
    })
    .await;

    // The routine lane is full: the next one is refused at once, saying when to retry,
    // in the caller's language, and nothing of it is stored.
    let started = std::time::Instant::now();
    let mut ar = from_school(school_request("sub-second"));
    ar.metadata_mut()
        .insert("accept-language", "ar".parse().unwrap());
    let refused = intake().submit_school_referral(ar).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused at once, not queued"
    );
    assert_busy_in_arabic(&refused, 1_500);

    // A hotline escalation has its own lane and connections: admitted while routine
    // intake is full (it waits on the same lock, as the first one does).
    let urgent = tokio::spawn({
        let mut c = intake();
        async move {
            c.escalate_hotline_call(as_agency("hotline-16000", escalation("call-1")))
                .await
        }
    });
    eventually(20, "the escalation is admitted and waits too", || async {
        (waiting_on_locks(&pool).await == 2).then_some(())
    })
    .await;
    lock.commit().await.unwrap();
    first
        .await
        .unwrap()
        .expect("the first referral is accepted");
    urgent.await.unwrap().expect("the escalation is accepted");
    // The lane is free again: the refused referral, sent again, is accepted.
    let again = intake()
        .submit_school_referral(from_school(school_request("sub-second")))
        .await
        .expect("accepted once the lane has room");
    assert!(!again.into_inner().replayed);
    assert_eq!(count(&pool, "SELECT count(*) FROM cases.cases").await, 3);
    hub.stop().await;
}

/// A call that outlives `limits.request_timeout_ms` is ended by the gateway with
/// DEADLINE_EXCEEDED in the caller's language, and its place in the lane is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_the_request_timeout_is_ended_in_the_callers_language() {
    let mut env = TestEnv::new(None).await;
    env.settings.limits.request_timeout_ms = 700;
    env.settings.limits.intake_in_flight = 1;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let pool = env.pool().await;
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE cases.cases IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let mut ar = from_school(school_request("sub-slow"));
    ar.metadata_mut()
        .insert("accept-language", "ar".parse().unwrap());
    let ended = pb::intake_client::IntakeClient::new(ch.clone())
        .submit_school_referral(ar)
        .await
        .unwrap_err();
    assert_eq!(ended.code(), Code::DeadlineExceeded, "{ended:?}");
    assert!(
        ended.message().contains("700")
            && ended
                .message()
                .chars()
                .any(|c| ('\u{0600}'..='\u{06FF}').contains(&c)),
        "{}",
        ended.message()
    );
    lock.commit().await.unwrap();
    // The abandoned call rolled back and gave its place back: the same submission is
    // taken now, once.
    let again = pb::intake_client::IntakeClient::new(ch.clone())
        .submit_school_referral(from_school(school_request("sub-slow")))
        .await
        .expect("taken once the store is free");
    assert!(!again.into_inner().replayed);
    assert_eq!(count(&pool, "SELECT count(*) FROM cases.cases").await, 1);
    hub.stop().await;
}

/// A school referral the hub routes routinely (medium risk).
fn routine(submission_id: &str) -> pb::SchoolReferralRequest {
    let mut r = school_request(submission_id);
    if let Some(details) = r.referral.as_mut() {
        details.risk_level = pb::RiskLevel::Medium.into();
    }
    r
}

/// While the hub's own queues behind intake hold `limits.backlog_max_messages` (here the
/// router is not running, so referrals wait on its queue), routine referrals are refused
/// at once with a retry hint and nothing of them stored; a hotline escalation and a
/// high-risk referral still go through. Once the router has worked the backlog off,
/// routine referrals are taken again, and every referral taken reaches the agency once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_behind_intake_refuses_routine_referrals_until_it_is_worked_off() {
    let (agency, addr) = FakeAgency::start(&[]).await;
    let mut env = TestEnv::new(Some(addr)).await;
    env.settings.limits.backlog_max_messages = 4;
    env.settings.limits.backlog_sample_ms = 50;
    env.settings.limits.busy_retry_after_ms = 700;
    // Every queue declared once, then the hub without its router.
    env.start().await.stop().await;
    let without_router: Vec<Component> = Component::ALL
        .into_iter()
        .filter(|c| *c != Component::Router)
        .collect();
    let hub = Hub::start(env.settings.clone(), &without_router)
        .await
        .unwrap();
    let ch = channel(&hub).await;
    let pool = env.pool().await;
    let intake = || pb::intake_client::IntakeClient::new(ch.clone());

    let mut taken = Vec::new();
    let refused = loop {
        let n = taken.len();
        assert!(n < 100, "no refusal after {n} referrals");
        let mut req = from_school(routine(&format!("sub-{n}")));
        req.metadata_mut()
            .insert("accept-language", "ar".parse().unwrap());
        match intake().submit_school_referral(req).await {
            Ok(r) => taken.push(r.into_inner().referral_id),
            Err(refused) => break refused,
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    };
    assert!(
        taken.len() >= 4,
        "refused only at the bound: {}",
        taken.len()
    );
    assert_busy_in_arabic(&refused, 700);
    let metrics = text_of(&format!("http://{}/metrics", hub.metrics_addr)).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("himaya_intake_refusals_total{reason=\"backlog\"}")),
        "counted as refused for the backlog"
    );
    assert!(
        metrics.lines().any(|l| l
            .strip_prefix("himaya_intake_backlog_messages ")
            .and_then(|n| n.trim().parse::<u64>().ok())
            .is_some_and(|n| n >= 4)),
        "the backlog read"
    );
    let stored = count(&pool, "SELECT count(*) FROM cases.cases").await;
    assert_eq!(
        stored,
        taken.len() as i64,
        "nothing of the refused one stored"
    );

    // Urgent work passes: an escalation and a high-risk school referral.
    let call = intake()
        .escalate_hotline_call(as_agency("hotline-16000", escalation("call-b")))
        .await
        .expect("an escalation is taken while routine intake is refused")
        .into_inner();
    let high = intake()
        .submit_school_referral(from_school(school_request("sub-high")))
        .await
        .expect("a high-risk referral is taken while routine intake is refused")
        .into_inner();
    assert_eq!(high.priority, pb::Priority::Urgent as i32);
    let again = intake()
        .submit_school_referral(from_school(routine("sub-refused")))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::ResourceExhausted, "{again:?}");

    // The router comes: the backlog is worked off and routine intake opens again.
    let router = Hub::start(env.settings.clone(), &[Component::Router])
        .await
        .unwrap();
    let late = eventually(60, "a routine referral taken again", || async {
        intake()
            .submit_school_referral(from_school(routine("sub-refused")))
            .await
            .ok()
    })
    .await
    .into_inner();
    assert!(!late.replayed);
    taken.extend([call.referral_id, high.referral_id, late.referral_id]);
    eventually(60, "every referral taken at the agency", || async {
        taken.iter().all(|id| agency.received(id)).then_some(())
    })
    .await;
    for id in &taken {
        let n = agency
            .requests()
            .iter()
            .filter(|s| s.body["referral_id"] == id.as_str())
            .count();
        assert_eq!(n, 1, "delivered once");
    }
    router.stop().await;
    hub.stop().await;
}

/// The emergency line's connection is served on the urgent threads, and everything an
/// escalation passes through after it runs there too: with the routine runtime's one
/// worker held (as a saturated runtime holds it), an escalation over mutual TLS is
/// answered and reaches the agency meanwhile. The agency and the hotline's client run
/// on a runtime of their own, and the test's waits are its thread's, not the held
/// runtime's.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn an_escalation_is_answered_and_delivered_while_routine_work_holds_every_worker() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::sync::Arc;
    let side = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (agency, addr) = side.spawn(FakeAgency::start(&[])).await.unwrap();
    let mut env = TestEnv::new(Some(addr)).await;
    let dir = std::env::temp_dir().join(format!("{}-certs", env.db_name));
    let certs = secure(&mut env.settings, &dir);
    let hub = env.start().await;
    let (grpc, certs2) = (hub.grpc_addr, certs.clone());
    let ch = side
        .spawn(async move {
            tls_channel(grpc, &certs2, &certs2, Some("hotline-16000"))
                .await
                .unwrap()
        })
        .await
        .unwrap();
    let escalate = |call_ref: &'static str| {
        let ch = ch.clone();
        let (done, answer) = std::sync::mpsc::channel();
        side.spawn(async move {
            let answered = pb::intake_client::IntakeClient::new(ch)
                .escalate_hotline_call(escalation(call_ref))
                .await;
            let _ = done.send(answered.map(|r| r.into_inner().referral_id));
        });
        answer
    };
    // Pools opened and statements prepared, the connection handed to the urgent threads.
    let warm = escalate("call-warm")
        .recv_timeout(Duration::from_secs(30))
        .unwrap()
        .unwrap();
    eventually(30, "the first escalation delivered", || async {
        agency.received(&warm).then_some(())
    })
    .await;

    let (started, released) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let holding = tokio::spawn({
        let (started, released) = (started.clone(), released.clone());
        async move {
            started.store(true, SeqCst);
            std::thread::sleep(Duration::from_secs(8));
            released.store(true, SeqCst);
        }
    });
    while !started.load(SeqCst) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let referral = escalate("call-held")
        .recv_timeout(Duration::from_secs(6))
        .expect("answered while the routine worker is held")
        .expect("accepted");
    let until = std::time::Instant::now() + Duration::from_secs(6);
    while !agency.received(&referral) {
        assert!(
            std::time::Instant::now() < until,
            "delivered while the routine worker is held"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !released.load(SeqCst),
        "all of it while the worker was held"
    );
    holding.await.unwrap();
    // Both hops' urgent rows went out from the writers that committed them (intake's
    // urgent writer, the router), not through a relay: `himaya_store::handover`.
    let db = env.pool().await;
    for outbox in ["cases.outbox", "router.outbox"] {
        let rows = format!(
            "SELECT count(*) FROM {outbox}
              WHERE priority >= {} AND sent_at IS NOT NULL AND leased_by LIKE 'writer-%'",
            himaya_bus::URGENT_PRIORITY
        );
        assert!(
            count(&db, &rows).await >= 2,
            "{outbox}: the escalations' rows were not published by their writer"
        );
    }
    db.close().await;
    hub.stop().await;
    side.shutdown_background();
}
