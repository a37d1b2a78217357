//! Bus events as Avro single-object encoding: `C3 01`, the schema's 8-byte little-endian
//! CRC-64-AVRO (Rabin) fingerprint, then the Avro binary body. The schemas live in
//! `proto/avro/`; a reader finds the schema by fingerprint, so an unknown fingerprint or a
//! truncated body is a clean, classified error rather than garbage.

use std::collections::HashMap;
use std::sync::OnceLock;

use apache_avro::rabin::Rabin;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::{GenericSingleObjectReader, Schema};
use himaya_record::service_referral::MedicalCoverage;
use himaya_record::{CaseRecord, MessageId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

const MAGIC: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10;

/// Why bytes could not become an event (or an event bytes). Decode errors are permanent:
/// the same bytes will never decode, so the consumer parks the message with this reason.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("message is {len} bytes, shorter than the 10-byte single-object header")]
    Truncated { len: usize },
    #[error("message does not start with the Avro single-object marker C3 01")]
    NotSingleObject,
    #[error("no known schema has fingerprint {0}")]
    UnknownFingerprint(String),
    #[error("expected a {expected} event, got a {found} event")]
    WrongEvent {
        expected: &'static str,
        found: &'static str,
    },
    /// The library's own error text is dropped on purpose: it can quote field values.
    #[error("the {event} body does not match its schema")]
    Body { event: &'static str },
    #[error("the {event} body has {extra} trailing bytes")]
    TrailingBytes { event: &'static str, extra: usize },
    /// As for `Body`, the library's text (which can quote values) is dropped.
    #[error("could not encode a {event} event: it does not fit its schema")]
    Encode { event: &'static str },
    #[error("the built-in Avro schema {0} does not parse: {1}")]
    Schema(&'static str, String),
}

/// A bus event: its name, routing key and schema.
pub trait Event: Serialize + DeserializeOwned {
    /// The Avro full name.
    const NAME: &'static str;
    /// The schema text (from `proto/avro/`).
    const SCHEMA: &'static str;
    /// The message id consumers deduplicate on.
    fn message_id(&self) -> &str;
}

/// `referral.created`: a case was opened by a referral. Carries the full record and so
/// never leaves the hub; the router reads it and discloses through the redactor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferralCreated {
    pub message_id: String,
    pub occurred_at: String,
    pub case: CaseRecord,
    /// Set for a service referral from a plan action: only this agency may receive it.
    #[serde(default)]
    pub service_request: Option<ServiceRequest>,
}

/// A service referral between agencies, carried by [`ReferralCreated`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRequest {
    pub service_referral_id: String,
    pub agency_id: String,
    pub service_type: String,
    pub action_id: String,
    /// Who pays, for a health service referral: the hub's decision (never the family's
    /// ability to pay, which stays in the hub).
    #[serde(default)]
    pub medical_coverage: Option<MedicalCoverage>,
}

/// A redacted referral for one agency's connector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRequested {
    pub message_id: String,
    pub occurred_at: String,
    pub agency_id: String,
    pub case_id: String,
    pub referral_id: String,
    pub purpose: String,
    pub priority: String,
    pub idempotency_key: String,
    pub categories: Vec<String>,
    pub document_json: String,
    /// Set for a service referral (`referral_id` is then a `srv_` id): the service asked for.
    #[serde(default)]
    pub service_type: Option<String>,
    /// `referral`, or `withdrawal_notice` (`referral_id` is then the `wdn_` notice id and
    /// `document_json` the notice).
    #[serde(default = "referral_kind")]
    pub kind: String,
    /// Set for a health service referral: how much of its costs the programme covers.
    #[serde(default)]
    pub medical_coverage: Option<MedicalCoverage>,
}

fn referral_kind() -> String {
    "referral".into()
}

/// `referral.delivery.recorded`: what the agency answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecorded {
    pub message_id: String,
    pub occurred_at: String,
    pub agency_id: String,
    pub case_id: String,
    pub referral_id: String,
    pub delivery_message_id: String,
    pub outcome: String,
    pub http_status: i32,
    pub agency_reference: Option<String>,
    /// Why it was not delivered (a code); none when it was.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `case.updated`: a change of a case's lifecycle (ids and kinds only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseUpdated {
    pub message_id: String,
    pub occurred_at: String,
    pub case_id: String,
    pub version: i64,
    pub status: String,
    pub change: String,
    pub actor: String,
    /// The referral that opened the case and the agency that made it, so the referrer
    /// can be told what became of it (none for a walk-in).
    #[serde(default)]
    pub referral_id: Option<String>,
    #[serde(default)]
    pub referrer_agency_id: Option<String>,
}

