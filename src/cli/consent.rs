//! `himaya consent grant|amend|withdraw|list`: consents and legal bases on a case.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use himaya_proto::v1 as pb;
use serde::Deserialize;

use crate::cli::casework::{client, print_change, req, Who};
use crate::client::{explain, Lang};

#[derive(Debug, Subcommand)]
pub enum ConsentCommand {
    /// Record a consent (--given-by caregiver|child_assent --method written|verbal) or a
    /// legal basis (--legal-basis vital_interests|legal_obligation|court_order
    /// --legal-reference "…"), with provisions from a JSON file (see examples/consent.json).
    Grant {
        case_id: String,
        #[arg(long)]
        version: i64,
        #[arg(long)]
        given_by: Option<String>,
        #[arg(long)]
        method: Option<String>,
        #[arg(long)]
        legal_basis: Option<String>,
        #[arg(long)]
        legal_reference: Option<String>,
        #[arg(long)]
        provisions: PathBuf,
        /// RFC 3339; default now.
        #[arg(long, default_value = "")]
        valid_from: String,
        /// RFC 3339; default until withdrawn.
        #[arg(long, default_value = "")]
        valid_until: String,
        #[command(flatten)]
        who: Who,
    },
    /// Replace a consent's provisions and end date.
    Amend {
        case_id: String,
        #[arg(long)]
        version: i64,
        consent_id: String,
        #[arg(long)]
        provisions: PathBuf,
        #[arg(long, default_value = "")]
        valid_until: String,
        #[command(flatten)]
        who: Who,
    },
    /// Withdraw a consent: disclosures under it stop at once.
    Withdraw {
        case_id: String,
        #[arg(long)]
        version: i64,
        consent_id: String,
        #[command(flatten)]
        who: Who,
    },
    /// A case's consents and legal bases, withdrawn ones included.
    List {
        case_id: String,
        #[command(flatten)]
        who: Who,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvisionFile {
    kind: String,
    #[serde(default)]
    recipient_agency: Option<String>,
    #[serde(default)]
    recipient_type: Option<String>,
    #[serde(default)]
    purposes: Vec<String>,
    #[serde(default)]
    categories: Vec<String>,
}

fn provisions(file: &PathBuf) -> anyhow::Result<Vec<pb::Provision>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let list: Vec<ProvisionFile> = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a list of provisions (see examples/consent.json)",
            file.display()
        )
    })?;
    Ok(list
        .into_iter()
        .map(|p| pb::Provision {
            kind: p.kind,
            recipient_agency: p.recipient_agency,
            recipient_type: p.recipient_type,
            purposes: p.purposes,
            categories: p.categories,
        })
        .collect())
}

