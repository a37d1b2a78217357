//! Keeping only what must be kept (issue 16, part 6): closed cases lose their personal
//! data once the retention period has passed, leaving statistics and the disclosure log's
//! chain as they were; the outboxes and inboxes stay bounded by their pruning.

use std::time::Duration;

use himaya_proto::v1 as pb;
use himaya_proto::v1::case_work_client::CaseWorkClient;
use himaya_proto::v1::cases_client::CasesClient;
use himaya_proto::v1::intake_client::IntakeClient;
use himaya_proto::v1::oversight_client::OversightClient;
use himaya_record::{fixtures, DocumentKind, IdentityDocument, PersonName};
use sqlx::PgPool;
use tonic::transport::Channel;

use super::helpers::*;

/// One case's personal data, unique to it, to be looked for everywhere.
struct Canary {
    name: &'static str,
    latin: &'static str,
    number: &'static str,
    born: &'static str,
    address: &'static str,
    carer: &'static str,
    phone: &'static str,
    note: &'static str,
    findings: &'static str,
    evaluation: &'static str,
    reopen: &'static str,
}

impl Canary {
    fn all(&self) -> [&'static str; 11] {
        [
            self.name,
            self.latin,
            self.number,
            self.born,
            self.address,
            self.carer,
            self.phone,
            self.note,
            self.findings,
            self.evaluation,
            self.reopen,
        ]
    }
}

/// Closed long ago: anonymised.
const OLD: Canary = Canary {
    name: "زمردة قنطرة",
    latin: "Zumurruda Qantara",
    number: "29001011111111",
    born: "2012-05-17",
    address: "٧ حارة الكنارية",
    carer: "حورية قنطرة",
    phone: "+20 111 000 1111",
    note: "ملاحظة-قنطرة-سرية",
    findings: "زيارة-قنطرة-خاصة",
    evaluation: "تقييم-قنطرة-خاص",
    reopen: "سبب-قنطرة-خاص",
};

/// The old case's child referred a second time, merged into it: anonymised with it.
const TWIN: Canary = Canary {
    name: "مرجانة قنطرة",
    latin: "Marjana Qantara",
    number: "29004044444444",
    born: "2012-05-16",
    address: "٨ حارة الكنارية",
    carer: "زهرة قنطرة",
    phone: "+20 111 000 4444",
    note: "ملاحظة-مرجانة-سرية",
    findings: "",
    evaluation: "",
    reopen: "",
};

/// Closed today: kept.
const RECENT: Canary = Canary {
    name: "ياقوتة سنبلة",
    latin: "Yaquta Sunbula",
    number: "29002022222222",
    born: "2013-06-18",
    address: "٩ حارة السنابل",
    carer: "حورية سنبلة",
    phone: "+20 122 000 2222",
    note: "ملاحظة-سنبلة-سرية",
    findings: "زيارة-سنبلة-خاصة",
    evaluation: "تقييم-سنبلة-خاص",
    reopen: "سبب-سنبلة-خاص",
};

/// Open: kept.
const OPEN: Canary = Canary {
    name: "لؤلؤة نخلة",
    latin: "Luluah Nakhla",
    number: "29003033333333",
    born: "2011-07-19",
    address: "١١ حارة النخيل",
    carer: "حورية نخلة",
    phone: "+20 155 000 3333",
    note: "ملاحظة-نخلة-سرية",
    findings: "",
    evaluation: "",
    reopen: "",
};

fn referral(c: &Canary, submission: &str) -> pb::SchoolReferralRequest {
    let mut d = fixtures::details();
    d.child.name = PersonName {
        as_given: c.name.into(),
        transliteration: Some(c.latin.into()),
    };
    d.child.date_of_birth = c.born.parse().ok();
    d.child.identity_documents = vec![IdentityDocument {
        kind: DocumentKind::BirthCertificate,
        number: c.number.into(),
        issuer: None,
    }];
    d.child.address = Some(c.address.into());
    d.caregivers[0].name = PersonName {
        as_given: c.carer.into(),
        transliteration: None,
    };
    d.caregivers[0].phone = Some(c.phone.into());
    d.caregivers[0].address = Some(c.address.into());
    d.narrative = Some(c.note.into());
    pb::SchoolReferralRequest {
        submission_id: submission.into(),
        school_agency_id: "school-cairo-alnour".into(),
        officer_ref: "officer-17".into(),
        referral: Some(himaya_proto::convert::referral_details_to_pb(&d)),
    }
}