/// `service.referral.changed`: a service referral moved (ids and states only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceReferralChanged {
    pub message_id: String,
    pub occurred_at: String,
    pub service_referral_id: String,
    pub case_id: String,
    pub action_id: String,
    pub from_agency: String,
    pub to_agency: String,
    pub state: String,
    pub version: i64,
    pub changed_by: String,
}

/// `directory.agency.changed`: one agency of the directory, its public entry whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgencyChanged {
    pub message_id: String,
    pub occurred_at: String,
    pub agency_id: String,
    pub agency_type: String,
    pub name_ar: String,
    pub name_en: String,
    pub services: Vec<String>,
    pub governorates: Vec<String>,
    pub protocol: String,
    pub connected: bool,
    pub status: String,
    pub version: i64,
    pub updated_by: String,
    pub reason: Option<String>,
}

/// `directory.certificate.revoked`: one certificate an administrator revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateRevoked {
    pub message_id: String,
    pub occurred_at: String,
    pub agency_id: String,
    pub fingerprint: String,
    pub reason: String,
    pub revoked_by: String,
}

/// `directory.service.changed`: one service-map entry, whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceMapChanged {
    pub message_id: String,
    pub occurred_at: String,
    pub service_id: String,
    pub agency_id: String,
    pub service_type: String,
    pub name_ar: String,
    pub name_en: String,
    pub governorate: String,
    pub districts: Vec<String>,
    pub capacity: i32,
    pub languages: Vec<String>,
    pub accepting: bool,
    pub removed: bool,
    pub version: i64,
    pub updated_at: String,
}

/// `audit.disclosure.recorded`: one disclosure decision, for the disclosure log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisclosureRecorded {
    pub message_id: String,
    pub occurred_at: String,
    pub source: String,
    pub channel: String,
    pub case_id: String,
    pub referral_id: Option<String>,
    pub recipient: String,
    pub purpose: String,
    pub decision: String,
    pub reason: Option<String>,
    pub categories: Vec<String>,
    pub basis: Vec<String>,
    pub delivery_message_id: Option<String>,
    /// The person who read, when the web front proved them (`psn_…`); none for an
    /// agency's system or the hub itself.
    #[serde(default)]
    pub person: Option<String>,
}

/// `audit.disclosures.recorded`: the disclosure decisions of one routing transaction in
/// one message (one outbox row and one broker message for a whole batch, where one per
/// decision cost about a quarter of a referral's rows and messages). Each decision keeps
/// its own message id, which the log appends once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisclosuresRecorded {
    pub message_id: String,
    pub occurred_at: String,
    pub disclosures: Vec<DisclosureRecorded>,
}

/// `referrals.created`: the referrals one intake transaction (a group commit) opened,
/// in one message, each with the trace it continues (`traceparents`, in the same order;
/// `None` where a referral has none). Each referral keeps its own message id, which the
/// router routes once; a group of one is sent alone, as [`ReferralCreated`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferralsCreated {
    pub message_id: String,
    pub occurred_at: String,
    pub referrals: Vec<ReferralCreated>,
    pub traceparents: Vec<Option<String>>,
}

/// `referral.deliveries.recorded`: the answers a connector recorded in one transaction,
/// in one message (one outbox row and one broker message for the batch, where one per
/// answer was a third of a referral's messages). Each answer keeps its own message id,
/// which the cases service records once; a connector that recorded one answer sends it
/// alone, as [`DeliveryRecorded`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveriesRecorded {
    pub message_id: String,
    pub occurred_at: String,
    pub answers: Vec<DeliveryRecorded>,
}

