//! `himaya export` (an agency's cases, redacted, as JSON Lines) and
//! `himaya notices list|ack` (withdrawal notices addressed to an agency).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use himaya_proto::convert::purpose_to;
use himaya_proto::v1 as pb;
use himaya_record::Purpose;

use crate::cli::casework::{req, Who};
use crate::client::{connect, explain, Lang};

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Why the data is asked for: service_provision, emergency_response or
    /// legal_proceedings (statistics get aggregates: `himaya statistics`).
    #[arg(long, default_value = "service_provision", value_parser = crate::cli::parse_purpose)]
    pub purpose: Purpose,
    /// The file to write, one redacted case per line (JSON Lines).
    #[arg(long)]
    pub out: PathBuf,
    /// Resume an interrupted export after this case id (appends to --out).
    #[arg(long)]
    pub after: Option<String>,
    #[command(flatten)]
    pub who: Who,
}

#[derive(Debug, Subcommand)]
pub enum NoticesCommand {
    /// Withdrawal notices addressed to the agency, not yet acknowledged (--all: every one).
    List {
        #[arg(long)]
        all: bool,
        /// The next page: notices after this notice id (1000 per page).
        #[arg(long, default_value = "")]
        after: String,
        #[command(flatten)]
        who: Who,
    },
    /// Acknowledge a notice: the agency has stopped using the data it names.
    Ack {
        notice_id: String,
        #[command(flatten)]
        who: Who,
    },
}

pub async fn run_export(a: ExportArgs) -> anyhow::Result<()> {
    let lang = a.who.client.lang;
    let fail = |s: tonic::Status| anyhow::anyhow!("{}", explain(&s, lang));
    let mut cases =
        pb::cases_client::CasesClient::new(connect(&a.who.client, &a.who.agency).await?);
    let msg = pb::ExportCasesRequest {
        purpose: purpose_to(a.purpose).into(),
        after_case_id: a.after.clone().unwrap_or_default(),
    };
    let mut stream = cases
        .export_cases(req(msg, &a.who)?)
        .await
        .map_err(fail)?
        .into_inner();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(a.after.is_some())
        .truncate(a.after.is_none())
        .open(&a.out)
        .with_context(|| format!("opening {}", a.out.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let (mut n, mut last) = (0u64, None::<String>);
    let outcome = loop {
        match stream.message().await {
            Ok(Some(c)) => {
                let document: serde_json::Value = serde_json::from_str(&c.document_json)
                    .context("the hub sent a malformed document")?;
                let line = serde_json::json!({
                    "case_id": c.case_id,
                    "version": c.version,
                    "categories": himaya_proto::convert::codes::<himaya_record::DataCategory>(&c.categories),
                    "document": document,
                });
                writeln!(out, "{line}").context("writing the export")?;
                n += 1;
                if n % 1000 == 0 {
                    eprintln!("{n} …");
                }
                last = Some(c.case_id);
            }
            Ok(None) => break Ok(()),
            Err(s) => break Err(fail(s)),
        }
    };
    out.flush().context("writing the export")?;
    println!(
        "{n} {} {}",
        lang.pick("case(s) exported to", "حالة صُدّرت إلى"),
        a.out.display()
    );
    if let Err(e) = outcome {
        if let Some(last) = last {
            eprintln!(
                "{} --after {last}",
                lang.pick("interrupted; resume with", "توقف التصدير؛ استأنف بـ")
            );
        }
        return Err(e);
    }
    Ok(())
}

pub async fn run_notices(cmd: NoticesCommand) -> anyhow::Result<()> {
    let who = match &cmd {
        NoticesCommand::List { who, .. } | NoticesCommand::Ack { who, .. } => who,
    };
    let lang = who.client.lang;
    let fail = |s: tonic::Status| anyhow::anyhow!("{}", explain(&s, lang));
    let mut cases = pb::cases_client::CasesClient::new(connect(&who.client, &who.agency).await?);
    match &cmd {
        NoticesCommand::List { all, after, .. } => {
            let list = cases
                .list_notices(req(
                    pb::ListNoticesRequest {
                        include_acknowledged: *all,
                        after_notice_id: after.clone(),
                    },
                    who,
                )?)
                .await
                .map_err(fail)?
                .into_inner();
            if list.notices.is_empty() {
                println!("{}", lang.pick("no notices", "لا توجد إشعارات"));
            }
            for n in &list.notices {
                print_notice(n, lang);
            }
        }
        NoticesCommand::Ack { notice_id, .. } => {
            let n = cases
                .acknowledge_notice(req(
                    pb::AcknowledgeNoticeRequest {
                        notice_id: notice_id.clone(),
                        actor: who.actor.clone(),
                    },
                    who,
                )?)
                .await
                .map_err(fail)?
                .into_inner();
            print_notice(&n, lang);
        }
    }
    Ok(())
}

fn print_notice(n: &pb::Notice, lang: Lang) {
    println!(
        "{}  {} {}  {} {}  [{}]",
        n.notice_id,
        lang.pick("case", "الحالة"),
        n.case_id,
        lang.pick("consent withdrawn", "سُحبت الموافقة"),
        n.withdrawn_at,
        himaya_proto::convert::codes::<himaya_record::DataCategory>(&n.categories).join(", ")
    );
    match (&n.acknowledged_at, &n.acknowledged_by) {
        (Some(at), by) => println!(
            "    {} {at} {}",
            lang.pick("acknowledged", "تم الإقرار"),
            by.as_deref().unwrap_or("")
        ),
        _ => println!(
            "    {}",
            lang.pick(
                "not acknowledged: stop using the data, then `himaya notices ack`",
                "لم يُقرّ به بعد: أوقف استخدام البيانات ثم أقرّ بالإشعار"
            )
        ),
    }
}
