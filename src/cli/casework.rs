//! `himaya case decide|assign|review|close|reopen|history`, `himaya staff add` and
//! `himaya escalations`: the case-owning ministry's work from the command line.

use clap::Subcommand;
use himaya_proto::convert::{self as cv, code, WireEnum};
use himaya_proto::v1 as pb;
use himaya_record::lifecycle::{
    AcceptanceDecision, ClosureReason, DeadlineKind, LinkKind, ReviewKind, StaffRole,
};
use himaya_record::service_referral::MedicalCoverage;
use himaya_record::{CaseStatus, Priority, RiskLevel, TargetGroup};
use pb::case_work_client::CaseWorkClient;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::Request;

use crate::cli::ClientArgs;
use crate::client::{connect, explain, Lang};

#[derive(Debug, Subcommand)]
pub enum WorkCommand {
    /// Decide a referral after the first assessment: register, refer_on or decline.
    Decide {
        case_id: String,
        /// The version you last saw (`case show`); a stale one is refused.
        #[arg(long)]
        version: i64,
        #[arg(long)]
        decision: String,
        /// Comma-separated criteria from lifecycle.vulnerability_criteria.
        #[arg(long, value_delimiter = ',')]
        criteria: Vec<String>,
        /// Comma-separated target groups from lifecycle.target_groups (default: those
        /// the referral named).
        #[arg(long, value_delimiter = ',')]
        target_groups: Vec<String>,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        referred_on_to: Option<String>,
        #[command(flatten)]
        who: Who,
    },
    /// Assign a registered case to a caseworker (within the caseload limit).
    Assign {
        case_id: String,
        #[arg(long)]
        version: i64,
        #[arg(long)]
        caseworker: String,
        #[command(flatten)]
        who: Who,
    },
    /// Record a review: home_visit, meeting_with_child or phone.
    Review {
        case_id: String,
        #[arg(long)]
        version: i64,
        #[arg(long)]
        kind: String,
        #[arg(long)]
        child_seen: bool,
        #[arg(long)]
        findings: String,
        #[command(flatten)]
        who: Who,
    },
    /// Close a case: need_ended, death, turned_18, moved_out_of_reach or contact_lost.
    Close {
        case_id: String,
        #[arg(long)]
        version: i64,
        #[arg(long)]
        reason: String,
        /// Whether the parents were consulted: true or false (must be said).
        #[arg(long)]
        parents_consulted: bool,
        #[arg(long)]
        final_evaluation: String,
        #[arg(long)]
        recommendations: String,
        #[command(flatten)]
        who: Who,
    },
    /// Reopen a closed, referred-on or declined case.
    Reopen {
        case_id: String,
        #[arg(long)]
        version: i64,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        who: Who,
    },
    /// Children in other cases who may be the same child, with scores.
    Duplicates {
        case_id: String,
        /// Lowest score shown (0-1).
        #[arg(long, default_value_t = 0.6)]
        min_score: f64,
        #[command(flatten)]
        who: Who,
    },
    /// Record that two cases concern the same child or siblings, keeping both.
    Link {
        case_id: String,
        other_case_id: String,
        /// same_child or sibling
        #[arg(long)]
        kind: String,
        #[command(flatten)]
        who: Who,
    },
    /// Fold one case into another; both histories are kept.
    Merge {
        keep_case_id: String,
        #[arg(long)]
        keep_version: i64,
        merge_case_id: String,
        #[arg(long)]
        merge_version: i64,
        #[command(flatten)]
        who: Who,
    },
    /// Every change of a case: who, when, what.
    History {
        case_id: String,
        #[command(flatten)]
        who: Who,
    },
}

#[derive(Debug, Subcommand)]
pub enum StaffCommand {
    /// Add a caseworker (with --supervisor) or a supervisor.
    Add {
        staff_id: String,
        #[arg(long)]
        role: String,
        #[arg(long)]
        supervisor: Option<String>,
        #[command(flatten)]
        who: Who,
    },
}

/// Who is acting: the agency (the case-owning ministry) and the staff member.
#[derive(Debug, clap::Args)]
pub struct Who {
    /// The agency calling, by directory id.
    #[arg(long = "as", default_value = "mosa-cairo")]
    pub agency: String,
    /// The staff member acting (a staff reference, not a name).
    #[arg(long, default_value = "operator")]
    pub actor: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub(crate) fn req<T>(msg: T, who: &Who) -> anyhow::Result<Request<T>> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "x-himaya-agency",
        MetadataValue::try_from(who.agency.as_str())?,
    );
    let lang = if who.client.lang == Lang::Ar {
        "ar"
    } else {
        "en"
    };
    r.metadata_mut()
        .insert("accept-language", MetadataValue::from_static(lang));
    Ok(r)
}

