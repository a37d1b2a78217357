//! `himaya consent grant|amend|withdraw|list`: consents and legal bases on a case.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use himaya_proto::convert::{code, WireEnum};
use himaya_proto::v1 as pb;
use himaya_record::consent::{ConsentMethod, LegalBasis, ProvisionKind};
use himaya_record::lifecycle::BreakGlassOutcome;
use himaya_record::{AgencyType, ConsentGiver, DataCategory, Purpose};
use serde::Deserialize;
use tonic::transport::Channel;

use crate::cli::casework::{channel, named, print_change, req, Who};
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

/// An optional flag's value from a closed vocabulary: absent is UNSPECIFIED.
fn optional<T: WireEnum>(field: &str, name: Option<&str>, lang: Lang) -> anyhow::Result<i32> {
    name.map_or(Ok(0), |n| named::<T>(field, n, lang))
}

fn names<T: WireEnum>(field: &str, list: &[String], lang: Lang) -> anyhow::Result<Vec<i32>> {
    list.iter()
        .enumerate()
        .map(|(i, n)| named::<T>(&format!("{field}[{i}]"), n, lang))
        .collect()
}

/// The codes of wire values, comma-separated.
fn codes<T: WireEnum>(list: &[i32]) -> String {
    list.iter()
        .map(|x| code::<T>(*x))
        .collect::<Vec<_>>()
        .join(",")
}

async fn consents(who: &Who) -> anyhow::Result<pb::consents_client::ConsentsClient<Channel>> {
    Ok(pb::consents_client::ConsentsClient::new(
        channel(who).await?,
    ))
}

async fn oversight(who: &Who) -> anyhow::Result<pb::oversight_client::OversightClient<Channel>> {
    Ok(pb::oversight_client::OversightClient::new(
        channel(who).await?,
    ))
}

fn provisions(file: &PathBuf, lang: Lang) -> anyhow::Result<Vec<pb::Provision>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let list: Vec<ProvisionFile> = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a list of provisions (see examples/consent.json)",
            file.display()
        )
    })?;
    list.into_iter()
        .enumerate()
        .map(|(i, p)| {
            let f = |name: &str| format!("provisions[{i}].{name}");
            Ok(pb::Provision {
                kind: named::<ProvisionKind>(&f("kind"), &p.kind, lang)?,
                recipient_agency: p.recipient_agency,
                recipient_type: optional::<AgencyType>(
                    &f("recipient_type"),
                    p.recipient_type.as_deref(),
                    lang,
                )?,
                purposes: names::<Purpose>(&f("purposes"), &p.purposes, lang)?,
                categories: names::<DataCategory>(&f("categories"), &p.categories, lang)?,
            })
        })
        .collect()
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
            let lang = who.client.lang;
            let msg = pb::GrantConsentRequest {
                case_id,
                expected_version: version,
                actor: who.actor.clone(),
                given_by: optional::<ConsentGiver>("given_by", given_by.as_deref(), lang)?,
                method: optional::<ConsentMethod>("method", method.as_deref(), lang)?,
                legal_basis: optional::<LegalBasis>("legal_basis", legal_basis.as_deref(), lang)?,
                legal_reference,
                provisions: provisions(&file, lang)?,
                valid_from,
                valid_until,
            };
            let c = consents(&who)
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
                provisions: provisions(&file, who.client.lang)?,
                valid_until,
            };
            let c = consents(&who)
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
            let c = consents(&who)
                .await?
                .withdraw_consent(req(msg, &who)?)
                .await
                .map_err(fail(who.client.lang))?;
            (c.into_inner(), who)
        }
        ConsentCommand::List { case_id, who } => {
            let l = who.client.lang;
            let list = consents(&who)
                .await?
                .list_consents(req(pb::ListConsentsRequest { case_id }, &who)?)
                .await
                .map_err(fail(l))?
                .into_inner();
            for c in list.consents {
                let (given_by, method) = (
                    code::<ConsentGiver>(c.given_by),
                    code::<ConsentMethod>(c.method),
                );
                let basis = match (given_by, code::<LegalBasis>(c.legal_basis)) {
                    ("", "") => "-".into(),
                    ("", b) => format!("{b}: {}", c.legal_reference.as_deref().unwrap_or("-")),
                    (g, _) => format!("{g} ({})", if method.is_empty() { "-" } else { method }),
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
                        code::<ProvisionKind>(p.kind),
                        p.recipient_agency
                            .or(Some(code::<AgencyType>(p.recipient_type).to_owned())
                                .filter(|t| !t.is_empty()))
                            .unwrap_or_else(any),
                        if p.purposes.is_empty() {
                            any()
                        } else {
                            codes::<Purpose>(&p.purposes)
                        },
                        if p.categories.is_empty() {
                            any()
                        } else {
                            codes::<DataCategory>(&p.categories)
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
        match code::<BreakGlassOutcome>(a.outcome) {
            "" => "awaiting review",
            o => o,
        }
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
            println!(
                "{}",
                himaya_proto::convert::codes::<DataCategory>(&s.categories).join(", ")
            );
            let doc: serde_json::Value = serde_json::from_str(&s.document_json)
                .context("the hub sent a malformed document")?;
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        BreakGlassCommand::List { all, who } => {
            let list = oversight(&who)
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
                outcome: named::<BreakGlassOutcome>("outcome", &outcome, who.client.lang)?,
                notes,
            };
            let a = oversight(&who)
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
