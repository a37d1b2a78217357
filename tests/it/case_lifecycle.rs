//! The case lifecycle from docs/domain.md against the real database and broker: acceptance,
//! caseloads, reviews, every closure reason and its rules, reopening, refusals that write
//! nothing, and a deadline that fires once, after a restart.

use crate::helpers::*;
use himaya::hub::Hub;
use himaya_proto::convert::{code, codes, wire};
use himaya_proto::v1 as pb;
use himaya_record::lifecycle::{AcceptanceDecision, ClosureReason, NeedDomain, StaffRole};
use himaya_record::service_referral::{AbilityToPay, MedicalCoverage, TaskState};
use himaya_record::{CaseStatus, ConsentGiver, DataCategory, ServiceType};
use pb::case_work_client::CaseWorkClient;
use pb::consents_client::ConsentsClient;
use pb::duplicates_client::DuplicatesClient;
use pb::intake_client::IntakeClient;
use pb::oversight_client::OversightClient;
use pb::staff_client::StaffClient;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

const OWNER: &str = "mosa-cairo";

fn owned<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("x-himaya-agency", OWNER.parse().unwrap());
    r
}

struct Work {
    client: CaseWorkClient<Channel>,
    staff_client: StaffClient<Channel>,
    consents: ConsentsClient<Channel>,
    duplicates: DuplicatesClient<Channel>,
    oversight: OversightClient<Channel>,
    intake: IntakeClient<Channel>,
}

impl Work {
    async fn new(ch: Channel) -> Work {
        Work {
            client: CaseWorkClient::new(ch.clone()),
            staff_client: StaffClient::new(ch.clone()),
            consents: ConsentsClient::new(ch.clone()),
            duplicates: DuplicatesClient::new(ch.clone()),
            oversight: OversightClient::new(ch.clone()),
            intake: IntakeClient::new(ch),
        }
    }

    /// A new referred case (version 1). `dob` overrides the fixture's date of birth.
    async fn referral(&mut self, tag: &str, dob: Option<&str>) -> String {
        let mut req = school_request(tag);
        if let Some(d) = dob {
            req.referral
                .as_mut()
                .unwrap()
                .child
                .as_mut()
                .unwrap()
                .date_of_birth = Some(d.into());
        }
        self.intake
            .submit_school_referral(from_school(req))
            .await
            .unwrap()
            .into_inner()
            .case_id
    }

    async fn decide(
        &mut self,
        case_id: &str,
        version: i64,
        decision: &str,
        criteria: &[&str],
        reason: Option<&str>,
    ) -> Result<pb::CaseChange, Status> {
        let msg = pb::DecideAcceptanceRequest {
            case_id: case_id.into(),
            expected_version: version,
            actor: "sw-lead".into(),
            decision: wire::<AcceptanceDecision>(decision),
            vulnerability_criteria: criteria.iter().map(|c| c.to_string()).collect(),
            reason: reason.map(str::to_owned),
            referred_on_to: None,
            target_groups: vec![],
        };
        self.client
            .decide_acceptance(owned(msg))
            .await
            .map(tonic::Response::into_inner)
    }

    /// A plan of one goal whose actions are (responsible agency, service type), due in
    /// 14 days, numbered a1, a2, … in order.
    async fn plan(&mut self, case_id: &str, version: i64, actions: &[(&str, &str)]) {
        let due = (chrono::Utc::now().date_naive() + chrono::Duration::days(14))
            .format("%Y-%m-%d")
            .to_string();
        let actions = actions
            .iter()
            .map(|(agency, service)| pb::ActionInput {
                description: "إجراء".into(),
                responsible_agency: (*agency).into(),
                service_type: wire::<ServiceType>(service),
                due_on: due.clone(),
            })
            .collect();
        self.client
            .set_plan(owned(pb::SetPlanRequest {
                case_id: case_id.into(),
                expected_version: version,
                actor: "sw-1".into(),
                goals: vec![pb::GoalInput {
                    description: "الصحة والتعليم".into(),
                    actions,
                }],
            }))
            .await
            .unwrap();
    }

    /// The comprehensive assessment, finding one health need (hearing).
    async fn assess_health(&mut self, case_id: &str, version: i64) -> pb::CaseChange {
        self.client
            .record_assessment(owned(pb::RecordAssessmentRequest {
                case_id: case_id.into(),
                expected_version: version,
                actor: "sw-1".into(),
                risk_factors: vec!["عمل في ورشة".into()],
                protective_factors: vec![],
                needs: vec![pb::NeedInput {
                    domain: pb::NeedDomain::Health.into(),
                    description: "فحص السمع".into(),
                }],
            }))
            .await
            .unwrap()
            .into_inner()
    }

    async fn register(&mut self, case_id: &str) -> pb::CaseChange {
        self.decide(case_id, 1, "register", &["exploitative_labour"], None)
            .await
            .unwrap()
    }

