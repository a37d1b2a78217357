//! The services proposed with a new referral: a group of referrals written together is
//! proposed for in one statement, and each referral gets its own list, as if alone (the
//! child's district first, then its governorate before services offered everywhere, then
//! the most places free; full, closed and removed services never; five at most).

use crate::helpers::*;
use himaya_record::{CaseRecord, ServiceType};

fn referral(services: &[ServiceType], governorate: &str, district: Option<&str>) -> CaseRecord {
    let mut case = himaya_record::fixtures::record();
    case.case_id = himaya_record::CaseId::new();
    case.referral.requested_services = services.to_vec();
    case.child.governorate = governorate.into();
    case.child.district = district.map(str::to_owned);
    case
}

/// A service of the map: id, type, governorate, districts, capacity, accepting, removed.
type Service = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    i32,
    bool,
    bool,
);

#[tokio::test]
async fn each_referral_of_a_group_gets_its_own_proposals_in_one_statement() {
    let env = TestEnv::new(None).await;
    let pool = env.cases_schema().await;
    let services: [Service; 12] = [
        ("svc_shubra", "health", "القاهرة", &["شبرا"], 2, true, false),
        ("svc_cairo_50", "health", "القاهرة", &[], 50, true, false),
        ("svc_cairo_13", "health", "القاهرة", &[], 13, true, false),
        ("svc_cairo_12", "health", "القاهرة", &[], 12, true, false),
        ("svc_cairo_11", "health", "القاهرة", &[], 11, true, false),
        ("svc_cairo_10", "health", "القاهرة", &[], 10, true, false),
        ("svc_everywhere", "health", "*", &[], 100, true, false),
        ("svc_full", "health", "القاهرة", &["شبرا"], 0, true, false),
        (
            "svc_closed",
            "health",
            "القاهرة",
            &["شبرا"],
            9,
            false,
            false,
        ),
        ("svc_removed", "health", "القاهرة", &["شبرا"], 9, true, true),
        (
            "svc_giza_psy",
            "psychosocial",
            "الجيزة",
            &[],
            5,
            true,
            false,
        ),
        (
            "svc_cairo_school",
            "education",
            "القاهرة",
            &["شبرا"],
            30,
            true,
            false,
        ),
    ];
    for (id, kind, governorate, districts, capacity, accepting, removed) in services {
        sqlx::query(
            "INSERT INTO service_map (service_id, agency_id, service_type, name_ar, name_en, governorate,
                                      districts, capacity, languages, accepting, removed, version, updated_at)
             VALUES ($1, 'health-cairo', $2, 'خدمة', '', $3, $4, $5, '{ar}', $6, $7, 1, now())",
        )
        .bind(id)
        .bind(kind)
        .bind(governorate)
        .bind(districts)
        .bind(capacity)
        .bind(accepting)
        .bind(removed)
        .execute(&pool)
        .await
        .unwrap();
    }
    let group = [
        referral(&[ServiceType::Health], "القاهرة", Some("شبرا")),
        referral(&[ServiceType::Health], "القاهرة", None),
        referral(&[], "القاهرة", Some("شبرا")),
        referral(
            &[ServiceType::Health, ServiceType::Psychosocial],
            "الجيزة",
            None,
        ),
        referral(&[ServiceType::Legal], "القاهرة", None),
    ];
    let records: Vec<&CaseRecord> = group.iter().collect();
    let proposed = himaya_cases::service_map::propose_all(&pool, &records)
        .await
        .unwrap();
    let ids: Vec<Vec<&str>> = proposed
        .iter()
        .map(|list| list.iter().map(|s| s.service_id.as_str()).collect())
        .collect();
    let expected: [&[&str]; 5] = [
        &[
            "svc_shubra",
            "svc_cairo_50",
            "svc_cairo_13",
            "svc_cairo_12",
            "svc_cairo_11",
        ],
        &[
            "svc_cairo_50",
            "svc_cairo_13",
            "svc_cairo_12",
            "svc_cairo_11",
            "svc_cairo_10",
        ],
        &[],
        &["svc_giza_psy", "svc_everywhere"],
        &[],
    ];
    assert_eq!(ids, expected);
    // Alone, each gets the same list.
    for (record, expected) in group.iter().zip(expected) {
        let alone = himaya_cases::service_map::propose_all(&pool, &[record])
            .await
            .unwrap();
        let ids: Vec<&str> = alone[0].iter().map(|s| s.service_id.as_str()).collect();
        assert_eq!(ids, expected);
    }
    // Nothing to propose for: no statement at all.
    assert!(himaya_cases::service_map::propose_all(&pool, &[])
        .await
        .unwrap()
        .is_empty());
}