/// The deliveries one routing transaction queued for one agency at one priority, in one
/// message on the delivery exchange (one outbox row and one broker message where one per
/// delivery was most of a referral's messages), each with the trace it continues
/// (`traceparents`, in the same order). Each delivery keeps its own message id, which the
/// agency's connector sends and records once; a delivery alone is sent as
/// [`DeliveryRequested`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveriesRequested {
    pub message_id: String,
    pub occurred_at: String,
    pub deliveries: Vec<DeliveryRequested>,
    pub traceparents: Vec<Option<String>>,
}

/// `consent.withdrawn`: a consent or legal basis on a case was withdrawn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentWithdrawn {
    pub message_id: String,
    pub occurred_at: String,
    pub case_id: String,
    pub consent_id: String,
    pub categories: Vec<String>,
    pub withdrawn_at: String,
}

/// `consent.withdrawal.notice`: tell one earlier recipient of a withdrawal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawalNotice {
    pub message_id: String,
    pub occurred_at: String,
    pub notice_id: String,
    pub agency_id: String,
    pub case_id: String,
    pub consent_id: String,
    pub categories: Vec<String>,
    pub withdrawn_at: String,
}

/// `case.deadline.missed`: an escalation to the supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadlineMissed {
    pub message_id: String,
    pub occurred_at: String,
    pub case_id: String,
    pub kind: String,
    pub due_at: String,
    pub supervisor_id: Option<String>,
}

macro_rules! event {
    ($t:ty, $name:literal, $file:literal) => {
        impl Event for $t {
            const NAME: &'static str = $name;
            const SCHEMA: &'static str = include_str!(concat!("../../../proto/avro/", $file));
            fn message_id(&self) -> &str {
                &self.message_id
            }
        }
    };
}

event!(
    ReferralCreated,
    "himaya.v1.ReferralCreated",
    "referral_created.avsc"
);
event!(
    DeliveryRequested,
    "himaya.v1.DeliveryRequested",
    "delivery_requested.avsc"
);
event!(
    DeliveryRecorded,
    "himaya.v1.DeliveryRecorded",
    "delivery_recorded.avsc"
);
event!(
    ReferralsCreated,
    "himaya.v1.ReferralsCreated",
    "referrals_created.avsc"
);
event!(
    DeliveriesRecorded,
    "himaya.v1.DeliveriesRecorded",
    "deliveries_recorded.avsc"
);
event!(
    DeliveriesRequested,
    "himaya.v1.DeliveriesRequested",
    "deliveries_requested.avsc"
);
event!(CaseUpdated, "himaya.v1.CaseUpdated", "case_updated.avsc");
event!(
    ServiceReferralChanged,
    "himaya.v1.ServiceReferralChanged",
    "service_referral_changed.avsc"
);
event!(
    AgencyChanged,
    "himaya.v1.AgencyChanged",
    "agency_changed.avsc"
);
event!(
    CertificateRevoked,
    "himaya.v1.CertificateRevoked",
    "certificate_revoked.avsc"
);
event!(
    ServiceMapChanged,
    "himaya.v1.ServiceMapChanged",
    "service_map_changed.avsc"
);
event!(
    DisclosureRecorded,
    "himaya.v1.DisclosureRecorded",
    "disclosure_recorded.avsc"
);
event!(
    DisclosuresRecorded,
    "himaya.v1.DisclosuresRecorded",
    "disclosures_recorded.avsc"
);
event!(
    ConsentWithdrawn,
    "himaya.v1.ConsentWithdrawn",
    "consent_withdrawn.avsc"
);
event!(
    WithdrawalNotice,
    "himaya.v1.WithdrawalNotice",
    "withdrawal_notice.avsc"
);
event!(
    DeadlineMissed,
    "himaya.v1.DeadlineMissed",
    "deadline_missed.avsc"
);

