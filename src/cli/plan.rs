//! `himaya case assess|plan|action-done|refer` and `himaya service-referral …`: the
//! assessment, the protection plan and the service referrals that carry it out.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use himaya_proto::convert::{code, WireEnum};
use himaya_proto::v1 as pb;
use himaya_record::lifecycle::NeedDomain;
use himaya_record::service_referral::{AbilityToPay, MedicalCoverage, TaskState};
use himaya_record::ServiceType;
use pb::service_referrals_client::ServiceReferralsClient;
use serde::Deserialize;

use crate::cli::casework::{client, named, print_change, req, Who};
use crate::client::{connect, explain, Lang};

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Record the comprehensive assessment: risk and protective factors, needs by domain.
    Assess {
        case_id: String,
        #[arg(long)]
        version: i64,
        /// A risk factor (repeat the flag for more).
        #[arg(long = "risk")]
        risks: Vec<String>,
        /// A protective factor (repeat the flag for more).
        #[arg(long = "protective")]
        protective: Vec<String>,
        /// A need as `domain:description`; domains: safety, health, education,
        /// psychosocial, legal, economic (repeat the flag for more).
        #[arg(long = "need", required = true)]
        needs: Vec<String>,
        #[command(flatten)]
        who: Who,
    },
    /// Set the protection plan from a JSON file of goals and actions (see examples/plan.json).
    Plan {
        case_id: String,
        #[arg(long)]
        version: i64,
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        who: Who,
    },
    /// Mark a plan action done (a1, a2, … as `case plan` numbered them).
    ActionDone {
        case_id: String,
        #[arg(long)]
        version: i64,
        action_id: String,
        #[command(flatten)]
        who: Who,
    },
    /// Refer a plan action to the agency responsible for it (a service referral).
    Refer {
        case_id: String,
        action_id: String,
        /// What the family can pay towards a health service's costs: none, part or full
        /// (required for a health service; the hub decides who pays from it and the risk).
        #[arg(long)]
        ability_to_pay: Option<String>,
        #[command(flatten)]
        who: Who,
    },
}

#[derive(Debug, Subcommand)]
pub enum ServiceReferralCommand {
    /// Answer or move a service referral: received, accepted, rejected, in_progress,
    /// completed, failed (the receiving agency) or cancelled (the referring one). While in
    /// progress, `--state in_progress --reason …` records one more report (a hearing's
    /// outcome).
    Update {
        service_referral_id: String,
        #[arg(long)]
        version: i64,
        #[arg(long)]
        state: String,
        /// Required to reject, fail or cancel, and for a further progress report;
        /// otherwise an optional note.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        who: Who,
    },
    /// One service referral with every change.
    Show {
        service_referral_id: String,
        #[command(flatten)]
        who: Who,
    },
    /// The calling agency's service referrals, made or received.
    List {
        /// Only this case's.
        #[arg(long, default_value = "")]
        case: String,
        /// Only those in this state.
        #[arg(long, default_value = "")]
        state: String,
        #[command(flatten)]
        who: Who,
    },
}

/// The plan file: goals, each with its actions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    goals: Vec<GoalFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GoalFile {
    description: String,
    actions: Vec<ActionFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionFile {
    description: String,
    responsible_agency: String,
    service_type: String,
    /// YYYY-MM-DD
    due_on: String,
}

fn fail(lang: Lang) -> impl Fn(tonic::Status) -> anyhow::Error {
    move |s| anyhow::anyhow!("{}", explain(&s, lang))
}

