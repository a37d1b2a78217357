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
        AgencyCommand::Put { who, .. } | AgencyCommand::Status { who, .. } => who,
    };
    let lang = who.client.lang;
    let mut dir = DirectoryClient::new(connect(&who.client, &who.agency).await?);
    let fail = |s: tonic::Status| anyhow::anyhow!("{}", explain(&s, lang));
    let a = match cmd {
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
