//! `cargo bench -p himaya-job-household-match --bench bulk_import`
//!
//! One million household members (`HIMAYA_BENCH_ROWS` to change it) written to a temporary
//! container file, then in the same run: (a) the raw Avro decode, every row as a `Value`
//! and again into the row struct with `from_value`; (b) the whole import against an index
//! of 20,000 open-case children, 1,000 of them planted in the file, with an in-memory
//! checkpoint and the report on disk. Each phase's peak memory is VmHWM after resetting
//! it (`5` into /proc/self/clear_refs).

use std::fs;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Instant;

use apache_avro::Reader;
use chrono::{Datelike, NaiveDate, Utc};
use himaya_job_household_match::{
    count_rows, generate, import, synthetic_children, ChildKey, HouseholdMemberRow, MatchIndex,
    MemoryCheckpoint, PlantedChild, ReportFile,
};

const OPEN_CASES: usize = 20_000;
const PLANTED: usize = 1_000;

struct Phase {
    name: &'static str,
    rows: u64,
    secs: f64,
    rss_before_kib: Option<u64>,
    peak_kib: Option<u64>,
}

fn main() {
    let rows: u64 = std::env::var("HIMAYA_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("himaya-bulk-bench-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("a temporary folder");
    let result = run(&dir, rows);
    let _ = fs::remove_dir_all(&dir);
    if let Err(e) = result {
        eprintln!("benchmark failed: {e}");
        std::process::exit(1);
    }
}

fn run(dir: &Path, rows: u64) -> anyhow_free::Result<()> {
    let today = Utc::now().date_naive();
    let file = dir.join("households.avro");
    let (planted, planted_keys) = plant(rows, today);
    let mut phases = Vec::new();
    let mut reset_ok = true;

    phases.push(measure(
        "generate: write container (deflate)",
        &mut reset_ok,
        || {
            generate(&file, rows, 2026, &planted)?;
            Ok(rows)
        },
    )?);
    let size = fs::metadata(&file)?.len();
    assert_eq!(count_rows(&file)?, Some(rows));

    phases.push(measure("decode: Reader -> Value", &mut reset_ok, || {
        let reader = Reader::new(BufReader::new(fs::File::open(&file)?))?;
        let mut n = 0u64;
        for v in reader {
            std::hint::black_box(v?);
            n += 1;
        }
        Ok(n)
    })?);
    phases.push(measure(
        "decode: Reader -> from_value<Row>",
        &mut reset_ok,
        || {
            let reader = Reader::new(BufReader::new(fs::File::open(&file)?))?;
            let mut n = 0u64;
            for v in reader {
                let row: HouseholdMemberRow = apache_avro::from_value(&v?)?;
                std::hint::black_box(row);
                n += 1;
            }
            Ok(n)
        },
    )?);

    let mut index = None;
    phases.push(measure("index: open-case children", &mut reset_ok, || {
        let mut children = synthetic_children(OPEN_CASES - PLANTED, 7, today);
        children.extend(planted_keys.iter().cloned());
        index = Some(MatchIndex::build(children, today));
        Ok(OPEN_CASES as u64)
    })?);
    let index = index.ok_or("no index")?;

    let report_path = dir.join("matches.jsonl");
    let mut outcome = None;
    phases.push(measure(
        "import: decode+match+report+ckpt",
        &mut reset_ok,
        || {
            let report = ReportFile::resume(&report_path, 0)?;
            let mut cp = MemoryCheckpoint::default();
            let r = import(&file, &index, &mut cp, |_| {}, report)?;
            let n = r.rows;
            outcome = Some((r, cp.commits));
            Ok(n)
        },
    )?);
    let (report, commits) = outcome.ok_or("no import")?;
    // Found = a match line naming the planted case at the planted row.
    let expected: std::collections::HashMap<u64, &str> = planted
        .iter()
        .zip(&planted_keys)
        .map(|(p, k)| (p.row, k.case_id.as_str()))
        .collect();
    let mut planted_found = 0;
    for line in fs::read_to_string(&report_path)?.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let row = v["row"].as_u64().unwrap_or(0);
        if expected.get(&row).is_some_and(|c| v["case_id"] == *c) {
            planted_found += 1;
        }
    }
    println!();
    println!(
        "bulk import benchmark: {rows} rows, file {:.1} MiB (deflate blocks), {} cores",
        size as f64 / (1024.0 * 1024.0),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<38} {:>9} {:>8} {:>11} {:>11} {:>11}",
        "phase", "rows", "seconds", "rows/s", "RSS before", "peak RSS"
    );
    for p in &phases {
        println!(
            "{:<38} {:>9} {:>8.2} {:>11.0} {:>11} {:>11}",
            p.name,
            p.rows,
            p.secs,
            p.rows as f64 / p.secs,
            mib(p.rss_before_kib),
            mib(p.peak_kib)
        );
    }
    println!(
        "matches: {} (national id {}, name+birth+governorate {}); planted found at their rows {planted_found}/{}; bad rows {}; {commits} checkpoint commits; report {} bytes",
        report.matches(),
        report.matches_national_id,
        report.matches_name,
        planted.len(),
        report.bad_rows,
        report.report_bytes
    );
    println!(
        "peak RSS = VmHWM after writing 5 to /proc/self/clear_refs before each phase{}",
        if reset_ok {
            " (reset worked)"
        } else {
            " — RESET FAILED: peaks are since process start"
        }
    );
    Ok(())
}

/// 1,000 children of open cases planted evenly through the file; half carry a national
/// number in both places, half are found by name, birth and governorate only.
fn plant(rows: u64, today: NaiveDate) -> (Vec<PlantedChild>, Vec<ChildKey>) {
    let step = (rows / PLANTED as u64).max(1);
    synthetic_children(PLANTED, 99, today)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| (*i as u64) * step < rows)
        .map(|(i, mut child)| {
            child.case_id = format!("case_planted_{i:04}");
            if i % 2 == 0 {
                child.national_id = Some(format!("3{:013}", 5_000_000 + i));
            }
            let born = child.birth_date.unwrap_or_else(|| {
                let age = i32::from(child.estimated_age_years.unwrap_or(10));
                NaiveDate::from_ymd_opt(today.year() - age, 6, 15).unwrap_or(today)
            });
            let planted = PlantedChild {
                row: 1 + i as u64 * step + (i as u64 * 37) % step,
                national_id: child.national_id.clone(),
                name_ar: format!("{} المصري", child.name_ar),
                name_latin: None,
                sex: child.sex,
                birth_date: Some(born),
                governorate: child.governorate.clone(),
            };
            (planted, child)
        })
        .unzip()
}

fn measure(
    name: &'static str,
    reset_ok: &mut bool,
    f: impl FnOnce() -> anyhow_free::Result<u64>,
) -> anyhow_free::Result<Phase> {
    let rss_before_kib = status_kib("VmRSS:");
    *reset_ok &= fs::write("/proc/self/clear_refs", "5").is_ok();
    eprint!("{name} ...");
    let start = Instant::now();
    let rows = f()?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!(" {secs:.2}s");
    Ok(Phase {
        name,
        rows,
        secs,
        rss_before_kib,
        peak_kib: status_kib("VmHWM:"),
    })
}

fn status_kib(key: &str) -> Option<u64> {
    let status = fs::read_to_string(PathBuf::from("/proc/self/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

/// Errors of any kind, printed at the end (the bench needs no anyhow).
mod anyhow_free {
    pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;
}
