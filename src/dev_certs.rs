//! Development certificates for mutual TLS: a throw-away certificate authority, the hub's
//! server certificate and one client certificate per agency in the directory, each naming
//! its agency as `<agency id>.agency.himaya`. For a laptop or a test only: production
//! certificates come from the ministry's own authority, and the hub needs only its CA
//! certificate, never an agency's private key. The development authority's key is written
//! too (`ca.key`, mode 0600), so that a development hub can act as the issuing authority
//! (`grpc.issuer`) and agencies can enrol.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{Datelike, Duration, Utc};
use himaya_settings::{agency_certificate_name, IssuerSettings, TlsSettings};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// The names the hub's development certificate answers to.
const HUB_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "hub.himaya"];

/// Where a set made by [`generate`] keeps its files.
#[derive(Debug, Clone)]
pub struct DevCerts {
    pub dir: PathBuf,
}

impl DevCerts {
    /// The certificate authority's certificate (trusted by the hub and by clients).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// `(certificate, key)` of an agency, or of the hub (`hub`).
    pub fn pair(&self, name: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}.key")),
        )
    }

    /// The hub's `grpc.issuer` settings for this set: its authority issues agencies'
    /// certificates at enrolment.
    pub fn issuer(&self) -> IssuerSettings {
        IssuerSettings {
            cert_file: self.ca(),
            key_file: self.dir.join("ca.key"),
            certificate_days: 90,
            enrolment_hours: 72,
        }
    }

    /// The hub's `grpc.tls` settings for this set.
    pub fn hub_tls(&self) -> TlsSettings {
        let (cert_file, key_file) = self.pair("hub");
        TlsSettings {
            cert_file,
            key_file,
            client_ca_file: self.ca(),
        }
    }
}

/// Writes a fresh CA, the hub's certificate and one certificate per agency into `dir`,
/// valid from yesterday for `days` days. Keys are written mode 0600.
pub fn generate<'a>(
    dir: &Path,
    agencies: impl IntoIterator<Item = &'a str>,
    days: i64,
) -> anyhow::Result<DevCerts> {
    generate_with(dir, agencies, days, &[])
}

/// [`generate`], plus client certificates carrying arbitrary names (`(file, names)`), for
/// tests of certificates an authority should never issue (wildcards, two agencies).
pub fn generate_with<'a>(
    dir: &Path,
    agencies: impl IntoIterator<Item = &'a str>,
    days: i64,
    extra: &[(&str, &[&str])],
) -> anyhow::Result<DevCerts> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let set = DevCerts {
        dir: dir.to_owned(),
    };
    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name.push(
        DnType::CommonName,
        "Himaya development CA (not for production)",
    );
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut ca, days);
    let ca_cert = ca.self_signed(&ca_key).context("signing the CA")?;
    write_file(&set.ca(), &ca_cert.pem(), false)?;
    write_file(&set.dir.join("ca.key"), &ca_key.serialize_pem(), true)?;

    let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose, file: &str| {
        let key = KeyPair::generate().context("generating a key")?;
        let mut p = CertificateParams::new(names.clone())
            .with_context(|| format!("certificate names {names:?}"))?;
        p.distinguished_name
            .push(DnType::CommonName, names[0].clone());
        p.extended_key_usages = vec![usage];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut p, days);
        let cert = p
            .signed_by(&key, &ca_cert, &ca_key)
            .context("signing a certificate")?;
        let (c, k) = set.pair(file);
        write_file(&c, &cert.pem(), false)?;
        write_file(&k, &key.serialize_pem(), true)
    };
    leaf(
        HUB_NAMES.iter().map(|n| (*n).to_owned()).collect(),
        ExtendedKeyUsagePurpose::ServerAuth,
        "hub",
    )?;
    for id in agencies {
        leaf(
            vec![agency_certificate_name(id)],
            ExtendedKeyUsagePurpose::ClientAuth,
            id,
        )?;
    }
    // The web front's own identity: the one that may name the person acting.
    leaf(
        vec![himaya_settings::WEB_COMPONENT_NAME.to_owned()],
        ExtendedKeyUsagePurpose::ClientAuth,
        "web",
    )?;
    for (file, names) in extra {
        leaf(
            names.iter().map(|n| (*n).to_owned()).collect(),
            ExtendedKeyUsagePurpose::ClientAuth,
            file,
        )?;
    }
    Ok(set)
}

fn validity(p: &mut CertificateParams, days: i64) {
    let at = |d: chrono::DateTime<Utc>| {
        // Month and day always fit a u8.
        rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8)
    };
    let now = Utc::now();
    p.not_before = at(now - Duration::days(1));
    p.not_after = at(now + Duration::days(days.max(1)));
}

/// Writes `text` to `path`; a secret (a key) is mode 0600 from its first byte.
pub fn write_file(path: &Path, text: &str, secret: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    // A key is never readable by others, not even for a moment.
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        if path.exists() {
            fs::set_permissions(path, fs::Permissions::from_mode(0o600))
                .with_context(|| format!("restricting {}", path.display()))?;
        }
    }
    #[cfg(not(unix))]
    let _ = secret;
    options
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}
