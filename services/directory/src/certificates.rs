//! Agencies' certificates from the hub's own issuing authority (`grpc.issuer`):
//! - an administrator makes a one-time enrolment code for an agency of the directory
//!   (`Directory.CreateEnrolment`; only its SHA-256 is stored, a new code replaces an
//!   unused one);
//! - the agency's system sends the code with a certificate signing request for its new
//!   key (`Enrolment.Enrol`, over TLS without a client certificate) and gets a
//!   certificate naming `<agency>.agency.himaya` and nothing else, valid
//!   `certificate_days`, with the authority's certificate;
//! - before it expires, it renews with its current certificate (`Enrolment.Renew`);
//! - an administrator revokes one certificate by fingerprint
//!   (`Directory.RevokeCertificate`): every process follows `revoked_certificates_v1`
//!   and the gateway refuses it within `directory.follow_ms`.
//!
//! Every certificate issued is a row of `certificates` (fingerprint, serial, validity,
//! how it was issued, its revocation).

use std::path::Path;

use chrono::{DateTime, Datelike, Duration, Utc};
use himaya_proto::status::{invalid_argument, lang, msg, status};
use himaya_proto::v1 as pb;
use himaya_record::{Problem, Violations};
use himaya_settings::{agency_certificate_name, IssuerSettings, Settings};
use rand::RngCore;
use rcgen::{
    Certificate, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SerialNumber,
};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

use crate::agencies::{administrator, is_agency_id, REASONS};

/// Largest certificate signing request accepted (a CSR is well under 4 KiB).
const MAX_CSR: usize = 16 * 1024;
/// Most certificates one list holds.
const MAX_LISTED: i64 = 100;

/// The authority, loaded once at the directory's start.
pub struct Issuer {
    cert: Certificate,
    key: KeyPair,
    pem: String,
    days: u32,
    enrolment_hours: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("grpc.issuer.{key}: {path} could not be read ({error})")]
    Read {
        key: &'static str,
        path: String,
        error: std::io::Error,
    },
    #[error("grpc.issuer.{key}: {path} is not a usable PEM {what}")]
    Unusable {
        key: &'static str,
        path: String,
        what: &'static str,
    },
}

impl Issuer {
    pub fn load(s: &IssuerSettings) -> Result<Issuer, IssuerError> {
        let read = |key: &'static str, path: &Path| {
            std::fs::read_to_string(path).map_err(|error| IssuerError::Read {
                key,
                path: path.display().to_string(),
                error,
            })
        };
        let unusable = |key: &'static str, path: &Path, what: &'static str| IssuerError::Unusable {
            key,
            path: path.display().to_string(),
            what,
        };
        let pem = read("cert_file", &s.cert_file)?;
        let key_pem = read("key_file", &s.key_file)?;
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|_| unusable("key_file", &s.key_file, "private key"))?;
        // rcgen signs with a `Certificate` of the issuer: the same name and key make the
        // same issuer, so the signatures chain to the authority's own certificate.
        let cert = CertificateParams::from_ca_cert_pem(&pem)
            .and_then(|p| p.self_signed(&key))
            .map_err(|_| unusable("cert_file", &s.cert_file, "CA certificate for that key"))?;
        Ok(Issuer {
            cert,
            key,
            pem,
            days: s.certificate_days,
            enrolment_hours: s.enrolment_hours,
        })
    }

    /// Signs a certificate for `agency` with the public key of `csr_pem` (its signature
    /// checked); whatever names or extensions the request asked for are not used.
    fn sign(&self, agency: &str, csr_pem: &str) -> Result<Signed, Problem> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|_| {
            Problem::InvalidCode {
                expected: "a PEM certificate signing request (PKCS#10) signed by the new key, with no extension but subject alternative names",
            }
        })?;
        let name = agency_certificate_name(agency);
        let mut p =
            CertificateParams::new(vec![name.clone()]).map_err(|_| Problem::InvalidCode {
                expected: "an agency id of the directory",
            })?;
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let mut serial = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut serial);
        // Positive, as DER wants a serial.
        serial[0] &= 0x7f;
        p.serial_number = Some(SerialNumber::from_slice(&serial));
        let today = midnight(Utc::now());
        // From yesterday, for clocks a little behind ours.
        let not_before = today - Duration::days(1);
        let not_after = today + Duration::days(i64::from(self.days));
        // Month and day always fit a u8.
        p.not_before = rcgen::date_time_ymd(
            not_before.year(),
            not_before.month() as u8,
            not_before.day() as u8,
        );
        p.not_after = rcgen::date_time_ymd(
            not_after.year(),
            not_after.month() as u8,
            not_after.day() as u8,
        );
        let cert = p
            .signed_by(&csr.public_key, &self.cert, &self.key)
            .map_err(|_| Problem::InvalidCode {
                expected: "a key of a kind the hub signs (ECDSA P-256/P-384, Ed25519 or RSA)",
            })?;
        Ok(Signed {
            fingerprint: hex::encode(Sha256::digest(cert.der())),
            serial: hex::encode(serial),
            pem: cert.pem(),
            not_before,
            not_after,
        })
    }
}