/// Routing keys on the events exchange.
pub mod keys {
    pub const REFERRAL_CREATED: &str = "referral.created";
    pub const REFERRALS_CREATED: &str = "referrals.created";
    pub const SERVICE_REFERRAL_REQUESTED: &str = "service.referral.requested";
    pub const SERVICE_REFERRAL_CHANGED: &str = "service.referral.changed";
    pub const SERVICE_MAP_CHANGED: &str = "directory.service.changed";
    pub const AGENCY_CHANGED: &str = "directory.agency.changed";
    pub const CERTIFICATE_REVOKED: &str = "directory.certificate.revoked";
    pub const DISCLOSURE_RECORDED: &str = "audit.disclosure.recorded";
    pub const DISCLOSURES_RECORDED: &str = "audit.disclosures.recorded";
    pub const CONSENT_WITHDRAWN: &str = "consent.withdrawn";
    pub const WITHDRAWAL_NOTICE: &str = "consent.withdrawal.notice";
    pub const DELIVERY_RECORDED: &str = "referral.delivery.recorded";
    pub const DELIVERIES_RECORDED: &str = "referral.deliveries.recorded";
    pub const CASE_UPDATED: &str = "case.updated";
    pub const DEADLINE_MISSED: &str = "case.deadline.missed";
}

/// A built-in event's schema, resolved once: resolving a schema's names per message was a
/// measurable share of the hub's CPU (two resolutions per encode, one per decode).
struct Known {
    name: &'static str,
    fingerprint: [u8; 8],
    /// Serializes an event straight into Avro binary as the schema says, with no
    /// `Value` between: building one (a map and a copied string per field) and
    /// validating it was a fifth of the hub's CPU at its ceiling (2026-12-05). What does
    /// not fit the schema is refused as it is written.
    writer: GenericDatumWriter<'static>,
    /// Deserializes the body straight from the bytes as the schema says, likewise.
    reader: GenericSingleObjectReader,
}

/// Whether `Serialize` and `Deserialize` implementations are told the format is human
/// readable. apache-avro said yes until 0.22 and no since; the events were written with
/// yes, and a type that asks (a UUID: text or 16 bytes) must read and write as it always
/// did, whatever the library's default.
const HUMAN_READABLE: bool = true;

fn parse(name: &'static str, text: &str) -> Result<Known, CodecError> {
    let resolve = |e: apache_avro::Error| CodecError::Schema(name, e.to_string());
    let schema = Schema::parse_str(text).map_err(resolve)?;
    let fp = schema.fingerprint::<Rabin>().bytes;
    let mut fingerprint = [0u8; 8];
    fingerprint.copy_from_slice(&fp[..8]);
    let reader = GenericSingleObjectReader::builder()
        .schema(schema.clone())
        .human_readable(HUMAN_READABLE)
        .build()
        .map_err(resolve)?;
    // Parsed once per process and kept for its life (sixteen schemas): the writer
    // borrows it.
    let schema: &'static Schema = Box::leak(Box::new(schema));
    let writer = GenericDatumWriter::builder(schema)
        .human_readable(HUMAN_READABLE)
        .build()
        .map_err(resolve)?;
    Ok(Known {
        name,
        fingerprint,
        writer,
        reader,
    })
}

/// The most one allocation may take while an event is decoded (a string's, a list's
/// declared length). apache-avro allocates what a message declares before reading it, up
/// to a process-wide limit of 512 MiB by default; no event of ours holds anything near
/// 16 MiB (a group of referrals is a few hundred KiB). Set when the events are first
/// used, unless something in the process set a limit before (the household import sets a
/// smaller one in its own process).
pub const MAX_ALLOCATION_BYTES: usize = 16 * 1024 * 1024;

