//! `himaya services add|update|remove|find`: an agency keeps its services on the service
//! map current; anyone finds services for a need.

use clap::Subcommand;
use himaya_proto::convert::{service_from, service_to};
use himaya_proto::v1 as pb;
use himaya_record::ServiceType;
use pb::directory_client::DirectoryClient;

use crate::cli::casework::{req, Who};
use crate::client::{connect, explain, Lang};

/// What an agency says about one of its services.
#[derive(Debug, clap::Args)]
pub struct ServiceArgs {
    /// health, psychosocial, education, legal, economic or case_management.
    #[arg(long = "type", value_parser = parse_service)]
    service_type: ServiceType,
    /// The name in Arabic.
    #[arg(long)]
    name_ar: String,
    #[arg(long, default_value = "")]
    name_en: String,
    /// A governorate your agency covers, or "*".
    #[arg(long)]
    governorate: String,
    /// Comma-separated districts; none for the whole governorate.
    #[arg(long, value_delimiter = ',')]
    districts: Vec<String>,
    /// Places free now (0 = full).
    #[arg(long)]
    capacity: i32,
    /// Comma-separated ISO 639-1 codes.
    #[arg(long, value_delimiter = ',', default_value = "ar")]
    languages: Vec<String>,
    /// Pause new referrals without removing the service.
    #[arg(long)]
    paused: bool,
}

#[derive(Debug, Subcommand)]
pub enum ServicesCommand {
    /// Put one of your agency's services on the map.
    Add {
        #[command(flatten)]
        service: ServiceArgs,
        #[command(flatten)]
        who: Who,
    },
    /// Change one of your agency's services (all fields are restated).
    Update {
        service_id: String,
        #[arg(long)]
        version: i64,
        #[command(flatten)]
        service: ServiceArgs,
        #[command(flatten)]
        who: Who,
    },
    /// Take one of your agency's services off the map.
    Remove {
        service_id: String,
        #[arg(long)]
        version: i64,
        #[command(flatten)]
        who: Who,
    },
    /// Services for a need, best first.
    Find {
        /// Comma-separated service types; none for all.
        #[arg(long = "type", value_delimiter = ',', value_parser = parse_service)]
        types: Vec<ServiceType>,
        #[arg(long, default_value = "")]
        governorate: String,
        #[arg(long, default_value = "")]
        district: String,
        #[arg(long, default_value = "")]
        language: String,
        /// Also services that are full or paused.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        who: Who,
    },
}

fn parse_service(s: &str) -> Result<ServiceType, String> {
    ServiceType::parse(s).ok_or_else(|| {
        "one of: health, psychosocial, education, legal, economic, case_management".into()
    })
}

fn upsert(id: String, version: i64, s: ServiceArgs) -> pb::UpsertServiceRequest {
    pb::UpsertServiceRequest {
        service_id: id,
        expected_version: version,
        service_type: service_to(s.service_type).into(),
        name_ar: s.name_ar,
        name_en: s.name_en,
        governorate: s.governorate,
        districts: s.districts,
        capacity: s.capacity,
        languages: s.languages,
        accepting: !s.paused,
    }
}

/// One line per service, as listed by `find` and by a referral's proposals.
pub fn print_service(s: &pb::MappedService, lang: Lang) {
    let kind = service_from(s.service_type).map_or("?", ServiceType::as_str);
    let name = if lang == Lang::En && !s.name_en.is_empty() {
        &s.name_en
    } else {
        &s.name_ar
    };
    println!(
        "  {} (v{})  {:<14} {:<20} {}  {} / {}  {} {}  [{}]{}",
        s.service_id,
        s.version,
        kind,
        s.agency_id,
        name,
        s.governorate,
        if s.districts.is_empty() {
            "*".to_owned()
        } else {
            s.districts.join("، ")
        },
        lang.pick("places", "أماكن"),
        s.capacity,
        s.languages.join(","),
        if s.removed {
            lang.pick(" removed", " محذوفة")
        } else if !s.accepting {
            lang.pick(" paused", " متوقفة")
        } else {
            ""
        }
    );
}

pub async fn run(cmd: ServicesCommand) -> anyhow::Result<()> {
    let who = match &cmd {
        ServicesCommand::Add { who, .. }
        | ServicesCommand::Update { who, .. }
        | ServicesCommand::Remove { who, .. }
        | ServicesCommand::Find { who, .. } => who,
    };
    let lang = who.client.lang;
    let mut dir = DirectoryClient::new(connect(&who.client, &who.agency).await?);
    let fail = |s: tonic::Status| anyhow::anyhow!("{}", explain(&s, lang));
    let changed = match cmd {
        ServicesCommand::Add { service, who } => dir
            .upsert_service(req(upsert(String::new(), 0, service), &who)?)
            .await
            .map_err(fail)?,
        ServicesCommand::Update {
            service_id,
            version,
            service,
            who,
        } => dir
            .upsert_service(req(upsert(service_id, version, service), &who)?)
            .await
            .map_err(fail)?,
        ServicesCommand::Remove {
            service_id,
            version,
            who,
        } => {
            let msg = pb::RemoveServiceRequest {
                service_id,
                expected_version: version,
            };
            dir.remove_service(req(msg, &who)?).await.map_err(fail)?
        }
        ServicesCommand::Find {
            types,
            governorate,
            district,
            language,
            all,
            who,
        } => {
            let msg = pb::FindServicesRequest {
                service_types: types.into_iter().map(|t| service_to(t).into()).collect(),
                governorate,
                district,
                language,
                include_unavailable: all,
            };
            let found = dir
                .find_services(req(msg, &who)?)
                .await
                .map_err(fail)?
                .into_inner()
                .services;
            if found.is_empty() {
                println!(
                    "{}",
                    lang.pick("no matching services", "لا توجد خدمات مطابقة")
                );
            }
            for s in &found {
                print_service(s, lang);
            }
            return Ok(());
        }
    };
    print_service(&changed.into_inner(), lang);
    Ok(())
}