/// Midnight UTC of `t`'s day.
fn midnight(t: DateTime<Utc>) -> DateTime<Utc> {
    t.date_naive()
        .and_hms_opt(0, 0, 0)
        .map_or(t, |d| d.and_utc())
}

struct Signed {
    fingerprint: String,
    serial: String,
    pem: String,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
}

fn storage(e: sqlx::Error) -> Status {
    tracing::error!(error = %e, "directory certificates storage failed");
    status(Code::Unavailable, &msg!("storage-unavailable"))
}

fn no_issuer() -> Status {
    status(Code::FailedPrecondition, &msg!("enrolment-no-issuer"))
}

fn code_hash(agency: &str, code: &str) -> Vec<u8> {
    Sha256::digest(format!("{agency}\n{}", code.trim()).as_bytes()).to_vec()
}

/// `Directory.CreateEnrolment`.
pub async fn create_enrolment(
    pool: &PgPool,
    settings: &Settings,
    issuer: Option<&Issuer>,
    meta: &MetadataMap,
    r: pb::CreateEnrolmentRequest,
) -> Result<pb::EnrolmentCode, Status> {
    let (_, by) = administrator(settings, meta)?;
    let issuer = issuer.ok_or_else(no_issuer)?;
    let id = r.agency_id.trim();
    let known = crate::agencies::load(pool, id, false)
        .await
        .map_err(storage)?
        .is_some_and(|a| a.status == "active");
    if !is_agency_id(id) || !known {
        return Err(status(
            Code::NotFound,
            &msg!("directory-agency-not-found", agency_id = id),
        ));
    }
    let mut raw = [0u8; 20];
    rand::thread_rng().fill_bytes(&mut raw);
    // Grouped for reading aloud or typing: 40 hex digits in 8 groups.
    let code = hex::encode(raw)
        .as_bytes()
        .chunks(5)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-");
    let expires_at = Utc::now() + Duration::hours(i64::from(issuer.enrolment_hours));
    sqlx::query(
        "INSERT INTO enrolments (agency_id, code_hash, created_by, expires_at)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (agency_id) DO UPDATE SET code_hash = EXCLUDED.code_hash,
            created_by = EXCLUDED.created_by, created_at = now(),
            expires_at = EXCLUDED.expires_at, used_at = NULL",
    )
    .bind(id)
    .bind(code_hash(id, &code))
    .bind(&by)
    .bind(expires_at)
    .execute(pool)
    .await
    .map_err(storage)?;
    tracing::info!(agency = %id, by = %by, "enrolment code made");
    Ok(pb::EnrolmentCode {
        agency_id: id.to_owned(),
        code,
        expires_at: expires_at.to_rfc3339(),
    })
}

fn check_csr(v: &mut Violations, csr: &str) {
    if csr.len() > MAX_CSR {
        v.push("csr_pem", Problem::TooLong { max: MAX_CSR });
    } else if csr.trim().is_empty() {
        v.push("csr_pem", Problem::Required);
    }
}