fn registry() -> Result<&'static HashMap<&'static str, Known>, CodecError> {
    type Loaded = Result<HashMap<&'static str, Known>, (&'static str, String)>;
    static REGISTRY: OnceLock<Loaded> = OnceLock::new();
    REGISTRY
        .get_or_init(|| {
            apache_avro::util::max_allocation_bytes(MAX_ALLOCATION_BYTES);
            [
                (ReferralCreated::NAME, ReferralCreated::SCHEMA),
                (ReferralsCreated::NAME, ReferralsCreated::SCHEMA),
                (DeliveryRequested::NAME, DeliveryRequested::SCHEMA),
                (DeliveryRecorded::NAME, DeliveryRecorded::SCHEMA),
                (DeliveriesRequested::NAME, DeliveriesRequested::SCHEMA),
                (DeliveriesRecorded::NAME, DeliveriesRecorded::SCHEMA),
                (CaseUpdated::NAME, CaseUpdated::SCHEMA),
                (DeadlineMissed::NAME, DeadlineMissed::SCHEMA),
                (ServiceReferralChanged::NAME, ServiceReferralChanged::SCHEMA),
                (ServiceMapChanged::NAME, ServiceMapChanged::SCHEMA),
                (AgencyChanged::NAME, AgencyChanged::SCHEMA),
                (CertificateRevoked::NAME, CertificateRevoked::SCHEMA),
                (DisclosureRecorded::NAME, DisclosureRecorded::SCHEMA),
                (DisclosuresRecorded::NAME, DisclosuresRecorded::SCHEMA),
                (ConsentWithdrawn::NAME, ConsentWithdrawn::SCHEMA),
                (WithdrawalNotice::NAME, WithdrawalNotice::SCHEMA),
            ]
            .into_iter()
            .map(|(n, s)| match parse(n, &inline_references(s)) {
                Ok(k) => Ok((n, k)),
                Err(e) => Err((n, e.to_string())),
            })
            .collect()
        })
        .as_ref()
        .map_err(|(n, e)| CodecError::Schema(n, e.clone()))
}

/// `text` with every reference to another event's record (its full name as a type, in
/// quotes) replaced by that record's schema: a schema is parsed, fingerprinted and
/// written whole, and each record is still defined in one file.
fn inline_references(text: &'static str) -> std::borrow::Cow<'static, str> {
    const RECORDS: [(&str, &str); 4] = [
        (ReferralCreated::NAME, ReferralCreated::SCHEMA),
        (DeliveryRequested::NAME, DeliveryRequested::SCHEMA),
        (DisclosureRecorded::NAME, DisclosureRecorded::SCHEMA),
        (DeliveryRecorded::NAME, DeliveryRecorded::SCHEMA),
    ];
    let mut text = std::borrow::Cow::Borrowed(text);
    for (name, schema) in RECORDS {
        let reference = format!("\"{name}\"");
        if text.contains(&reference) {
            text = std::borrow::Cow::Owned(text.replacen(&reference, schema, 1));
        }
    }
    text
}

/// Checks every built-in schema parses; call at start-up to fail fast.
pub fn check_schemas() -> Result<(), CodecError> {
    registry().map(|_| ())
}

fn known<E: Event>() -> Result<&'static Known, CodecError> {
    registry()?
        .get(E::NAME)
        .ok_or(CodecError::UnknownFingerprint(E::NAME.into()))
}

/// Encodes an event as Avro single-object encoding.
pub fn encode<E: Event>(event: &E) -> Result<Vec<u8>, CodecError> {
    let k = known::<E>()?;
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&k.fingerprint);
    k.writer
        .write_ser(&mut out, event)
        .map_err(|_| CodecError::Encode { event: E::NAME })?;
    Ok(out)
}

/// The event name a message carries, from its fingerprint alone.
pub fn event_name(bytes: &[u8]) -> Result<&'static str, CodecError> {
    if bytes.len() < HEADER_LEN {
        return Err(CodecError::Truncated { len: bytes.len() });
    }
    if bytes[..2] != MAGIC {
        return Err(CodecError::NotSingleObject);
    }
    let fp = &bytes[2..HEADER_LEN];
    registry()?
        .values()
        .find(|k| k.fingerprint == fp)
        .map(|k| k.name)
        .ok_or_else(|| {
            CodecError::UnknownFingerprint(fp.iter().map(|b| format!("{b:02x}")).collect())
        })
}

