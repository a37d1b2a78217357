//! `cargo bench --bench matching`: how duplicate search grows with the number of children
//! (10k, 100k, 1M; HIMAYA_BENCH_CHILDREN=10000,100000 to choose), next to the raw
//! baseline of scoring every stored key in memory. Names are generated from common Arabic
//! names, so many children share a name, as in the field; each lookup is a re-spelling of
//! a stored child (diacritics, ة/ه, ى/ي, عبد ال… joined or not, an estimated age), and
//! once more with a letter of the father's name mistyped (found through the blocks of the
//! other two words).

#[path = "../tests/it/helpers/mod.rs"]
mod helpers;

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use helpers::*;
use himaya_record::matching::{place_block, score, MatchKey};
use himaya_record::Sex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const GIRLS: &[&str] = &[
    "مريم",
    "فاطمة",
    "عائشة",
    "زينب",
    "خديجة",
    "نور",
    "سارة",
    "هدى",
    "ياسمين",
    "رقية",
    "آمنة",
    "إسراء",
    "ملك",
    "جنى",
    "رحمة",
    "شهد",
    "حبيبة",
    "منى",
    "سلمى",
    "ليلى",
];
const BOYS: &[&str] = &[
    "محمد",
    "أحمد",
    "علي",
    "عمر",
    "يوسف",
    "مصطفى",
    "خالد",
    "حسن",
    "حسين",
    "إبراهيم",
    "عبد الله",
    "عبد الرحمن",
    "مازن",
    "كريم",
    "زياد",
    "آدم",
    "سليم",
    "طارق",
    "هشام",
    "ياسر",
];
const FAMILY: &[&str] = &[
    "عبد الله",
    "المصري",
    "حسن",
    "إبراهيم",
    "السيد",
    "محمود",
    "الشامي",
    "العلي",
    "الحلبي",
    "عثمان",
    "سليمان",
    "النجار",
    "الخطيب",
    "يوسف",
    "صالح",
    "عيسى",
    "موسى",
    "داود",
    "رمضان",
    "شعبان",
    "عبد العزيز",
    "الحسيني",
    "الدمشقي",
    "القاسم",
    "منصور",
];
const PLACES: &[&str] = &[
    "القاهرة",
    "الجيزة",
    "الإسكندرية",
    "حلب",
    "دمشق",
    "حمص",
    "أسيوط",
    "سوهاج",
];

struct Child {
    key: MatchKey,
    original: String,
}

fn generate(rng: &mut StdRng, n: usize, today: NaiveDate) -> Vec<Child> {
    (0..n)
        .map(|_| {
            let girl = rng.gen_bool(0.5);
            let first = if girl {
                GIRLS[rng.gen_range(0..GIRLS.len())]
            } else {
                BOYS[rng.gen_range(0..BOYS.len())]
            };
            let father = BOYS[rng.gen_range(0..BOYS.len())];
            let family = FAMILY[rng.gen_range(0..FAMILY.len())];
            let name = format!("{first} {father} {family}");
            let dob = NaiveDate::from_ymd_opt(
                rng.gen_range(2009..2026),
                rng.gen_range(1..13),
                rng.gen_range(1..29),
            );
            let child = himaya_record::Child {
                name: himaya_record::PersonName {
                    as_given: name.clone(),
                    transliteration: None,
                },
                sex: if girl { Sex::Female } else { Sex::Male },
                date_of_birth: dob,
                estimated_age_years: None,
                nationality: None,
                identity_documents: vec![],
                governorate: PLACES[rng.gen_range(0..PLACES.len())].into(),
                district: None,
                address: None,
                disability: None,
                school: None,
            };
            Child {
                key: MatchKey::of(&child, today),
                original: name,
            }
        })
        .collect()
}

/// A re-spelling of a stored child, as a second referrer would write it.
fn respell(c: &Child, rng: &mut StdRng, today: NaiveDate) -> MatchKey {
    let mut name = c
        .original
        .replace("عبد ال", "عبدال")
        .replace('ة', "ه")
        .replace('ى', "ي")
        .replace(['أ', 'إ'], "ا");
    if rng.gen_bool(0.5) {
        name = name.replacen('م', "مَ", 1);
    }
    let mut k = MatchKey::of(
        &himaya_record::Child {
            name: himaya_record::PersonName {
                as_given: name,
                transliteration: None,
            },
            sex: c.key.sex,
            date_of_birth: None,
            estimated_age_years: c
                .key
                .date_of_birth
                .map(|d| himaya_record::validate::age_on(d, today).clamp(0, 17) as u8),
            nationality: None,
            identity_documents: vec![],
            governorate: String::new(),
            district: None,
            address: None,
            disability: None,
            school: None,
        },
        today,
    );
    k.governorate = c.key.governorate.clone();
    k
}

