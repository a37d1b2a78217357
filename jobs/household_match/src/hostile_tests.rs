//! Issue 11, part C: tiny crafted files that declare something huge. Each used to abort
//! the process or make it allocate what the file declared; each must now be refused with
//! an error naming the limit and the block, leaving the import finished and failed.

use std::error::Error as _;
use std::fs;
use std::path::Path;

use apache_avro::types::Value;
use chrono::Utc;

use super::crafted;
use super::datum::VALUE;
use super::limits::*;
use super::tests::Scratch;
use super::*;

fn index() -> MatchIndex {
    MatchIndex::build([], Utc::now().date_naive())
}

/// A well-formed file of `rows` rows without an extra field.
fn plain(rows: u32) -> Vec<u8> {
    let mut file = crafted::header(&crafted::schema(None), "null");
    let mut data = Vec::new();
    for _ in 0..rows {
        crafted::required_fields(&mut data);
    }
    crafted::block(&mut file, i64::from(rows), &data);
    file
}

/// Writes `bytes` and imports them with a checkpoint in memory.
fn import_bytes(
    dir: &Scratch,
    bytes: &[u8],
) -> (Result<ImportReport, BulkError>, MemoryCheckpoint, Vec<u8>) {
    let file = dir.path("crafted.avro");
    fs::write(&file, bytes).unwrap();
    let (mut cp, mut out) = (MemoryCheckpoint::default(), Vec::new());
    let r = import(&file, &index(), &mut cp, |_| {}, &mut out);
    (r, cp, out)
}

