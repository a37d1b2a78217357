//! End to end over real files: generate, import, interrupt, resume; and the PostgreSQL
//! checkpoint and open-case reader against a database of the test's own.

use std::fs;
use std::path::{Path, PathBuf};

use apache_avro::types::Value;
use apache_avro::{Reader, Schema, Writer};
use chrono::{Datelike, NaiveDate, Utc};
use himaya_record::Sex;

use super::*;

/// A folder of the test's own, removed afterwards.
pub(super) struct Scratch(PathBuf);

impl Scratch {
    pub(super) fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "himaya-bulk-{tag}-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

/// `n` spelled in Arabic letters (digits would be dropped by name normalization).
fn tag(n: u64) -> String {
    const LETTERS: [char; 10] = ['ب', 'ت', 'ث', 'ج', 'ح', 'خ', 'د', 'ذ', 'ر', 'ز'];
    n.to_string()
        .bytes()
        .map(|d| LETTERS[usize::from(d - b'0')])
        .collect()
}

/// A child with a name the generator never uses, planted at `row`; and its case's key.
fn plant(row: u64, n: u64, by_id: bool, estimated: bool) -> (PlantedChild, ChildKey) {
    let born =
        NaiveDate::from_ymd_opt(today().year() - 9, 1 + (n % 12) as u32, 1 + (n % 28) as u32)
            .unwrap();
    let national_id = format!("3{:013}", 1_000_000 + n);
    let planted = PlantedChild {
        row,
        national_id: by_id.then(|| national_id.clone()),
        name_ar: format!("زمزم قمر{} سليم النوري", tag(n)),
        name_latin: None,
        sex: Sex::Female,
        birth_date: Some(born),
        governorate: "Aswan".into(),
    };
    let key = ChildKey {
        case_id: format!("case_{n:04}"),
        national_id: by_id.then_some(national_id),
        name_ar: format!("زَمزم قمر{}", tag(n)),
        name_latin: None,
        birth_date: (!estimated).then_some(born),
        estimated_age_years: estimated.then_some(9),
        sex: Sex::Female,
        governorate: "أسوان".into(),
    };
    (planted, key)
}

fn planted_set(rows: &[u64]) -> (Vec<PlantedChild>, Vec<ChildKey>) {
    rows.iter()
        .enumerate()
        .map(|(n, &row)| plant(row, n as u64, n % 3 == 0, n % 3 == 2))
        .unzip()
}

fn report_lines(bytes: &[u8]) -> Vec<serde_json::Value> {
    std::str::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn fast() -> ImportOptions {
    ImportOptions {
        commit_every: 300,
        progress_every: 100,
        bad_row_samples: 20,
    }
}

#[test]
fn planted_children_are_found_at_their_rows_and_nowhere_else() {
    let dir = Scratch::new("planted");
    let file = dir.path("households.avro");
    let (planted, mut keys) = planted_set(&[17, 250, 999, 1000]);
    keys.push(plant(0, 99, true, false).1); // an open case not in the file
    generate(&file, 2_000, 7, &planted).unwrap();
    assert_eq!(count_rows(&file).unwrap(), Some(2_000));

    let index = MatchIndex::build(keys, today());
    let (mut cp, mut out, mut seen) = (MemoryCheckpoint::default(), Vec::new(), Vec::new());
    let r = import_with(
        &fast(),
        &file,
        &index,
        &mut cp,
        |p| seen.push(p.rows_done),
        &mut out,
    )
    .unwrap();

    assert_eq!((r.rows, r.bad_rows, r.matches()), (2_000, 0, 4));
    assert_eq!((r.matches_national_id, r.matches_name), (2, 2));
    let lines = report_lines(&out);
    let got: Vec<_> = lines
        .iter()
        .map(|l| {
            (
                l["row"].as_u64().unwrap(),
                l["case_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: Vec<_> = [
        (17, "case_0000"),
        (250, "case_0001"),
        (999, "case_0002"),
        (1000, "case_0003"),
    ]
    .map(|(r, c)| (r, c.to_owned()))
    .to_vec();
    assert_eq!(got, want);
    assert_eq!(lines[0]["basis"], "national_id");
    assert_eq!(lines[1]["basis"], "name_birth_governorate");
    assert!(lines[1]["household_id"]
        .as_str()
        .unwrap()
        .starts_with("TK-"));
    // The report names cases and programme ids, never the child.
    assert!(!String::from_utf8(out).unwrap().contains("زمزم"));
    assert_eq!(cp.state.rows_done, 2_000);
    assert!(cp.state.finished);
    assert_eq!(seen.last(), Some(&2_000));
    assert!(seen.windows(2).all(|w| w[0] <= w[1]));
}

/// A programme's file with a looser schema than ours: wrong types and nulls get through
/// the writer, and must come out as counted bad rows.
fn loose_file(path: &Path) {
    let schema = Schema::parse_str(
        r#"{"type":"record","name":"M","namespace":"programme","fields":[
            {"name":"household_id","type":["null","string","long"]},
            {"name":"member_id","type":"string"},
            {"name":"name_ar","type":["null","string","long"]},
            {"name":"sex","type":"string"},
            {"name":"birth_date","type":["null","string","boolean"]},
            {"name":"governorate","type":["null","string"]},
            {"name":"extra","type":"string"}]}"#,
    )
    .unwrap();
    let mut w = Writer::new(&schema, fs::File::create(path).unwrap()).unwrap();
    for row in 1..=10u64 {
        let u = |i, v| Value::Union(i, Box::new(v));
        let s = |t: &str| Value::String(t.to_owned());
        let mut name = u(1, s("منى حسن"));
        let mut gov = u(1, s("قنا"));
        let mut birth = u(1, s("2016-05-04"));
        let mut sex = s("F");
        match row {
            2 => name = u(2, Value::Long(5)),
            5 => gov = u(0, Value::Null),
            8 => {
                birth = u(2, Value::Boolean(true));
                sex = s("x");
            }
            _ => {}
        }
        let fields = vec![
            ("household_id", u(2, Value::Long(row as i64))),
            ("member_id", s(&format!("m{row}"))),
            ("name_ar", name),
            ("sex", sex),
            ("birth_date", birth),
            ("governorate", gov),
            ("extra", s("ignored")),
        ];
        let rec = Value::Record(fields.into_iter().map(|(k, v)| (k.into(), v)).collect());
        w.append_value(rec).unwrap();
    }
    w.flush().unwrap();
}

#[test]
fn bad_rows_are_counted_by_row_and_field_and_the_rest_imported() {
    let dir = Scratch::new("bad");
    let file = dir.path("loose.avro");
    loose_file(&file);
    let child = ChildKey {
        case_id: "case_qena".into(),
        national_id: None,
        name_ar: "منى حسن".into(),
        name_latin: None,
        birth_date: NaiveDate::from_ymd_opt(2016, 5, 4),
        estimated_age_years: None,
        sex: Sex::Female,
        governorate: "قنا".into(),
    };
    let index = MatchIndex::build([child], today());
    let (mut cp, mut out) = (MemoryCheckpoint::default(), Vec::new());
    let r = import(&file, &index, &mut cp, |_| {}, &mut out).unwrap();
    assert_eq!((r.rows, r.bad_rows, r.matches_name), (10, 3, 7));
    let bad: Vec<_> = r
        .bad_row_samples
        .iter()
        .map(|b| {
            (
                b.row,
                b.fields
                    .iter()
                    .map(|f| (f.field, f.problem))
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    assert_eq!(
        bad,
        vec![
            (2, vec![("name_ar", Problem::WrongType)]),
            (5, vec![("governorate", Problem::Missing)]),
            (
                8,
                vec![
                    ("birth_date", Problem::WrongType),
                    ("sex", Problem::UnknownValue)
                ]
            ),
        ]
    );
    let lines = report_lines(&out);
    let bad_lines: Vec<_> = lines.iter().filter(|l| l["kind"] == "bad_row").collect();
    assert_eq!(bad_lines.len(), 3);
    assert_eq!(bad_lines[2]["fields"][0]["field"], "birth_date");
    assert!(!String::from_utf8(out).unwrap().contains("منى"));
}

#[test]
fn an_interrupted_import_resumes_to_the_same_report_and_counts() {
    let dir = Scratch::new("resume");
    let file = dir.path("households.avro");
    let rows: Vec<u64> = (0..20).map(|i| 37 + i * 241).collect();
    let (planted, keys) = planted_set(&rows);
    generate(&file, 5_000, 11, &planted).unwrap();
    let index = MatchIndex::build(keys, today());

    let mut whole = Vec::new();
    let full = import_with(
        &fast(),
        &file,
        &index,
        &mut MemoryCheckpoint::default(),
        |_| {},
        &mut whole,
    )
    .unwrap();
    assert_eq!(full.matches(), 20);

    // Dies at the commit of row 2,100: rows 1,801..2,100 were reported, never committed.
    let report = dir.path("matches.jsonl");
    let mut cp = MemoryCheckpoint {
        fail_from_row: Some(2_000),
        ..Default::default()
    };
    let out = ReportFile::resume(&report, 0).unwrap();
    let err = import_with(&fast(), &file, &index, &mut cp, |_| {}, out).unwrap_err();
    assert!(
        matches!(err, BulkError::Interrupted { rows_done: 1_800 }),
        "{err}"
    );
    assert!(err.is_retryable());
    assert_eq!(cp.state.rows_done, 1_800);
    assert!(fs::metadata(&report).unwrap().len() > cp.state.report_bytes);

    cp.fail_from_row = None;
    let out = ReportFile::resume(&report, cp.state.report_bytes).unwrap();
    let resumed = import_with(&fast(), &file, &index, &mut cp, |_| {}, out).unwrap();
    assert_eq!(resumed.resumed_from, 1_800);
    assert_eq!(fs::read(&report).unwrap(), whole);
    assert_eq!(
        (
            resumed.rows,
            resumed.matches_national_id,
            resumed.matches_name,
            resumed.bad_rows
        ),
        (
            full.rows,
            full.matches_national_id,
            full.matches_name,
            full.bad_rows
        )
    );
    assert_eq!(resumed.report_bytes, whole.len() as u64);

    // Once finished, a re-run reads nothing and adds nothing.
    let out = ReportFile::resume(&report, cp.state.report_bytes).unwrap();
    let again = import(&file, &index, &mut cp, |_| {}, out).unwrap();
    assert!(again.already_complete);
    assert_eq!((again.matches(), fs::read(&report).unwrap()), (20, whole));

    // A report cut by someone else cannot silently lose lines.
    fs::write(&report, b"").unwrap();
    assert!(matches!(
        ReportFile::resume(&report, cp.state.report_bytes),
        Err(BulkError::ReportShorter { .. })
    ));
}

#[test]
fn a_truncated_file_stops_at_the_broken_row_with_earlier_rows_committed() {
    let dir = Scratch::new("cut");
    let file = dir.path("households.avro");
    generate(&file, 3_000, 3, &[]).unwrap();
    let bytes = fs::read(&file).unwrap();
    fs::write(&file, &bytes[..bytes.len() * 3 / 5]).unwrap();
    assert_eq!(count_rows(&file).unwrap(), None);
    let index = MatchIndex::build([], today());
    let (mut cp, mut out) = (MemoryCheckpoint::default(), Vec::new());
    match import_with(&fast(), &file, &index, &mut cp, |_| {}, &mut out) {
        Err(BulkError::Corrupt { row }) => {
            assert!(row > 1 && row < 3_000, "{row}");
            assert_eq!(cp.state.rows_done, row - 1);
            // The same bytes would break at the same row: failed, not left to resume.
            assert!(cp.state.finished);
            assert_eq!(cp.state.failed.as_deref(), Some("corrupt"));
        }
        other => panic!("{other:?}"),
    }
    fs::write(&file, b"not avro at all").unwrap();
    let err = import(
        &file,
        &index,
        &mut MemoryCheckpoint::default(),
        |_| {},
        Vec::new(),
    );
    assert!(matches!(err, Err(BulkError::NotAContainer)));
}

#[test]
fn generated_rows_read_as_serde_structs_and_plants_are_checked() {
    let dir = Scratch::new("serde");
    let file = dir.path("households.avro");
    generate(&file, 500, 5, &[]).unwrap();
    let reader = Reader::new(fs::File::open(&file).unwrap()).unwrap();
    let mut kinds = [0; 3];
    for v in reader {
        let row: HouseholdMemberRow = apache_avro::from_value(&v.unwrap()).unwrap();
        assert!(["female", "male"].contains(&row.sex.as_str()));
        match row.birth_date {
            Some(BirthDateWire::Text(_)) => kinds[0] += 1,
            Some(BirthDateWire::Days(_)) => kinds[1] += 1,
            None => kinds[2] += 1,
        }
    }
    assert!(kinds.iter().all(|k| *k > 0), "{kinds:?}");
    let (p, _) = plant(501, 0, false, false);
    assert!(matches!(
        generate(&file, 500, 5, &[p]),
        Err(BulkError::Plant { row: 501, .. })
    ));
    let a = dir.path("a.avro");
    generate(&a, 100, 9, &[]).unwrap();
    assert_eq!(file_sha256(&a).unwrap().len(), 64);
}

pub(super) mod pg {
    use sqlx::{Connection, PgConnection};

    use super::*;

    fn admin_url() -> String {
        std::env::var("HIMAYA_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into())
    }

    /// A database of the test's own, dropped at the end.
    pub(crate) struct TestDb {
        name: String,
        pub(crate) url: String,
    }

    impl TestDb {
        pub(crate) async fn create() -> TestDb {
            let name = format!("himaya_cash_test_{:x}", rand::random::<u64>());
            let mut admin = PgConnection::connect(&admin_url()).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut admin)
                .await
                .unwrap();
            let base = admin_url();
            let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
            TestDb { name, url }
        }

        pub(crate) async fn drop_it(self) {
            let mut admin = PgConnection::connect(&admin_url()).await.unwrap();
            sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin)
            .await
            .unwrap();
        }
    }

    /// The cases service's own migrations, as it runs them at start: the view the job
    /// reads is the one it publishes, not a copy.
    static CASES_MIGRATOR: sqlx::migrate::Migrator =
        sqlx::migrate!("../../services/cases/migrations");

    /// The cases service's schema migrated, and one open and one closed case.
    async fn seed_cases(url: &str) {
        let pool = himaya_store::connect(url, "cases", 2).await.unwrap();
        CASES_MIGRATOR.run(&pool).await.unwrap();
        let open = himaya_record::fixtures::record();
        let closed = himaya_record::fixtures::closed_record();
        for (r, status) in [(&open, "referred"), (&closed, "closed")] {
            let mut json = serde_json::to_value(r).unwrap();
            json["case_id"] = format!("{}_{status}", r.case_id).into();
            sqlx::query(
                "INSERT INTO cases (case_id, version, status, risk_level, priority, governorate,
                                    record, created_at, updated_at)
                 VALUES ($1, 1, $2, 'medium', 'routine', 'cairo', $3, now(), now())",
            )
            .bind(json["case_id"].as_str().unwrap())
            .bind(status)
            .bind(&json)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
    }

    /// The job's pool, as `connect` makes it: its own schema, migrated.
    async fn job_pool(url: &str) -> sqlx::PgPool {
        let pool = himaya_store::connect(url, SCHEMA, 2).await.unwrap();
        MIGRATOR.run(&pool).await.unwrap();
        pool
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_cases_feed_the_index_and_the_checkpoint_lives_in_postgres() {
        let db = TestDb::create().await;
        seed_cases(&db.url).await;
        // Through the job's own pool: the view by its qualified name.
        let cases = job_pool(&db.url).await;
        let loaded = load_open_cases(&cases, today()).await.unwrap();
        assert_eq!((loaded.index.len(), loaded.skipped), (1, 0));

        // The fixture child (birth certificate with the national number) at row 40.
        let child = himaya_record::fixtures::details().child;
        let planted = PlantedChild {
            row: 40,
            national_id: Some(child.identity_documents[0].number.clone()),
            name_ar: child.name.as_given.clone(),
            name_latin: None,
            sex: child.sex,
            birth_date: child.date_of_birth,
            governorate: child.governorate.clone(),
        };
        let dir = Scratch::new("pg");
        let file = dir.path("households.avro");
        generate(&file, 120, 1, &[planted]).unwrap();
        let sha = file_sha256(&file).unwrap();

        let pool = himaya_store::connect(&db.url, SCHEMA, 2).await.unwrap();
        MIGRATOR.run(&pool).await.unwrap();
        let mut cp = PgCheckpoint::acquire(&pool, &sha, KIND_HOUSEHOLD_MEMBERS)
            .await
            .unwrap();
        assert!(matches!(
            PgCheckpoint::acquire(&pool, &sha, KIND_HOUSEHOLD_MEMBERS).await,
            Err(BulkError::Locked)
        ));
        assert_eq!(cp.state().await.unwrap(), CheckpointState::default());
        let index = loaded.index;
        let (report, mut cp) = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let opts = ImportOptions {
                commit_every: 50,
                ..Default::default()
            };
            let r = import_with(&opts, &file, &index, &mut cp, |_| {}, &mut out).unwrap();
            (r, cp)
        })
        .await
        .unwrap();
        assert_eq!((report.rows, report.matches_national_id), (120, 1));
        let saved = cp.state().await.unwrap();
        assert_eq!(
            (saved.rows_done, saved.matches(), saved.finished),
            (120, 1, true)
        );
        assert_eq!(saved.report_bytes, report.report_bytes);
        cp.close().await.unwrap();
        // The lock went with the connection; the state stayed.
        let mut again = PgCheckpoint::acquire(&pool, &sha, KIND_HOUSEHOLD_MEMBERS)
            .await
            .unwrap();
        assert_eq!(again.state().await.unwrap(), saved);
        again.reset().await.unwrap();
        assert_eq!(again.state().await.unwrap(), CheckpointState::default());
        again.close().await.unwrap();
        pool.close().await;
        cases.close().await;
        db.drop_it().await;
    }

    /// The view's columns, in the contract's order and types: a change is a new version.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_published_view_keeps_its_columns() {
        let db = TestDb::create().await;
        seed_cases(&db.url).await;
        let pool = job_pool(&db.url).await;
        let columns: Vec<(String, String)> = sqlx::query_as(
            "SELECT column_name::text, data_type::text FROM information_schema.columns
              WHERE table_schema = 'cases' AND table_name = 'open_children'
              ORDER BY ordinal_position",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "case_id",
                "name_ar",
                "name_latin",
                "date_of_birth",
                "estimated_age",
                "sex",
                "governorate",
                "national_id"
            ]
        );
        assert!(columns.iter().all(|(_, t)| t == "text"), "{columns:?}");
        let comment: Option<String> =
            sqlx::query_scalar("SELECT obj_description('cases.open_children'::regclass)")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert!(comment
            .unwrap()
            .starts_with("Published contract of the cases service"));
        pool.close().await;
        db.drop_it().await;
    }

    /// Before the cases service has migrated (no schema, or a version without the view),
    /// the job says what to do, and creates nothing of the cases service's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_the_view_the_job_says_to_start_the_cases_service() {
        let db = TestDb::create().await;
        let pool = job_pool(&db.url).await;
        let err = load_open_cases(&pool, today()).await.unwrap_err();
        assert!(matches!(err, BulkError::OpenCasesViewMissing), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("cases.open_children"), "{text}");
        assert!(text.contains("himaya serve cases"), "{text}");
        assert!(text.contains("خدمة الحالات"), "{text}");
        assert!(!err.is_retryable() && err.failure_code().is_none());
        let cases_schema: bool = sqlx::query_scalar("SELECT to_regnamespace('cases') IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(!cases_schema, "the job created the cases schema");

        // A cases schema of an older release: its table, no view.
        sqlx::query("CREATE SCHEMA cases")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE cases.cases (case_id TEXT PRIMARY KEY, status TEXT NOT NULL, record JSONB NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
        let err = load_open_cases(&pool, today()).await.unwrap_err();
        assert!(matches!(err, BulkError::OpenCasesViewMissing), "{err:?}");
        pool.close().await;
        db.drop_it().await;
    }

    /// A role granted the view alone reads the open cases, and not the tables under it;
    /// one without the grant is told which grant it lacks.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_view_alone_is_granted_to_the_job() {
        let db = TestDb::create().await;
        seed_cases(&db.url).await;
        let admin = job_pool(&db.url).await;
        let role = format!("himaya_job_test_{:x}", rand::random::<u64>());
        sqlx::query(&format!("CREATE ROLE {role} NOLOGIN"))
            .execute(&admin)
            .await
            .unwrap();
        let as_role = {
            let role = role.clone();
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .after_connect(move |conn, _| {
                    let set = format!("SET ROLE {role}");
                    Box::pin(async move {
                        sqlx::query(&set).execute(conn).await?;
                        Ok(())
                    })
                })
                .connect(&db.url)
                .await
                .unwrap()
        };
        let err = load_open_cases(&as_role, today()).await.unwrap_err();
        assert!(matches!(err, BulkError::OpenCasesViewDenied), "{err:?}");
        assert!(err.to_string().contains("grant it SELECT"));

        for grant in [
            format!("GRANT USAGE ON SCHEMA cases TO {role}"),
            format!("GRANT SELECT ON cases.open_children TO {role}"),
        ] {
            sqlx::query(&grant).execute(&admin).await.unwrap();
        }
        let loaded = load_open_cases(&as_role, today()).await.unwrap();
        assert_eq!((loaded.index.len(), loaded.skipped), (1, 0));
        let table = sqlx::query("SELECT 1 FROM cases.cases LIMIT 1")
            .execute(&as_role)
            .await
            .unwrap_err();
        assert_eq!(
            table.as_database_error().and_then(|e| e.code()).as_deref(),
            Some("42501"),
            "the tables stay the cases service's"
        );
        as_role.close().await;
        admin.close().await;
        db.drop_it().await;
        let mut server = PgConnection::connect(&admin_url()).await.unwrap();
        sqlx::query(&format!("DROP ROLE IF EXISTS {role}"))
            .execute(&mut server)
            .await
            .unwrap();
    }
}
