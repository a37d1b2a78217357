//! The command line: run the hub or a component, and a person's commands against it.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use himaya_record::Purpose;
use himaya_settings::Settings;

pub mod audit;
pub mod casework;
pub mod cash;
pub mod consent;
pub mod directory;
pub mod notices;
pub mod parked;
pub mod person;
pub mod plan;
pub mod services;

use crate::client::{self, Lang, ReferralFile};
use crate::hub::{Component, Hub};

#[derive(Debug, Parser)]
#[command(
    name = "himaya",
    version,
    about = "Himaya (حماية): the interagency child-protection integration hub"
)]
pub struct Cli {
    /// An extra configuration file layered over config/base.toml.
    #[arg(long, global = true, env = "HIMAYA_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every component in one process (the single-machine default).
    Up,
    /// Run one component.
    Serve {
        #[arg(value_enum)]
        component: Component,
    },
    /// Referrals into the hub.
    Referral {
        #[command(subcommand)]
        command: ReferralCommand,
    },
    /// Cases as an agency sees them.
    Case {
        #[command(subcommand)]
        command: CaseCommand,
    },
    /// Service referrals between agencies: answer, follow, list.
    ServiceReferral {
        #[command(subcommand)]
        command: crate::cli::plan::ServiceReferralCommand,
    },
    /// The service map: each agency's services, where, with how many places, in which
    /// languages.
    Services {
        #[command(subcommand)]
        command: crate::cli::services::ServicesCommand,
    },
    /// Consents and legal bases on a case: data leaves only where one of them and the
    /// sharing policy allow it.
    Consent {
        #[command(subcommand)]
        command: crate::cli::consent::ConsentCommand,
    },
    /// Export the cases an agency has a part in, each redacted for it (JSON Lines).
    Export(crate::cli::notices::ExportArgs),
    /// Withdrawal notices addressed to an agency: list and acknowledge.
    Notices {
        #[command(subcommand)]
        command: crate::cli::notices::NoticesCommand,
    },
    /// The disclosure log: verify it, sign its head, export the signed checkpoints.
    Audit {
        #[command(subcommand)]
        command: crate::cli::audit::AuditCommand,
    },
    /// Break-glass: emergency access without consent, and its supervisor review.
    BreakGlass {
        #[command(subcommand)]
        command: crate::cli::consent::BreakGlassCommand,
    },
    /// Staff of the case-owning ministry.
    Staff {
        #[command(subcommand)]
        command: crate::cli::casework::StaffCommand,
    },
    /// People who sign in to the web front: create an account.
    Person {
        #[command(subcommand)]
        command: crate::cli::person::PersonCommand,
    },
    /// Missed deadlines escalated to supervisors.
    Escalations {
        #[command(flatten)]
        who: crate::cli::casework::Who,
    },
    /// The indicators a ministry reports, optionally for one governorate.
    Indicators {
        #[arg(long, default_value = "")]
        governorate: String,
        #[command(flatten)]
        who: crate::cli::casework::Who,
    },
    /// Statistics for the statistics purpose: aggregates only, small counts suppressed.
    Statistics {
        #[arg(long, default_value = "")]
        governorate: String,
        #[command(flatten)]
        who: crate::cli::casework::Who,
    },
    /// List the agencies in the directory.
    Agencies {
        #[command(flatten)]
        who: crate::cli::casework::Who,
    },
    /// An agency's system gets its certificate from the hub's authority with the one-time
    /// code an administrator gave it (over TLS, without a client certificate).
    Enrol {
        agency_id: String,
        #[arg(long)]
        code: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// An agency's system renews its certificate with its current one, before it expires.
    Renew {
        #[arg(long = "as")]
        agency_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Administrators: add, change, suspend, reactivate or remove a directory's agency
    /// while the hub runs (every replica follows within a second).
    Agency {
        #[command(subcommand)]
        command: crate::cli::directory::AgencyCommand,
    },
    /// Development certificates for mutual TLS: a throw-away CA, the hub's certificate
    /// and one per agency in the directory. Never for production.
    DevCerts {
        /// The folder to write (`ca.pem`, `hub.pem`, `hub.key`, `<agency>.pem`, `<agency>.key`).
        #[arg(long, default_value = ".himaya/certs")]
        out: PathBuf,
        /// How long the certificates are valid, in days.
        #[arg(long, default_value_t = 30)]
        days: i64,
    },
    /// Bulk household files from cash-assistance programmes: generate a synthetic one, or
    /// import one matched against the children of open cases (resumable).
    CashAssistance {
        #[command(subcommand)]
        command: crate::cli::cash::CashCommand,
    },
    /// Messages the hub could not process: list them with their reasons, inspect one,
    /// replay them once the cause is fixed; and agency messages the connectors refused.
    Parked {
        #[command(subcommand)]
        command: crate::cli::parked::ParkedCommand,
    },
    /// A simulated agency system that receives deliveries over HTTP (for the demo).
    DemoAgency {
        #[arg(long, default_value = "127.0.0.1:8088")]
        listen: SocketAddr,
        /// Print each redacted document as received (fictional demo data only).
        #[arg(long)]
        print_documents: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// The hub's gRPC address.
    /// `https://`: mutual TLS with the agency's certificate from `--certs` (the default);
    /// `http://`: a hub in development identity mode.
    #[arg(long, env = "HIMAYA_SERVER", default_value = "https://127.0.0.1:50051")]
    pub server: String,
    /// Language of messages: ar (العربية) or en.
    #[arg(long, value_enum, default_value = "en")]
    pub lang: Lang,
    /// With an https:// server (mutual TLS): the folder holding `ca.pem` and each
    /// agency's `<id>.pem` and `<id>.key` (`himaya dev-certs` makes a development set).
    #[arg(long, env = "HIMAYA_CERTS", default_value = ".himaya/certs")]
    pub certs: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum ReferralCommand {
    /// Submit a referral from a JSON file (see examples/).
    Submit {
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum CaseCommand {
    #[command(flatten)]
    Work(crate::cli::casework::WorkCommand),
    #[command(flatten)]
    Plan(crate::cli::plan::PlanCommand),
    /// Show a case as an agency may see it (only the fields its policy permits).
    Show {
        case_id: String,
        /// The agency asking, by directory id.
        #[arg(long = "as")]
        agency: String,
        #[arg(long, default_value = "service_provision", value_parser = parse_purpose)]
        purpose: Purpose,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub(crate) fn parse_purpose(s: &str) -> Result<Purpose, String> {
    Purpose::parse(s).ok_or_else(|| {
        "one of: service_provision, emergency_response, legal_proceedings, statistics".into()
    })
}

fn settings(cli_config: Option<&PathBuf>) -> anyhow::Result<Settings> {
    let dir = Settings::default_dir();
    Settings::load(&dir, cli_config.map(PathBuf::as_path)).with_context(|| {
        format!(
            "loading configuration from {} (set HIMAYA_CONFIG_DIR to the project's config/)",
            dir.display()
        )
    })
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up => serve(cli.config.as_ref(), &Component::ALL).await,
        Command::Serve { component } => serve(cli.config.as_ref(), &[component]).await,
        Command::Referral {
            command: ReferralCommand::Submit { file, client: c },
        } => {
            // Errors name the field, line and column in --lang, never a value from the file.
            let parsed: ReferralFile = crate::referral_file::load(&file, c.lang)?;
            let channel = client::connect(&c, parsed.agency()).await?;
            let (r, id) = client::submit(channel, parsed, c.lang).await?;
            let l = c.lang;
            println!("{}", l.pick("referral accepted", "تم استلام الإحالة"));
            println!(
                "  {} {}",
                l.pick("case:         ", "الحالة:       "),
                r.case_id
            );
            println!(
                "  {} {}",
                l.pick("referral:     ", "الإحالة:      "),
                r.referral_id
            );
            println!("  {} {}", l.pick("submission id:", "رقم التقديم:  "), id);
            let urgent = r.priority == himaya_proto::v1::Priority::Urgent as i32;
            println!(
                "  {} {}",
                l.pick("priority:     ", "الأولوية:     "),
                if urgent {
                    l.pick("urgent", "عاجلة")
                } else {
                    l.pick("routine", "عادية")
                }
            );
            if !r.proposed_services.is_empty() {
                println!(
                    "{}",
                    l.pick(
                        "matching services on the map (a proposal):",
                        "خدمات مطابقة على الخريطة (اقتراح):"
                    )
                );
                for s in &r.proposed_services {
                    crate::cli::services::print_service(s, l);
                }
            }
            if r.replayed {
                println!(
                    "  {}",
                    l.pick(
                        "(already submitted before: nothing new was created)",
                        "(سبق تقديمها: لم يُنشأ شيء جديد)"
                    )
                );
            }
            print_warnings(&r.warnings, l);
            Ok(())
        }
        Command::Case {
            command:
                CaseCommand::Show {
                    case_id,
                    agency,
                    purpose,
                    client: c,
                },
        } => {
            let channel = client::connect(&c, &agency).await?;
            let shared = client::show_case(channel, &case_id, &agency, purpose, c.lang).await?;
            let doc: serde_json::Value = serde_json::from_str(&shared.document_json)
                .context("the hub sent a malformed document")?;
            let l = c.lang;
            println!(
                "{} {} (v{}) — {} {}",
                l.pick("case", "الحالة"),
                shared.case_id,
                shared.version,
                l.pick("as seen by", "كما تراها"),
                agency
            );
            println!(
                "{} {}",
                l.pick("categories disclosed:", "الفئات المُفصح عنها:"),
                himaya_proto::convert::codes::<himaya_record::DataCategory>(&shared.categories)
                    .join(", ")
            );
            println!("{}", serde_json::to_string_pretty(&doc)?);
            if !shared.deliveries.is_empty() {
                println!("{}", l.pick("deliveries:", "التسليمات:"));
                for d in shared.deliveries {
                    println!(
                        "  {} {} (HTTP {}) {}",
                        d.agency_id,
                        himaya_proto::convert::code::<himaya_record::DeliveryOutcome>(d.outcome),
                        d.http_status,
                        d.recorded_at
                    );
                }
            }
            Ok(())
        }
        Command::Case {
            command: CaseCommand::Work(w),
        } => crate::cli::casework::run_work(w).await,
        Command::Case {
            command: CaseCommand::Plan(p),
        } => crate::cli::plan::run_plan(p).await,
        Command::ServiceReferral { command } => {
            crate::cli::plan::run_service_referral(command).await
        }
        Command::Services { command } => crate::cli::services::run(command).await,
        Command::Agency { command } => crate::cli::directory::run(command).await,
        Command::Enrol {
            agency_id,
            code,
            client,
        } => crate::cli::directory::enrol(agency_id, Some(code), client).await,
        Command::Renew { agency_id, client } => {
            crate::cli::directory::enrol(agency_id, None, client).await
        }
        Command::Consent { command } => crate::cli::consent::run(command).await,
        Command::Export(args) => crate::cli::notices::run_export(args).await,
        Command::Notices { command } => crate::cli::notices::run_notices(command).await,
        Command::CashAssistance { command } => {
            crate::cli::cash::run(command, || settings(cli.config.as_ref())).await
        }
        Command::Audit { command } => {
            crate::cli::audit::run(command, settings(cli.config.as_ref())?).await
        }
        Command::Parked { command } => {
            crate::cli::parked::run(command, settings(cli.config.as_ref())?).await
        }
        Command::BreakGlass { command } => crate::cli::consent::run_break_glass(command).await,
        Command::Staff { command } => crate::cli::casework::run_staff(command).await,
        Command::Person { command } => {
            crate::cli::person::run(command, settings(cli.config.as_ref())?).await
        }
        Command::Escalations { who } => crate::cli::casework::run_escalations(who).await,
        Command::Indicators { governorate, who } => {
            crate::cli::casework::run_indicators(governorate, who).await
        }
        Command::Statistics { governorate, who } => {
            crate::cli::casework::run_statistics(governorate, who).await
        }
        Command::Agencies { who } => {
            let channel = client::connect(&who.client, &who.agency).await?;
            for a in client::list_agencies(channel, &who.agency).await? {
                let suspended = a.status() == himaya_proto::v1::AgencyStatus::Suspended;
                println!(
                    "{:<24} {:<16} v{:<3} {} / {}{}",
                    a.agency_id,
                    a.agency_type,
                    a.version,
                    a.name_ar,
                    a.name_en,
                    if suspended { "  [suspended]" } else { "" }
                );
            }
            Ok(())
        }
        Command::DevCerts { out, days } => {
            let settings = settings(cli.config.as_ref())?;
            let ids = settings.agencies.ids();
            let set = crate::dev_certs::generate(&out, ids.iter().map(String::as_str), days)?;
            println!(
                "development certificates in {} (CA: {}); not for production",
                set.dir.display(),
                set.ca().display()
            );
            Ok(())
        }
        Command::DemoAgency {
            listen,
            print_documents,
        } => crate::demo_agency::run(listen, print_documents).await,
    }
}

async fn serve(config: Option<&PathBuf>, components: &[Component]) -> anyhow::Result<()> {
    let settings = settings(config)?;
    let service = match components {
        [one] => match clap::ValueEnum::to_possible_value(one) {
            Some(v) => format!("himaya-{}", v.get_name()),
            None => "himaya".to_owned(),
        },
        _ => "himaya".to_owned(),
    };
    let telemetry = crate::telemetry::init(&settings.telemetry, &service)?;
    let ran = match Hub::start(settings, components).await {
        Ok(hub) => hub.run_until_signal().await,
        Err(e) => Err(e),
    };
    // The last spans of a stopping (or failed) hub still reach the collector.
    telemetry.shutdown().await;
    ran
}

/// A referral accepted but not deliverable for now: said plainly, with what fixes it.
pub(crate) fn print_warnings(warnings: &[himaya_proto::v1::DeliveryWarning], lang: Lang) {
    for w in warnings {
        let to = if w.agency_id.is_empty() {
            lang.pick("any agency", "أي جهة").to_owned()
        } else {
            w.agency_id.clone()
        };
        println!(
            "  {} {to} [{}]: {}",
            lang.pick("NOT SENT to", "لم تُرسل إلى"),
            w.reason,
            w.message
        );
    }
}
