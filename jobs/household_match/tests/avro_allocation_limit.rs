//! apache-avro's allocation limit is process-wide and only its first setting counts, so
//! this test has a process of its own: once a file is imported, the limit in force is the
//! import's, not the 512 MiB default that let one declared length take 512 MiB.

use himaya_job_household_match::{
    generate, import, limits::AVRO_MAX_ALLOCATION_BYTES, MatchIndex, MemoryCheckpoint,
};

#[test]
fn an_import_sets_apache_avros_allocation_limit() {
    let dir = std::env::temp_dir().join(format!("himaya-avro-limit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("households.avro");
    generate(&file, 50, 1, &[]).unwrap();
    let index = MatchIndex::build([], chrono::Utc::now().date_naive());
    let mut checkpoint = MemoryCheckpoint::default();
    let r = import(&file, &index, &mut checkpoint, |_| {}, Vec::new());
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(r.unwrap().rows, 50);
    // A later call changes nothing and says what is in force.
    assert_eq!(
        apache_avro::util::max_allocation_bytes(usize::MAX),
        AVRO_MAX_ALLOCATION_BYTES
    );
    assert_eq!(AVRO_MAX_ALLOCATION_BYTES, 4 << 20);
}