pub async fn run_plan(cmd: PlanCommand) -> anyhow::Result<()> {
    match cmd {
        PlanCommand::Assess {
            case_id,
            version,
            risks,
            protective,
            needs,
            who,
        } => {
            let mut parsed = Vec::new();
            for (i, n) in needs.iter().enumerate() {
                let (domain, description) = n.split_once(':').with_context(|| {
                    "each --need is `domain:description`, e.g. --need 'education:العودة إلى المدرسة'"
                })?;
                parsed.push(pb::NeedInput {
                    domain: named::<NeedDomain>(
                        &format!("needs[{i}].domain"),
                        domain,
                        who.client.lang,
                    )?,
                    description: description.trim().into(),
                });
            }
            let msg = pb::RecordAssessmentRequest {
                case_id,
                expected_version: version,
                actor: who.actor.clone(),
                risk_factors: risks,
                protective_factors: protective,
                needs: parsed,
            };
            let c = client(&who)
                .await?
                .record_assessment(req(msg, &who)?)
                .await
                .map_err(fail(who.client.lang))?;
            print_change(c.into_inner(), who.client.lang);
        }
        PlanCommand::Plan {
            case_id,
            version,
            file,
            who,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let plan: PlanFile = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not a plan file (see examples/plan.json)",
                    file.display()
                )
            })?;
            let lang = who.client.lang;
            let mut goals = Vec::new();
            for (gi, g) in plan.goals.into_iter().enumerate() {
                let mut actions = Vec::new();
                for (ai, a) in g.actions.into_iter().enumerate() {
                    actions.push(pb::ActionInput {
                        service_type: named::<ServiceType>(
                            &format!("goals[{gi}].actions[{ai}].service_type"),
                            &a.service_type,
                            lang,
                        )?,
                        description: a.description,
                        responsible_agency: a.responsible_agency,
                        due_on: a.due_on,
                    });
                }
                goals.push(pb::GoalInput {
                    description: g.description,
                    actions,
                });
            }
            let msg = pb::SetPlanRequest {
                case_id,
                expected_version: version,
                actor: who.actor.clone(),
                goals,
            };
            let c = client(&who)
                .await?
                .set_plan(req(msg, &who)?)
                .await
                .map_err(fail(who.client.lang))?;
            print_change(c.into_inner(), who.client.lang);
        }
        PlanCommand::ActionDone {
            case_id,
            version,
            action_id,
            who,
        } => {
            let msg = pb::CompleteActionRequest {
                case_id,
                expected_version: version,
                actor: who.actor.clone(),
                action_id,
            };
            let c = client(&who)
                .await?
                .complete_action(req(msg, &who)?)
                .await
                .map_err(fail(who.client.lang))?;
            print_change(c.into_inner(), who.client.lang);
        }
        PlanCommand::Refer {
            case_id,
            action_id,
            ability_to_pay,
            who,
        } => {
            let msg = pb::CreateServiceReferralRequest {
                case_id,
                action_id,
                actor: who.actor.clone(),
                ability_to_pay: match ability_to_pay {
                    Some(a) => named::<AbilityToPay>("ability_to_pay", &a, who.client.lang)?,
                    None => 0,
                },
            };
            let r = referrals(&who)
                .await?
                .create_service_referral(req(msg, &who)?)
                .await
                .map_err(fail(who.client.lang))?;
            print_referral(&r.into_inner(), who.client.lang, false);
        }
    }
    Ok(())
}

async fn referrals(who: &Who) -> anyhow::Result<ServiceReferralsClient<tonic::transport::Channel>> {
    Ok(ServiceReferralsClient::new(
        connect(&who.client, &who.agency).await?,
    ))
}

fn print_referral(r: &pb::ServiceReferral, lang: Lang, changes: bool) {
    println!(
        "{} {} (v{})  {} {} → {}  {} {}  [{}]",
        lang.pick("service referral", "إحالة خدمة"),
        r.service_referral_id,
        r.version,
        r.case_id,
        r.from_agency,
        r.to_agency,
        code::<ServiceType>(r.service_type),
        r.action_id,
        code::<TaskState>(r.state)
    );
    if !r.answer_due_at.is_empty() {
        println!(
            "  {} {}",
            lang.pick("answer due by", "موعد الرد"),
            r.answer_due_at
        );
    }
    if let Some(line) = medical_costs(r, lang) {
        println!("  {line}");
    }
    if let Some(reason) = &r.reason {
        println!("  {} {reason}", lang.pick("reason:", "السبب:"));
    }
    crate::cli::print_warnings(&r.warnings, lang);
    if changes {
        for c in &r.changes {
            println!(
                "  {}  {:<12} {:<20} {}{}",
                c.at,
                code::<TaskState>(c.state),
                c.agency_id,
                c.actor,
                c.reason
                    .as_deref()
                    .map(|r| format!(" — {r}"))
                    .unwrap_or_default()
            );
        }
    }
}