    async fn staff(
        &mut self,
        id: &str,
        role: &str,
        supervisor: Option<&str>,
    ) -> Result<pb::StaffMember, Status> {
        let msg = pb::AddStaffRequest {
            staff_id: id.into(),
            role: wire::<StaffRole>(role),
            supervisor_id: supervisor.map(str::to_owned),
        };
        self.staff_client
            .add_staff(owned(msg))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn assign(
        &mut self,
        case_id: &str,
        version: i64,
        caseworker: &str,
    ) -> Result<pb::CaseChange, Status> {
        let msg = pb::AssignCaseRequest {
            case_id: case_id.into(),
            expected_version: version,
            actor: "sup-1".into(),
            caseworker_id: caseworker.into(),
        };
        self.client
            .assign_case(owned(msg))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn review(&mut self, case_id: &str, version: i64) -> Result<pb::CaseChange, Status> {
        let msg = pb::RecordReviewRequest {
            case_id: case_id.into(),
            expected_version: version,
            actor: "sw-1".into(),
            kind: pb::ReviewKind::HomeVisit.into(),
            child_seen: true,
            findings: "زيارة منزلية: الطفلة بخير".into(),
        };
        self.client
            .record_review(owned(msg))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn close(
        &mut self,
        case_id: &str,
        version: i64,
        reason: &str,
        consulted: Option<bool>,
    ) -> Result<pb::CaseChange, Status> {
        let msg = pb::CloseCaseRequest {
            case_id: case_id.into(),
            expected_version: version,
            actor: "sw-1".into(),
            reason: wire::<ClosureReason>(reason),
            parents_consulted: consulted,
            final_evaluation: "عادت إلى المدرسة".into(),
            recommendations: "متابعة مع المدرسة".into(),
        };
        self.client
            .close_case(owned(msg))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn reopen(&mut self, case_id: &str, version: i64) -> Result<pb::CaseChange, Status> {
        let msg = pb::ReopenCaseRequest {
            case_id: case_id.into(),
            expected_version: version,
            actor: "sw-1".into(),
            reason: "انقطعت عن المدرسة مجددًا".into(),
        };
        self.client
            .reopen_case(owned(msg))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn team(&mut self) {
        self.staff("sup-1", "supervisor", None).await.unwrap();
        self.staff("sw-1", "caseworker", Some("sup-1"))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_walks_from_referral_to_closure_and_back() {
    // The referral reaches an agency: the case's own changes are all that is announced.
    let (_agency, addr) = FakeAgency::start(&[]).await;
    let env = TestEnv::new(Some(addr)).await;
    let hub = env.start().await;
    let mut w = Work::new(channel(&hub).await).await;
    w.team().await;
    let case = w.referral("walk", None).await;
    let c = w.register(&case).await;
    assert_eq!((code::<CaseStatus>(c.status), c.version), ("registered", 2));
    let pool = env.pool().await;
    let open = |kind: &'static str| {
        let pool = pool.clone();
        let case = case.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM cases.deadlines WHERE case_id = $1 AND kind = $2 AND state = 'open'")
                .bind(case)
                .bind(kind)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(open("assignment").await, 1);
    assert_eq!(
        open("turns_18").await,
        1,
        "the 18th birthday is watched from the date of birth"
    );
    let c = w.assign(&case, 2, "sw-1").await.unwrap();
    assert_eq!(c.version, 3);
    assert_eq!(
        (open("assignment").await, open("first_contact").await),
        (0, 1)
    );
    let c = w.review(&case, 3).await.unwrap();
    assert!(c.note.unwrap().starts_with("next review due"));
    assert_eq!((open("first_contact").await, open("review").await), (0, 1));
    let c = w.close(&case, 4, "need_ended", Some(true)).await.unwrap();
    assert_eq!((code::<CaseStatus>(c.status), c.version), ("closed", 5));
    assert_eq!(
        count(
            &pool,
            &format!(
                "SELECT count(*) FROM cases.deadlines WHERE case_id = '{case}' AND state = 'open'"
            )
        )
        .await,
        0
    );
    let c = w.reopen(&case, 5).await.unwrap();
    assert_eq!((code::<CaseStatus>(c.status), c.version), ("registered", 6));
    let c = w
        .close(&case, 6, "contact_lost", Some(false))
        .await
        .unwrap();
    assert_eq!(code::<CaseStatus>(c.status), "closed");

    let history = w
        .client
        .get_history(owned(pb::GetHistoryRequest {
            case_id: case.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    let expected = [
        "opened by referral",
        "registered",
        "assigned",
        "reviewed",
        "closed",
        "reopened",
        "closed",
    ];
    // The lifecycle's own entries: the agency's answer (`delivery of …`) is in the
    // history too, at whatever version it arrived, and left out here.
    let lifecycle: Vec<_> = history
        .entries
        .iter()
        .filter(|e| !e.change.starts_with("delivery of"))
        .collect();
    assert_eq!(lifecycle.len(), expected.len());
    for (entry, prefix) in lifecycle.into_iter().zip(expected) {
        assert!(
            entry.change.starts_with(prefix),
            "{} should start with {prefix}",
            entry.change
        );
    }
    assert_eq!(
        history
            .entries
            .iter()
            .filter(|e| !e.change.starts_with("delivery of"))
            .map(|e| e.version)
            .collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6, 7]
    );
    // Every change was announced on the bus through the outbox.
    wait_count(&pool, "SELECT count(*) FROM cases.outbox WHERE routing_key = 'case.updated' AND sent_at IS NOT NULL", 6, 30, "case.updated events sent").await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_closure_reason_has_its_rules() {
    let env = TestEnv::new(None).await;
    let hub = env.start().await;
    let mut w = Work::new(channel(&hub).await).await;
    w.team().await;
    let reasons = [
        "need_ended",
        "death",
        "turned_18",
        "moved_out_of_reach",
        "contact_lost",
    ];
    for reason in reasons {
        // Turned 18: a child known only by an estimated age (intake refuses a birth date
        // that already makes them 18, and the test cannot wait a year).
        let case = if reason == "turned_18" {
            let mut req = school_request("close-turned-18");
            let child = req.referral.as_mut().unwrap().child.as_mut().unwrap();
            child.date_of_birth = None;
            child.estimated_age_years = Some(17);
            w.intake
                .submit_school_referral(from_school(req))
                .await
                .unwrap()
                .into_inner()
                .case_id
        } else {
            w.referral(&format!("close-{reason}"), None).await
        };
        w.register(&case).await;
        w.assign(&case, 2, "sw-1").await.unwrap();
        let mut version = 3;
        if reason == "need_ended" {
            // Not before a review, and not without the parents.
            assert_eq!(
                w.close(&case, 3, reason, Some(true))
                    .await
                    .unwrap_err()
                    .code(),
                Code::FailedPrecondition
            );
            w.review(&case, 3).await.unwrap();
            version = 4;
            assert_eq!(
                w.close(&case, version, reason, Some(false))
                    .await
                    .unwrap_err()
                    .code(),
                Code::FailedPrecondition
            );
        }
        let missing = w.close(&case, version, reason, None).await.unwrap_err();
        assert_eq!(
            missing.code(),
            Code::InvalidArgument,
            "parents_consulted must be said"
        );
        let c = w.close(&case, version, reason, Some(true)).await.unwrap();
        assert_eq!(code::<CaseStatus>(c.status), "closed", "{reason}");
    }
    // A 12-year-old cannot be closed as turned 18; an unknown reason is named.
    let case = w.referral("too-young", None).await;
    w.register(&case).await;
    let e = w
        .close(&case, 2, "turned_18", Some(true))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let e = w.close(&case, 2, "bored", Some(true)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message()
            .contains("need_ended, death, turned_18, moved_out_of_reach, contact_lost"),
        "{}",
        e.message()
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poverty_alone_goes_to_relief_and_bad_moves_write_nothing() {
    let env = TestEnv::new(None).await;
    let hub = env.start().await;
    let mut w = Work::new(channel(&hub).await).await;
    let case = w.referral("poverty", None).await;
    let c = w
        .decide(&case, 1, "register", &["poverty", "housing_need"], None)
        .await
        .unwrap();
    assert_eq!(code::<CaseStatus>(c.status), "referred_on");
    let note = c.note.unwrap();
    assert!(
        note.contains("material need alone") && note.contains("takaful-cairo"),
        "{note}"
    );

    let case = w.referral("illegal", None).await;
    // Closing a case that was never registered: refused, saying what is allowed.
    let e = w.close(&case, 1, "death", Some(true)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message()
            .contains("allowed: register, refer on, decline, merge"),
        "{}",
        e.message()
    );
    // A stale version: aborted, never last-write-wins.
    let e = w
        .decide(&case, 7, "register", &["neglect"], None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
    assert!(e.message().contains("version 1, not 7"), "{}", e.message());
    // Declining needs a reason; unknown criteria are named.
    let e = w.decide(&case, 1, "decline", &[], None).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = w
        .decide(&case, 1, "register", &["wealth"], None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // A decision left UNSPECIFIED, or a number no decision has, is refused naming the
    // field and the choices, in the caller's language.
    for (raw, lang, expected) in [
        (
            0,
            "en",
            "decision: must be chosen; one of: register, refer_on, decline",
        ),
        (
            42,
            "ar",
            "decision: يجب الاختيار من: register, refer_on, decline",
        ),
    ] {
        let mut r = owned(pb::DecideAcceptanceRequest {
            case_id: case.clone(),
            expected_version: 1,
            actor: "sw-lead".into(),
            decision: raw,
            vulnerability_criteria: vec!["neglect".into()],
            ..Default::default()
        });
        r.metadata_mut()
            .insert("accept-language", lang.parse().unwrap());
        let e = w.client.decide_acceptance(r).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains(expected), "{}", e.message());
        let fields: Vec<String> = e
            .get_details_bad_request()
            .unwrap()
            .field_violations
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(fields, ["decision"]);
    }
    // Target groups come from the configured vocabulary too.
    let mut msg = pb::DecideAcceptanceRequest {
        case_id: case.clone(),
        expected_version: 1,
        actor: "sw-lead".into(),
        decision: pb::AcceptanceDecision::Register.into(),
        vulnerability_criteria: vec!["neglect".into()],
        reason: None,
        referred_on_to: None,
        // A number outside the vocabulary.
        target_groups: vec![99],
    };
    let e = w
        .client
        .decide_acceptance(owned(msg.clone()))
        .await
        .unwrap_err();
    let fields: Vec<String> = e
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["target_groups[0]"]);
    // Only the case-owning ministry does case work.
    let mut r = Request::new(pb::GetHistoryRequest {
        case_id: case.clone(),
    });
    r.metadata_mut()
        .insert("x-himaya-agency", "health-cairo".parse().unwrap());
    assert_eq!(
        w.client.get_history(r).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let pool = env.pool().await;
    assert_eq!(
        count(
            &pool,
            &format!("SELECT version FROM cases.cases WHERE case_id = '{case}'")
        )
        .await,
        1,
        "nothing half-written"
    );
    let c = w
        .decide(&case, 1, "decline", &[], Some("ليست حالة حماية"))
        .await
        .unwrap();
    assert_eq!(code::<CaseStatus>(c.status), "declined");
    assert_eq!(
        w.review(&case, 2).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    // Registered: the groups given are kept; none given keeps the referral's.
    let groups = |case: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, serde_json::Value>(
                "SELECT record->'acceptance'->'target_groups' FROM cases.cases WHERE case_id = $1",
            )
            .bind(case)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let case = w.referral("groups", None).await;
    msg.case_id = case.clone();
    msg.target_groups = vec![pb::TargetGroup::FosterFamily.into()];
    w.client.decide_acceptance(owned(msg)).await.unwrap();
    assert_eq!(groups(case).await, serde_json::json!(["foster_family"]));
    let case = w.referral("groups-default", None).await;
    w.register(&case).await;
    assert_eq!(
        groups(case).await,
        serde_json::json!(["cash_transfer_household"])
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caseload_caps_name_who_has_room() {
    let mut env = TestEnv::new(None).await;
    env.settings.lifecycle.max_cases_per_caseworker = 2;
    env.settings.lifecycle.max_caseworkers_per_supervisor = 2;
    let hub = env.start().await;
    let mut w = Work::new(channel(&hub).await).await;
    w.staff("sup-1", "supervisor", None).await.unwrap();
    w.staff("sup-2", "supervisor", None).await.unwrap();
    w.staff("sw-1", "caseworker", Some("sup-1")).await.unwrap();
    w.staff("sw-2", "caseworker", Some("sup-1")).await.unwrap();
    let e = w
        .staff("sw-3", "caseworker", Some("sup-1"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("sup-2 (0)"), "{}", e.message());
    let mut cases = Vec::new();
    for i in 0..3 {
        let case = w.referral(&format!("load-{i}"), None).await;
        w.register(&case).await;
        cases.push(case);
    }
    w.assign(&cases[0], 2, "sw-1").await.unwrap();
    w.assign(&cases[1], 2, "sw-1").await.unwrap();
    let e = w.assign(&cases[2], 2, "sw-1").await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message().contains("the limit is 2") && e.message().contains("sw-2 (0)"),
        "{}",
        e.message()
    );
    w.assign(&cases[2], 2, "sw-2").await.unwrap();
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_fires_once_even_across_a_restart() {
    // The referral reaches an agency, so the only escalation is the missed deadline.
    let (_agency, addr) = FakeAgency::start(&[]).await;
    let mut env = TestEnv::new(Some(addr)).await;
    env.settings.lifecycle.deadlines.high.assign_within_secs = 1;
    // The first hub checks once at start, then not for an hour.
    env.settings.lifecycle.deadline_check_interval_ms = 3_600_000;
    let hub = env.start().await;
    let mut w = Work::new(channel(&hub).await).await;
    let case = w.referral("deadline", None).await;
    w.register(&case).await;
    hub.stop().await;
    // As if the case predated the children index: the next start indexes it.
    let pool = env.pool().await;
    let indexed = format!("SELECT count(*) FROM cases.children WHERE case_id = '{case}'");
    sqlx::query("DELETE FROM cases.children")
        .execute(&pool)
        .await
        .unwrap();

    // A new process finds the stored deadline and escalates it, once.
    env.settings.lifecycle.deadline_check_interval_ms = 50;
    let hub = env.start().await;
    assert_eq!(count(&pool, &indexed).await, 1, "children index backfilled");
    let blocks = format!(
        "SELECT count(*) FROM cases.child_blocks b JOIN cases.children c USING (child_no) WHERE c.case_id = '{case}'"
    );
    assert!(count(&pool, &blocks).await > 0, "its name blocks filed too");
    wait_count(
        &pool,
        "SELECT count(*) FROM cases.escalations WHERE kind = 'assignment'",
        1,
        30,
        "the escalation",
    )
    .await;
    wait_count(&pool, "SELECT count(*) FROM cases.outbox WHERE routing_key = 'case.deadline.missed' AND sent_at IS NOT NULL", 1, 30, "case.deadline.missed published").await;
    // Many more engine rounds later, still exactly one.
    let rounds_later = std::time::Instant::now() + std::time::Duration::from_millis(500);
    eventually(5, "engine rounds to pass", || async {
        (std::time::Instant::now() > rounds_later).then_some(())
    })
    .await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM cases.escalations").await,
        1
    );
    let mut w = Work::new(channel(&hub).await).await;
    let list = w
        .client
        .list_escalations(owned(pb::ListEscalationsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.escalations.len(), 1);
    assert_eq!(list.escalations[0].case_id, case);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_found_linked_and_merged_keeping_both_histories() {
    let env = TestEnv::new(None).await;
    let hub = env.start().await;
    let mut w = Work::new(channel(&hub).await).await;
    let a = w.referral("dup-a", None).await;
    // The same girl, referred again by someone who spelled her name differently and
    // could only estimate her age.
    let mut again = school_request("dup-b");
    let child = again.referral.as_mut().unwrap().child.as_mut().unwrap();
    child.name.as_mut().unwrap().as_given = "مَرْيَم احمد عبدالله".into();
    child.name.as_mut().unwrap().transliteration = Some("Mariam Ahmed Abdallah".into());
    child.date_of_birth = None;
    child.estimated_age_years = Some(12);
    let b = w
        .intake
        .submit_school_referral(from_school(again))
        .await
        .unwrap()
        .into_inner()
        .case_id;
    let mut stranger = school_request("dup-c");
    let child = stranger.referral.as_mut().unwrap().child.as_mut().unwrap();
    child.name.as_mut().unwrap().as_given = "خالد يوسف".into();
    child.name.as_mut().unwrap().transliteration = Some("Khaled Youssef".into());
    child.sex = pb::Sex::Male.into();
    child.date_of_birth = Some("2016-05-01".into());
    let c = w
        .intake
        .submit_school_referral(from_school(stranger))
        .await
        .unwrap()
        .into_inner()
        .case_id;

    let found = w
        .duplicates
        .find_duplicates(owned(pb::FindDuplicatesRequest {
            case_id: b.clone(),
            min_score: 0.0,
        }))
        .await
        .unwrap()
        .into_inner()
        .candidates;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].case_id, a);
    assert!(found[0].score > 0.8, "{}", found[0].score);

    let link = |x: &str, y: &str| pb::LinkCasesRequest {
        case_id: x.into(),
        other_case_id: y.into(),
        kind: pb::LinkKind::Sibling.into(),
        actor: "sw-1".into(),
    };
    assert!(
        w.duplicates
            .link_cases(owned(link(&a, &c)))
            .await
            .unwrap()
            .into_inner()
            .created
    );
    assert!(
        !w.duplicates
            .link_cases(owned(link(&c, &a)))
            .await
            .unwrap()
            .into_inner()
            .created,
        "one link, either way round"
    );

    let merge = |keep: &str, kv: i64, gone: &str, gv: i64| pb::MergeCasesRequest {
        keep_case_id: keep.into(),
        keep_version: kv,
        merge_case_id: gone.into(),
        merge_version: gv,
        actor: "sup-1".into(),
    };
    let kept = w
        .duplicates
        .merge_cases(owned(merge(&a, 1, &b, 1)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((kept.case_id.as_str(), kept.version), (a.as_str(), 2));
    let again = w
        .duplicates
        .merge_cases(owned(merge(&c, 1, &b, 2)))
        .await
        .unwrap_err();
    assert_eq!(
        again.code(),
        Code::FailedPrecondition,
        "a merged case cannot be merged again"
    );
    let history = w
        .client
        .get_history(owned(pb::GetHistoryRequest { case_id: a.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert!(history.entries.iter().any(|e| e
        .change
        .starts_with(&format!("from merged {b} v1: opened by referral"))));
    let merged_history = w
        .client
        .get_history(owned(pb::GetHistoryRequest { case_id: b.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert!(merged_history
        .entries
        .last()
        .unwrap()
        .change
        .starts_with("merged into"));
    let found = w
        .duplicates
        .find_duplicates(owned(pb::FindDuplicatesRequest {
            case_id: a.clone(),
            min_score: 0.0,
        }))
        .await
        .unwrap()
        .into_inner()
        .candidates;
    assert!(
        found.iter().all(|f| f.case_id != b),
        "a merged child is no longer a candidate"
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indicators_count_cases_caseloads_deadlines_and_agency_answers() {
    let (_agency, addr) = FakeAgency::start(&[201, 422]).await;
    let env = TestEnv::new(Some(addr)).await;
    let hub = env.start().await;
    let mut w = Work::new(channel(&hub).await).await;
    w.team().await;
    let a = w.referral("ind-a", None).await;
    let pool = env.pool().await;
    wait_count(
        &pool,
        "SELECT count(*) FROM cases.referral_deliveries",
        1,
        30,
        "the first answer",
    )
    .await;
    let _b = w.referral("ind-b", None).await;
    wait_count(
        &pool,
        "SELECT count(*) FROM cases.referral_deliveries",
        2,
        30,
        "the second answer",
    )
    .await;
    w.register(&a).await;
    w.assign(&a, 2, "sw-1").await.unwrap();

    let i = w
        .oversight
        .get_indicators(owned(pb::GetIndicatorsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let n = |status: &str| {
        i.cases
            .iter()
            .filter(|c| code::<CaseStatus>(c.status) == status)
            .map(|c| c.count)
            .sum::<i64>()
    };
    assert_eq!((n("registered"), n("referred")), (1, 1));
    assert!(i
        .cases
        .iter()
        .all(|c| c.governorate == "القاهرة" && c.risk_level() == pb::RiskLevel::High));
    let sw1 = i
        .caseloads
        .iter()
        .find(|c| c.caseworker_id == "sw-1")
        .unwrap();
    assert_eq!((sw1.open_cases, sw1.limit), (1, 25));
    let health = i
        .agencies
        .iter()
        .find(|x| x.agency_id == "health-cairo")
        .unwrap();
    assert_eq!((health.delivered, health.rejected), (1, 1));
    assert!((health.acceptance_rate - 0.5).abs() < 1e-9);
    assert!(health.median_response_ms > 0.0);
    assert!(
        i.overdue
            .iter()
            .any(|o| o.kind() == pb::DeadlineKind::FirstContact),
        "{:?}",
        i.overdue
    );
    let elsewhere = w
        .oversight
        .get_indicators(owned(pb::GetIndicatorsRequest {
            governorate: "حلب".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(elsewhere.cases.is_empty() && elsewhere.agencies.is_empty());
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_follows_the_assessment_and_each_action_has_a_deadline() {
    let env = TestEnv::new(None).await;
    let hub = env.start().await;
    let mut w = Work::new(channel(&hub).await).await;
    w.team().await;
    let case = w.referral("plan", None).await;
    w.register(&case).await;
    w.assign(&case, 2, "sw-1").await.unwrap();
    let today = chrono::Utc::now().date_naive();
    let action = |agency: &str, service: &str, due: chrono::NaiveDate| pb::ActionInput {
        description: "إجراء".into(),
        responsible_agency: agency.into(),
        service_type: wire::<ServiceType>(service),
        due_on: due.format("%Y-%m-%d").to_string(),
    };
    let plan = |version: i64, actions: Vec<pb::ActionInput>| pb::SetPlanRequest {
        case_id: case.clone(),
        expected_version: version,
        actor: "sw-1".into(),
        goals: vec![pb::GoalInput {
            description: "العودة إلى المدرسة والعلاج".into(),
            actions,
        }],
    };
    let e = w
        .client
        .set_plan(owned(plan(
            3,
            vec![action("health-cairo", "health", today)],
        )))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::FailedPrecondition,
        "assessment first: {}",
        e.message()
    );

    let assess = |domain: &str| pb::RecordAssessmentRequest {
        case_id: case.clone(),
        expected_version: 3,
        actor: "sw-1".into(),
        risk_factors: vec!["عمل في ورشة".into()],
        protective_factors: vec!["أم داعمة".into()],
        needs: vec![pb::NeedInput {
            // "cosmic" is no domain: it goes as UNSPECIFIED, which is refused.
            domain: wire::<NeedDomain>(domain),
            description: "العودة إلى المدرسة".into(),
        }],
    };
    assert_eq!(
        w.client
            .record_assessment(owned(assess("cosmic")))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    let c = w
        .client
        .record_assessment(owned(assess("education")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(c.version, 4);

    // The agency must offer the service; the due date cannot be past.
    let bad = plan(
        4,
        vec![
            action("health-cairo", "education", today),
            action("health-cairo", "health", today.pred_opt().unwrap()),
        ],
    );
    let e = w.client.set_plan(owned(bad)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let fields: Vec<String> = e
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert!(
        fields.contains(&"goals[0].actions[0].service_type".to_owned())
            && fields.contains(&"goals[0].actions[1].due_on".to_owned()),
        "{fields:?}"
    );

    let good = plan(
        4,
        vec![
            action("health-cairo", "health", today),
            action(
                "school-cairo-alnour",
                "education",
                today + chrono::Duration::days(30),
            ),
        ],
    );
    let c = w.client.set_plan(owned(good)).await.unwrap().into_inner();
    assert_eq!(c.version, 5);
    let pool = env.pool().await;
    assert_eq!(count(&pool, &format!("SELECT count(*) FROM cases.deadlines WHERE case_id = '{case}' AND kind = 'plan_action' AND state = 'open'")).await, 2);

    let done = |version: i64| pb::CompleteActionRequest {
        case_id: case.clone(),
        expected_version: version,
        actor: "sw-1".into(),
        action_id: "a1".into(),
    };
    assert_eq!(
        w.client
            .complete_action(owned(done(5)))
            .await
            .unwrap()
            .into_inner()
            .version,
        6
    );
    assert_eq!(
        w.client
            .complete_action(owned(done(6)))
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );
    assert_eq!(count(&pool, &format!("SELECT count(*) FROM cases.deadlines WHERE case_id = '{case}' AND ref_id = 'a1' AND state = 'met'")).await, 1);
    hub.stop().await;
}

type ServiceReferralsClient = pb::service_referrals_client::ServiceReferralsClient<Channel>;

/// A registered case with a plan of three actions (health, education, case management)
/// for the service-referral tests: the simulated health agency (with a connector; the
/// school has none), the environment, the hub, the clients and the case id.
async fn referring() -> (
    FakeAgency,
    TestEnv,
    Hub,
    Work,
    ServiceReferralsClient,
    String,
) {
    let (agency, addr) = FakeAgency::start(&[]).await;
    let env = TestEnv::new(Some(addr)).await;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let mut w = Work::new(ch.clone()).await;
    let sr = ServiceReferralsClient::new(ch);
    w.team().await;
    let case = w.referral("service-referrals", None).await;
    w.register(&case).await;
    w.assign(&case, 2, "sw-1").await.unwrap();
    let c = w.assess_health(&case, 3).await;
    w.plan(
        &case,
        c.version,
        &[
            ("health-cairo", "health"),
            ("school-cairo-alnour", "education"),
            ("mosa-cairo", "case_management"),
        ],
    )
    .await;
    (agency, env, hub, w, sr, case)
}

/// How many service referrals `agency` lists on `case`.
async fn listed(sr: &ServiceReferralsClient, agency: &str, case: &str) -> usize {
    let req = as_agency(
        agency,
        pb::ListServiceReferralsRequest {
            case_id: case.to_owned(),
            state: pb::ServiceReferralState::Unspecified.into(),
        },
    );
    sr.clone()
        .list_service_referrals(req)
        .await
        .unwrap()
        .into_inner()
        .referrals
        .len()
}

/// The case history's service-referral lines and the changes published for them.
async fn referral_changes(w: &mut Work, pool: &sqlx::PgPool, case: &str) -> (usize, i64) {
    let history = w
        .client
        .get_history(owned(pb::GetHistoryRequest {
            case_id: case.to_owned(),
        }))
        .await
        .unwrap()
        .into_inner();
    let lines = history
        .entries
        .iter()
        .filter(|e| e.change.starts_with("service referral"))
        .count();
    let events = count(
        pool,
        "SELECT count(*) FROM cases.outbox WHERE event_type = 'himaya.v1.ServiceReferralChanged'",
    )
    .await;
    (lines, events)
}

/// Each agency's service referrals: (agency, sent, accepted, rejected, unanswered, rate).
async fn referral_indicators(w: &mut Work) -> Vec<(String, i64, i64, i64, i64, f64)> {
    let ind = w
        .oversight
        .get_indicators(owned(pb::GetIndicatorsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    ind.service_referrals
        .iter()
        .map(|s| {
            (
                s.agency_id.clone(),
                s.sent,
                s.accepted,
                s.rejected,
                s.unanswered,
                s.acceptance_rate,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_referral_follows_the_agencys_task_states_to_completion() {
    let (agency, env, hub, mut w, mut sr, case) = referring().await;
    let create = |action_id: &str| pb::CreateServiceReferralRequest {
        case_id: case.clone(),
        action_id: action_id.into(),
        actor: "sw-1".into(),
        ability_to_pay: pb::AbilityToPay::None.into(),
    };

    // a1 goes to the health agency's system through its connector: received.
    let health = sr
        .create_service_referral(owned(create("a1")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            code::<TaskState>(health.state),
            health.to_agency.as_str(),
            code::<ServiceType>(health.service_type)
        ),
        ("requested", "health-cairo", "health")
    );
    assert!(!health.answer_due_at.is_empty());
    let id = health.service_referral_id.clone();
    let seen = eventually(20, "the service referral reaches the agency", || {
        let agency = agency.clone();
        let id = id.clone();
        async move {
            agency
                .requests()
                .into_iter()
                .find(|s| s.body["referral_id"] == id.as_str())
        }
    })
    .await;
    assert_eq!(seen.body["service_type"], "health");
    assert_eq!(seen.idempotency_key, Some(format!("{id}:health-cairo")));
    let get = pb::GetServiceReferralRequest {
        service_referral_id: id.clone(),
    };
    let received = eventually(20, "the delivery marks it received", || {
        let mut sr = sr.clone();
        let get = get.clone();
        async move {
            let r = sr
                .get_service_referral(owned(get))
                .await
                .unwrap()
                .into_inner();
            (r.state() == pb::ServiceReferralState::Received).then_some(r)
        }
    })
    .await;
    assert_eq!(received.agency_reference.as_deref(), Some("SIM-1"));

    // Refusals: a second live referral, the agency's own action, an unknown action.
    for (a, code) in [
        ("a1", Code::FailedPrecondition),
        ("a3", Code::FailedPrecondition),
        ("a9", Code::NotFound),
    ] {
        let e = sr
            .create_service_referral(owned(create(a)))
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{a}: {}", e.message());
    }
    let update =
        |version: i64, state: &str, reason: Option<&str>| pb::UpdateServiceReferralRequest {
            service_referral_id: id.clone(),
            expected_version: version,
            state: wire::<TaskState>(state),
            reason: reason.map(str::to_owned),
            actor: "dr-7".into(),
        };
    let v = received.version;
    let e = sr
        .update_service_referral(as_agency("health-cairo", update(v - 1, "accepted", None)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
    let e = sr
        .update_service_referral(as_agency("health-cairo", update(v, "completed", None)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message().contains("allowed: accepted, rejected"),
        "{}",
        e.message()
    );
    let e = sr
        .update_service_referral(owned(update(v, "accepted", None)))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::FailedPrecondition,
        "the referrer may only cancel"
    );
    let e = sr
        .get_service_referral(as_agency("school-cairo-alnour", get.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let mut v = v;
    for (state, note) in [
        ("accepted", None),
        ("in_progress", None),
        ("in_progress", Some("first session held")),
        ("completed", None),
    ] {
        if (state, note) == ("in_progress", Some("first session held")) {
            // A further report on a referral in progress says what happened, or is refused.
            let e = sr
                .update_service_referral(as_agency("health-cairo", update(v, state, None)))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
            assert!(e.message().contains("reason"), "{}", e.message());
        }
        let r = sr
            .update_service_referral(as_agency("health-cairo", update(v, state, note)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(code::<TaskState>(r.state), state);
        assert_eq!(r.reason.as_deref(), note);
        v = r.version;
    }
    let done = sr
        .get_service_referral(owned(get.clone()))
        .await
        .unwrap()
        .into_inner();
    let states: Vec<&str> = done
        .changes
        .iter()
        .map(|c| code::<TaskState>(c.state))
        .collect();
    assert_eq!(
        states,
        [
            "requested",
            "received",
            "accepted",
            "in_progress",
            "in_progress",
            "completed"
        ]
    );
    assert!(done.answer_due_at.is_empty());
    let pool = env.pool().await;
    assert_eq!(
        count(
            &pool,
            &format!(
                "SELECT count(*) FROM cases.deadlines WHERE ref_id = '{id}' AND state = 'met'"
            )
        )
        .await,
        1
    );

    // The referrer and the health agency each list it; the history has each change.
    assert_eq!(listed(&sr, OWNER, &case).await, 1);
    assert_eq!(listed(&sr, "health-cairo", &case).await, 1);
    // requested, received, accepted, in progress, one more report, completed.
    assert_eq!(referral_changes(&mut w, &pool, &case).await, (6, 6));
    assert_eq!(
        referral_indicators(&mut w).await,
        [("health-cairo".to_owned(), 1, 1, 0, 0, 1.0)]
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_service_referral_escalates_and_a_refused_one_may_be_made_again() {
    let (_agency, env, hub, mut w, mut sr, case) = referring().await;
    let create = |action_id: &str| pb::CreateServiceReferralRequest {
        case_id: case.clone(),
        action_id: action_id.into(),
        actor: "sw-1".into(),
        ability_to_pay: pb::AbilityToPay::None.into(),
    };
    let pool = env.pool().await;

    // a2 goes to a school without a connector: it answers through the API, or not at
    // all, and the unanswered referral escalates to the supervisor.
    let school = sr
        .create_service_referral(owned(create("a2")))
        .await
        .unwrap()
        .into_inner();
    let sid = school.service_referral_id.clone();
    sqlx::query(
        "UPDATE cases.deadlines SET due_at = now() - interval '1 second' WHERE ref_id = $1",
    )
    .bind(&sid)
    .execute(&pool)
    .await
    .unwrap();
    eventually(20, "the unanswered referral escalates", || {
        let pool = pool.clone();
        let sid = sid.clone();
        async move {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM cases.escalations WHERE kind = 'service_referral' AND ref_id = $1 AND supervisor_id = 'sup-1'")
                .bind(&sid)
                .fetch_one(&pool)
                .await
                .unwrap();
            (n == 1).then_some(())
        }
    })
    .await;
    let reject = |reason: Option<&str>| pb::UpdateServiceReferralRequest {
        service_referral_id: sid.clone(),
        expected_version: 1,
        state: pb::ServiceReferralState::Rejected.into(),
        reason: reason.map(str::to_owned),
        actor: "officer-17".into(),
    };
    let e = sr
        .update_service_referral(as_agency("school-cairo-alnour", reject(None)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let r = sr
        .update_service_referral(as_agency(
            "school-cairo-alnour",
            reject(Some("لا توجد أماكن في الفصل")),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (code::<TaskState>(r.state), r.reason.as_deref()),
        ("rejected", Some("لا توجد أماكن في الفصل"))
    );

    // Rejected, it may be referred again; the referrer cancels, with a reason.
    let again = sr
        .create_service_referral(owned(create("a2")))
        .await
        .unwrap()
        .into_inner();
    let cancel = |reason: Option<&str>| pb::UpdateServiceReferralRequest {
        service_referral_id: again.service_referral_id.clone(),
        expected_version: 1,
        state: pb::ServiceReferralState::Cancelled.into(),
        reason: reason.map(str::to_owned),
        actor: "sw-1".into(),
    };
    assert_eq!(
        sr.update_service_referral(owned(cancel(None)))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    let r = sr
        .update_service_referral(owned(cancel(Some("نُقل الطفل إلى مدرسة أخرى"))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state(), pb::ServiceReferralState::Cancelled);
    assert_eq!(
        count(
            &pool,
            &format!(
                "SELECT count(*) FROM cases.deadlines WHERE ref_id = '{}' AND state = 'cancelled'",
                again.service_referral_id
            )
        )
        .await,
        1
    );

    // The referrer lists both, the school both; the history has each change.
    assert_eq!(listed(&sr, OWNER, &case).await, 2);
    assert_eq!(listed(&sr, "school-cairo-alnour", &case).await, 2);
    assert_eq!(listed(&sr, "health-cairo", &case).await, 0);
    // a2: requested, rejected; again: requested, cancelled.
    assert_eq!(referral_changes(&mut w, &pool, &case).await, (4, 4));
    assert_eq!(
        referral_indicators(&mut w).await,
        [("school-cairo-alnour".to_owned(), 2, 0, 1, 0, 0.0)]
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_map_is_kept_by_agencies_and_proposed_for_referrals() {
    use pb::directory_client::DirectoryClient;
    let env = TestEnv::new(None).await;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let mut dir = DirectoryClient::new(ch.clone());
    let mut w = Work::new(ch).await;
    let service =
        |id: &str, version: i64, kind: pb::ServiceType, capacity: i32| pb::UpsertServiceRequest {
            service_id: id.into(),
            expected_version: version,
            service_type: kind.into(),
            name_ar: "عيادة السمع للأطفال".into(),
            name_en: "Children's hearing clinic".into(),
            governorate: "القاهرة".into(),
            districts: vec!["شبرا".into()],
            capacity,
            languages: vec!["ar".into(), "en".into()],
            accepting: true,
        };
    let clinic = dir
        .upsert_service(as_agency(
            "health-cairo",
            service("", 0, pb::ServiceType::Health, 10),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((clinic.version, clinic.removed), (1, false));
    assert!(clinic.service_id.starts_with("svc_"));
    // Full: on the map, never proposed.
    dir.upsert_service(as_agency(
        "health-cairo",
        service("", 0, pb::ServiceType::Psychosocial, 0),
    ))
    .await
    .unwrap();

    // Refusals: a service the agency does not offer, a governorate it does not cover, a
    // language that is not a code; another agency's service; a stale version.
    let mut bad = service("", 0, pb::ServiceType::Education, 5);
    bad.governorate = "أسوان".into();
    bad.languages = vec!["Arabic".into()];
    let e = dir
        .upsert_service(as_agency("health-cairo", bad))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let fields: Vec<String> = e
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["service_type", "governorate", "languages[0]"]);
    let update = service(&clinic.service_id, 1, pb::ServiceType::Health, 8);
    let e = dir
        .upsert_service(as_agency("school-cairo-alnour", update.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let mut stale = update.clone();
    stale.expected_version = 7;
    let e = dir
        .upsert_service(as_agency("health-cairo", stale))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
    let clinic = dir
        .upsert_service(as_agency("health-cairo", update))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((clinic.version, clinic.capacity), (2, 8));

    let find = |language: &str| pb::FindServicesRequest {
        service_types: vec![
            pb::ServiceType::Health.into(),
            pb::ServiceType::Psychosocial.into(),
        ],
        governorate: "القاهرة".into(),
        district: "شبرا".into(),
        language: language.into(),
        include_unavailable: false,
    };
    let found = dir
        .find_services(as_agency("school-cairo-alnour", find("ar")))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = found
        .services
        .iter()
        .map(|s| s.service_id.as_str())
        .collect();
    assert_eq!(ids, [clinic.service_id.as_str()]);
    assert!(dir
        .find_services(as_agency("school-cairo-alnour", find("fr")))
        .await
        .unwrap()
        .into_inner()
        .services
        .is_empty());

    // The cases service keeps a copy from the bus and proposes the clinic with a referral.
    let pool = env.pool().await;
    eventually(20, "the service map reaches the cases service", || {
        let pool = pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM cases.service_map WHERE version = 2 OR capacity = 0",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            (n == 2).then_some(())
        }
    })
    .await;
    let submitted = w
        .intake
        .submit_school_referral(from_school(school_request("with-proposals")))
        .await
        .unwrap()
        .into_inner();
    let proposed: Vec<&str> = submitted
        .proposed_services
        .iter()
        .map(|s| s.service_id.as_str())
        .collect();
    assert_eq!(proposed, [clinic.service_id.as_str()]);

    let removed = dir
        .remove_service(as_agency(
            "health-cairo",
            pb::RemoveServiceRequest {
                service_id: clinic.service_id.clone(),
                expected_version: 2,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(removed.removed);
    assert!(dir
        .find_services(as_agency("school-cairo-alnour", find("")))
        .await
        .unwrap()
        .into_inner()
        .services
        .is_empty());
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_and_assent_gate_every_disclosure_and_withdrawal_stops_them() {
    use pb::cases_client::CasesClient;
    let (agency, addr) = FakeAgency::start(&[]).await;
    let mut env = TestEnv::new(Some(addr)).await;
    // This test watches consent gate the ministry's own reads: the deployment that asks
    // consent of every agency. By default the ministry reads on its legal mandate
    // (the_case_owning_ministry_reads_its_case_on_its_legal_mandate).
    env.settings.consent.owner_reads_by_legal_obligation = false;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let mut w = Work::new(ch.clone()).await;
    let mut cases = CasesClient::new(ch);
    // The child is 12: the caregiver's consent alone is not enough.
    let mut req = school_request("no-assent");
    req.referral
        .as_mut()
        .unwrap()
        .consent_refs
        .retain(|c| c.given_by == pb::ConsentGiver::Caregiver as i32);
    let case = w
        .intake
        .submit_school_referral(from_school(req))
        .await
        .unwrap()
        .into_inner()
        .case_id;
    let pool = env.pool().await;
    let denial = format!("SELECT count(*) FROM router.disclosures WHERE case_id = '{case}' AND agency_id = 'health-cairo' AND decision = 'deny' AND reason = 'no_assent'");
    eventually(20, "the delivery denied for want of assent", || {
        let pool = pool.clone();
        let denial = denial.clone();
        async move { (count(&pool, &denial).await == 1).then_some(()) }
    })
    .await;
    assert_eq!(agency.count(), 0, "nothing reached the agency");
    let read = |case: String| pb::GetCaseRequest {
        case_id: case,
        purpose: pb::Purpose::ServiceProvision.into(),
    };
    let e = cases.get_case(owned(read(case.clone()))).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("assent"), "{}", e.message());

    // Refusals, each naming its field: consent and legal basis at once, provisions that
    // contradict each other, an unknown category, a period already over.
    let permit = |categories: &[&str]| pb::Provision {
        kind: pb::ProvisionKind::Permit.into(),
        recipient_agency: None,
        recipient_type: pb::AgencyType::Unspecified.into(),
        purposes: vec![pb::Purpose::ServiceProvision.into()],
        // "cosmic" is no category: it goes as UNSPECIFIED, which is refused.
        categories: categories.iter().map(|c| wire::<DataCategory>(c)).collect(),
    };
    let grant = |provisions: Vec<pb::Provision>| pb::GrantConsentRequest {
        case_id: case.clone(),
        expected_version: 1,
        actor: "sw-1".into(),
        given_by: pb::ConsentGiver::ChildAssent.into(),
        method: pb::ConsentMethod::Verbal.into(),
        legal_basis: pb::LegalBasis::Unspecified.into(),
        legal_reference: None,
        provisions,
        valid_from: String::new(),
        valid_until: String::new(),
    };
    let mut both = grant(vec![permit(&[])]);
    both.legal_basis = pb::LegalBasis::CourtOrder.into();
    let mut deny = permit(&["health"]);
    deny.kind = pb::ProvisionKind::Deny.into();
    let mut past = grant(vec![permit(&["cosmic"])]);
    past.valid_until = "2020-01-01T00:00:00Z".into();
    for (bad, expected) in [
        (both, vec!["legal_basis"]),
        (grant(vec![permit(&[]), deny]), vec!["provisions[1]"]),
        (past, vec!["provisions[0].categories[0]", "valid_until"]),
    ] {
        let e = w.consents.grant_consent(owned(bad)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        let fields: Vec<String> = e
            .get_details_bad_request()
            .unwrap()
            .field_violations
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(fields, expected);
    }

    // The child's assent: now the case may be read.
    let c = w
        .consents
        .grant_consent(owned(grant(vec![permit(&[])])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(c.version, 2);
    let shared = cases
        .get_case(owned(read(case.clone())))
        .await
        .unwrap()
        .into_inner();
    assert!(shared
        .categories
        .contains(&pb::DataCategory::Identity.into()));
    let list = w
        .consents
        .list_consents(owned(pb::ListConsentsRequest {
            case_id: case.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .consents;
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|c| c.active));
    let caregiver = list
        .iter()
        .find(|c| c.given_by() == pb::ConsentGiver::Caregiver)
        .unwrap()
        .consent_id
        .clone();

    // Withdrawn: the next read is refused; a second withdrawal too.
    let withdraw = |version: i64| pb::WithdrawConsentRequest {
        case_id: case.clone(),
        expected_version: version,
        actor: "sw-1".into(),
        consent_id: caregiver.clone(),
    };
    w.consents
        .withdraw_consent(owned(withdraw(2)))
        .await
        .unwrap();
    let e = cases.get_case(owned(read(case.clone()))).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(
        w.consents
            .withdraw_consent(owned(withdraw(3)))
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );

    // A legal basis stands without consent, limited to what it names.
    let mut order = grant(vec![pb::Provision {
        recipient_type: pb::AgencyType::SocialAffairs.into(),
        ..permit(&["identity", "protection_concern"])
    }]);
    order.expected_version = 3;
    order.given_by = pb::ConsentGiver::Unspecified.into();
    order.method = pb::ConsentMethod::Unspecified.into();
    order.legal_basis = pb::LegalBasis::VitalInterests.into();
    order.legal_reference = Some("قرار لجنة حماية الطفل ٤/٢٠٢٦".into());
    w.consents.grant_consent(owned(order)).await.unwrap();
    let shared = cases
        .get_case(owned(read(case.clone())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        codes::<DataCategory>(&shared.categories),
        ["reference", "identity", "protection_concern"]
    );
    let history = w
        .client
        .get_history(owned(pb::GetHistoryRequest { case_id: case }))
        .await
        .unwrap()
        .into_inner();
    let consent_lines = history
        .entries
        .iter()
        .filter(|e| e.change.starts_with("consent"))
        .count();
    assert_eq!(consent_lines, 3);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_18_is_warned_of_ahead_and_the_birthday_still_watched() {
    let mut env = TestEnv::new(None).await;
    env.settings.lifecycle.deadline_check_interval_ms = 50;
    let hub = env.start().await;
    let mut w = Work::new(channel(&hub).await).await;
    // A girl who turns 18 in 30 days: config/base.toml's 90-day warning is already due,
    // her birthday is not.
    let today = chrono::Utc::now().date_naive();
    let dob = (today + chrono::Duration::days(30))
        .checked_sub_months(chrono::Months::new(18 * 12))
        .unwrap();
    let near = w
        .referral("turns-18-near", Some(&dob.format("%Y-%m-%d").to_string()))
        .await;
    w.register(&near).await;
    // The fixture's child turns 18 years from now: both are watched, the warning first.
    let far = w.referral("turns-18-far", None).await;
    w.register(&far).await;
    let pool = env.pool().await;
    wait_count(
        &pool,
        &format!("SELECT count(*) FROM cases.escalations WHERE case_id = '{near}' AND kind = 'turns_18_soon'"),
        1,
        30,
        "the turns_18_soon escalation",
    )
    .await;
    let open = |case: &str, kind: &str| {
        format!("SELECT count(*) FROM cases.deadlines WHERE case_id = '{case}' AND kind = '{kind}' AND state = 'open'")
    };
    assert_eq!(
        count(&pool, &open(&near, "turns_18")).await,
        1,
        "the birthday itself stays watched"
    );
    assert_eq!(
        count(&pool, &format!("SELECT count(*) FROM cases.escalations WHERE case_id = '{near}' AND kind = 'turns_18'")).await,
        0
    );
    let due = |kind: &'static str| {
        let pool = pool.clone();
        let far = far.clone();
        async move {
            sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>(
                "SELECT due_at FROM cases.deadlines WHERE case_id = $1 AND kind = $2 AND state = 'open'",
            )
            .bind(far)
            .bind(kind)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(
        due("turns_18").await - due("turns_18_soon").await,
        chrono::Duration::days(90),
        "the warning falls due 90 days before the birthday"
    );
    let list = w
        .client
        .list_escalations(owned(pb::ListEscalationsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(
        list.escalations
            .iter()
            .any(|e| e.case_id == near && e.kind() == pb::DeadlineKind::Turns18Soon),
        "{list:?}"
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_referral_says_who_pays_its_medical_costs() {
    use pb::service_referrals_client::ServiceReferralsClient;
    let (agency, addr) = FakeAgency::start(&[]).await;
    let env = TestEnv::new(Some(addr)).await;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let mut w = Work::new(ch.clone()).await;
    let mut sr = ServiceReferralsClient::new(ch);
    let pool = env.pool().await;
    w.team().await;
    // A high-risk case (the fixture's) and a medium-risk one, each planned with a health
    // action (a1) and an education action (a2).
    let mut cases = Vec::new();
    for (tag, risk) in [
        ("costs-high", pb::RiskLevel::High),
        ("costs-medium", pb::RiskLevel::Medium),
    ] {
        let mut req = school_request(tag);
        req.referral.as_mut().unwrap().risk_level = risk.into();
        let case = w
            .intake
            .submit_school_referral(from_school(req))
            .await
            .unwrap()
            .into_inner()
            .case_id;
        w.register(&case).await;
        w.assign(&case, 2, "sw-1").await.unwrap();
        let c = w.assess_health(&case, 3).await;
        w.plan(
            &case,
            c.version,
            &[
                ("health-cairo", "health"),
                ("school-cairo-alnour", "education"),
            ],
        )
        .await;
        cases.push(case);
    }
    let (high, medium) = (cases[0].clone(), cases[1].clone());
    let create = |case: &str, action: &str, ability: &str| pb::CreateServiceReferralRequest {
        case_id: case.into(),
        action_id: action.into(),
        actor: "sw-1".into(),
        ability_to_pay: wire::<AbilityToPay>(ability),
    };

    // Without what the family can pay, or with a word outside the vocabulary, a health
    // referral is refused naming the field and the choices (never the value), in the
    // caller's language; nothing is written.
    let e = sr
        .create_service_referral(owned(create(&high, "a1", "")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let fields: Vec<String> = e
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["ability_to_pay"]);
    assert!(
        e.message()
            .contains("ability_to_pay: must be chosen; one of: none, part, full"),
        "{}",
        e.message()
    );
    // A number outside the vocabulary: refused the same way, without the value.
    let mut unknown = create(&high, "a1", "");
    unknown.ability_to_pay = 99;
    let mut arabic = owned(unknown);
    arabic
        .metadata_mut()
        .insert("accept-language", "ar".parse().unwrap());
    let e = sr.create_service_referral(arabic).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message()
            .contains("ability_to_pay: يجب الاختيار من: none, part, full")
            && !e.message().contains("99"),
        "{}",
        e.message()
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM cases.service_referrals").await,
        0
    );

    // Refers a1 of `case`, waits until the agency's system has it, and cancels it (so the
    // action may be referred again); what the referrer and the agency were each shown.
    let refer_and_cancel = |case: String, ability: &'static str| {
        let mut sr = sr.clone();
        let agency = agency.clone();
        async move {
            let made = sr
                .create_service_referral(owned(create(&case, "a1", ability)))
                .await
                .unwrap()
                .into_inner();
            let id = made.service_referral_id.clone();
            let seen = eventually(20, "the service referral reaches the agency", || {
                let agency = agency.clone();
                let id = id.clone();
                async move {
                    agency
                        .requests()
                        .into_iter()
                        .find(|s| s.body["referral_id"] == id.as_str())
                }
            })
            .await;
            let get = pb::GetServiceReferralRequest {
                service_referral_id: id.clone(),
            };
            let theirs = eventually(20, "the delivery marks it received", || {
                let mut sr = sr.clone();
                let get = get.clone();
                async move {
                    let r = sr
                        .get_service_referral(as_agency("health-cairo", get))
                        .await
                        .unwrap()
                        .into_inner();
                    (r.state() == pb::ServiceReferralState::Received).then_some(r)
                }
            })
            .await;
            sr.update_service_referral(owned(pb::UpdateServiceReferralRequest {
                service_referral_id: id,
                expected_version: theirs.version,
                state: pb::ServiceReferralState::Cancelled.into(),
                reason: Some("أُعيد تقدير قدرة الأسرة على الدفع".into()),
                actor: "sw-1".into(),
            }))
            .await
            .unwrap();
            (made, seen.body["medical_coverage"].clone(), theirs)
        }
    };
    // High risk and a caregiver who cannot pay at all: 100 %. The agency is sent who pays
    // and sees it, but not what the family can pay.
    let (made, sent, theirs) = refer_and_cancel(high.clone(), "none").await;
    assert_eq!(
        (
            code::<AbilityToPay>(made.ability_to_pay),
            code::<MedicalCoverage>(made.medical_coverage)
        ),
        ("none", "full")
    );
    assert_eq!(sent, "full");
    assert_eq!(
        (
            code::<AbilityToPay>(theirs.ability_to_pay),
            code::<MedicalCoverage>(theirs.medical_coverage)
        ),
        ("", "full")
    );
    // The family can pay part: partial; it can pay fully: nothing from the programme.
    let (made, sent, _) = refer_and_cancel(high.clone(), "part").await;
    assert_eq!(
        (
            code::<MedicalCoverage>(made.medical_coverage),
            sent.as_str()
        ),
        ("partial", Some("partial"))
    );
    let (made, sent, _) = refer_and_cancel(high.clone(), "full").await;
    assert_eq!(
        (
            code::<MedicalCoverage>(made.medical_coverage),
            sent.as_str()
        ),
        ("none", Some("none"))
    );
    // Not high risk: a family that cannot pay at all is covered partly, not 100 %.
    let (made, sent, _) = refer_and_cancel(medium.clone(), "none").await;
    assert_eq!(
        (
            code::<MedicalCoverage>(made.medical_coverage),
            sent.as_str()
        ),
        ("partial", Some("partial"))
    );
    // Education has no medical costs: none are decided, stored or sent.
    let school = sr
        .create_service_referral(owned(create(&high, "a2", "none")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            code::<AbilityToPay>(school.ability_to_pay),
            code::<MedicalCoverage>(school.medical_coverage)
        ),
        ("", "")
    );
    assert_eq!(
        count(&pool, &format!("SELECT count(*) FROM cases.service_referrals WHERE service_referral_id = '{}' AND ability_to_pay IS NULL AND medical_coverage IS NULL", school.service_referral_id)).await,
        1
    );

    // The ministry's indicators count health referrals by who pays, per governorate.
    let i = w
        .oversight
        .get_indicators(owned(pb::GetIndicatorsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let mut counts: Vec<(String, String, i64)> = i
        .medical_coverage
        .into_iter()
        .map(|m| {
            let coverage = code::<MedicalCoverage>(m.coverage).to_owned();
            (m.governorate, coverage, m.count)
        })
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        [
            ("القاهرة".to_owned(), "full".to_owned(), 1),
            ("القاهرة".to_owned(), "none".to_owned(), 1),
            ("القاهرة".to_owned(), "partial".to_owned(), 2),
        ]
    );
    hub.stop().await;
}

/// The case-owning ministry's open escalations of kind `undelivered`.
async fn undelivered_escalations(ch: &Channel) -> Vec<pb::Escalation> {
    let mut req = owned(pb::ListEscalationsRequest::default());
    req.metadata_mut()
        .insert("accept-language", "ar".parse().unwrap());
    CaseWorkClient::new(ch.clone())
        .list_escalations(req)
        .await
        .unwrap()
        .into_inner()
        .escalations
        .into_iter()
        .filter(|e| e.kind() == pb::DeadlineKind::Undelivered)
        .collect()
}

/// A caregiver's (or the child's) consent to any agency, for service provision.
async fn grant(ch: &Channel, case: &str, version: i64, given_by: &str) {
    ConsentsClient::new(ch.clone())
        .grant_consent(owned(pb::GrantConsentRequest {
            case_id: case.into(),
            expected_version: version,
            actor: "sw-1".into(),
            given_by: wire::<ConsentGiver>(given_by),
            method: pb::ConsentMethod::Written.into(),
            provisions: vec![pb::Provision {
                kind: pb::ProvisionKind::Permit.into(),
                purposes: vec![pb::Purpose::ServiceProvision.into()],
                ..Default::default()
            }],
            ..Default::default()
        }))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referral_no_agency_can_take_is_told_escalated_and_sent_once_one_is_connected() {
    let (agency, addr) = FakeAgency::start(&[]).await;
    let mut env = TestEnv::new(Some(addr)).await;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    // Alexandria, asking for health care only: the only connected health agency covers
    // Cairo and Giza (and the ministry offers no health care itself).
    let mut req = school_request("sub-alex");
    req.referral.as_mut().unwrap().requested_services = vec![pb::ServiceType::Health as i32];
    req.referral
        .as_mut()
        .unwrap()
        .child
        .as_mut()
        .unwrap()
        .governorate = "الإسكندرية".into();
    req.referral
        .as_mut()
        .unwrap()
        .child
        .as_mut()
        .unwrap()
        .district = None;
    let mut req = from_school(req);
    req.metadata_mut()
        .insert("accept-language", "ar".parse().unwrap());
    let r = IntakeClient::new(ch.clone())
        .submit_school_referral(req)
        .await
        .unwrap()
        .into_inner();
    // The answer says so at once, in the caller's language.
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert_eq!(r.warnings[0].reason, "no_agency");
    assert!(r.warnings[0].message.contains("لا توجد جهة متصلة"));
    // The case shows it, and the ministry has an escalation naming it.
    let pool = env.pool().await;
    wait_count(
        &pool,
        "SELECT count(*) FROM cases.referral_deliveries WHERE outcome = 'undelivered' AND reason = 'no_agency'",
        1,
        30,
        "the referral recorded as undelivered",
    )
    .await;
    let escalated = eventually(10, "the escalation", || async {
        undelivered_escalations(&ch).await.into_iter().next()
    })
    .await;
    assert_eq!(escalated.ref_id.as_deref(), Some(r.referral_id.as_str()));
    assert_eq!(escalated.reason.as_deref(), Some("no_agency"));
    assert!(escalated
        .explanation
        .unwrap_or_default()
        .contains("لا توجد جهة"));
    assert_eq!(agency.count(), 0);
    hub.stop().await;

    // An agency for Alexandria is connected; at the next start it goes out, once, and
    // the case no longer shows it undelivered.
    let mut alex = (*env.settings.agencies.get("health-cairo").unwrap()).clone();
    alex.governorates = vec!["الإسكندرية".into()];
    env.settings.agencies.insert("health-alex".into(), alex);
    let hub = env.start().await;
    eventually(30, "the referral at Alexandria's agency", || async {
        agency.requests().into_iter().find(|s| {
            s.idempotency_key.as_deref() == Some(&format!("{}:health-alex", r.referral_id))
        })
    })
    .await;
    wait_count(
        &pool,
        "SELECT count(*) FROM cases.referral_deliveries WHERE outcome = 'delivered' AND agency_id = 'health-alex'",
        1,
        30,
        "delivered",
    )
    .await;
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM cases.referral_deliveries WHERE outcome = 'undelivered'"
        )
        .await,
        0
    );
    assert_eq!(agency.count(), 1);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_referral_without_consent_blames_no_agency_and_goes_once_consent_is_granted() {
    let (agency, addr) = FakeAgency::start(&[]).await;
    let env = TestEnv::new(Some(addr)).await;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let pool = env.pool().await;
    let case = submit_school(&ch, "sub-no-consent").await;
    eventually(30, "the case referral at the agency", || async {
        (agency.count() == 1).then_some(())
    })
    .await;
    let version = plan_health_action(&ch, &case).await;
    ConsentsClient::new(ch.clone())
        .withdraw_consent(owned(pb::WithdrawConsentRequest {
            case_id: case.clone(),
            expected_version: version,
            actor: "sw-1".into(),
            consent_id: "cns_demo".into(),
        }))
        .await
        .unwrap();
    let sr = refer_health_action(&ch, &case).await;
    // Said at once; no answer is due from an agency that will not receive it.
    assert_eq!(sr.warnings.len(), 1, "{:?}", sr.warnings);
    assert_eq!(sr.warnings[0].reason, "no_consent");
    assert!(sr.answer_due_at.is_empty(), "{}", sr.answer_due_at);
    let escalated = eventually(30, "the escalation", || async {
        undelivered_escalations(&ch)
            .await
            .into_iter()
            .find(|e| e.ref_id.as_deref() == Some(sr.service_referral_id.as_str()))
    })
    .await;
    assert_eq!(escalated.reason.as_deref(), Some("no_consent"));
    assert_eq!(escalated.agency_id.as_deref(), Some("health-cairo"));
    let open_answer = format!(
        "SELECT count(*) FROM cases.deadlines WHERE kind = 'service_referral' AND state = 'open' AND ref_id = '{}'",
        sr.service_referral_id
    );
    assert_eq!(count(&pool, &open_answer).await, 0);
    let sent_srv = || {
        agency
            .requests()
            .iter()
            .filter(|s| {
                s.idempotency_key
                    .as_deref()
                    .is_some_and(|k| k.starts_with(&sr.service_referral_id))
            })
            .count()
    };
    assert_eq!(sent_srv(), 0, "nothing sent without consent");

    // Consent is recorded: the service referral goes out without being entered again,
    // and only now does the agency owe an answer.
    let version: i64 = sqlx::query_scalar("SELECT version FROM cases.cases WHERE case_id = $1")
        .bind(&case)
        .fetch_one(&pool)
        .await
        .unwrap();
    grant(&ch, &case, version, "caregiver").await;
    eventually(30, "the service referral at the agency", || async {
        (sent_srv() == 1).then_some(())
    })
    .await;
    wait_count(
        &pool,
        &open_answer,
        1,
        30,
        "the answer deadline, from delivery",
    )
    .await;
    let state: String = sqlx::query_scalar(
        "SELECT state FROM cases.service_referrals WHERE service_referral_id = $1",
    )
    .bind(&sr.service_referral_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(state, "received");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relief_referral_without_the_childs_assent_is_told_and_goes_once_assent_is_given() {
    let (registry, addr) = FakeAgency::start(&[]).await;
    let mut env = TestEnv::new(None).await;
    if let Some(a) = env.settings.agencies.get_mut("takaful-cairo") {
        a.endpoint = Some(format!("http://{addr}"));
    }
    let hub = env.start().await;
    let ch = channel(&hub).await;
    // A 15-year-old whose form carries only the caregiver's consent.
    let mut req = school_request("sub-relief");
    let referral = req.referral.as_mut().unwrap();
    referral.child.as_mut().unwrap().date_of_birth = Some("2011-06-01".into());
    referral
        .consent_refs
        .retain(|c| c.consent_id != "cns_demo_assent");
    let case = IntakeClient::new(ch.clone())
        .submit_school_referral(from_school(req))
        .await
        .unwrap()
        .into_inner()
        .case_id;
    let mut w = Work::new(ch.clone()).await;
    let change = w
        .decide(&case, 1, "register", &["poverty"], None)
        .await
        .unwrap();
    assert_eq!(code::<CaseStatus>(change.status), "referred_on");
    assert_eq!(change.warnings.len(), 1, "{:?}", change.warnings);
    assert_eq!(change.warnings[0].reason, "no_assent");
    assert_eq!(change.warnings[0].agency_id, "takaful-cairo");
    // (The case referral itself has no connected agency in this test: that is escalated
    // too, as no_agency.)
    let escalated = eventually(30, "the escalation", || async {
        undelivered_escalations(&ch)
            .await
            .into_iter()
            .find(|e| e.agency_id.as_deref() == Some("takaful-cairo"))
    })
    .await;
    assert_eq!(escalated.reason.as_deref(), Some("no_assent"));
    assert_eq!(registry.count(), 0);
    // The child assents: the onward referral reaches the programme, once.
    grant(&ch, &case, change.version, "child_assent").await;
    eventually(30, "the referral at the relief programme", || async {
        (registry.count() == 1).then_some(())
    })
    .await;
    let pool = env.pool().await;
    wait_count(
        &pool,
        "SELECT count(*) FROM cases.referral_deliveries WHERE agency_id = 'takaful-cairo' AND outcome = 'delivered'",
        1,
        30,
        "delivered to the programme",
    )
    .await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_case_owning_ministry_reads_its_case_on_its_legal_mandate() {
    use pb::cases_client::CasesClient;
    let env = TestEnv::new(None).await;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    // A referral carrying no consent at all.
    let mut req = school_request("no-consent-at-all");
    req.referral.as_mut().unwrap().consent_refs.clear();
    let case = IntakeClient::new(ch.clone())
        .submit_school_referral(from_school(req))
        .await
        .unwrap()
        .into_inner()
        .case_id;
    let read = || pb::GetCaseRequest {
        case_id: case.clone(),
        purpose: pb::Purpose::ServiceProvision.into(),
    };
    let mut cases = CasesClient::new(ch.clone());
    // The ministry owning the case reads it, to assess it.
    let shared = cases.get_case(owned(read())).await.unwrap().into_inner();
    assert!(shared
        .categories
        .contains(&pb::DataCategory::Identity.into()));
    assert!(shared.document_json.contains("مريم"));
    // Another agency with a part in the case still needs consent: the referring school
    // gets nothing beyond its policy (references and location), and the hotline nothing.
    let e = cases
        .get_case(as_agency("hotline-16000", read()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // The read is in the disclosure log with its basis.
    let pool = env.pool().await;
    wait_count(
        &pool,
        &format!("SELECT count(*) FROM audit.log WHERE case_id = '{case}' AND recipient = 'mosa-cairo' AND decision = 'permit' AND basis = ARRAY['legal_obligation']"),
        1,
        20,
        "the ministry's read logged on its legal basis",
    )
    .await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_ids_are_each_agencys_own() {
    const GIZA: &str = "mosa-giza";
    let mut env = TestEnv::new(None).await;
    // A second directorate, of Giza only (mosa-cairo covers everywhere).
    let mut giza = (*env.settings.agencies.get("mosa-cairo").unwrap()).clone();
    giza.governorates = vec!["الجيزة".into()];
    env.settings.agencies.insert(GIZA.into(), giza);
    env.settings.lifecycle.max_cases_per_caseworker = 1;
    env.settings.lifecycle.max_caseworkers_per_supervisor = 1;
    env.settings
        .lifecycle
        .deadlines
        .high
        .first_contact_within_secs = 1;
    env.settings.lifecycle.deadline_check_interval_ms = 50;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let mut w = Work::new(ch.clone()).await;
    let mut giza = CaseWorkClient::new(ch.clone());
    let mut giza_team = StaffClient::new(ch.clone());
    let giza_staff = |id: &str, role: &str, sup: Option<&str>| {
        as_agency(
            GIZA,
            pb::AddStaffRequest {
                staff_id: id.into(),
                role: wire::<StaffRole>(role),
                supervisor_id: sup.map(str::to_owned),
            },
        )
    };
    let giza_assign = |case: &str, caseworker: &str| {
        as_agency(
            GIZA,
            pb::AssignCaseRequest {
                case_id: case.into(),
                expected_version: 2,
                actor: "sup-1".into(),
                caseworker_id: caseworker.into(),
            },
        )
    };

    // Cairo: sw-1 under sup-2, sw-2 under sup-1.
    w.staff("sup-1", "supervisor", None).await.unwrap();
    w.staff("sup-2", "supervisor", None).await.unwrap();
    w.staff("sw-1", "caseworker", Some("sup-2")).await.unwrap();
    w.staff("sw-2", "caseworker", Some("sup-1")).await.unwrap();
    // Giza takes the same ids: they are not Cairo's to reserve. Its sup-1's team is its
    // own (one each is the limit, and Cairo's sup-1 already has one).
    giza_team
        .add_staff(giza_staff("sup-1", "supervisor", None))
        .await
        .unwrap();
    let sw1 = giza_team
        .add_staff(giza_staff("sw-1", "caseworker", Some("sup-1")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (sw1.agency_id.as_str(), sw1.supervisor_id.as_deref()),
        (GIZA, Some("sup-1"))
    );
    // Its own id twice is still refused.
    let e = giza_team
        .add_staff(giza_staff("sup-1", "supervisor", None))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("already exists"), "{}", e.message());
    // Cairo's supervisor is no supervisor to Giza: the same answer as an unknown id.
    let theirs = giza_team
        .add_staff(giza_staff("sw-9", "caseworker", Some("sup-2")))
        .await
        .unwrap_err();
    let nobody = giza_team
        .add_staff(giza_staff("sw-9", "caseworker", Some("sup-x")))
        .await
        .unwrap_err();
    assert_eq!(theirs.code(), Code::FailedPrecondition);
    assert_eq!(theirs.code(), nobody.code());
    assert_eq!(
        theirs.message().replace("sup-2", "?"),
        nobody.message().replace("sup-x", "?")
    );

    // One case each: Cairo's in Cairo, Giza's in Giza.
    let cairo_case = w.referral("per-agency-cairo", None).await;
    w.register(&cairo_case).await;
    let mut req = school_request("per-agency-giza");
    let child = req.referral.as_mut().unwrap().child.as_mut().unwrap();
    child.governorate = "الجيزة".into();
    child.district = None;
    let giza_case = w
        .intake
        .submit_school_referral(from_school(req))
        .await
        .unwrap()
        .into_inner()
        .case_id;
    giza.decide_acceptance(as_agency(GIZA, register(&giza_case, 1)))
        .await
        .unwrap();
    // Giza cannot use Cairo's caseworker: the same answer as an unknown id.
    let theirs = giza
        .assign_case(giza_assign(&giza_case, "sw-2"))
        .await
        .unwrap_err();
    let nobody = giza
        .assign_case(giza_assign(&giza_case, "sw-x"))
        .await
        .unwrap_err();
    assert_eq!(theirs.code(), Code::FailedPrecondition);
    assert_eq!(theirs.code(), nobody.code());
    assert_eq!(
        theirs.message().replace("sw-2", "?"),
        nobody.message().replace("sw-x", "?")
    );
    // Each assigns its own case to its own sw-1; the caseload limit of one is counted per
    // agency, so the second assignment is not refused for the first.
    w.assign(&cairo_case, 2, "sw-1").await.unwrap();
    giza.assign_case(giza_assign(&giza_case, "sw-1"))
        .await
        .unwrap();
    // Cairo's sw-1 is full now; who has room is Cairo's own.
    let third = w.referral("per-agency-third", None).await;
    w.register(&third).await;
    let e = w.assign(&third, 2, "sw-1").await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message().contains("1 open cases")
            && e.message().contains("caseworkers with room: sw-2 (0)"),
        "{}",
        e.message()
    );

    // Caseloads per agency: Cairo's sw-1 has Cairo's case, Giza's sw-1 Giza's.
    let caseloads = |agency: &'static str| {
        let ch = ch.clone();
        async move {
            let mut loads: Vec<(String, i64)> = OversightClient::new(ch)
                .get_indicators(as_agency(agency, pb::GetIndicatorsRequest::default()))
                .await
                .unwrap()
                .into_inner()
                .caseloads
                .into_iter()
                .map(|c| (c.caseworker_id, c.open_cases))
                .collect();
            loads.sort();
            loads
        }
    };
    assert_eq!(
        caseloads("mosa-cairo").await,
        [("sw-1".to_owned(), 1), ("sw-2".to_owned(), 0)]
    );
    assert_eq!(caseloads(GIZA).await, [("sw-1".to_owned(), 1)]);

    // A missed first contact escalates, once, to the supervisor of the agency's own sw-1.
    let pool = env.pool().await;
    wait_count(
        &pool,
        "SELECT count(*) FROM cases.escalations WHERE kind = 'first_contact'",
        2,
        30,
        "both first contacts escalated",
    )
    .await;
    let supervisor = |case: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, Option<String>>(
                "SELECT supervisor_id FROM cases.escalations WHERE case_id = $1 AND kind = 'first_contact'",
            )
            .bind(case)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(supervisor(cairo_case).await.as_deref(), Some("sup-2"));
    assert_eq!(supervisor(giza_case).await.as_deref(), Some("sup-1"));
    hub.stop().await;
}

/// A call as the web front makes it for a person of the ministry (development identity:
/// the headers are taken as sent; under mutual TLS only the web component may send them).
fn as_person<T>(person: &str, roles: &str, msg: T) -> Request<T> {
    let mut r = owned(msg);
    r.metadata_mut()
        .insert("x-himaya-person", person.parse().unwrap());
    r.metadata_mut()
        .insert("x-himaya-roles", roles.parse().unwrap());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_works_only_their_own_cases_and_is_named_in_what_they_do() {
    let env = TestEnv::new(None).await;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let pool = env.pool().await;
    let mut w = Work::new(ch.clone()).await;
    // People are the staff: each staff id is the person's id.
    w.staff("psn_sup1", "supervisor", None).await.unwrap();
    w.staff("psn_sup2", "supervisor", None).await.unwrap();
    w.staff("psn_cw1", "caseworker", Some("psn_sup1"))
        .await
        .unwrap();
    w.staff("psn_cw2", "caseworker", Some("psn_sup2"))
        .await
        .unwrap();
    let case = w.referral("person-rules", None).await;
    w.register(&case).await;
    let mut c = w.client.clone();
    let history = |person: &str, roles: &str| {
        as_person(
            person,
            roles,
            pb::GetHistoryRequest {
                case_id: case.clone(),
            },
        )
    };
    let review = |person: &str, version: i64| {
        as_person(
            person,
            "caseworker",
            pb::RecordReviewRequest {
                case_id: case.clone(),
                expected_version: version,
                actor: "typed-by-the-form".into(),
                kind: pb::ReviewKind::HomeVisit.into(),
                child_seen: true,
                findings: "زيارة منزلية".into(),
            },
        )
    };

    // The unassigned queue and its cases are the supervisors'.
    let e = c
        .list_cases(as_person(
            "psn_cw1",
            "caseworker",
            pb::ListCasesRequest {
                unassigned: true,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = c.get_history(history("psn_cw1", "caseworker")).await;
    assert_eq!(e.unwrap_err().code(), Code::PermissionDenied);
    let queue = c
        .list_cases(as_person(
            "psn_sup2",
            "supervisor",
            pb::ListCasesRequest {
                unassigned: true,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(queue.cases.len(), 1);

    // A caseworker may not assign (the role rule, at the gateway); a supervisor does, and
    // the history names the supervisor, not what the form typed.
    let assign = |person: &str, roles: &str| {
        as_person(
            person,
            roles,
            pb::AssignCaseRequest {
                case_id: case.clone(),
                expected_version: 2,
                actor: "typed-by-the-form".into(),
                caseworker_id: "psn_cw1".into(),
            },
        )
    };
    let e = c
        .assign_case(assign("psn_cw1", "caseworker"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("supervisor"), "{}", e.message());
    // A supervisor assigns within their own team only.
    let e = c
        .assign_case(assign("psn_sup2", "supervisor"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("not in your team"), "{}", e.message());
    c.assign_case(assign("psn_sup1", "supervisor"))
        .await
        .unwrap();

    // Another caseworker, and a supervisor who is not theirs, are refused; the
    // caseworker works it and is named.
    let e = c.record_review(review("psn_cw2", 3)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("psn_cw2"), "{}", e.message());
    let e = c.get_history(history("psn_sup2", "supervisor")).await;
    assert_eq!(e.unwrap_err().code(), Code::PermissionDenied);
    c.record_review(review("psn_cw1", 3)).await.unwrap();
    let entries = c
        .get_history(history("psn_sup1", "supervisor"))
        .await
        .unwrap()
        .into_inner()
        .entries;
    let actors: Vec<&str> = entries.iter().map(|e| e.actor.as_str()).collect();
    assert_eq!(
        actors,
        ["school-cairo-alnour", "sw-lead", "psn_sup1", "psn_cw1"]
    );

    // Lists: one's own cases, or one's team's.
    let list = |person: &str, roles: &str, of: &str| {
        as_person(
            person,
            roles,
            pb::ListCasesRequest {
                caseworker_id: of.into(),
                ..Default::default()
            },
        )
    };
    let e = c.list_cases(list("psn_cw2", "caseworker", "psn_cw1")).await;
    assert_eq!(e.unwrap_err().code(), Code::PermissionDenied);
    let e = c
        .list_cases(list("psn_sup2", "supervisor", "psn_cw1"))
        .await;
    assert_eq!(e.unwrap_err().code(), Code::PermissionDenied);
    for (p, r) in [("psn_cw1", "caseworker"), ("psn_sup1", "supervisor")] {
        let mine = c.list_cases(list(p, r, "psn_cw1")).await.unwrap();
        assert_eq!(mine.into_inner().cases.len(), 1, "{p}");
    }

    // Reading it through the redactor: the same rule, and the log names who read and
    // who was refused.
    let read = |person: &str| {
        as_person(
            person,
            "caseworker",
            pb::GetCaseRequest {
                case_id: case.clone(),
                purpose: pb::Purpose::ServiceProvision.into(),
            },
        )
    };
    let mut cases = pb::cases_client::CasesClient::new(ch.clone());
    let e = cases.get_case(read("psn_cw2")).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    cases.get_case(read("psn_cw1")).await.unwrap();
    let logged = |decision: &str, person: &str| {
        format!(
            "SELECT count(*) FROM audit.log WHERE case_id = '{case}' AND decision = '{decision}' AND person = '{person}'"
        )
    };
    wait_count(
        &pool,
        &logged("deny", "psn_cw2"),
        2,
        10,
        "psn_cw2's refusals",
    )
    .await;
    wait_count(
        &pool,
        &logged("deny", "psn_cw1"),
        1,
        10,
        "psn_cw1's refusal",
    )
    .await;
    wait_count(
        &pool,
        &logged("deny", "psn_sup2"),
        1,
        10,
        "psn_sup2's refusal",
    )
    .await;
    wait_count(&pool, &logged("permit", "psn_cw1"), 1, 10, "psn_cw1's read").await;
    hub.stop().await;
}