fn owner<T>(msg: T) -> tonic::Request<T> {
    as_agency("mosa-cairo", msg)
}

/// Registered, assigned (sw-1, added earlier), reviewed, closed, reopened and closed
/// again from version `v`: every free-text field of the lifecycle holds the case's
/// canary. Version `v + 6`.
async fn work_to_closure(ch: &Channel, case: &str, c: &Canary, v: i64) {
    let mut work = CaseWorkClient::new(ch.clone());
    work.decide_acceptance(owner(register(case, v)))
        .await
        .unwrap();
    work.assign_case(owner(pb::AssignCaseRequest {
        case_id: case.into(),
        expected_version: v + 1,
        actor: "sup-1".into(),
        caseworker_id: "sw-1".into(),
    }))
    .await
    .unwrap();
    work.record_review(owner(pb::RecordReviewRequest {
        case_id: case.into(),
        expected_version: v + 2,
        actor: "sw-1".into(),
        kind: pb::ReviewKind::HomeVisit.into(),
        child_seen: true,
        findings: c.findings.into(),
    }))
    .await
    .unwrap();
    let close = |version: i64| {
        owner(pb::CloseCaseRequest {
            case_id: case.into(),
            expected_version: version,
            actor: "sw-1".into(),
            reason: pb::ClosureReason::NeedEnded.into(),
            parents_consulted: Some(true),
            final_evaluation: c.evaluation.into(),
            recommendations: c.evaluation.into(),
        })
    };
    work.close_case(close(v + 3)).await.unwrap();
    work.reopen_case(owner(pb::ReopenCaseRequest {
        case_id: case.into(),
        expected_version: v + 4,
        actor: "sw-1".into(),
        reason: c.reopen.into(),
    }))
    .await
    .unwrap();
    work.close_case(close(v + 5)).await.unwrap();
}

/// Where `needle` occurs in the database: every column of every table of every schema
/// but PostgreSQL's own, as text (text, character types, JSON, arrays) or as UTF-8 bytes
/// (bytea: the outboxes' Avro payloads). `schema.table.column` of each hit.
pub async fn occurrences(pool: &PgPool, needle: &str) -> Vec<String> {
    let columns: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT c.table_schema::text, c.table_name::text, c.column_name::text, c.data_type::text
           FROM information_schema.columns c
           JOIN information_schema.tables t USING (table_schema, table_name)
          WHERE t.table_type = 'BASE TABLE'
            AND c.table_schema NOT IN ('pg_catalog', 'information_schema')
            AND c.data_type IN ('text', 'character varying', 'character', 'json', 'jsonb',
                                'ARRAY', 'bytea')",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(columns.len() > 50, "the hub's tables are there");
    let mut hits = Vec::new();
    for (schema, table, column, kind) in columns {
        let test = if kind == "bytea" {
            format!("position(convert_to($1, 'UTF8') in \"{column}\") > 0")
        } else {
            format!("position($1 in \"{column}\"::text) > 0")
        };
        let sql = format!("SELECT count(*) FROM \"{schema}\".\"{table}\" WHERE {test}");
        let n: i64 = sqlx::query_scalar(&sql)
            .bind(needle)
            .fetch_one(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        if n > 0 {
            hits.push(format!("{schema}.{table}.{column}"));
        }
    }
    hits
}

/// Every row of the cases schema's tables (the outbox and inbox aside, which the hub's
/// own traffic changes), as text: what a second run must leave as it is.
async fn cases_tables(pool: &PgPool) -> String {
    let mut all = String::new();
    for table in [
        "cases",
        "case_history",
        "children",
        "child_blocks",
        "reviews",
        "deadlines",
        "escalations",
        "referral_deliveries",
        "service_referrals",
        "break_glass",
        "submissions",
    ] {
        let rows: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT t::text FROM cases.{table} t ORDER BY t::text"
        ))
        .fetch_all(pool)
        .await
        .unwrap();
        all.push_str(&format!("{table}: {}\n", rows.join("\n")));
    }
    all
}

/// Prunes every schema's outbox and inbox as the relays do (`relay::prune`), keeping
/// nothing already sent or processed.
async fn prune_all(env: &TestEnv) {
    let cfg = himaya_store::relay::RelayConfig {
        keep_sent: Duration::ZERO,
        inbox_keep: Duration::ZERO,
        ..himaya_store::relay::RelayConfig::new(Duration::from_millis(200), 100)
    };
    for schema in relay_schemas(&env.pool().await).await {
        let pool = himaya_store::connect(&env.db_url, &schema, 2)
            .await
            .unwrap();
        himaya_store::relay::prune(&pool, &cfg).await;
        pool.close().await;
    }
}

