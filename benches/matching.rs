//! `cargo bench --bench matching`: how duplicate search grows with the number of children
//! (10k, 100k, 1M; HIMAYA_BENCH_CHILDREN=10000,100000 to choose), next to the raw
//! baseline of scoring every stored key in memory. Names are generated from common Arabic
//! names, so many children share a name, as in the field; each lookup is a re-spelling of
//! a stored child (diacritics, ة/ه, ى/ي, عبد ال… joined or not, an estimated age).

#[path = "../tests/it/helpers/mod.rs"]
mod helpers;

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use helpers::*;
use himaya_record::matching::{score, MatchKey};
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
        .execute(pool)
        .await
        .unwrap();
    }
}

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
        println!("\nDuplicate search (2-core machine; 50 lookups per size, each a re-spelling of a stored child)");
        println!("{:>9} {:>12} {:>12} {:>12} {:>9} {:>14}", "children", "insert s", "index p50", "index p99", "found", "scan-all p50");
        for &n in &sizes {
            let more = generate(&mut rng, n - all.len(), today);
            let t = Instant::now();
            insert(&pool, &more, all.len()).await;
            let insert_s = t.elapsed().as_secs_f64();
            all.extend(more);
            sqlx::query("ANALYZE children").execute(&pool).await.unwrap();
            let mut lat = Vec::new();
            let mut found = 0;
            for _ in 0..50 {
                let i = rng.gen_range(0..all.len());
                let probe = respell(&all[i], &mut rng, today);
                let t = Instant::now();
                let hits = himaya_cases::duplicates::candidates(&pool, &probe, None, 0.6, 10).await.unwrap();
                lat.push(t.elapsed());
                // Found: a stored child with the planted one's name and birth appears.
                if hits.iter().any(|(id, _)| id.strip_prefix("case_bench_").and_then(|x| x.parse::<usize>().ok()).is_some_and(|j| all[j].key.name == all[i].key.name && all[j].key.date_of_birth == all[i].key.date_of_birth)) {
                    found += 1;
                }
            }
            lat.sort();
            let mut scan = Vec::new();
            for _ in 0..5 {
                let probe = respell(&all[rng.gen_range(0..all.len())], &mut rng, today);
                let t = Instant::now();
                let best = all.iter().map(|c| score(&probe, &c.key)).filter(|s| *s >= 0.6).count();
                std::hint::black_box(best);
                scan.push(t.elapsed());
            }
            scan.sort();
            println!("{:>9} {:>12.1} {:>12.1} {:>12.1} {:>6}/50 {:>14.1}", n, insert_s, pct(&lat, 0.5), pct(&lat, 0.99), found, pct(&scan, 0.5));
        }
    });
}
