//! The bytes every event is written as, held against `wire.golden`: the bytes apache-avro
//! 0.17 wrote through a `Value` before the writer serialized straight from serde
//! (2026-12-05). A hub upgraded in place reads what the one before it left in the
//! outboxes and on the bus, and an older consumer reads what the new one writes, only
//! while these stay the same.
//!
//! `wire.golden` holds one line per sample: its label, a space, its bytes in hex. To
//! write it anew (a schema changed on purpose, and its readers with it):
//! `HIMAYA_WRITE_WIRE_GOLDEN=1 cargo test -p himaya-events wire`.

use std::collections::{BTreeMap, BTreeSet};

use himaya_record::fixtures;
use himaya_record::{CaseId, ReferralId};

use super::*;

/// Whether given bytes decode back to a sample.
type ReadsBack = Box<dyn Fn(&[u8]) -> bool>;

/// One sample: its label, its event's name, its bytes, and whether given bytes decode
/// back to it.
struct Sample {
    label: &'static str,
    name: &'static str,
    bytes: Vec<u8>,
    reads_back: ReadsBack,
}

fn sample<E: Event + PartialEq + 'static>(label: &'static str, event: E) -> Sample {
    Sample {
        label,
        name: E::NAME,
        bytes: encode(&event).unwrap(),
        reads_back: Box::new(move |bytes| decode::<E>(bytes).ok().as_ref() == Some(&event)),
    }
}

const AT: &str = "2026-11-22T09:30:00Z";

/// The fixtures' records with fixed ids (a new record draws new ones).
fn record(closed: bool) -> CaseRecord {
    let mut r = if closed {
        fixtures::closed_record()
    } else {
        fixtures::record()
    };
    r.case_id = CaseId::from_uuid(uuid::Uuid::from_u128(
        0x0193_5d2a_7c00_7000_8000_0000_0000_0001,
    ));
    r.referral.referral_id = ReferralId::from_uuid(uuid::Uuid::from_u128(
        0x0193_5d2a_7c00_7000_8000_0000_0000_0002,
    ));
    if r.merged_into.is_some() {
        r.merged_into = Some(
            CaseId::from_uuid(uuid::Uuid::from_u128(
                0x0193_5d2a_7c00_7000_8000_0000_0000_0003,
            ))
            .to_string(),
        );
    }
    r
}

fn created(closed: bool) -> ReferralCreated {
    ReferralCreated {
        message_id: "msg_created".into(),
        occurred_at: AT.into(),
        case: record(closed),
        service_request: None,
    }
}

fn delivery() -> DeliveryRequested {
    DeliveryRequested {
        message_id: "msg_delivery".into(),
        occurred_at: AT.into(),
        agency_id: "health-cairo".into(),
        case_id: "case_1".into(),
        referral_id: "ref_1".into(),
        purpose: "service_provision".into(),
        priority: "urgent".into(),
        idempotency_key: "idem_1".into(),
        categories: vec!["reference".into(), "health".into()],
        document_json: r#"{"child":{"name":"مريم"}}"#.into(),
        service_type: None,
        kind: "referral".into(),
        medical_coverage: None,
    }
}

pub(crate) fn answer() -> DeliveryRecorded {
    DeliveryRecorded {
        message_id: "msg_answer".into(),
        occurred_at: AT.into(),
        agency_id: "health-cairo".into(),
        case_id: "case_1".into(),
        referral_id: "ref_1".into(),
        delivery_message_id: "msg_delivery".into(),
        outcome: "delivered".into(),
        http_status: 201,
        agency_reference: Some("HC-1".into()),
        reason: None,
    }
}

pub(crate) fn disclosure() -> DisclosureRecorded {
    DisclosureRecorded {
        message_id: "msg_disclosure".into(),
        occurred_at: AT.into(),
        source: "router".into(),
        channel: "bus_delivery".into(),
        case_id: "case_1".into(),
        referral_id: Some("ref_1".into()),
        recipient: "health-cairo".into(),
        purpose: "service_provision".into(),
        decision: "permit".into(),
        reason: None,
        categories: vec!["reference".into(), "health".into()],
        basis: vec!["cns_1".into()],
        delivery_message_id: Some("msg_delivery".into()),
        person: Some("psn_1".into()),
    }
}

