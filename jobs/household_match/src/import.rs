//! The import: stream the container row by row (one checked block in memory at a time),
//! match each member against the index, write report lines, commit a checkpoint every N
//! rows. Crash-safe by ordering: report lines for rows up to R are flushed *before* the
//! checkpoint says "R rows, B report bytes"; a resumed run cuts the report back to B and
//! redoes the rows after R, so every line and every count appears exactly once.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use apache_avro::types::Value;
use apache_avro::Reader;
use serde::Serialize;

use super::checkpoint::{Checkpoint, CheckpointState};
use super::container::survey;
use super::guard::Guarded;
use super::index::{Match, MatchBasis, MatchIndex};
use super::limits::limit_avro_allocations;
use super::row::{BadField, Layout};
use super::BulkError;

/// How often to commit and to report progress.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Rows between checkpoint commits (and report flushes).
    pub commit_every: u64,
    /// Rows between progress callbacks.
    pub progress_every: u64,
    /// Bad rows kept in [`ImportReport::bad_row_samples`] (all of them are in the report).
    pub bad_row_samples: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            commit_every: 50_000,
            progress_every: 10_000,
            bad_row_samples: 20,
        }
    }
}

/// Where an import stands, for a progress display.
#[derive(Debug, Clone)]
pub struct Progress {
    pub rows_done: u64,
    /// From the block headers; `None` if the file's structure is broken.
    pub rows_total: Option<u64>,
    /// Rows already done by an earlier run (read again, not processed again).
    pub resumed_from: u64,
    pub matches: u64,
    pub bad_rows: u64,
    pub elapsed: Duration,
}

impl Progress {
    /// Rows read per second in this run.
    pub fn rows_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.rows_done as f64 / secs
        } else {
            0.0
        }
    }

    /// A one-line display, for `\r` redrawing on a terminal.
    pub fn line(&self) -> String {
        let total = match self.rows_total {
            Some(t) if t > 0 => format!("/{t} ({:.1}%)", self.rows_done as f64 * 100.0 / t as f64),
            _ => String::new(),
        };
        format!(
            "rows {}{total}  {:.0} rows/s  matches {}  bad rows {}",
            self.rows_done,
            self.rows_per_sec(),
            self.matches,
            self.bad_rows
        )
    }
}

/// A bad row, by number and fields (never its values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadRow {
    pub row: u64,
    pub fields: Vec<BadField>,
}

/// What an import did, over all its runs.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    pub rows: u64,
    pub resumed_from: u64,
    pub matches_national_id: u64,
    pub matches_name: u64,
    pub bad_rows: u64,
    /// The first bad rows of this run.
    pub bad_row_samples: Vec<BadRow>,
    pub report_bytes: u64,
    pub elapsed: Duration,
    /// An earlier run had finished the file: nothing was read.
    pub already_complete: bool,
}

impl ImportReport {
    pub fn matches(&self) -> u64 {
        self.matches_national_id + self.matches_name
    }
}

/// One line of the report (JSON Lines).
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line<'a> {
    Match {
        row: u64,
        case_id: &'a str,
        household_id: &'a str,
        member_id: &'a str,
        basis: MatchBasis,
        score: f64,
    },
    BadRow {
        row: u64,
        fields: &'a [BadField],
    },
}

/// [`import_with`] with the default options (commit every 50,000 rows).
pub fn import(
    path: &Path,
    index: &MatchIndex,
    checkpoint: &mut impl Checkpoint,
    progress: impl FnMut(&Progress),
    report: impl Write,
) -> Result<ImportReport, BulkError> {
    import_with(
        &ImportOptions::default(),
        path,
        index,
        checkpoint,
        progress,
        report,
    )
}

/// Imports `path`, resuming after the checkpoint's `rows_done`. `report` must already
/// hold exactly the checkpoint's `report_bytes` (see [`super::ReportFile::resume`]); its
/// `flush` must make the bytes durable, since a commit follows each flush. A file at fault
/// (not a container, over the limits, corrupt) leaves the checkpoint finished and failed,
/// and a re-run is refused with [`BulkError::Failed`].
pub fn import_with<C: Checkpoint, W: Write>(
    options: &ImportOptions,
    path: &Path,
    index: &MatchIndex,
    checkpoint: &mut C,
    mut progress: impl FnMut(&Progress),
    report: W,
) -> Result<ImportReport, BulkError> {
    let started = Instant::now();
    let state = checkpoint.load()?;
    if let Some(reason) = state.failed.clone() {
        return Err(BulkError::Failed { reason });
    }
    let resumed_from = state.rows_done;
    if state.finished {
        return Ok(summary(&state, resumed_from, Vec::new(), started, true));
    }
    limit_avro_allocations();
    let mut run = Run {
        options,
        index,
        checkpoint,
        out: Counting {
            inner: report,
            written: state.report_bytes,
        },
        state,
        samples: Vec::new(),
        scratch: String::new(),
        found: Vec::new(),
        row: 0,
        resumed_from,
        rows_total: None,
        started,
    };
    if let Err(e) = run.read(path, &mut progress) {
        return Err(run.stopped(e));
    }
    run.commit(run.row, true)?;
    progress(&run.progress());
    Ok(summary(
        &run.state,
        resumed_from,
        run.samples,
        started,
        false,
    ))
}

/// One run's moving parts.
struct Run<'i, 'c, C, W> {
    options: &'i ImportOptions,
    index: &'i MatchIndex,
    checkpoint: &'c mut C,
    state: CheckpointState,
    out: Counting<W>,
    samples: Vec<BadRow>,
    /// Reused per row: the name key, the matches.
    scratch: String,
    found: Vec<Match<'i>>,
    /// Rows read so far in this run (the first `resumed_from` are read, not processed).
    row: u64,
    resumed_from: u64,
    rows_total: Option<u64>,
    started: Instant,
}