pub async fn run(cmd: ConsentCommand) -> anyhow::Result<()> {
    let fail = |lang: Lang| move |s: tonic::Status| anyhow::anyhow!("{}", explain(&s, lang));
    let (change, who) = match cmd {
        ConsentCommand::Grant {
            case_id,
            version,
            given_by,
            method,
            legal_basis,
            legal_reference,
            provisions: file,
            valid_from,
            valid_until,
            who,
        } => {
            let msg = pb::GrantConsentRequest {
                case_id,
                expected_version: version,
                actor: who.actor.clone(),
                given_by,
                method,
                legal_basis,
                legal_reference,
                provisions: provisions(&file)?,
                valid_from,
                valid_until,
            };
            let c = client(&who)
                .await?
                .grant_consent(req(msg, &who)?)
                .await
                .map_err(fail(who.client.lang))?;
            (c.into_inner(), who)
        }
        ConsentCommand::Amend {
            case_id,
            version,
            consent_id,
            provisions: file,
            valid_until,
            who,
        } => {
            let msg = pb::AmendConsentRequest {
                case_id,
                expected_version: version,
                actor: who.actor.clone(),
                consent_id,
                provisions: provisions(&file)?,
                valid_until,
            };
            let c = client(&who)
                .await?
                .amend_consent(req(msg, &who)?)
                .await
                .map_err(fail(who.client.lang))?;
            (c.into_inner(), who)
        }
        ConsentCommand::Withdraw {
            case_id,
            version,
            consent_id,
            who,
        } => {
            let msg = pb::WithdrawConsentRequest {
                case_id,
                expected_version: version,
                actor: who.actor.clone(),
                consent_id,
            };
            let c = client(&who)
                .await?
                .withdraw_consent(req(msg, &who)?)
                .await
                .map_err(fail(who.client.lang))?;
            (c.into_inner(), who)
        }
        ConsentCommand::List { case_id, who } => {
            let l = who.client.lang;
            let list = client(&who)
                .await?
                .list_consents(req(pb::ListConsentsRequest { case_id }, &who)?)
                .await
                .map_err(fail(l))?
                .into_inner();
            for c in list.consents {
                let basis = match (&c.given_by, &c.legal_basis) {
                    (Some(g), _) => format!("{g} ({})", c.method.as_deref().unwrap_or("-")),
                    (None, Some(b)) => {
                        format!("{b}: {}", c.legal_reference.as_deref().unwrap_or("-"))
                    }
                    (None, None) => "-".into(),
                };
                println!(
                    "{} r{}  {}  {} → {}  {}",
                    c.consent_id,
                    c.revision,
                    basis,
                    c.valid_from,
                    c.valid_until.as_deref().unwrap_or("…"),
                    match (c.active, &c.withdrawn_at) {
                        (_, Some(at)) => format!("{} {at}", l.pick("withdrawn", "مسحوبة")),
                        (true, None) => l.pick("active", "سارية").to_owned(),
                        (false, None) => l.pick("not in force", "غير سارية").to_owned(),
                    }
                );
                for p in c.provisions {
                    let any = || l.pick("any", "الكل").to_owned();
                    println!(
                        "    {:<6} {} / {} / {}",
                        p.kind,
                        p.recipient_agency.or(p.recipient_type).unwrap_or_else(any),
                        if p.purposes.is_empty() {
                            any()
                        } else {
                            p.purposes.join(",")
                        },
                        if p.categories.is_empty() {
                            any()
                        } else {
                            p.categories.join(",")
                        }
                    );
                }
            }
            return Ok(());
        }
    };
    print_change(change, who.client.lang);
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum BreakGlassCommand {
    /// Emergency access to a case's minimal data set, without consent (the emergency
    /// line; other listed agencies on high-risk cases). Audited and reviewed.
    Open {
        case_id: String,
        /// A reason code from break_glass.reason_codes.
        #[arg(long)]
        reason: String,
        #[arg(long)]
        justification: String,
        #[command(flatten)]
        who: Who,
    },
    /// Accesses awaiting supervisor review (--all: reviewed ones too).
    List {
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        who: Who,
    },
    /// Review an access: justified or unjustified.
    Review {
        break_glass_id: String,
        #[arg(long)]
        outcome: String,
        #[arg(long, default_value = "")]
        notes: String,
        #[command(flatten)]
        who: Who,
    },
}

fn print_access(a: &pb::BreakGlassAccess) {
    println!(
        "{}  {}  {}/{}  {}  {} → {}  reads {}  {}",
        a.break_glass_id,
        a.case_id,
        a.agency_id,
        a.actor,
        a.reason_code,
        a.granted_at,
        a.expires_at,
        a.reads,
        a.outcome.as_deref().unwrap_or("awaiting review")
    );
}

pub async fn run_break_glass(cmd: BreakGlassCommand) -> anyhow::Result<()> {
    let fail = |lang: Lang| move |s: tonic::Status| anyhow::anyhow!("{}", explain(&s, lang));
    match cmd {
        BreakGlassCommand::Open {
            case_id,
            reason,
            justification,
            who,
        } => {
            let mut cases = pb::cases_client::CasesClient::new(
                crate::client::connect(&who.client, &who.agency).await?,
            );
            let msg = pb::BreakGlassRequest {
                case_id,
                reason_code: reason,
                justification,
                actor: who.actor.clone(),
            };
            let s = cases
                .break_glass(req(msg, &who)?)
                .await
                .map_err(fail(who.client.lang))?
                .into_inner();
            let l = who.client.lang;
            println!(
                "{} {} ({} {})",
                l.pick("break-glass", "وصول طارئ"),
                s.break_glass_id.unwrap_or_default(),
                l.pick("until", "حتى"),
                s.break_glass_expires_at.unwrap_or_default()
            );
            println!("{}", s.categories.join(", "));
            let doc: serde_json::Value = serde_json::from_str(&s.document_json)
                .context("the hub sent a malformed document")?;
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        BreakGlassCommand::List { all, who } => {
            let list = client(&who)
                .await?
                .list_break_glass(req(pb::ListBreakGlassRequest { all }, &who)?)
                .await
                .map_err(fail(who.client.lang))?
                .into_inner();
            for a in &list.accesses {
                print_access(a);
            }
        }
        BreakGlassCommand::Review {
            break_glass_id,
            outcome,
            notes,
            who,
        } => {
            let msg = pb::ReviewBreakGlassRequest {
                break_glass_id,
                actor: who.actor.clone(),
                outcome,
                notes,
            };
            let a = client(&who)
                .await?
                .review_break_glass(req(msg, &who)?)
                .await
                .map_err(fail(who.client.lang))?
                .into_inner();
            print_access(&a);
        }
    }
    Ok(())
}