/// Decodes a message that must be an `E`.
pub fn decode<E: Event>(bytes: &[u8]) -> Result<E, CodecError> {
    let found = event_name(bytes)?;
    if found != E::NAME {
        return Err(CodecError::WrongEvent {
            expected: E::NAME,
            found,
        });
    }
    let k = known::<E>()?;
    let mut body = bytes;
    let event = k
        .reader
        .read_deser::<E>(&mut body)
        .map_err(|_| CodecError::Body { event: E::NAME })?;
    if !body.is_empty() {
        return Err(CodecError::TrailingBytes {
            event: E::NAME,
            extra: body.len(),
        });
    }
    Ok(event)
}

/// A new message id for an event.
pub fn new_message_id() -> String {
    MessageId::new().to_string()
}

#[cfg(test)]
mod wire_tests;

#[cfg(test)]
mod tests {
    use himaya_record::fixtures;

    use super::*;

    /// A batch message reads back as itself, under its own name, and never as one of its
    /// items (`Item`).
    fn batch_reads_back_as_itself_only<B, Item>(batch: &B)
    where
        B: Event + PartialEq + std::fmt::Debug,
        Item: Event,
    {
        let bytes = encode(batch).unwrap();
        assert_eq!(event_name(&bytes).unwrap(), B::NAME);
        assert_eq!(&decode::<B>(&bytes).unwrap(), batch);
        assert!(matches!(
            decode::<Item>(&bytes),
            Err(CodecError::WrongEvent { .. })
        ));
    }

    fn created() -> ReferralCreated {
        ReferralCreated {
            message_id: new_message_id(),
            occurred_at: "2026-11-22T09:30:00Z".into(),
            case: fixtures::record(),
            service_request: None,
        }
    }

    #[test]
    fn schemas_parse() {
        check_schemas().unwrap();
    }

    #[test]
    fn an_intake_groups_referrals_round_trip_in_one_message() {
        let first = created();
        let second = ReferralCreated {
            case: fixtures::closed_record(),
            ..created()
        };
        let batch = ReferralsCreated {
            message_id: new_message_id(),
            occurred_at: "2026-11-22T09:30:00Z".into(),
            referrals: vec![first.clone(), second],
            traceparents: vec![
                Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
                None,
            ],
        };
        batch_reads_back_as_itself_only::<_, ReferralCreated>(&batch);
        // One alone is still its own message.
        assert_eq!(
            decode::<ReferralCreated>(&encode(&first).unwrap()).unwrap(),
            first
        );
    }

    /// Every event's round trip, through the bytes the old build wrote: `wire_tests`.
    #[test]
    fn batches_read_back_as_themselves_only() {
        use super::wire_tests::{answer, disclosure};
        let disclosures = DisclosuresRecorded {
            message_id: new_message_id(),
            occurred_at: "2026-11-22T09:30:00Z".into(),
            disclosures: vec![disclosure(), disclosure()],
        };
        batch_reads_back_as_itself_only::<_, DisclosureRecorded>(&disclosures);
        let answers = DeliveriesRecorded {
            message_id: new_message_id(),
            occurred_at: "2026-11-22T09:30:00Z".into(),
            answers: vec![answer(), answer()],
        };
        batch_reads_back_as_itself_only::<_, DeliveryRecorded>(&answers);
    }

    #[test]
    fn arabic_record_round_trips_through_avro() {
        let e = created();
        let bytes = encode(&e).unwrap();
        assert_eq!(&bytes[..2], &MAGIC);
        assert_eq!(event_name(&bytes).unwrap(), ReferralCreated::NAME);
        assert_eq!(decode::<ReferralCreated>(&bytes).unwrap(), e);
        let mut undocumented = created();
        undocumented.case.child.date_of_birth = None;
        undocumented.case.child.estimated_age_years = Some(11);
        undocumented.case.child.school = None;
        let bytes = encode(&undocumented).unwrap();
        assert_eq!(decode::<ReferralCreated>(&bytes).unwrap(), undocumented);
        let closed = ReferralCreated {
            case: fixtures::closed_record(),
            service_request: Some(ServiceRequest {
                service_referral_id: "sr_1".into(),
                agency_id: "health-cairo".into(),
                service_type: "health".into(),
                action_id: "a1".into(),
                medical_coverage: Some(MedicalCoverage::Partial),
            }),
            ..created()
        };
        assert_eq!(
            decode::<ReferralCreated>(&encode(&closed).unwrap()).unwrap(),
            closed
        );
    }