pub(crate) async fn client(who: &Who) -> anyhow::Result<CaseWorkClient<Channel>> {
    Ok(CaseWorkClient::new(channel(who).await?))
}

/// A connection to the hub as `who`, for any of its services.
pub(crate) async fn channel(who: &Who) -> anyhow::Result<Channel> {
    connect(&who.client, &who.agency).await
}

/// A flag's value from a closed vocabulary, as the hub's enum number; refused here, naming
/// the field and the choices as the hub would, when it is none of them.
pub(crate) fn named<T: WireEnum>(field: &str, name: &str, lang: Lang) -> anyhow::Result<i32> {
    cv::parse::<T>(name).map_err(|p| {
        let text = p.text(match lang {
            Lang::Ar => himaya_proto::status::Lang::Arabic,
            Lang::En => himaya_proto::status::Lang::English,
        });
        anyhow::anyhow!("{field}: {text}")
    })
}

pub(crate) fn print_change(c: pb::CaseChange, lang: Lang) {
    println!(
        "{} {} → {} (v{})",
        lang.pick("case", "الحالة"),
        c.case_id,
        code::<CaseStatus>(c.status),
        c.version
    );
    if let Some(n) = c.note {
        println!("  {n}");
    }
    crate::cli::print_warnings(&c.warnings, lang);
}

