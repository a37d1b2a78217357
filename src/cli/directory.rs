//! `himaya agency put|status`: the hub's administrators (a social-affairs agency covering
//! every governorate, or a person with the `admin` role through the web front) add,
//! change, suspend, reactivate and remove the directory's agencies while the hub runs.

use clap::Subcommand;
use himaya_proto::v1 as pb;
use himaya_record::ServiceType;
use pb::directory_client::DirectoryClient;

use crate::cli::casework::{req, Who};
use crate::client::{connect, explain};

#[derive(Debug, Subcommand)]
pub enum AgencyCommand {
    /// Add an agency (`--version 0`) or restate one at the version last seen.
    Put {
        /// 1-63 characters of a-z, 0-9 and -; its certificate will name
        /// `<id>.agency.himaya`.
        agency_id: String,
        #[arg(long, default_value_t = 0)]
        version: i64,
        /// social_affairs, school, health, justice, cash_assistance, emergency_line or
        /// community.
        #[arg(long = "type")]
        agency_type: String,
        #[arg(long)]
        name_ar: String,
        #[arg(long)]
        name_en: String,
        /// Comma-separated: health, psychosocial, education, legal, economic,
        /// case_management.
        #[arg(long, value_delimiter = ',', value_parser = parse_service)]
        services: Vec<ServiceType>,
        /// Comma-separated governorates as the gazetteer names them, or "*".
        #[arg(long, value_delimiter = ',')]
        governorates: Vec<String>,
        /// Where its system receives deliveries; none: not connected.
        #[arg(long, default_value = "")]
        endpoint: String,
        /// The standard its system speaks (himaya_json when none).
        #[arg(long, default_value = "")]
        protocol: String,
        /// Where the hub finds the token the agency posts to the webhooks with:
        /// env:VARIABLE or file:/path (never the token itself).
        #[arg(long, default_value = "")]
        inbound_token_ref: String,
        /// Where the hub finds the token it presents to the agency's system.
        #[arg(long, default_value = "")]
        outbound_token_ref: String,
        #[command(flatten)]
        who: Who,
    },
    /// A one-time enrolment code for an agency, to give it out of band (shown once).
    Enrolment {
        agency_id: String,
        #[command(flatten)]
        who: Who,
    },
    /// The certificates the hub issued to an agency, newest first.
    Certificates {
        agency_id: String,
        #[command(flatten)]
        who: Who,
    },
    /// Revoke one certificate by its fingerprint: refused on every replica within seconds.
    Revoke {
        fingerprint: String,
        /// compromised_key, left_programme, agreement_suspended, error_corrected or other.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        who: Who,
    },
    /// Suspend (cut off at once on every replica), reactivate or remove an agency.
    Status {
        agency_id: String,
        #[arg(long)]
        version: i64,
        /// active, suspended or removed.
        #[arg(long, value_parser = parse_status)]
        status: pb::AgencyStatus,
        /// compromised_key, left_programme, agreement_suspended, error_corrected or other.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        who: Who,
    },
}

fn parse_service(s: &str) -> Result<ServiceType, String> {
    ServiceType::parse(s).ok_or_else(|| {
        "one of: health, psychosocial, education, legal, economic, case_management".into()
    })
}

fn parse_status(s: &str) -> Result<pb::AgencyStatus, String> {
    match s {
        "active" => Ok(pb::AgencyStatus::Active),
        "suspended" => Ok(pb::AgencyStatus::Suspended),
        "removed" => Ok(pb::AgencyStatus::Removed),
        _ => Err("one of: active, suspended, removed".into()),
    }
}