/// Who pays a health service referral, in words (and what the family can pay, which only
/// the referring agency is shown); `None` for any other service.
fn medical_costs(r: &pb::ServiceReferral, lang: Lang) -> Option<String> {
    let coverage = MedicalCoverage::from_wire(r.medical_coverage)?;
    let mut line = format!(
        "{} {} ({})",
        lang.pick("medical costs:", "التكاليف الطبية:"),
        lang.pick(coverage.english(), coverage.arabic()),
        coverage
    );
    if let Some(a) = AbilityToPay::from_wire(r.ability_to_pay) {
        line.push_str(&format!(
            "{}{} {}",
            lang.pick("; ", "؛ "),
            lang.pick("the family", "الأسرة"),
            lang.pick(a.english(), a.arabic())
        ));
    }
    Some(line)
}

pub async fn run_service_referral(cmd: ServiceReferralCommand) -> anyhow::Result<()> {
    match cmd {
        ServiceReferralCommand::Update {
            service_referral_id,
            version,
            state,
            reason,
            who,
        } => {
            let msg = pb::UpdateServiceReferralRequest {
                service_referral_id,
                expected_version: version,
                state: named::<TaskState>("state", &state, who.client.lang)?,
                reason,
                actor: who.actor.clone(),
            };
            let r = referrals(&who)
                .await?
                .update_service_referral(req(msg, &who)?)
                .await
                .map_err(fail(who.client.lang))?;
            print_referral(&r.into_inner(), who.client.lang, false);
        }
        ServiceReferralCommand::Show {
            service_referral_id,
            who,
        } => {
            let msg = pb::GetServiceReferralRequest {
                service_referral_id,
            };
            let r = referrals(&who)
                .await?
                .get_service_referral(req(msg, &who)?)
                .await
                .map_err(fail(who.client.lang))?;
            print_referral(&r.into_inner(), who.client.lang, true);
        }
        ServiceReferralCommand::List { case, state, who } => {
            let msg = pb::ListServiceReferralsRequest {
                case_id: case,
                state: match state.trim() {
                    "" => 0,
                    s => named::<TaskState>("state", s, who.client.lang)?,
                },
            };
            let list = referrals(&who)
                .await?
                .list_service_referrals(req(msg, &who)?)
                .await
                .map_err(fail(who.client.lang))?
                .into_inner();
            if list.referrals.is_empty() {
                println!(
                    "{}",
                    who.client
                        .lang
                        .pick("no service referrals", "لا توجد إحالات خدمة")
                );
            }
            for r in &list.referrals {
                print_referral(r, who.client.lang, false);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_health_referral_shows_who_pays() {
        let mut r = pb::ServiceReferral {
            medical_coverage: pb::MedicalCoverage::Full.into(),
            ability_to_pay: pb::AbilityToPay::None.into(),
            ..Default::default()
        };
        assert_eq!(
            medical_costs(&r, Lang::En).as_deref(),
            Some("medical costs: 100 % covered by the programme (full); the family cannot pay at all")
        );
        assert_eq!(
            medical_costs(&r, Lang::Ar).as_deref(),
            Some("التكاليف الطبية: تغطية كاملة 100٪ من البرنامج (full)؛ الأسرة لا تستطيع الدفع")
        );
        // The receiving agency is not told what the family can pay.
        r.ability_to_pay = pb::AbilityToPay::Unspecified.into();
        r.medical_coverage = pb::MedicalCoverage::Partial.into();
        assert_eq!(
            medical_costs(&r, Lang::En).as_deref(),
            Some("medical costs: partly covered; the family pays the rest (partial)")
        );
        // Any other service has none.
        r.medical_coverage = pb::MedicalCoverage::Unspecified.into();
        assert_eq!(medical_costs(&r, Lang::En), None);
    }
}