pub async fn run_work(cmd: WorkCommand) -> anyhow::Result<()> {
    let fail = |lang: Lang| move |s: tonic::Status| anyhow::anyhow!("{}", explain(&s, lang));
    match cmd {
        WorkCommand::Decide {
            case_id,
            version,
            decision,
            criteria,
            target_groups,
            reason,
            referred_on_to,
            who,
        } => {
            let msg = pb::DecideAcceptanceRequest {
                case_id,
                expected_version: version,
                actor: who.actor.clone(),
                decision: named::<AcceptanceDecision>("decision", &decision, who.client.lang)?,
                vulnerability_criteria: criteria,
                reason,
                referred_on_to,
                target_groups: target_groups
                    .iter()
                    .map(|g| named::<TargetGroup>("target_groups", g, who.client.lang))
                    .collect::<anyhow::Result<_>>()?,
            };
            let c = client(&who)
                .await?
                .decide_acceptance(req(msg, &who)?)
                .await
                .map_err(fail(who.client.lang))?;
            print_change(c.into_inner(), who.client.lang);
        }
        WorkCommand::Assign {
            case_id,
            version,
            caseworker,
            who,
        } => {
            let msg = pb::AssignCaseRequest {
                case_id,
                expected_version: version,
                actor: who.actor.clone(),
                caseworker_id: caseworker,
            };
            let c = client(&who)
                .await?
                .assign_case(req(msg, &who)?)
                .await
                .map_err(fail(who.client.lang))?;
            print_change(c.into_inner(), who.client.lang);
        }
        WorkCommand::Review {
            case_id,
            version,
            kind,
            child_seen,
            findings,
            who,
        } => {
            let msg = pb::RecordReviewRequest {
                case_id,
                expected_version: version,
                actor: who.actor.clone(),
                kind: named::<ReviewKind>("kind", &kind, who.client.lang)?,
                child_seen,
                findings,
            };
            let c = client(&who)
                .await?
                .record_review(req(msg, &who)?)
                .await
                .map_err(fail(who.client.lang))?;
            print_change(c.into_inner(), who.client.lang);
        }
        WorkCommand::Close {
            case_id,
            version,
            reason,
            parents_consulted,
            final_evaluation,
            recommendations,
            who,
        } => {
            let msg = pb::CloseCaseRequest {
                case_id,
                expected_version: version,
                actor: who.actor.clone(),
                reason: named::<ClosureReason>("reason", &reason, who.client.lang)?,
                parents_consulted: Some(parents_consulted),
                final_evaluation,
                recommendations,
            };
            let c = client(&who)
                .await?
                .close_case(req(msg, &who)?)
                .await
                .map_err(fail(who.client.lang))?;
            print_change(c.into_inner(), who.client.lang);
        }
        WorkCommand::Reopen {
            case_id,
            version,
            reason,
            who,
        } => {
            let msg = pb::ReopenCaseRequest {
                case_id,
                expected_version: version,
                actor: who.actor.clone(),
                reason,
            };
            let c = client(&who)
                .await?
                .reopen_case(req(msg, &who)?)
                .await
                .map_err(fail(who.client.lang))?;
            print_change(c.into_inner(), who.client.lang);
        }
        WorkCommand::Duplicates {
            case_id,
            min_score,
            who,
        } => {
            let msg = pb::FindDuplicatesRequest { case_id, min_score };
            let found = pb::duplicates_client::DuplicatesClient::new(channel(&who).await?)
                .find_duplicates(req(msg, &who)?)
                .await
                .map_err(fail(who.client.lang))?;
            let found = found.into_inner().candidates;
            if found.is_empty() {
                println!(
                    "{}",
                    who.client
                        .lang
                        .pick("no likely duplicates", "لا توجد حالات مكررة محتملة")
                );
            }
            for c in found {
                println!(
                    "{}  {:.2}  {}",
                    c.case_id,
                    c.score,
                    code::<CaseStatus>(c.status)
                );
            }
        }
        WorkCommand::Link {
            case_id,
            other_case_id,
            kind,
            who,
        } => {
            let msg = pb::LinkCasesRequest {
                case_id,
                other_case_id,
                kind: named::<LinkKind>("kind", &kind, who.client.lang)?,
                actor: who.actor.clone(),
            };
            let r = pb::duplicates_client::DuplicatesClient::new(channel(&who).await?)
                .link_cases(req(msg, &who)?)
                .await
                .map_err(fail(who.client.lang))?;
            let created = r.into_inner().created;
            println!(
                "{}",
                if created {
                    who.client.lang.pick("linked", "تم الربط")
                } else {
                    who.client.lang.pick("already linked", "مرتبطتان من قبل")
                }
            );
        }
        WorkCommand::Merge {
            keep_case_id,
            keep_version,
            merge_case_id,
            merge_version,
            who,
        } => {
            let msg = pb::MergeCasesRequest {
                keep_case_id,
                keep_version,
                merge_case_id,
                merge_version,
                actor: who.actor.clone(),
            };
            let c = pb::duplicates_client::DuplicatesClient::new(channel(&who).await?)
                .merge_cases(req(msg, &who)?)
                .await
                .map_err(fail(who.client.lang))?;
            print_change(c.into_inner(), who.client.lang);
        }
        WorkCommand::History { case_id, who } => {
            let h = client(&who)
                .await?
                .get_history(req(pb::GetHistoryRequest { case_id }, &who)?)
                .await
                .map_err(fail(who.client.lang))?;
            for e in h.into_inner().entries {
                println!("v{:<3} {}  {:<16} {}", e.version, e.at, e.actor, e.change);
            }
        }
    }
    Ok(())
}

pub async fn run_staff(cmd: StaffCommand) -> anyhow::Result<()> {
    let StaffCommand::Add {
        staff_id,
        role,
        supervisor,
        who,
    } = cmd;
    let msg = pb::AddStaffRequest {
        staff_id,
        role: named::<StaffRole>("role", &role, who.client.lang)?,
        supervisor_id: supervisor,
    };
    let s = pb::staff_client::StaffClient::new(channel(&who).await?)
        .add_staff(req(msg, &who)?)
        .await
        .map_err(|s| anyhow::anyhow!("{}", explain(&s, who.client.lang)))?
        .into_inner();
    println!(
        "{} {} ({}){}",
        s.agency_id,
        s.staff_id,
        code::<StaffRole>(s.role),
        s.supervisor_id
            .map(|x| format!(", supervised by {x}"))
            .unwrap_or_default()
    );
    Ok(())
}

pub async fn run_escalations(who: Who) -> anyhow::Result<()> {
    let list = client(&who)
        .await?
        .list_escalations(req(pb::ListEscalationsRequest::default(), &who)?)
        .await
        .map_err(|s| anyhow::anyhow!("{}", explain(&s, who.client.lang)))?
        .into_inner();
    for e in list.escalations {
        println!(
            "{}  {:<7} {:<16} {:<36} due {}  raised {}  supervisor {}",
            e.case_id,
            code::<Priority>(e.priority),
            code::<DeadlineKind>(e.kind),
            e.ref_id.as_deref().unwrap_or("-"),
            e.due_at,
            e.raised_at,
            e.supervisor_id.unwrap_or_else(|| "-".into())
        );
    }
    Ok(())
}