impl<C: Checkpoint, W: Write> Run<'_, '_, C, W> {
    /// Reads every row of the file. The header and the blocks' declared sizes are checked
    /// first (a file over the limits is refused before any row); apache-avro then reads
    /// the file through [`Guarded`], a block at a time, each checked before it is decoded.
    fn read(&mut self, path: &Path, progress: &mut impl FnMut(&Progress)) -> Result<(), BulkError> {
        self.rows_total = survey(path)?;
        let mut source = Guarded::open(path)?;
        let layout = Layout::of(source.schema())?;
        let reader = Reader::new(&mut source).map_err(|_| BulkError::NotAContainer)?;
        let every = self.options.commit_every.max(1);
        let tick = self.options.progress_every.max(1);
        let mut broken = false;
        for item in reader {
            // apache-avro's text can quote the bytes: only where it broke is kept.
            let Ok(value) = item else {
                broken = true;
                break;
            };
            self.row += 1;
            if self.row > self.resumed_from {
                self.process(self.row, &value, &layout)?;
                if multiple(self.row, every) {
                    self.commit(self.row, false)?;
                }
            }
            if multiple(self.row, tick) {
                progress(&self.progress());
            }
        }
        if broken {
            return Err(source.failure(path, self.row));
        }
        if self.row < self.resumed_from {
            return Err(BulkError::CheckpointAhead {
                rows_done: self.resumed_from,
                rows: self.row,
            });
        }
        Ok(())
    }

    /// Ends the run on `e`. The rows read before it stay done (report flushed, then
    /// committed) so the run can be examined; a file at fault is also marked finished and
    /// failed with the reason, and a file that could not be read can be resumed.
    fn stopped(&mut self, e: BulkError) -> BulkError {
        let done = self.row.max(self.resumed_from);
        let recorded = match e.failure_code() {
            Some(code) => {
                self.state.failed = Some(code.to_owned());
                self.commit(done, true)
            }
            None if matches!(e, BulkError::Io { .. }) => self.commit(done, false),
            None => return e,
        };
        // The file's fault is what the operator must see; a checkpoint store failing too
        // is logged (a re-run meets the same fault and records it then).
        if let Err(store) = recorded {
            tracing::error!(
                error = %store,
                reason = e.failure_code(),
                "the failed import could not be recorded"
            );
        }
        e
    }

    fn progress(&self) -> Progress {
        Progress {
            rows_done: self.row,
            rows_total: self.rows_total,
            resumed_from: self.resumed_from,
            matches: self.state.matches(),
            bad_rows: self.state.bad_rows,
            elapsed: self.started.elapsed(),
        }
    }

    fn process(&mut self, row: u64, value: &Value, layout: &Layout) -> Result<(), BulkError> {
        match layout.read(value, self.index.today()) {
            Ok(member) => {
                self.index
                    .lookup(&member, &mut self.scratch, &mut self.found);
                for m in &self.found {
                    match m.basis {
                        MatchBasis::NationalId => self.state.matches_national_id += 1,
                        MatchBasis::NameBirthGovernorate => self.state.matches_name += 1,
                    }
                    self.out.line(&Line::Match {
                        row,
                        case_id: m.case_id,
                        household_id: &member.household_id,
                        member_id: &member.member_id,
                        basis: m.basis,
                        score: m.score,
                    })?;
                }
            }
            Err(fields) => {
                self.state.bad_rows += 1;
                self.out.line(&Line::BadRow {
                    row,
                    fields: &fields,
                })?;
                if self.samples.len() < self.options.bad_row_samples {
                    self.samples.push(BadRow { row, fields });
                }
            }
        }
        Ok(())
    }

    /// Report first (flushed, durable), then the checkpoint that counts it.
    fn commit(&mut self, rows_done: u64, finished: bool) -> Result<(), BulkError> {
        self.out.inner.flush().map_err(BulkError::Report)?;
        self.state.rows_done = rows_done;
        self.state.report_bytes = self.out.written;
        self.state.finished = finished;
        self.checkpoint.commit(&self.state)?;
        tracing::info!(
            rows_done,
            matches = self.state.matches(),
            bad_rows = self.state.bad_rows,
            finished,
            "bulk import checkpoint"
        );
        Ok(())
    }
}

/// `u64::is_multiple_of` is newer than the workspace's rust-version (1.80).
#[allow(clippy::manual_is_multiple_of)]
fn multiple(row: u64, n: u64) -> bool {
    row % n == 0
}

fn summary(
    s: &CheckpointState,
    resumed_from: u64,
    bad_row_samples: Vec<BadRow>,
    started: Instant,
    already_complete: bool,
) -> ImportReport {
    ImportReport {
        rows: s.rows_done,
        resumed_from,
        matches_national_id: s.matches_national_id,
        matches_name: s.matches_name,
        bad_rows: s.bad_rows,
        bad_row_samples,
        report_bytes: s.report_bytes,
        elapsed: started.elapsed(),
        already_complete,
    }
}

/// Counts what reaches the report, so the checkpoint can record its length.
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Counting<W> {
    fn line(&mut self, line: &Line<'_>) -> Result<(), BulkError> {
        let mut buf = serde_json::to_vec(line).map_err(|e| BulkError::Report(e.into()))?;
        buf.push(b'\n');
        self.inner.write_all(&buf).map_err(BulkError::Report)?;
        self.written += buf.len() as u64;
        Ok(())
    }
}
