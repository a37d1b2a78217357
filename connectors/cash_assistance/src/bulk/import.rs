//! The import: stream the container row by row (one decoded block in memory at a time),
//! match each member against the index, write report lines, commit a checkpoint every N
//! rows. Crash-safe by ordering: report lines for rows up to R are flushed *before* the
//! checkpoint says "R rows, B report bytes"; a resumed run cuts the report back to B and
//! redoes the rows after R, so every line and every count appears exactly once.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use apache_avro::types::Value;
use apache_avro::Reader;
use serde::Serialize;

use super::checkpoint::{Checkpoint, CheckpointState};
use super::container::count_rows;
use super::index::{Match, MatchBasis, MatchIndex};
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
/// hold exactly the checkpoint's `report_bytes` (see [`ReportFile::resume`]); its `flush`
/// must make the bytes durable, since a commit follows each flush.
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
    let resumed_from = state.rows_done;
    if state.finished {
        return Ok(summary(&state, resumed_from, Vec::new(), started, true));
    }
    let (reader, layout, rows_total) = open(path)?;
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
    };
    let show = |state: &CheckpointState, row: u64| Progress {
        rows_done: row,
        rows_total,
        resumed_from,
        matches: state.matches(),
        bad_rows: state.bad_rows,
        elapsed: started.elapsed(),
    };
    let (every, tick) = (options.commit_every.max(1), options.progress_every.max(1));
    let mut row = 0u64;
    for item in reader {
        let Ok(value) = item else {
            // The library's text can quote the bytes; keep only where it broke. Rows before
            // it are complete: commit them so the run can be examined and resumed.
            run.commit(row.max(resumed_from), false)?;
            return Err(BulkError::Corrupt { row: row + 1 });
        };
        row += 1;
        if row > resumed_from {
            run.process(row, &value, &layout)?;
            if multiple(row, every) {
                run.commit(row, false)?;
            }
        }
        if multiple(row, tick) {
            progress(&show(&run.state, row));
        }
    }
    if row < resumed_from {
        return Err(BulkError::CheckpointAhead {
            rows_done: resumed_from,
            rows: row,
        });
    }
    run.commit(row, true)?;
    progress(&show(&run.state, row));
    Ok(summary(
        &run.state,
        resumed_from,
        run.samples,
        started,
        false,
    ))
}

type FileReader = Reader<'static, BufReader<File>>;

/// The file's reader, where its fields are, and its row count if its blocks are whole.
fn open(path: &Path) -> Result<(FileReader, Layout, Option<u64>), BulkError> {
    let rows_total = count_rows(path)?;
    let file = File::open(path).map_err(|e| BulkError::io(path, e))?;
    let reader = Reader::new(BufReader::with_capacity(1 << 16, file))
        .map_err(|_| BulkError::NotAContainer)?;
    let layout = Layout::of(reader.writer_schema())?;
    Ok((reader, layout, rows_total))
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
}

impl<C: Checkpoint, W: Write> Run<'_, '_, C, W> {
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

/// The report file. `flush` reaches the disk (fsync): the checkpoint committed after it
/// must never claim bytes a power cut could lose.
#[derive(Debug)]
pub struct ReportFile {
    file: BufWriter<File>,
}

impl ReportFile {
    /// Opens `path` to continue an import whose checkpoint recorded `report_bytes`: lines
    /// past that length (written after the last commit) are cut off. A file shorter than
    /// recorded was moved or truncated by someone else: refused.
    pub fn resume(path: &Path, report_bytes: u64) -> Result<ReportFile, BulkError> {
        let io = |e| BulkError::io(path, e);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io)?;
        let found = file.metadata().map_err(io)?.len();
        if found < report_bytes {
            return Err(BulkError::ReportShorter {
                expected: report_bytes,
                found,
            });
        }
        file.set_len(report_bytes).map_err(io)?;
        file.seek(SeekFrom::Start(report_bytes)).map_err(io)?;
        Ok(ReportFile {
            file: BufWriter::with_capacity(1 << 16, file),
        })
    }
}

impl Write for ReportFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_data()
    }
}