    #[test]
    fn fingerprint_is_the_spec_rabin_of_the_canonical_form() {
        // The spec's published fingerprint of the schema "int".
        let s = Schema::parse_str("\"int\"").unwrap();
        let fp = s.fingerprint::<Rabin>().bytes;
        assert_eq!(
            u64::from_le_bytes(fp[..8].try_into().unwrap()),
            0x7275_d51a_3f39_5c8f
        );
    }

    #[test]
    fn bad_bytes_are_classified() {
        let bytes = encode(&created()).unwrap();
        assert!(matches!(
            decode::<ReferralCreated>(&bytes[..5]),
            Err(CodecError::Truncated { len: 5 })
        ));
        assert!(matches!(
            decode::<ReferralCreated>(&bytes[..40]),
            Err(CodecError::Body { .. })
        ));
        let mut other = bytes.clone();
        other[3] ^= 0xFF;
        assert!(matches!(
            decode::<ReferralCreated>(&other),
            Err(CodecError::UnknownFingerprint(_))
        ));
        let mut plain = bytes.clone();
        plain[0] = b'{';
        assert!(matches!(
            decode::<ReferralCreated>(&plain),
            Err(CodecError::NotSingleObject)
        ));
        assert!(matches!(
            decode::<DeliveryRequested>(&bytes),
            Err(CodecError::WrongEvent { .. })
        ));
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            decode::<ReferralCreated>(&long),
            Err(CodecError::TrailingBytes { extra: 1, .. })
        ));
        // The first field, the message id, declaring a gigabyte: refused before anything
        // that size is allocated.
        let mut huge = bytes[..HEADER_LEN].to_vec();
        huge.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x08]); // zig-zag 2^30
        huge.extend_from_slice(b"msg_");
        assert!(matches!(
            decode::<ReferralCreated>(&huge),
            Err(CodecError::Body { .. })
        ));
        assert!(apache_avro::util::max_allocation_bytes(usize::MAX) <= MAX_ALLOCATION_BYTES);
    }

    #[test]
    fn a_delivery_carries_the_medical_coverage() {
        let mut d = DeliveryRequested {
            message_id: new_message_id(),
            occurred_at: "2026-11-22T09:30:00Z".into(),
            agency_id: "health-cairo".into(),
            case_id: "case_1".into(),
            referral_id: "srv_1".into(),
            purpose: "service_provision".into(),
            priority: "urgent".into(),
            idempotency_key: "srv_1:health-cairo".into(),
            categories: vec!["reference".into()],
            document_json: "{}".into(),
            service_type: Some("health".into()),
            kind: "referral".into(),
            medical_coverage: Some(MedicalCoverage::Full),
        };
        assert_eq!(
            decode::<DeliveryRequested>(&encode(&d).unwrap()).unwrap(),
            d
        );
        d.medical_coverage = None;
        assert_eq!(
            decode::<DeliveryRequested>(&encode(&d).unwrap()).unwrap(),
            d
        );
        // An agency's deliveries of one routing transaction, in one message.
        let together = DeliveriesRequested {
            message_id: new_message_id(),
            occurred_at: "2026-11-22T09:30:00Z".into(),
            deliveries: vec![
                d.clone(),
                DeliveryRequested {
                    message_id: new_message_id(),
                    medical_coverage: Some(MedicalCoverage::Full),
                    ..d
                },
            ],
            traceparents: vec![
                None,
                Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            ],
        };
        batch_reads_back_as_itself_only::<_, DeliveryRequested>(&together);
    }

    #[test]
    fn errors_never_carry_values() {
        let bytes = encode(&created()).unwrap();
        let e = decode::<ReferralCreated>(&bytes[..60]).unwrap_err();
        assert!(!format!("{e} {e:?}").contains("مريم"));
    }
}
