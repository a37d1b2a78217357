//! `himaya cash-assistance generate|import|export`: the bulk household job
//! (`jobs/household_match`). `import` matches a programme's household file (Avro object
//! container) against the children of open cases, read from the view the cases service
//! publishes (`cases.open_children`), and keeps checkpoints in the job's own schema
//! `connector_cash` (configuration's database). `export` reads through `Cases.ExportCases`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;
use himaya_job_household_match::{
    self as bulk, BulkError, ImportReport, PgCheckpoint, Progress, ReportFile,
};
use himaya_settings::Settings;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, Subcommand)]
pub enum CashCommand {
    /// Write a synthetic household file (fictional families) for trials and load tests.
    Generate {
        /// How many household members (rows).
        #[arg(long)]
        rows: u64,
        #[arg(long)]
        out: PathBuf,
        /// The same seed gives the same families.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Import a household file: each member is matched against the children of open
    /// cases. Safe to interrupt: running it again on the same file continues after the
    /// last checkpoint, without counting or reporting anything twice.
    Import {
        /// The programme's Avro object container file.
        #[arg(long)]
        file: PathBuf,
        /// The match report (JSON Lines: one line per match and per bad row).
        #[arg(long, default_value = "matches.jsonl")]
        report: PathBuf,
        /// Forget this file's checkpoint and start from the first row.
        #[arg(long)]
        restart: bool,
    },
    /// Export the children referred to a programme for enrolment, as an Avro object
    /// container file: every case the programme has a part in, as the consent layer
    /// discloses it to the programme (fields it may not see are null).
    Export {
        /// The file to write (`proto/avro/cash_enrolment_referral.avsc`).
        #[arg(long)]
        out: PathBuf,
        /// Start after this case id (a new file with the rest, after an interruption).
        #[arg(long)]
        after: Option<String>,
        #[command(flatten)]
        who: crate::cli::casework::Who,
    },
}

/// `settings` is loaded only by commands that need the database.
pub async fn run(
    cmd: CashCommand,
    settings: impl FnOnce() -> anyhow::Result<Settings>,
) -> anyhow::Result<()> {
    match cmd {
        CashCommand::Generate { rows, out, seed } => {
            let started = Instant::now();
            let path = out.clone();
            tokio::task::spawn_blocking(move || bulk::generate(&path, rows, seed, &[]))
                .await?
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "{rows} household members written to {} in {:.1}s (fictional people)",
                out.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        CashCommand::Import {
            file,
            report,
            restart,
        } => import(&settings()?, file, report, restart).await,
        CashCommand::Export { out, after, who } => export(out, after, who).await,
    }
}

/// Streams `Cases.ExportCases` as the programme into an Avro container, case by case.
async fn export(
    out: PathBuf,
    after: Option<String>,
    who: crate::cli::casework::Who,
) -> anyhow::Result<()> {
    use himaya_job_household_match::enrolment;
    use himaya_proto::v1 as pb;
    let lang = who.client.lang;
    let fail = |s: tonic::Status| anyhow::anyhow!("{}", crate::client::explain(&s, lang));
    let mut cases =
        pb::cases_client::CasesClient::new(crate::client::connect(&who.client, &who.agency).await?);
    let msg = pb::ExportCasesRequest {
        purpose: himaya_proto::convert::purpose_to(himaya_record::Purpose::ServiceProvision).into(),
        after_case_id: after.unwrap_or_default(),
    };
    let mut stream = cases
        .export_cases(crate::cli::casework::req(msg, &who)?)
        .await
        .map_err(fail)?
        .into_inner();
    let schema = enrolment::schema().context("the enrolment schema")?;
    let file =
        std::fs::File::create(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut writer = apache_avro::Writer::with_codec(
        &schema,
        std::io::BufWriter::new(file),
        apache_avro::Codec::Deflate(apache_avro::DeflateSettings::default()),
    )
    .context("starting the Avro file")?;
    let now = chrono::Utc::now().to_rfc3339();
    let (mut written, mut last) = (0u64, None);
    let mut line = ProgressLine::new();
    while let Some(shared) = stream.message().await.map_err(fail)? {
        let case = himaya_connect::SharedCase::parse(&shared.document_json)
            .with_context(|| format!("case {} as disclosed", shared.case_id))?;
        let record = enrolment::record(&schema, &shared.case_id, &case, &now)
            .context("the enrolment schema makes no record")?;
        writer
            .append_value(record)
            .context("writing the Avro file")?;
        written += 1;
        last = Some(shared.case_id);
        if written % 1000 == 0 {
            line.show(written, None, || format!("{written} cases written"));
        }
    }
    line.finish();
    let mut inner = writer.into_inner().context("finishing the Avro file")?;
    inner.flush().context("finishing the Avro file")?;
    println!(
        "{written} referrals for enrolment written to {} (as disclosed to {})",
        out.display(),
        who.agency
    );
    if let Some(last) = last {
        println!("last case: {last} (use --after {last} to continue after it)");
    }
    Ok(())
}

async fn import(
    settings: &Settings,
    file: PathBuf,
    report: PathBuf,
    restart: bool,
) -> anyhow::Result<()> {
    let path = file.clone();
    let sha = tokio::task::spawn_blocking(move || bulk::file_sha256(&path)).await??;
    // One pool, in the job's own schema: the cases service's schema is neither created
    // nor migrated here, its published view is only read (a clear error if it is missing).
    let pool = bulk::connect(settings)
        .await
        .context("preparing the checkpoint store (is PostgreSQL running?)")?;
    let today = chrono::Utc::now().date_naive();
    let loaded = bulk::load_open_cases(&pool, today)
        .await
        .context("reading the children of open cases")?;
    eprintln!(
        "{} children of open cases indexed ({} without a name or governorate left out)",
        loaded.index.len(),
        loaded.skipped
    );
    let mut checkpoint =
        match PgCheckpoint::acquire(&pool, &sha, bulk::KIND_HOUSEHOLD_MEMBERS).await {
            Err(BulkError::Locked) => {
                anyhow::bail!("{} is being imported by another run", file.display())
            }
            other => other?,
        };
    if restart {
        checkpoint.reset().await?;
    }
    let state = checkpoint.state().await?;
    if state.rows_done > 0 && !state.finished {
        eprintln!("resuming after row {}", state.rows_done);
    }
    let out = ReportFile::resume(&report, state.report_bytes)
        .with_context(|| format!("opening the report {}", report.display()))?;
    let index = loaded.index;
    let path = file.clone();
    let (result, checkpoint) = tokio::task::spawn_blocking(move || {
        let mut checkpoint = checkpoint;
        let mut line = ProgressLine::new();
        let r = bulk::import(
            &path,
            &index,
            &mut checkpoint,
            |p: &Progress| line.show(p.rows_done, p.rows_total, || p.line()),
            out,
        );
        line.finish();
        (r, checkpoint)
    })
    .await?;
    checkpoint.close().await?;
    pool.close().await;
    let r = result.with_context(|| format!("importing {}", file.display()))?;
    print_summary(&r, &report);
    Ok(())
}

fn print_summary(r: &ImportReport, report: &Path) {
    if r.already_complete {
        println!("this file was already imported in full; the report is unchanged");
    }
    println!(
        "rows: {} ({} done by an earlier run)",
        r.rows, r.resumed_from
    );
    println!(
        "matches: {} (national id {}, name + birth + governorate {})",
        r.matches(),
        r.matches_national_id,
        r.matches_name
    );
    println!("bad rows: {}", r.bad_rows);
    for b in &r.bad_row_samples {
        let fields: Vec<String> = b
            .fields
            .iter()
            .map(|f| format!("{} ({:?})", f.field, f.problem))
            .collect();
        println!("  row {}: {}", b.row, fields.join(", "));
    }
    println!(
        "report: {} ({} bytes); {:.1}s",
        report.display(),
        r.report_bytes,
        r.elapsed.as_secs_f64()
    );
}

/// Progress on stderr. On a terminal, an indicatif bar redrawn a few times a second;
/// into a pipe or a file (a log, a CI job) the bar is hidden and a plain line is written
/// every few seconds instead, so the output holds whole lines and no carriage returns.
struct ProgressLine {
    bar: ProgressBar,
    /// Not on a terminal: a plain line at most this often (and one when done).
    plain_every: Option<Duration>,
    last_plain: Option<Instant>,
    /// The count written last as a plain line (the final callback may repeat it).
    shown: Option<u64>,
}

impl ProgressLine {
    fn new() -> Self {
        let terminal = std::io::stderr().is_terminal();
        let target = if terminal {
            ProgressDrawTarget::stderr_with_hz(4)
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target).with_style(style("{msg}"));
        Self {
            bar,
            plain_every: (!terminal).then_some(Duration::from_secs(10)),
            last_plain: None,
            shown: None,
        }
    }

    /// Shows `line()` for `count` out of `total` (if known): the bar redraws when one is
    /// due; a plain line is written when one is due, or when the work is done.
    fn show(&mut self, count: u64, total: Option<u64>, line: impl FnOnce() -> String) {
        if let Some(total) = total.filter(|t| *t > 0) {
            if self.bar.length() != Some(total) {
                self.bar.set_length(total);
                self.bar.set_style(style("[{bar:30}] {msg}"));
            }
        }
        let text = line();
        let Some(every) = self.plain_every else {
            self.bar.set_message(text);
            self.bar.set_position(count);
            return;
        };
        let done = total.is_some_and(|t| count >= t);
        let due = self.last_plain.is_none_or(|t| t.elapsed() >= every);
        if (due || done) && self.shown != Some(count) {
            eprintln!("{text}");
            self.last_plain = Some(Instant::now());
            self.shown = Some(count);
        }
        self.bar.set_message(text);
        self.bar.set_position(count);
    }

    /// Leaves the bar's last state on its line (plain lines are already ended).
    fn finish(&self) {
        self.bar.finish();
    }
}

/// A bar style from a template that is known to parse; the plain default otherwise.
fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(rows_done: u64, rows_total: Option<u64>) -> Progress {
        Progress {
            rows_done,
            rows_total,
            resumed_from: 0,
            matches: 0,
            bad_rows: 0,
            elapsed: Duration::from_secs(1),
        }
    }

    fn show(line: &mut ProgressLine, p: &Progress) {
        line.show(p.rows_done, p.rows_total, || p.line());
    }

    #[test]
    fn the_templates_parse() {
        for t in ["{msg}", "[{bar:30}] {msg}"] {
            assert!(ProgressStyle::with_template(t).is_ok(), "{t}");
        }
    }

    /// Off a terminal the bar draws nothing, and still follows the import.
    #[test]
    fn a_hidden_bar_follows_the_import() {
        let mut line = ProgressLine {
            bar: ProgressBar::hidden(),
            plain_every: Some(Duration::from_secs(3600)),
            last_plain: None,
            shown: None,
        };
        show(&mut line, &progress(10_000, None));
        assert_eq!(line.bar.length(), None);
        show(&mut line, &progress(20_000, Some(50_000)));
        assert_eq!(line.bar.length(), Some(50_000));
        assert_eq!(line.bar.position(), 20_000);
        assert!(line.bar.message().starts_with("rows 20000/50000"));
        // The first plain line was written; the next is not due within the hour.
        assert_eq!(line.shown, Some(10_000));
        // Done: written at once, and only once.
        show(&mut line, &progress(50_000, Some(50_000)));
        assert_eq!(line.shown, Some(50_000));
        line.finish();
        assert!(line.bar.is_finished());
        assert!(line.bar.is_hidden());
    }
}
