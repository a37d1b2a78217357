//! Finding, linking and merging duplicate children. Each child falls in a few name
//! blocks per birth year (`himaya_record::matching::name_blocks`, table `child_blocks`);
//! a search reads the sought name's blocks over the birth-year window from one b-tree,
//! keeps the 50 children sharing the most blocks (200 when none shares more than one) and
//! `himaya_record::matching::score` ranks those.

use std::sync::LazyLock;

use chrono::NaiveDate;
use himaya_record::matching::{name_blocks, place_block, score, MatchKey};
use himaya_record::{CaseId, CaseRecord, Sex};
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::{PgConnection, PgPool, Postgres};

use crate::CasesError;

/// Candidates fetched from the blocks before scoring, when some child shares two blocks
/// or more with the sought name (every word but one alike, at least).
const SHORTLIST: i64 = 50;

/// Candidates scored when no child shares more than one block: a word mistyped in a
/// three-word name leaves one block, which at a million children holds hundreds of
/// children in the same place and years. 50 of them left out the sought child in 11 of
/// 200 such searches (`cargo bench --bench matching`); 200 leave none out.
const WIDE_SHORTLIST: i64 = 200;

/// Years either side of a child's birth-year range still searched (two years apart
/// still adds to a score).
const YEARS_AROUND: i32 = 2;

/// Stores (or refreshes) a case's match key and its blocks, in the caller's transaction,
/// in one statement.
pub async fn index_child(conn: &mut PgConnection, record: &CaseRecord) -> Result<(), CasesError> {
    let key = MatchKey::of(&record.child, record.created_at.date_naive());
    let (blocks, years) = block_rows(&key);
    sqlx::query(
        "WITH c AS (
           INSERT INTO children (case_id, name_norm, latin_skeleton, sex, birth_year_min, birth_year_max, date_of_birth, governorate_norm, district_norm)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (case_id) DO UPDATE SET name_norm = EXCLUDED.name_norm, latin_skeleton = EXCLUDED.latin_skeleton,
             sex = EXCLUDED.sex, birth_year_min = EXCLUDED.birth_year_min, birth_year_max = EXCLUDED.birth_year_max,
             date_of_birth = EXCLUDED.date_of_birth, governorate_norm = EXCLUDED.governorate_norm, district_norm = EXCLUDED.district_norm
           RETURNING child_no),
         k AS (SELECT * FROM unnest($10::int[], $11::smallint[]) AS k (block, birth_year)),
         gone AS (
           DELETE FROM child_blocks b USING c
            WHERE b.child_no = c.child_no
              AND (b.block, b.birth_year) NOT IN (SELECT block, birth_year FROM k))
         INSERT INTO child_blocks (block, birth_year, child_no, place)
         SELECT k.block, k.birth_year, c.child_no, $12 FROM c, k
         ON CONFLICT (block, birth_year, child_no) DO UPDATE SET place = EXCLUDED.place",
    )
    .bind(record.case_id.to_string())
    .bind(&key.name)
    .bind(&key.latin)
    .bind(key.sex.as_str())
    .bind(key.birth_years.0)
    .bind(key.birth_years.1)
    .bind(key.date_of_birth)
    .bind(&key.governorate)
    .bind(&key.district)
    .bind(&blocks)
    .bind(&years)
    .bind(place_block(&key.governorate))
    .execute(conn)
    .await?;
    Ok(())
}

/// [`index_child`] for the children of new cases (none indexed yet), in one statement
/// whatever their number. Plain inserts: no row can be there already, and an
/// `ON CONFLICT` clause would cost a speculative insertion (two WAL records) per row.
pub async fn index_children<'a>(
    conn: &mut PgConnection,
    records: impl Iterator<Item = &'a CaseRecord>,
) -> Result<(), CasesError> {
    static ALONE: LazyLock<String> =
        LazyLock::new(|| format!("WITH {} SELECT 1 WHERE false", ChildRows::ctes(1)));
    let rows = ChildRows::of(records);
    rows.bind(sqlx::query_as::<_, (i32,)>(&ALONE))
        .fetch_all(conn)
        .await?;
    Ok(())
}