async fn insert(pool: &sqlx::PgPool, children: &[Child], offset: usize) {
    for (chunk_no, chunk) in children.chunks(20_000).enumerate() {
        let ids: Vec<String> = (0..chunk.len())
            .map(|i| format!("case_bench_{}", offset + chunk_no * 20_000 + i))
            .collect();
        let names: Vec<&str> = chunk.iter().map(|c| c.key.name.as_str()).collect();
        let sexes: Vec<&str> = chunk.iter().map(|c| c.key.sex.as_str()).collect();
        let ymin: Vec<i32> = chunk.iter().map(|c| c.key.birth_years.0).collect();
        let ymax: Vec<i32> = chunk.iter().map(|c| c.key.birth_years.1).collect();
        let dobs: Vec<Option<NaiveDate>> = chunk.iter().map(|c| c.key.date_of_birth).collect();
        let govs: Vec<&str> = chunk.iter().map(|c| c.key.governorate.as_str()).collect();
        let mut tx = pool.begin().await.unwrap();
        sqlx::query(
            "INSERT INTO children (case_id, name_norm, sex, birth_year_min, birth_year_max, date_of_birth, governorate_norm)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int[], $5::int[], $6::date[], $7::text[])",
        )
        .bind(&ids)
        .bind(&names)
        .bind(&sexes)
        .bind(&ymin)
        .bind(&ymax)
        .bind(&dobs)
        .bind(&govs)
        .execute(&mut *tx)
        .await
        .unwrap();
        let (mut of, mut blocks, mut years, mut places) = (vec![], vec![], vec![], vec![]);
        for (id, c) in ids.iter().zip(chunk) {
            let (b, y) = himaya_cases::duplicates::block_rows(&c.key);
            of.extend(std::iter::repeat_n(id.as_str(), b.len()));
            places.extend(std::iter::repeat_n(
                place_block(&c.key.governorate),
                b.len(),
            ));
            blocks.extend(b);
            years.extend(y);
        }
        sqlx::query(
            "INSERT INTO child_blocks (block, birth_year, child_no, place)
             SELECT k.block, k.birth_year, c.child_no, k.place
               FROM unnest($1::text[], $2::int[], $3::smallint[], $4::int[]) AS k (case_id, block, birth_year, place)
               JOIN children c ON c.case_id = k.case_id",
        )
        .bind(&of)
        .bind(&blocks)
        .bind(&years)
        .bind(&places)
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
}

/// The same re-spelling with one letter of the father's name mistyped.
fn mistype(mut key: MatchKey) -> MatchKey {
    let mut words: Vec<String> = key.name.split(' ').map(str::to_owned).collect();
    if let Some(w) = words.get_mut(1) {
        let last = w.pop().unwrap_or('ب');
        w.push(if last == 'ب' { 'ت' } else { 'ب' });
    }
    key.name = words.join(" ");
    key
}

/// Lookups per size (each also made once more with a mistyped word).
const LOOKUPS: usize = 200;

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

fn main() {
    let sizes: Vec<usize> = std::env::var("HIMAYA_BENCH_CHILDREN")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000, 1_000_000]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let env = TestEnv::new(None).await;
        let pool = himaya_store::connect(&env.db_url, "cases", 4).await.unwrap();
        sqlx::migrate!("./services/cases/migrations").run(&pool).await.unwrap();
        let today = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        let mut rng = StdRng::seed_from_u64(7);
        let mut all: Vec<Child> = Vec::new();
        println!("\nDuplicate search (2-core machine; {LOOKUPS} lookups per size, each a re-spelling of a stored child; found: the child is among the 10 best)");
        println!("{:>9} {:>10} {:>9} {:>10} {:>10} {:>11} {:>11} {:>14} {:>14}", "children", "insert s", "vacuum s", "p50 ms", "p99 ms", "found", "mistyped", "mistyped p99", "scan-all p50");
        for &n in &sizes {
            let more = generate(&mut rng, n - all.len(), today);
            let t = Instant::now();
            insert(&pool, &more, all.len()).await;
            let insert_s = t.elapsed().as_secs_f64();
            all.extend(more);
            // What the cases service does every five minutes (autovacuum is off here).
            let t = Instant::now();
            himaya_cases::duplicates::tidy(&pool).await;
            let tidy_s = t.elapsed().as_secs_f64();
            // Found: a stored child with the planted one's name and birth appears.
            let found_in = |hits: &[(String, f64)], i: usize| {
                hits.iter().any(|(id, _)| {
                    id.strip_prefix("case_bench_")
                        .and_then(|x| x.parse::<usize>().ok())
                        .is_some_and(|j| all[j].key.name == all[i].key.name && all[j].key.date_of_birth == all[i].key.date_of_birth)
                })
            };
            let (mut lat, mut typo_lat) = (Vec::new(), Vec::new());
            let (mut found, mut typo_found) = (0, 0);
            for _ in 0..LOOKUPS {
                let i = rng.gen_range(0..all.len());
                let probe = respell(&all[i], &mut rng, today);
                let t = Instant::now();
                let hits = himaya_cases::duplicates::candidates(&pool, &probe, None, 0.6, 10).await.unwrap();
                lat.push(t.elapsed());
                found += usize::from(found_in(&hits, i));
                let probe = mistype(probe);
                let t = Instant::now();
                let hits = himaya_cases::duplicates::candidates(&pool, &probe, None, 0.6, 10).await.unwrap();
                typo_lat.push(t.elapsed());
                typo_found += usize::from(found_in(&hits, i));
            }
            lat.sort();
            typo_lat.sort();
            let mut scan = Vec::new();
            for _ in 0..5 {
                let probe = respell(&all[rng.gen_range(0..all.len())], &mut rng, today);
                let t = Instant::now();
                let best = all.iter().map(|c| score(&probe, &c.key)).filter(|s| *s >= 0.6).count();
                std::hint::black_box(best);
                scan.push(t.elapsed());
            }
            scan.sort();
            println!(
                "{:>9} {:>10.1} {:>9.1} {:>10.2} {:>10.2} {:>7}/{LOOKUPS} {:>7}/{LOOKUPS} {:>14.2} {:>14.1}",
                n, insert_s, tidy_s, pct(&lat, 0.5), pct(&lat, 0.99), found, typo_found, pct(&typo_lat, 0.99), pct(&scan, 0.5)
            );
        }
    });
}
