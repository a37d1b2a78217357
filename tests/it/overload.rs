//! Overload is refused at once, not queued, and urgent work keeps a lane of its own
//! (`limits.intake_in_flight`, `urgent_in_flight`; `database.urgent_connections`).

use std::time::Duration;

use himaya_proto::v1 as pb;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::*;

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
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(
        refused.get_details_retry_info().and_then(|r| r.retry_delay),
        Some(Duration::from_millis(1_500))
    );
    assert!(refused.message().contains("1500"), "{}", refused.message());
    assert!(
        refused.message().contains("submission_id")
            && refused
                .message()
                .chars()
                .any(|c| ('\u{0600}'..='\u{06FF}').contains(&c)),
        "in Arabic, naming what to send again: {}",
        refused.message()
    );
    assert_eq!(
        refused.get_details_error_info().map(|i| i.reason),
        Some("GATEWAY_BUSY".to_owned())
    );

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