/// Signs and records; the answer carries the certificate.
async fn issue(
    pool: &PgPool,
    issuer: &Issuer,
    agency: &str,
    csr: &str,
    via: &str,
    meta: &MetadataMap,
    claim_code: Option<&[u8]>,
) -> Result<pb::IssuedCertificate, Status> {
    let signed = issuer.sign(agency, csr).map_err(|p| {
        let mut v = Violations::new();
        v.push("csr_pem", p);
        invalid_argument(&v, lang(meta))
    })?;
    let mut tx = pool.begin().await.map_err(storage)?;
    if let Some(hash) = claim_code {
        // The code is spent in the same transaction as the certificate is recorded: two
        // enrolments racing with one code get one certificate.
        let spent = sqlx::query(
            "UPDATE enrolments SET used_at = now()
              WHERE agency_id = $1 AND code_hash = $2 AND used_at IS NULL AND expires_at > now()",
        )
        .bind(agency)
        .bind(hash)
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        if spent.rows_affected() != 1 {
            return Err(status(
                Code::Unauthenticated,
                &msg!("enrolment-code-refused"),
            ));
        }
    }
    sqlx::query(
        "INSERT INTO certificates (fingerprint, agency_id, serial, not_before, not_after, issued_via)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&signed.fingerprint)
    .bind(agency)
    .bind(&signed.serial)
    .bind(signed.not_before)
    .bind(signed.not_after)
    .bind(via)
    .execute(&mut *tx)
    .await
    .map_err(storage)?;
    tx.commit().await.map_err(storage)?;
    tracing::info!(agency, fingerprint = %signed.fingerprint, via, "certificate issued");
    Ok(pb::IssuedCertificate {
        agency_id: agency.to_owned(),
        certificate_pem: signed.pem,
        issuer_pem: issuer.pem.clone(),
        fingerprint: signed.fingerprint,
        not_before: signed.not_before.to_rfc3339(),
        not_after: signed.not_after.to_rfc3339(),
        revoked_at: String::new(),
    })
}

/// `Enrolment.Enrol`: the code names the agency; no certificate is presented.
pub async fn enrol(
    pool: &PgPool,
    issuer: Option<&Issuer>,
    meta: &MetadataMap,
    r: pb::EnrolRequest,
) -> Result<pb::IssuedCertificate, Status> {
    let issuer = issuer.ok_or_else(no_issuer)?;
    let mut v = Violations::new();
    let id = r.agency_id.trim();
    if !is_agency_id(id) {
        v.push(
            "agency_id",
            Problem::InvalidCode {
                expected: "your agency's id in the directory",
            },
        );
    }
    if r.code.trim().is_empty() || r.code.len() > 100 {
        v.push("code", Problem::Required);
    }
    check_csr(&mut v, &r.csr_pem);
    if !v.is_empty() {
        return Err(invalid_argument(&v, lang(meta)));
    }
    // An agency suspended or removed meanwhile does not enrol (read from the table this
    // service writes, not from the followed copy, which may be a second behind).
    let active = crate::agencies::load(pool, id, false)
        .await
        .map_err(storage)?
        .is_some_and(|a| a.status == "active");
    if !active {
        tracing::warn!(
            code_len = r.code.len(),
            "enrolment refused: the agency is not active"
        );
        return Err(status(
            Code::Unauthenticated,
            &msg!("enrolment-code-refused"),
        ));
    }
    let hash = code_hash(id, &r.code);
    issue(pool, issuer, id, &r.csr_pem, "enrolment", meta, Some(&hash)).await
}

/// `Enrolment.Renew`: for the agency the gateway proved by its current certificate.
pub async fn renew(
    pool: &PgPool,
    settings: &Settings,
    issuer: Option<&Issuer>,
    meta: &MetadataMap,
    r: pb::RenewRequest,
) -> Result<pb::IssuedCertificate, Status> {
    let issuer = issuer.ok_or_else(no_issuer)?;
    let (id, _) = himaya_component::calling_agency(settings, meta).map_err(|e| e.status())?;
    let mut v = Violations::new();
    check_csr(&mut v, &r.csr_pem);
    if !v.is_empty() {
        return Err(invalid_argument(&v, lang(meta)));
    }
    issue(pool, issuer, &id, &r.csr_pem, "renewal", meta, None).await
}

#[derive(sqlx::FromRow)]
struct Row {
    fingerprint: String,
    agency_id: String,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
}

impl Row {
    fn to_pb(&self) -> pb::IssuedCertificate {
        pb::IssuedCertificate {
            agency_id: self.agency_id.clone(),
            certificate_pem: String::new(),
            issuer_pem: String::new(),
            fingerprint: self.fingerprint.clone(),
            not_before: self.not_before.to_rfc3339(),
            not_after: self.not_after.to_rfc3339(),
            revoked_at: self.revoked_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        }
    }
}

/// `Directory.ListCertificates`.
pub async fn list(
    pool: &PgPool,
    settings: &Settings,
    meta: &MetadataMap,
    r: pb::ListCertificatesRequest,
) -> Result<pb::ListCertificatesResponse, Status> {
    administrator(settings, meta)?;
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT fingerprint, agency_id, not_before, not_after, revoked_at FROM certificates
          WHERE agency_id = $1 ORDER BY issued_at DESC LIMIT $2",
    )
    .bind(r.agency_id.trim())
    .bind(MAX_LISTED)
    .fetch_all(pool)
    .await
    .map_err(storage)?;
    Ok(pb::ListCertificatesResponse {
        certificates: rows.iter().map(Row::to_pb).collect(),
    })
}

