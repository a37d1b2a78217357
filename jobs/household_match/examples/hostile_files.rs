//! `cargo run -p himaya-job-household-match --example hostile_files`
//!
//! Peak memory of importing each crafted file of issue 11 (part C) and a normal generated
//! file (`HIMAYA_ROWS` rows, 200,000 by default). Each import runs in a child process of
//! its own, so an abort ends only that child and each peak (VmHWM) is that import's alone.

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use chrono::Utc;
use himaya_job_household_match::{generate, import, MatchIndex, MemoryCheckpoint, ReportFile};

#[path = "../src/crafted.rs"]
mod crafted;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const CASES: [&str; 8] = [
    "normal",
    "a 4 MiB block (the limit)",
    "header map of 2^28 entries",
    "array of 2^29-1 nulls",
    "block declaring 512 MiB",
    "deflate bomb to 1 GiB",
    "array of 2^24-1 nulls",
    "row nested 1M deep",
];

fn build(case: &str, path: &Path) -> Result<()> {
    let bytes = match case {
        "normal" => {
            let rows = std::env::var("HIMAYA_ROWS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(200_000);
            generate(path, rows, 1, &[])?;
            return Ok(());
        }
        "a 4 MiB block (the limit)" => largest_block()?,
        "header map of 2^28 entries" => crafted::header_map_entries(),
        "array of 2^29-1 nulls" => crafted::null_array((1 << 29) - 1),
        "block declaring 512 MiB" => crafted::declared_block(512 << 20),
        "deflate bomb to 1 GiB" => crafted::deflate_bomb(1 << 30),
        "array of 2^24-1 nulls" => crafted::null_array((1 << 24) - 1),
        "row nested 1M deep" => crafted::deep_nesting(1 << 20),
        _ => return Err("unknown case".into()),
    };
    fs::write(path, bytes)?;
    Ok(())
}

/// A good file whose one deflate block inflates to just under the block limit: the most
/// an accepted file can make the import hold.
fn largest_block() -> Result<Vec<u8>> {
    let limit = himaya_job_household_match::limits::MAX_BLOCK_BYTES as usize;
    let (mut rows, mut n) = (Vec::new(), 0);
    let mut one = Vec::new();
    crafted::required_fields(&mut one);
    while rows.len() + one.len() <= limit {
        rows.extend_from_slice(&one);
        n += 1;
    }
    apache_avro::Codec::Deflate(apache_avro::DeflateSettings::default()).compress(&mut rows)?;
    let mut file = crafted::header(&crafted::schema(None), "deflate");
    crafted::block(&mut file, n, &rows);
    Ok(file)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("--one") => child(args.get(2).map(PathBuf::from)),
        _ => parent(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hostile_files: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parent() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("himaya-hostile-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    let me = std::env::current_exe()?;
    println!("{:<28} {:>12} {:>11}  outcome", "file", "size", "peak RSS");
    for (i, case) in CASES.iter().enumerate() {
        let file = dir.join(format!("case{i}.avro"));
        build(case, &file)?;
        let size = fs::metadata(&file)?.len();
        let out = Command::new(&me).arg("--one").arg(&file).output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let (peak, outcome) = stdout.trim().split_once('\t').unwrap_or(("n/a", ""));
        let outcome = if out.status.success() {
            outcome.to_owned()
        } else {
            // The allocator's or the stack guard's last words, not the backtrace's.
            let stderr = String::from_utf8_lossy(&out.stderr);
            let why = stderr
                .lines()
                .find(|l| l.contains("memory allocation") || l.contains("overflow"))
                .unwrap_or_else(|| stderr.lines().last().unwrap_or(""));
            format!("child died ({}): {why}", out.status)
        };
        println!("{case:<28} {size:>12} {peak:>11}  {outcome}");
        fs::remove_file(&file)?;
    }
    fs::remove_dir_all(&dir)?;
    Ok(())
}

/// Imports one file (no open cases, checkpoint in memory, report on disk) and prints its
/// peak RSS and outcome, tab-separated.
fn child(file: Option<PathBuf>) -> Result<()> {
    let file = file.ok_or("--one needs a file")?;
    let report_path = file.with_extension("jsonl");
    let index = MatchIndex::build([], Utc::now().date_naive());
    let report = ReportFile::resume(&report_path, 0)?;
    let mut checkpoint = MemoryCheckpoint::default();
    let outcome = match import(&file, &index, &mut checkpoint, |_| {}, report) {
        Ok(r) => format!("imported: {} rows, {} bad", r.rows, r.bad_rows),
        Err(e) => {
            let mut text = format!("error: {e}");
            let mut source = e.source();
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        }
    };
    let _ = fs::remove_file(&report_path);
    println!("{}\t{outcome}", peak_rss()?);
    Ok(())
}

fn peak_rss() -> Result<String> {
    let status = fs::read_to_string("/proc/self/status")?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .ok_or("no VmHWM")?
        .parse()?;
    Ok(format!("{:.1} MiB", kib as f64 / 1024.0))
}
