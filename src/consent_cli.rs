//! `himaya consent grant|amend|withdraw|list`: consents and legal bases on a case.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use himaya_proto::v1 as pb;
use serde::Deserialize;

use crate::casework_cli::{client, print_change, req, Who};
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