/// The refusal, with the checkpoint finished and failed under its code and no row done.
fn refused(dir: &Scratch, bytes: &[u8]) -> Refusal {
    let (r, cp, out) = import_bytes(dir, bytes);
    let why = match r {
        Err(BulkError::Refused(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert!(cp.state.finished);
    assert_eq!(cp.state.failed.as_deref(), Some(why.code()));
    assert_eq!((cp.state.rows_done, out.len()), (0, 0));
    why
}

#[test]
fn a_header_map_declaring_2_28_entries_is_refused_before_any_allocation() {
    let dir = Scratch::new("hdr-map");
    let bytes = crafted::header_map_entries();
    assert_eq!(bytes.len(), 857);
    let why = refused(&dir, &bytes);
    assert_eq!(
        why,
        Refusal::HeaderEntries {
            declared: 1 << 28,
            max: MAX_HEADER_ENTRIES
        }
    );
    assert_eq!(
        why.to_string(),
        "the header's metadata declares 268435456 entries; the limit is 64"
    );
}

#[test]
fn header_lengths_are_held_to_the_limit_and_to_the_file() {
    let dir = Scratch::new("hdr-len");
    let mut over = b"Obj\x01".to_vec();
    crafted::long(&mut over, 1);
    crafted::long(&mut over, 1 << 40); // a key of a terabyte
    over.resize(200, 0);
    assert_eq!(
        refused(&dir, &over),
        Refusal::HeaderBytes {
            max: MAX_HEADER_BYTES
        }
    );
    // Within the limit but past the end of the file: not a container.
    let mut past = b"Obj\x01".to_vec();
    crafted::long(&mut past, 1);
    crafted::long(&mut past, 10_000);
    past.resize(200, 0);
    let (r, cp, _) = import_bytes(&dir, &past);
    assert!(matches!(r, Err(BulkError::NotAContainer)), "{r:?}");
    assert_eq!(cp.state.failed.as_deref(), Some("not_a_container"));
    let snappy = crafted::header(&crafted::schema(None), "snappy");
    assert_eq!(refused(&dir, &snappy), Refusal::Codec);
}

#[test]
fn an_extra_array_declaring_2_29_items_is_refused_at_its_row() {
    let dir = Scratch::new("array");
    let bytes = crafted::null_array((1 << 29) - 1);
    assert!(bytes.len() < 1024);
    let why = refused(&dir, &bytes);
    assert_eq!(
        why,
        Refusal::RowSize {
            block: 1,
            row: 1,
            max: MAX_ROW_DECODED_BYTES
        }
    );
    assert!(why
        .to_string()
        .starts_with("row 1 (block 1) would take more than"));
    // A million nulls (56 MiB decoded, from five bytes) is refused just the same; a few
    // thousand are an ordinary row.
    assert_eq!(refused(&dir, &crafted::null_array(1 << 20)), why);
    let (r, _, _) = import_bytes(&dir, &crafted::null_array(1_000));
    assert_eq!(r.unwrap().rows, 1);
}

#[test]
fn a_block_declaring_512_mib_is_refused_before_any_row_is_read() {
    let dir = Scratch::new("block");
    let bytes = crafted::declared_block(512 << 20);
    let why = refused(&dir, &bytes);
    assert_eq!(
        why,
        Refusal::BlockBytes {
            block: 1,
            declared: 512 << 20,
            max: MAX_BLOCK_BYTES
        }
    );
    assert_eq!(
        why.to_string(),
        "block 1 declares 536870912 bytes; the limit is 4194304"
    );
    // A block declaring more rows than it could hold bytes.
    let mut rows = crafted::header(&crafted::schema(None), "null");
    crafted::block(&mut rows, 1 << 40, b"x");
    assert!(matches!(
        refused(&dir, &rows),
        Refusal::BlockRows { block: 1, .. }
    ));
}

#[test]
fn a_deflate_bomb_is_refused_at_its_block_with_the_rows_before_it_done() {
    let dir = Scratch::new("bomb");
    // 64 MiB of zeros in 64 KiB: over the block limit sixteen times.
    let bomb = crafted::deflate_bomb(64 << 20);
    assert!(bomb.len() < 70 * 1024, "{}", bomb.len());
    assert_eq!(
        refused(&dir, &bomb),
        Refusal::Inflated {
            block: 1,
            max: MAX_BLOCK_BYTES
        }
    );
    // Behind a good block of three rows: those are done, the bomb's block is named.
    let mut file = crafted::header(&crafted::schema(None), "deflate");
    let mut rows = Vec::new();
    for _ in 0..3 {
        crafted::required_fields(&mut rows);
    }
    crafted::block(
        &mut file,
        3,
        &miniz_oxide::deflate::compress_to_vec(&rows, 6),
    );
    crafted::block(&mut file, 1, &crafted::deflated_zeros(64 << 20));
    let (r, cp, out) = import_bytes(&dir, &file);
    match r {
        Err(e @ BulkError::Refused(Refusal::Inflated { block: 2, .. })) => {
            let source = e.source().map(|s| s.to_string()).unwrap_or_default();
            assert_eq!(
                source,
                "block 2 inflates to more than the limit of 4194304 bytes"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(cp.state.rows_done, 3);
    assert_eq!(cp.state.failed.as_deref(), Some("block_inflated"));
    assert!(out.is_empty(), "no open cases: nothing matched, no bad row");
}

#[test]
fn rows_of_no_bytes_are_corrupt_however_many_a_block_declares() {
    // The five required fields typed null: a row takes no bytes, and an empty block
    // could declare millions of them, each a bad row in the report.
    let schema = crafted::schema(None).replace(r#""type":"string""#, r#""type":"null""#);
    let mut file = crafted::header(&schema, "null");
    crafted::block(&mut file, 1_000_000, &[]);
    let dir = Scratch::new("no-bytes");
    let (r, cp, out) = import_bytes(&dir, &file);
    assert!(matches!(r, Err(BulkError::Corrupt { .. })), "{r:?}");
    assert_eq!(cp.state.failed.as_deref(), Some("corrupt"));
    assert_eq!((cp.state.rows_done, out.len()), (0, 0));
}

#[test]
fn the_crafted_bomb_is_real_deflate() {
    for n in [0, 1, 257, 258, 259, 100_000] {
        let zeros = crafted::deflated_zeros(n);
        let out = miniz_oxide::inflate::decompress_to_vec(&zeros).unwrap();
        assert_eq!(out.len(), n);
        assert!(out.iter().all(|b| *b == 0));
    }
}

#[test]
fn a_row_nested_past_the_limit_is_refused_instead_of_overflowing_the_stack() {
    let dir = Scratch::new("deep");
    let why = refused(&dir, &crafted::deep_nesting(1 << 20));
    assert_eq!(
        why,
        Refusal::RowDepth {
            block: 1,
            row: 1,
            max: MAX_ROW_DEPTH
        }
    );
    // Nine links (three levels each: union, reference, record) are fine.
    let (r, _, _) = import_bytes(&dir, &crafted::deep_nesting(9));
    assert_eq!(r.unwrap().rows, 1);
}

#[test]
fn empty_and_non_avro_files_leave_a_failed_import_that_a_rerun_reports() {
    let dir = Scratch::new("empty");
    for bytes in [&b""[..], b"not avro at all", b"Obj\x01"] {
        let (r, cp, _) = import_bytes(&dir, bytes);
        assert!(matches!(r, Err(BulkError::NotAContainer)), "{r:?}");
        assert!(cp.state.finished);
        assert_eq!(cp.state.failed.as_deref(), Some("not_a_container"));
        let mut cp = cp;
        let again = import(
            &dir.path("crafted.avro"),
            &index(),
            &mut cp,
            |_| {},
            Vec::new(),
        );
        assert!(
            matches!(&again, Err(BulkError::Failed { reason }) if reason == "not_a_container"),
            "{again:?}"
        );
    }
}

#[test]
fn a_correct_file_imports_after_refused_ones() {
    let dir = Scratch::new("after");
    for bytes in [
        crafted::header_map_entries(),
        crafted::declared_block(512 << 20),
        crafted::deflate_bomb(8 << 20),
    ] {
        assert!(matches!(
            import_bytes(&dir, &bytes).0,
            Err(BulkError::Refused(_))
        ));
    }
    let (r, cp, _) = import_bytes(&dir, &plain(25));
    let r = r.unwrap();
    assert_eq!((r.rows, r.bad_rows), (25, 0));
    assert!(cp.state.finished && cp.state.failed.is_none());
    let file = dir.path("generated.avro");
    generate(&file, 3_000, 4, &[]).unwrap();
    assert_eq!(count_rows(&file).unwrap(), Some(3_000));
    let r = import(
        &file,
        &index(),
        &mut MemoryCheckpoint::default(),
        |_| {},
        Vec::new(),
    );
    assert_eq!(r.unwrap().rows, 3_000);
}

#[test]
fn refused_files_have_no_row_count() {
    let dir = Scratch::new("count");
    for bytes in [
        crafted::header_map_entries(),
        crafted::declared_block(512 << 20),
    ] {
        let file = dir.path("c.avro");
        fs::write(&file, bytes).unwrap();
        assert_eq!(count_rows(&file).unwrap(), None);
    }
}

#[test]
fn the_decoded_size_estimate_covers_a_value() {
    assert!(std::mem::size_of::<Value>() as u64 <= VALUE);
    assert!(AVRO_MAX_ALLOCATION_BYTES as u64 >= MAX_BLOCK_BYTES);
}

/// Imports `bytes` against a PostgreSQL checkpoint; the import's error.
async fn import_pg(pool: &sqlx::PgPool, file: &Path, bytes: &[u8]) -> (BulkError, String) {
    fs::write(file, bytes).unwrap();
    let sha = file_sha256(file).unwrap();
    let mut cp = PgCheckpoint::acquire(pool, &sha, KIND_HOUSEHOLD_MEMBERS)
        .await
        .unwrap();
    let path = file.to_owned();
    let (r, cp) = tokio::task::spawn_blocking(move || {
        let r = import(&path, &index(), &mut cp, |_| {}, Vec::new());
        (r, cp)
    })
    .await
    .unwrap();
    cp.close().await.unwrap();
    (r.unwrap_err(), sha)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_files_leave_finished_failed_rows_in_postgres() {
    let db = super::tests::pg::TestDb::create().await;
    let pool = himaya_store::connect(&db.url, SCHEMA, 2).await.unwrap();
    MIGRATOR.run(&pool).await.unwrap();
    let dir = Scratch::new("pg-refused");
    let file = dir.path("f.avro");
    let cases: [(&[u8], &str); 3] = [
        (b"", "not_a_container"),
        (&crafted::header_map_entries(), "header_entries"),
        (&crafted::deflate_bomb(8 << 20), "block_inflated"),
    ];
    for (bytes, code) in cases {
        let (err, sha) = import_pg(&pool, &file, bytes).await;
        assert_eq!(err.failure_code(), Some(code));
        let (finished, reason): (bool, Option<String>) = sqlx::query_as(
            "SELECT finished_at IS NOT NULL, failed_reason FROM bulk_imports WHERE file_sha256 = $1",
        )
        .bind(&sha)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!((finished, reason.as_deref()), (true, Some(code)));
        // A re-run is told why; a restart clears the failure.
        let (again, _) = import_pg(&pool, &file, bytes).await;
        assert!(matches!(&again, BulkError::Failed { reason } if reason == code));
        let mut cp = PgCheckpoint::acquire(&pool, &sha, KIND_HOUSEHOLD_MEMBERS)
            .await
            .unwrap();
        cp.reset().await.unwrap();
        assert_eq!(cp.state().await.unwrap(), CheckpointState::default());
        cp.close().await.unwrap();
    }
    pool.close().await;
    db.drop_it().await;
}