fn samples() -> Vec<Sample> {
    let mut undocumented = created(false);
    undocumented.case.child.date_of_birth = None;
    undocumented.case.child.estimated_age_years = Some(11);
    undocumented.case.child.school = None;
    undocumented.case.caregivers.clear();
    undocumented.case.referral.narrative = None;
    let service = ReferralCreated {
        service_request: Some(ServiceRequest {
            service_referral_id: "srv_1".into(),
            agency_id: "health-cairo".into(),
            service_type: "health".into(),
            action_id: "a1".into(),
            medical_coverage: Some(MedicalCoverage::Partial),
        }),
        ..created(true)
    };
    let health = DeliveryRequested {
        service_type: Some("health".into()),
        medical_coverage: Some(MedicalCoverage::Full),
        ..delivery()
    };
    let notice = DeliveryRequested {
        kind: "withdrawal_notice".into(),
        referral_id: "wdn_1".into(),
        categories: Vec::new(),
        ..delivery()
    };
    let refused = DeliveryRecorded {
        outcome: "rejected".into(),
        http_status: 422,
        agency_reference: None,
        reason: Some("rejected".into()),
        ..answer()
    };
    let denied = DisclosureRecorded {
        decision: "deny".into(),
        reason: Some("no_consent".into()),
        referral_id: None,
        categories: Vec::new(),
        basis: Vec::new(),
        delivery_message_id: None,
        person: None,
        ..disclosure()
    };
    vec![
        sample("referral-created", created(false)),
        sample("referral-created-closed-service", service.clone()),
        sample("referral-created-undocumented", undocumented.clone()),
        sample(
            "referrals-created",
            ReferralsCreated {
                message_id: "msg_group".into(),
                occurred_at: AT.into(),
                referrals: vec![created(false), service, undocumented],
                traceparents: vec![
                    Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
                    None,
                    None,
                ],
            },
        ),
        sample("delivery-requested", delivery()),
        sample("delivery-requested-health", health.clone()),
        sample("delivery-requested-notice", notice.clone()),
        sample(
            "deliveries-requested",
            DeliveriesRequested {
                message_id: "msg_deliveries".into(),
                occurred_at: AT.into(),
                deliveries: vec![delivery(), health, notice],
                traceparents: vec![None, Some("00-0af7-b7ad-01".into()), None],
            },
        ),
        sample("delivery-recorded", answer()),
        sample("delivery-recorded-refused", refused.clone()),
        sample(
            "deliveries-recorded",
            DeliveriesRecorded {
                message_id: "msg_answers".into(),
                occurred_at: AT.into(),
                answers: vec![answer(), refused],
            },
        ),
        sample(
            "case-updated",
            CaseUpdated {
                message_id: "msg_updated".into(),
                occurred_at: AT.into(),
                case_id: "case_1".into(),
                version: 3,
                status: "registered".into(),
                change: "assigned".into(),
                actor: "sw-1".into(),
                referral_id: Some("ref_1".into()),
                referrer_agency_id: None,
            },
        ),
        sample(
            "service-referral-changed",
            ServiceReferralChanged {
                message_id: "msg_srv".into(),
                occurred_at: AT.into(),
                service_referral_id: "srv_1".into(),
                case_id: "case_1".into(),
                action_id: "a1".into(),
                from_agency: "mosa-cairo".into(),
                to_agency: "health-cairo".into(),
                state: "accepted".into(),
                version: 2,
                changed_by: "health-cairo".into(),
            },
        ),
        sample(
            "agency-changed",
            AgencyChanged {
                message_id: "msg_agency".into(),
                occurred_at: AT.into(),
                agency_id: "health-cairo".into(),
                agency_type: "health".into(),
                name_ar: "مديرية الصحة بالقاهرة".into(),
                name_en: "Cairo Health Directorate".into(),
                services: vec!["health".into()],
                governorates: vec!["01".into(), "21".into()],
                protocol: "fhir".into(),
                connected: true,
                status: "active".into(),
                version: 4,
                updated_by: "admin-1".into(),
                reason: Some("renamed".into()),
            },
        ),
        sample(
            "certificate-revoked",
            CertificateRevoked {
                message_id: "msg_revoked".into(),
                occurred_at: AT.into(),
                agency_id: "health-cairo".into(),
                fingerprint: "ab".repeat(32),
                reason: "key_compromise".into(),
                revoked_by: "admin-1".into(),
            },
        ),
        sample(
            "service-map-changed",
            ServiceMapChanged {
                message_id: "msg_service".into(),
                occurred_at: AT.into(),
                service_id: "svc_1".into(),
                agency_id: "health-cairo".into(),
                service_type: "health".into(),
                name_ar: "عيادة السمع".into(),
                name_en: String::new(),
                governorate: "القاهرة".into(),
                districts: vec!["شبرا".into()],
                capacity: 12,
                languages: vec!["ar".into()],
                accepting: true,
                removed: false,
                version: 1,
                updated_at: AT.into(),
            },
        ),
        sample("disclosure-recorded", disclosure()),
        sample("disclosure-recorded-denied", denied.clone()),
        sample(
            "disclosures-recorded",
            DisclosuresRecorded {
                message_id: "msg_disclosures".into(),
                occurred_at: AT.into(),
                disclosures: vec![disclosure(), denied],
            },
        ),
        sample(
            "consent-withdrawn",
            ConsentWithdrawn {
                message_id: "msg_withdrawn".into(),
                occurred_at: AT.into(),
                case_id: "case_1".into(),
                consent_id: "cns_1".into(),
                categories: vec!["health".into(), "education".into()],
                withdrawn_at: AT.into(),
            },
        ),
        sample(
            "withdrawal-notice",
            WithdrawalNotice {
                message_id: "msg_notice".into(),
                occurred_at: AT.into(),
                notice_id: "wdn_1".into(),
                agency_id: "health-cairo".into(),
                case_id: "case_1".into(),
                consent_id: "cns_1".into(),
                categories: vec!["health".into()],
                withdrawn_at: AT.into(),
            },
        ),
        sample(
            "deadline-missed",
            DeadlineMissed {
                message_id: "msg_missed".into(),
                occurred_at: AT.into(),
                case_id: "case_1".into(),
                kind: "assignment".into(),
                due_at: "2026-11-22T10:30:00Z".into(),
                supervisor_id: Some("sup-1".into()),
            },
        ),
    ]
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn every_event_is_written_as_it_always_was_and_reads_back() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("wire.golden");
    let samples = samples();
    // Every event the hub knows has a sample.
    let named: BTreeSet<&str> = samples.iter().map(|s| s.name).collect();
    let known: BTreeSet<&str> = registry().unwrap().keys().copied().collect();
    assert_eq!(named, known);
    if std::env::var_os("HIMAYA_WRITE_WIRE_GOLDEN").is_some() {
        let lines: String = samples
            .iter()
            .map(|s| format!("{} {}\n", s.label, to_hex(&s.bytes)))
            .collect();
        std::fs::write(&path, lines).unwrap();
        return;
    }
    let golden = std::fs::read_to_string(&path).unwrap();
    let golden: BTreeMap<&str, &str> = golden.lines().filter_map(|l| l.split_once(' ')).collect();
    assert_eq!(golden.len(), samples.len());
    for s in &samples {
        let Some(hex) = golden.get(s.label) else {
            panic!("{} is not in wire.golden", s.label);
        };
        assert_eq!(&to_hex(&s.bytes), hex, "{} is written differently", s.label);
        assert!(
            (s.reads_back)(&from_hex(hex)),
            "{} reads back differently",
            s.label
        );
    }
}