pub async fn run_indicators(governorate: String, who: Who) -> anyhow::Result<()> {
    let i = pb::oversight_client::OversightClient::new(channel(&who).await?)
        .get_indicators(req(pb::GetIndicatorsRequest { governorate }, &who)?)
        .await
        .map_err(|s| anyhow::anyhow!("{}", explain(&s, who.client.lang)))?
        .into_inner();
    let l = who.client.lang;
    println!(
        "{} ({})",
        l.pick(
            "cases by governorate, status and risk",
            "الحالات حسب المحافظة والوضع ودرجة الخطورة"
        ),
        i.computed_at
    );
    for c in &i.cases {
        println!(
            "  {:<16} {:<12} {:<7} {}",
            c.governorate,
            code::<CaseStatus>(c.status),
            code::<RiskLevel>(c.risk_level),
            c.count
        );
    }
    println!("{}", l.pick("caseloads", "أعباء الأخصائيين"));
    for c in &i.caseloads {
        println!("  {:<16} {}/{}", c.caseworker_id, c.open_cases, c.limit);
    }
    println!(
        "{}",
        l.pick(
            "deadlines (past due and open / escalated)",
            "المواعيد (متأخرة ومفتوحة / مصعّدة)"
        )
    );
    for o in &i.overdue {
        println!(
            "  {:<16} {} / {}",
            code::<DeadlineKind>(o.kind),
            o.open_past_due,
            o.escalated
        );
    }
    println!(
        "{}",
        l.pick(
            "agency answers (delivered / rejected, acceptance, median response)",
            "ردود الجهات (مستلمة / مرفوضة، نسبة القبول، الزمن الوسيط للرد)"
        )
    );
    for a in &i.agencies {
        println!(
            "  {:<20} {} / {}  {:.0}%  {:.0} ms",
            a.agency_id,
            a.delivered,
            a.rejected,
            a.acceptance_rate * 100.0,
            a.median_response_ms
        );
    }
    println!(
        "{}",
        l.pick(
            "service referrals (sent: accepted / rejected / unanswered, acceptance, median answer)",
            "إحالات الخدمات (المرسلة: مقبولة / مرفوضة / بلا رد، نسبة القبول، الزمن الوسيط للرد)"
        )
    );
    for s in &i.service_referrals {
        println!(
            "  {:<20} {}: {} / {} / {}  {:.0}%  {:.1} h",
            s.agency_id,
            s.sent,
            s.accepted,
            s.rejected,
            s.unanswered,
            s.acceptance_rate * 100.0,
            s.median_answer_hours
        );
    }
    println!(
        "{}",
        l.pick(
            "health referrals by who pays medical costs (full = programme 100 %, partial, none = family)",
            "إحالات الصحة حسب من يدفع التكاليف الطبية (full = البرنامج 100٪، partial = جزئية، none = الأسرة)"
        )
    );
    for m in &i.medical_coverage {
        println!(
            "  {:<16} {:<8} {}",
            m.governorate,
            code::<MedicalCoverage>(m.coverage),
            m.count
        );
    }
    Ok(())
}

pub async fn run_statistics(governorate: String, who: Who) -> anyhow::Result<()> {
    let mut cases = pb::cases_client::CasesClient::new(connect(&who.client, &who.agency).await?);
    let s = cases
        .get_statistics(req(pb::GetStatisticsRequest { governorate }, &who)?)
        .await
        .map_err(|s| anyhow::anyhow!("{}", explain(&s, who.client.lang)))?
        .into_inner();
    let l = who.client.lang;
    println!(
        "{} ({}; {} {})",
        l.pick(
            "open cases by governorate, status and risk",
            "الحالات حسب المحافظة والوضع ودرجة الخطورة"
        ),
        s.computed_at,
        l.pick("counts below", "يُحجب ما دون"),
        s.min_count
    );
    for c in s.cells {
        println!(
            "  {:<16} {:<12} {:<7} {}",
            c.governorate,
            code::<CaseStatus>(c.status),
            code::<RiskLevel>(c.risk_level),
            c.count
                .map(|n| n.to_string())
                .unwrap_or_else(|| format!("<{}", s.min_count))
        );
    }
    Ok(())
}