/// The schemas with an outbox and an inbox (every service's, the connectors').
async fn relay_schemas(db: &PgPool) -> Vec<String> {
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT table_schema::text FROM information_schema.tables
          WHERE table_name = 'outbox' ORDER BY 1",
    )
    .fetch_all(db)
    .await
    .unwrap();
    assert!(schemas.len() >= 4, "{schemas:?}");
    schemas
}

/// The aggregates an agency (statistics purpose) and the ministry (indicators) are given.
async fn statistics(ch: &Channel) -> (pb::Statistics, pb::Indicators) {
    let stats = CasesClient::new(ch.clone())
        .get_statistics(as_agency(
            "takaful-cairo",
            pb::GetStatisticsRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    let indicators = OversightClient::new(ch.clone())
        .get_indicators(owner(pb::GetIndicatorsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    // Everything but when they were computed.
    (
        pb::Statistics {
            computed_at: String::new(),
            ..stats
        },
        pb::Indicators {
            computed_at: String::new(),
            ..indicators
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_case_past_its_period_is_anonymised_and_nothing_else_changes() {
    // The agency refuses the first referral in its own words, quoting the child.
    let (agency, addr) = FakeAgency::scripted(vec![Step::Answer(
        422,
        serde_json::json!({"reason": format!("no file for {}", OLD.name)}),
    )])
    .await;
    let mut env = TestEnv::new(Some(addr)).await;
    env.settings.retention.anonymise_after_years = 5;
    env.settings.retention.check_interval_ms = 200;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let db = env.pool().await;

    let mut intake = IntakeClient::new(ch.clone());
    let mut ids = Vec::new();
    for (c, s) in [
        (&OLD, "old"),
        (&RECENT, "recent"),
        (&OPEN, "open"),
        (&TWIN, "twin"),
    ] {
        let case = intake
            .submit_school_referral(from_school(referral(c, s)))
            .await
            .unwrap()
            .into_inner()
            .case_id;
        ids.push(case);
        // One at a time: the old case's delivery is the one refused.
        let n = ids.len();
        eventually(30, "the delivery", || async {
            (agency.count() == n).then_some(())
        })
        .await;
    }
    let (old, recent, open, twin) = (
        ids[0].clone(),
        ids[1].clone(),
        ids[2].clone(),
        ids[3].clone(),
    );
    // The twin is found to be the old case's child: merged into it (both at version 2).
    pb::duplicates_client::DuplicatesClient::new(ch.clone())
        .merge_cases(owner(pb::MergeCasesRequest {
            keep_case_id: old.clone(),
            keep_version: 1,
            merge_case_id: twin.clone(),
            merge_version: 1,
            actor: "sw-lead".into(),
        }))
        .await
        .unwrap();
    // Staff once (sup-1, sw-1), with the recent case; the old one the same way.
    register_and_assign(&ch, &recent, "exploitative_labour").await;
    let mut work = CaseWorkClient::new(ch.clone());
    work.record_review(owner(pb::RecordReviewRequest {
        case_id: recent.clone(),
        expected_version: 3,
        actor: "sw-1".into(),
        kind: pb::ReviewKind::HomeVisit.into(),
        child_seen: true,
        findings: RECENT.findings.into(),
    }))
    .await
    .unwrap();
    work.close_case(owner(pb::CloseCaseRequest {
        case_id: recent.clone(),
        expected_version: 4,
        actor: "sw-1".into(),
        reason: pb::ClosureReason::NeedEnded.into(),
        parents_consulted: Some(true),
        final_evaluation: RECENT.evaluation.into(),
        recommendations: RECENT.evaluation.into(),
    }))
    .await
    .unwrap();
    work_to_closure(&ch, &old, &OLD, 2).await;
    // Reads by the ministry: disclosure log entries about every case.
    let mut cases = CasesClient::new(ch.clone());
    for case in [&old, &recent, &open] {
        cases
            .get_case(owner(pb::GetCaseRequest {
                case_id: case.clone(),
                purpose: pb::Purpose::ServiceProvision.into(),
            }))
            .await
            .unwrap();
    }
    // Four deliveries (one refused) and three reads, then a signed checkpoint kept
    // outside the hub.
    wait_count(
        &db,
        "SELECT count(*) FROM audit.log",
        7,
        30,
        "seven entries",
    )
    .await;
    let audit = himaya_audit::connect(&env.settings).await.unwrap();
    let key = himaya_audit::signing_key(&env.settings.audit.signing_key_file).unwrap();
    himaya_audit::checkpoint(&audit, &key).await.unwrap();
    let exported = himaya_audit::checkpoints(&audit).await.unwrap();
    let entries = himaya_audit::verify(&audit, &exported).await.unwrap();

    let before = statistics(&ch).await;
    let kept_before: Vec<(String, i64, serde_json::Value)> = sqlx::query_as(
        "SELECT case_id, version, record FROM cases.cases WHERE case_id <> ALL($1) ORDER BY case_id",
    )
    .bind([&old, &twin])
    .fetch_all(&db)
    .await
    .unwrap();
    for c in OLD.all().into_iter().chain(TWIN.all().into_iter().take(8)) {
        assert!(
            !occurrences(&db, c).await.is_empty(),
            "the old case's {c} is stored before"
        );
    }
    wait_count(
        &db,
        "SELECT count(*) FROM connectors.deliveries WHERE outcome = 'rejected'",
        1,
        30,
        "the refusal recorded",
    )
    .await;
    assert!(
        occurrences(&db, OLD.name)
            .await
            .contains(&"connectors.deliveries.reason".to_owned()),
        "the agency's words quote the child"
    );

    // Its closure six years ago: past the five years configured.
    sqlx::query(
        "UPDATE cases.cases SET closed_at = now() - interval '6 years',
                record = jsonb_set(record, '{closure,closed_at}', to_jsonb(now() - interval '6 years'))
          WHERE case_id = $1",
    )
    .bind(&old)
    .execute(&db)
    .await
    .unwrap();
    wait_count(
        &db,
        &format!("SELECT count(*) FROM cases.cases WHERE case_id = '{old}' AND anonymised_at IS NOT NULL"),
        1,
        30,
        "the old case anonymised by the periodic run",
    )
    .await;
    let anonymised: Vec<String> = sqlx::query_scalar(
        "SELECT case_id FROM cases.cases WHERE anonymised_at IS NOT NULL ORDER BY case_id",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let mut expected = vec![old.clone(), twin.clone()];
    expected.sort();
    assert_eq!(
        anonymised, expected,
        "the old case and its merged twin only"
    );

    // The outboxes' earlier events carried the record (the referral's, the delivery's):
    // gone with their pruning (an hour after sending by default; years before any case
    // is anonymised), here at once.
    prune_all(&env).await;
    // And the agencies' own words, emptied once past `retention.agency_words_keep_days`
    // (30), here at once.
    let connectors = himaya_store::connect(&env.db_url, "connectors", 2)
        .await
        .unwrap();
    let emptied = himaya_connect::retention::forget_agency_words(&connectors, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(emptied, 1);
    for c in OLD.all().into_iter().chain(TWIN.all().into_iter().take(8)) {
        let hits = occurrences(&db, c).await;
        assert!(hits.is_empty(), "{c} is left in {hits:?}");
    }

    // The others are untouched, their data where it was.
    let kept_after: Vec<(String, i64, serde_json::Value)> = sqlx::query_as(
        "SELECT case_id, version, record FROM cases.cases WHERE case_id <> ALL($1) ORDER BY case_id",
    )
    .bind([&old, &twin])
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(
        kept_before, kept_after,
        "the open and the recent case unchanged"
    );
    for c in [
        RECENT.name,
        RECENT.number,
        RECENT.findings,
        OPEN.name,
        OPEN.number,
    ] {
        assert!(!occurrences(&db, c).await.is_empty(), "{c} is kept");
    }
    // The old case's duplicate-search key is gone; the others' stay.
    assert_eq!(
        count(&db, "SELECT count(*) FROM cases.children").await,
        2,
        "match keys of the two kept cases"
    );
    assert_eq!(
        count(
            &db,
            &format!("SELECT count(*) FROM cases.child_blocks b JOIN cases.children c USING (child_no) WHERE c.case_id = '{old}'")
        )
        .await,
        0
    );

    // Statistics as before; the chain and the checkpoint verify, not one entry changed.
    assert_eq!(statistics(&ch).await, before, "statistics unchanged");
    assert_eq!(
        himaya_audit::verify(&audit, &exported).await.unwrap(),
        entries,
        "the disclosure log verifies as before"
    );

    // The anonymisation is on record, without personal data, and counted.
    let (version, status, risk, record): (i64, String, String, serde_json::Value) = sqlx::query_as(
        "SELECT version, status, risk_level, record FROM cases.cases WHERE case_id = $1",
    )
    .bind(&old)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(
        (version, status.as_str(), risk.as_str()),
        (9, "closed", "high")
    );
    assert_eq!(record["child"]["governorate"], "القاهرة");
    assert_eq!(record["child"]["estimated_age_years"], 14);
    let last: (String, String) = sqlx::query_as(
        "SELECT actor, change FROM cases.case_history WHERE case_id = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(&old)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(last, ("retention".to_owned(), "anonymised".to_owned()));
    assert!(
        hub.metrics
            .encode()
            .contains("himaya_cases_anonymised_total 2"),
        "counted in the metrics"
    );

    // What is left cannot be reopened (nor changed), said in the caller's language.
    let e = work
        .reopen_case(owner(pb::ReopenCaseRequest {
            case_id: old.clone(),
            expected_version: 9,
            actor: "sw-1".into(),
            reason: "عودة".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains("anonymised"), "{}", e.message());

    // Twice: nothing changes, nothing is counted.
    let cases_db = himaya_store::connect(&env.db_url, "cases", 2)
        .await
        .unwrap();
    let snapshot = cases_tables(&db).await;
    let metrics = himaya_metrics::Metrics::new();
    let again = himaya_cases::retention::anonymise_due(&cases_db, 5, 50, &metrics)
        .await
        .unwrap();
    assert_eq!(again, 0);
    assert_eq!(
        cases_tables(&db).await,
        snapshot,
        "a second run changes nothing"
    );
    assert_eq!(statistics(&ch).await, before);
    hub.stop().await;
}

/// Bounded tables (issue 16, part 6): after a run of referrals, every schema's sent
/// outbox rows and processed inbox ids return to zero once pruned, and again after a
/// second run. A test-scale check of the relays' own pruning (`relay::prune`) with
/// nothing kept; the figures are printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outboxes_and_inboxes_return_to_zero_after_pruning() {
    const N: usize = 100;
    let (agency, addr) = FakeAgency::start(&[]).await;
    let env = TestEnv::new(Some(addr)).await;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let db = env.pool().await;
    let schemas = relay_schemas(&db).await;
    let sizes = |label: &'static str| {
        let db = db.clone();
        let schemas = schemas.clone();
        async move {
            let mut line = format!("{label:>14}:");
            let mut total = 0;
            for s in &schemas {
                let out = count(&db, &format!("SELECT count(*) FROM {s}.outbox")).await;
                let inb = count(&db, &format!("SELECT count(*) FROM {s}.inbox")).await;
                line.push_str(&format!(" {s} outbox {out:>4} inbox {inb:>4};"));
                total += out + inb;
            }
            eprintln!("{line}");
            total
        }
    };
    for round in 0..2 {
        let mut intake = IntakeClient::new(ch.clone());
        for i in 0..N {
            intake
                .submit_school_referral(from_school(school_request(&format!(
                    "bounded-{round}-{i}"
                ))))
                .await
                .unwrap();
        }
        let delivered = (round + 1) * N;
        eventually(120, "every referral delivered", || async {
            (agency.count() >= delivered).then_some(())
        })
        .await;
        // Every event of the run published and processed (the answers recorded too).
        let unsent = schemas
            .iter()
            .map(|s| format!("(SELECT count(*) FROM {s}.outbox WHERE sent_at IS NULL)"))
            .collect::<Vec<_>>()
            .join(" + ");
        wait_count(&db, &format!("SELECT {unsent}"), 0, 60, "every outbox sent").await;
        wait_count(
            &db,
            "SELECT count(*) FROM cases.referral_deliveries",
            delivered as i64,
            60,
            "every answer recorded",
        )
        .await;
        let grown = sizes(if round == 0 {
            "after run 1"
        } else {
            "after run 2"
        })
        .await;
        assert!(grown > N as i64, "the run left rows to prune ({grown})");
        prune_all(&env).await;
        let left = sizes("pruned").await;
        assert_eq!(left, 0, "nothing sent or processed is kept");
    }
    hub.stop().await;
}