/// The index rows of new children ([`index_children`]'s), as common table expressions
/// of a statement that writes more: the cases' own, in the same round trip.
pub struct ChildRows {
    c: ChildColumns,
    block_case: Vec<String>,
    blocks: Vec<i32>,
    years: Vec<i16>,
    places: Vec<i32>,
}

impl ChildRows {
    /// The parameters of [`ChildRows::ctes`].
    pub const PARAMS: usize = 13;

    /// The rows of the children of `records`' cases, none indexed yet.
    pub fn of<'a>(records: impl Iterator<Item = &'a CaseRecord>) -> ChildRows {
        let mut c = ChildColumns::default();
        let (mut block_case, mut blocks, mut years, mut places) = (vec![], vec![], vec![], vec![]);
        for record in records {
            let key = MatchKey::of(&record.child, record.created_at.date_naive());
            let case_id = record.case_id.to_string();
            let (b, y) = block_rows(&key);
            block_case.extend(std::iter::repeat_n(case_id.clone(), b.len()));
            places.extend(std::iter::repeat_n(place_block(&key.governorate), b.len()));
            blocks.extend(b);
            years.extend(y);
            c.case_id.push(case_id);
            c.name.push(key.name);
            c.latin.push(key.latin);
            c.sex.push(key.sex.as_str());
            c.year_min.push(key.birth_years.0);
            c.year_max.push(key.birth_years.1);
            c.born.push(key.date_of_birth);
            c.governorate.push(key.governorate);
            c.district.push(key.district);
        }
        ChildRows {
            c,
            block_case,
            blocks,
            years,
            places,
        }
    }

    /// `child_rows` and `child_block_rows`, comma separated, their parameters numbered
    /// from `$first` ([`ChildRows::PARAMS`] of them, bound by [`ChildRows::bind`]).
    pub fn ctes(first: usize) -> String {
        let p: Vec<String> = (0..Self::PARAMS)
            .map(|i| format!("${}", first + i))
            .collect();
        format!(
            "child_rows AS (
           INSERT INTO children (case_id, name_norm, latin_skeleton, sex, birth_year_min, birth_year_max, date_of_birth, governorate_norm, district_norm)
           SELECT * FROM unnest({}::text[], {}::text[], {}::text[], {}::text[], {}::int[], {}::int[], {}::date[], {}::text[], {}::text[])
           RETURNING case_id, child_no),
         child_block_rows AS (
           INSERT INTO child_blocks (block, birth_year, child_no, place)
           SELECT k.block, k.birth_year, c.child_no, k.place
             FROM unnest({}::text[], {}::int[], {}::smallint[], {}::int[]) AS k (case_id, block, birth_year, place)
             JOIN child_rows c USING (case_id))",
            p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12]
        )
    }

    /// Binds the rows' 13 parameters to `q`, after whatever it has bound already.
    pub fn bind<'q, O>(
        &'q self,
        q: QueryAs<'q, Postgres, O, PgArguments>,
    ) -> QueryAs<'q, Postgres, O, PgArguments> {
        let c = &self.c;
        q.bind(&c.case_id)
            .bind(&c.name)
            .bind(&c.latin)
            .bind(&c.sex)
            .bind(&c.year_min)
            .bind(&c.year_max)
            .bind(&c.born)
            .bind(&c.governorate)
            .bind(&c.district)
            .bind(&self.block_case)
            .bind(&self.blocks)
            .bind(&self.years)
            .bind(&self.places)
    }
}

/// The `children` rows of [`index_children`], a column each.
#[derive(Default)]
struct ChildColumns {
    case_id: Vec<String>,
    name: Vec<String>,
    latin: Vec<Option<String>>,
    sex: Vec<&'static str>,
    year_min: Vec<i32>,
    year_max: Vec<i32>,
    born: Vec<Option<NaiveDate>>,
    governorate: Vec<String>,
    district: Vec<Option<String>>,
}