pub async fn run(cmd: AgencyCommand) -> anyhow::Result<()> {
    let who = match &cmd {
        AgencyCommand::Put { who, .. }
        | AgencyCommand::Status { who, .. }
        | AgencyCommand::Enrolment { who, .. }
        | AgencyCommand::Certificates { who, .. }
        | AgencyCommand::Revoke { who, .. } => who,
    };
    let lang = who.client.lang;
    let mut dir = DirectoryClient::new(connect(&who.client, &who.agency).await?);
    let fail = |s: tonic::Status| anyhow::anyhow!("{}", explain(&s, lang));
    let a = match cmd {
        AgencyCommand::Enrolment { agency_id, who } => {
            let msg = pb::CreateEnrolmentRequest { agency_id };
            let c = dir
                .create_enrolment(req(msg, &who)?)
                .await
                .map_err(fail)?
                .into_inner();
            println!("{}  {}  (until {})", c.agency_id, c.code, c.expires_at);
            return Ok(());
        }
        AgencyCommand::Certificates { agency_id, who } => {
            let msg = pb::ListCertificatesRequest { agency_id };
            let listed = dir
                .list_certificates(req(msg, &who)?)
                .await
                .map_err(fail)?
                .into_inner();
            for c in listed.certificates {
                println!(
                    "{}  {} .. {}{}",
                    c.fingerprint,
                    c.not_before,
                    c.not_after,
                    if c.revoked_at.is_empty() {
                        String::new()
                    } else {
                        format!("  revoked {}", c.revoked_at)
                    }
                );
            }
            return Ok(());
        }
        AgencyCommand::Revoke {
            fingerprint,
            reason,
            who,
        } => {
            let msg = pb::RevokeCertificateRequest {
                fingerprint,
                reason,
            };
            let c = dir
                .revoke_certificate(req(msg, &who)?)
                .await
                .map_err(fail)?
                .into_inner();
            println!("{} {} revoked {}", c.agency_id, c.fingerprint, c.revoked_at);
            return Ok(());
        }
        AgencyCommand::Put {
            agency_id,
            version,
            agency_type,
            name_ar,
            name_en,
            services,
            governorates,
            endpoint,
            protocol,
            inbound_token_ref,
            outbound_token_ref,
            who,
        } => {
            let msg = pb::PutAgencyRequest {
                agency_id,
                expected_version: version,
                agency_type,
                name_ar,
                name_en,
                services: services
                    .into_iter()
                    .map(|s| himaya_proto::convert::service_to(s).into())
                    .collect(),
                governorates,
                endpoint,
                protocol,
                inbound_token_ref,
                outbound_token_ref,
                place_codes: Default::default(),
            };
            dir.put_agency(req(msg, &who)?).await.map_err(fail)?
        }
        AgencyCommand::Status {
            agency_id,
            version,
            status,
            reason,
            who,
        } => {
            let msg = pb::SetAgencyStatusRequest {
                agency_id,
                expected_version: version,
                status: status.into(),
                reason,
            };
            dir.set_agency_status(req(msg, &who)?).await.map_err(fail)?
        }
    }
    .into_inner();
    println!(
        "{} v{} {} ({} / {})",
        a.agency_id,
        a.version,
        a.status()
            .as_str_name()
            .trim_start_matches("AGENCY_STATUS_")
            .to_lowercase(),
        a.name_ar,
        a.name_en
    );
    Ok(())
}

/// `himaya enrol <agency> --code …` and `himaya renew --as <agency>`: an agency's system
/// makes its own key (never sent), asks the hub's authority for a certificate, and keeps
/// both in `--certs` as `<agency>.key` (mode 0600) and `<agency>.pem`.
pub async fn enrol(
    agency: String,
    code: Option<String>,
    client: crate::cli::ClientArgs,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let lang = client.lang;
    let fail = |s: tonic::Status| anyhow::anyhow!("{}", explain(&s, lang));
    let key = rcgen::KeyPair::generate().context("making a key")?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .and_then(|p| p.serialize_request(&key))
        .and_then(|r| r.pem())
        .context("making the certificate signing request")?;
    let issued = match code {
        Some(code) => {
            let channel = crate::client::connect_as(&client, &agency, false).await?;
            pb::enrolment_client::EnrolmentClient::new(channel)
                .enrol(pb::EnrolRequest {
                    agency_id: agency.clone(),
                    code,
                    csr_pem: csr,
                })
                .await
                .map_err(fail)?
        }
        None => {
            let channel = connect(&client, &agency).await?;
            pb::enrolment_client::EnrolmentClient::new(channel)
                .renew(pb::RenewRequest { csr_pem: csr })
                .await
                .map_err(fail)?
        }
    }
    .into_inner();
    let (cert, key_file) = (
        client.certs.join(format!("{agency}.pem")),
        client.certs.join(format!("{agency}.key")),
    );
    std::fs::create_dir_all(&client.certs)
        .with_context(|| format!("creating {}", client.certs.display()))?;
    // The key first (never readable by others), then the certificate that goes with it.
    crate::dev_certs::write_file(&key_file, &key.serialize_pem(), true)?;
    crate::dev_certs::write_file(&cert, &issued.certificate_pem, false)?;
    println!(
        "{}: certificate {} valid until {} in {}",
        issued.agency_id,
        issued.fingerprint,
        issued.not_after,
        cert.display()
    );
    Ok(())
}