/// `Directory.RevokeCertificate`: takes a new change number, so every follower reloads.
pub async fn revoke(
    pool: &PgPool,
    settings: &Settings,
    meta: &MetadataMap,
    r: pb::RevokeCertificateRequest,
) -> Result<pb::IssuedCertificate, Status> {
    let (_, by) = administrator(settings, meta)?;
    let mut v = Violations::new();
    let fingerprint = r.fingerprint.trim().to_ascii_lowercase();
    if fingerprint.len() != 64 || !fingerprint.chars().all(|c| c.is_ascii_hexdigit()) {
        v.push(
            "fingerprint",
            Problem::InvalidCode {
                expected: "the certificate's SHA-256 fingerprint: 64 hex digits (ListCertificates)",
            },
        );
    }
    let reason = r.reason.trim();
    if !REASONS.contains(&reason) {
        v.push(
            "reason",
            Problem::NotChosen {
                choices: REASONS.join(", "),
            },
        );
    }
    if !v.is_empty() {
        return Err(invalid_argument(&v, lang(meta)));
    }
    let mut tx = pool.begin().await.map_err(storage)?;
    let row: Option<Row> = sqlx::query_as(
        "UPDATE certificates
            SET revoked_at = coalesce(revoked_at, now()),
                revoked_by = coalesce(revoked_by, $2),
                reason = coalesce(reason, $3),
                seq = CASE WHEN revoked_at IS NULL THEN nextval('agency_change_seq') ELSE seq END
          WHERE fingerprint = $1
      RETURNING fingerprint, agency_id, not_before, not_after, revoked_at",
    )
    .bind(&fingerprint)
    .bind(&by)
    .bind(reason)
    .fetch_optional(&mut *tx)
    .await
    .map_err(storage)?;
    let Some(row) = row else {
        return Err(status(Code::NotFound, &msg!("certificate-not-found")));
    };
    // Announced in the same transaction: every process takes it as a nudge to read the
    // revocations at once (the others read them within directory.follow_ms anyway).
    let event = himaya_events::CertificateRevoked {
        message_id: himaya_events::new_message_id(),
        occurred_at: Utc::now().to_rfc3339(),
        agency_id: row.agency_id.clone(),
        fingerprint: row.fingerprint.clone(),
        reason: reason.to_owned(),
        revoked_by: by.clone(),
    };
    himaya_store::outbox::enqueue_event(
        &mut tx,
        himaya_bus::Exchange::Events,
        himaya_events::keys::CERTIFICATE_REVOKED,
        &event,
        1,
        &row.agency_id,
    )
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "certificate revocation outbox failed");
        status(Code::Unavailable, &msg!("storage-unavailable"))
    })?;
    tx.commit().await.map_err(storage)?;
    tracing::info!(agency = %row.agency_id, fingerprint = %row.fingerprint, reason, by = %by, "certificate revoked");
    Ok(row.to_pb())
}

/// Checks the issuer's settings at start, so a wrong path stops the directory with the key
/// named (rather than the first enrolment failing).
pub fn load(settings: &Settings) -> Result<Option<Issuer>, IssuerError> {
    settings.grpc.issuer.as_ref().map(Issuer::load).transpose()
}