/// A child's block rows as (block, birth year) columns: each name block for each year of
/// its birth-year range (a range longer than 19 years, which a valid record never has, is
/// cut there). Public for bulk loads (the matching benchmark).
pub fn block_rows(key: &MatchKey) -> (Vec<i32>, Vec<i16>) {
    let names = name_blocks(&key.name);
    let (from, to) = key.birth_years;
    let (mut blocks, mut years) = (Vec::new(), Vec::new());
    for year in from..=to.min(from.saturating_add(18)) {
        let Ok(year) = i16::try_from(year) else {
            continue;
        };
        for b in &names {
            blocks.push(*b);
            years.push(year);
        }
    }
    (blocks, years)
}

/// The children most like `key` (excluding `exclude`), best first, scoring at least `min`.
pub async fn candidates(
    pool: &PgPool,
    key: &MatchKey,
    exclude: Option<&str>,
    min: f64,
    limit: usize,
) -> Result<Vec<(String, f64)>, CasesError> {
    let (from, to) = key.birth_years;
    let rows = sqlx::query_as::<_, ChildRow>(
        "SELECT c.case_id, c.name_norm, c.latin_skeleton, c.sex, c.birth_year_min, c.birth_year_max, c.date_of_birth, c.governorate_norm, c.district_norm
           FROM (SELECT child_no,
                        row_number() OVER (ORDER BY shared DESC, here DESC, gap) AS rank,
                        max(shared) OVER () AS best_shared
                   FROM (SELECT b.child_no,
                                -- One bit per block of the sought name (at most six): how many
                                -- it shares, counted in a hash aggregate.
                                bit_count(bit_or(1 << (array_position($1, b.block) - 1))::bit(32)) AS shared,
                                bool_or(b.place = $4) AS here,
                                min(abs(b.birth_year - $5)) AS gap
                           FROM child_blocks b
                          WHERE b.block = ANY($1) AND b.birth_year BETWEEN $2 AND $3
                          GROUP BY b.child_no
                          ORDER BY shared DESC, here DESC, gap
                          LIMIT $6) wide) best
           JOIN children c ON c.child_no = best.child_no
          WHERE (best.rank <= $8 OR best.best_shared < 2)
            AND ($7::text IS NULL OR c.case_id <> $7)",
    )
    .bind(name_blocks(&key.name))
    .bind(from.saturating_sub(YEARS_AROUND))
    .bind(to.saturating_add(YEARS_AROUND))
    .bind(place_block(&key.governorate))
    .bind((from + to) / 2)
    .bind(WIDE_SHORTLIST)
    .bind(exclude)
    .bind(SHORTLIST)
    .fetch_all(pool)
    .await?;
    let mut scored = Vec::with_capacity(rows.len());
    for r in rows {
        let (case_id, other) = r.into_key();
        let s = score(key, &other);
        if s >= min {
            scored.push((case_id, s));
        }
    }
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored.truncate(limit);
    Ok(scored)
}

/// A `children` row as stored; [`ChildRow::into_key`] reads its sex (an unknown one
/// counts as not stated).
#[derive(sqlx::FromRow)]
struct ChildRow {
    case_id: String,
    name_norm: String,
    latin_skeleton: Option<String>,
    sex: String,
    birth_year_min: i32,
    birth_year_max: i32,
    date_of_birth: Option<NaiveDate>,
    governorate_norm: String,
    district_norm: Option<String>,
}

impl ChildRow {
    fn into_key(self) -> (String, MatchKey) {
        let key = MatchKey {
            name: self.name_norm,
            latin: self.latin_skeleton,
            sex: Sex::parse(&self.sex).unwrap_or(Sex::NotStated),
            birth_years: (self.birth_year_min, self.birth_year_max),
            date_of_birth: self.date_of_birth,
            governorate: self.governorate_norm,
            district: self.district_norm,
        };
        (self.case_id, key)
    }
}

/// The match key of a stored case.
pub fn key_of(record: &CaseRecord) -> MatchKey {
    MatchKey::of(&record.child, record.created_at.date_naive())
}

/// Records a link between two cases (stored once, smaller id first).
pub async fn link(
    conn: &mut PgConnection,
    a: &CaseId,
    b: &CaseId,
    kind: &str,
    actor: &str,
) -> Result<bool, CasesError> {
    let (x, y) = if a.to_string() < b.to_string() {
        (a, b)
    } else {
        (b, a)
    };
    let n = sqlx::query("INSERT INTO case_links (case_id, linked_case_id, kind, linked_by) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
        .bind(x.to_string())
        .bind(y.to_string())
        .bind(kind)
        .bind(actor)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(n == 1)
}

/// Copies the merged case's history onto the kept case (both keep their own), and
/// removes the merged child from the match index.
pub async fn fold_history(
    conn: &mut PgConnection,
    keep: &CaseId,
    merged: &CaseId,
    keep_version: i64,
) -> Result<(), CasesError> {
    sqlx::query(
        "INSERT INTO case_history (case_id, version, actor, change, at)
         SELECT $1, $3, actor, 'from merged ' || case_id || ' v' || version || ': ' || change, at
           FROM case_history WHERE case_id = $2 ORDER BY id",
    )
    .bind(keep.to_string())
    .bind(merged.to_string())
    .bind(keep_version)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM children WHERE case_id = $1")
        .bind(merged.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// How often the match index is vacuumed.
const TIDY_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// Vacuums the match index at start and every [`TIDY_EVERY`] until `shutdown`. A search
/// reads the blocks by an index-only scan, which skips the table only for pages marked
/// all-visible; with autovacuum off (as on the project's machines) nothing else marks
/// them, and each search then visits ~2,000 table pages at a million children (24 ms
/// instead of 2). The vacuum reads only the pages changed since the last one.
/// `SKIP_LOCKED`: a replica already vacuuming is enough.
pub async fn keep_tidy(pool: PgPool, shutdown: tokio_util::sync::CancellationToken) {
    let mut every = tokio::time::interval(TIDY_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => tidy(&pool).await,
        }
    }
}

/// One vacuum of the match index (also run by the matching benchmark after its loads).
pub async fn tidy(pool: &PgPool) {
    let started = std::time::Instant::now();
    // VACUUM runs outside any transaction: a simple query of its own.
    match sqlx::raw_sql("VACUUM (ANALYZE, SKIP_LOCKED) children, child_blocks")
        .execute(pool)
        .await
    {
        Ok(_) => tracing::debug!(
            took_ms = started.elapsed().as_millis() as u64,
            "match index vacuumed"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "vacuuming the match index failed; trying again later")
        }
    }
}

/// Indexes cases that have no match key or no blocks yet (opened before the index or the
/// blocks existed), in batches; returns how many. Run at start: one pass over the cases
/// when none are missing.
pub async fn backfill(pool: &PgPool) -> Result<usize, CasesError> {
    const BATCH: i64 = 500;
    let mut total = 0;
    loop {
        let mut tx = pool.begin().await?;
        let rows: Vec<serde_json::Value> = sqlx::query_scalar(
            "SELECT c.record FROM cases c
              WHERE c.status <> 'merged' AND c.anonymised_at IS NULL
                AND NOT EXISTS (SELECT 1 FROM children ch JOIN child_blocks b ON b.child_no = ch.child_no
                                 WHERE ch.case_id = c.case_id)
              LIMIT $1",
        )
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        let n = rows.len();
        for json in rows {
            let record: CaseRecord = serde_json::from_value(json)
                .map_err(|_| himaya_store::StoreError::Corrupt("cases.record"))?;
            index_child(&mut tx, &record).await?;
        }
        tx.commit().await?;
        total += n;
        if n < BATCH as usize {
            return Ok(total);
        }
    }
}
