//! Synthetic household files, for trials, tests and benchmarks: fictional households of
//! 2–8 members across Egypt's governorates, named as Egyptian families are (a child's name
//! continues the father's chain), with children of open cases planted at known rows.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use apache_avro::types::Value;
use apache_avro::{Codec, DeflateSettings, Writer};
use chrono::{Datelike, NaiveDate};
use himaya_record::Sex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::egypt::{DISTRICTS, FAMILY_NAMES, FEMALE_NAMES, GOVERNORATES, MALE_NAMES};
use super::index::ChildKey;
use super::row::schema;
use super::BulkError;

/// A child written at a known row (1-based), so a test knows where matches must be.
#[derive(Debug, Clone, PartialEq)]
pub struct PlantedChild {
    pub row: u64,
    pub national_id: Option<String>,
    pub name_ar: String,
    pub name_latin: Option<String>,
    pub sex: Sex,
    pub birth_date: Option<NaiveDate>,
    pub governorate: String,
}

/// One generated member before it becomes an Avro record.
struct Member {
    national_id: Option<String>,
    name_ar: String,
    name_latin: Option<String>,
    sex: Sex,
    birth: NaiveDate,
    /// 0: text, 1: Avro date, 2: unknown.
    birth_form: u8,
}

/// Writes `rows` members (deflate blocks) to `path`; the same seed on the same day gives
/// the same people (ages count from today). Fails if a planted row is outside
/// `1..=rows` or repeated.
pub fn generate(
    path: &Path,
    rows: u64,
    seed: u64,
    planted: &[PlantedChild],
) -> Result<(), BulkError> {
    let mut planted: Vec<&PlantedChild> = planted.iter().collect();
    planted.sort_by_key(|p| p.row);
    for (i, p) in planted.iter().enumerate() {
        if p.row == 0 || p.row > rows || (i > 0 && planted[i - 1].row == p.row) {
            return Err(BulkError::Plant { row: p.row, rows });
        }
    }
    let file = File::create(path).map_err(|e| BulkError::io(path, e))?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut writer = Writer::builder()
        .schema(schema()?)
        .writer(BufWriter::with_capacity(1 << 17, file))
        .codec(Codec::Deflate(DeflateSettings::default()))
        .block_size(64 * 1024)
        .marker(rng.gen())
        .build()
        // The header not written: say so as an encoding failure before the first row.
        .map_err(|_| BulkError::Encode { row: 0 })?;
    let today = chrono::Utc::now().date_naive();
    let (mut row, mut household, mut next_plant) = (0u64, 0u64, planted.iter().peekable());
    while row < rows {
        household += 1;
        let gov = rng.gen_range(0..GOVERNORATES.len());
        let household_id = format!("TK-{}-{household:08}", GOVERNORATES[gov].0);
        let district = rng
            .gen_bool(0.6)
            .then(|| DISTRICTS[rng.gen_range(0..DISTRICTS.len())]);
        let enrolled = date_between(&mut rng, ymd(2015, 3, 1), today);
        for (i, member) in family(&mut rng, gov, today).into_iter().enumerate() {
            if row == rows {
                break;
            }
            row += 1;
            let value = match next_plant.next_if(|p| p.row == row) {
                Some(p) => planted_value(p, &household_id, i, district, enrolled),
                None => {
                    let gov_name = GOVERNORATES[gov].1;
                    member_value(member, &household_id, i, gov_name, district, enrolled)
                }
            };
            // The library's error would quote the row; say only where.
            writer
                .append_value(value)
                .map_err(|_| BulkError::Encode { row })?;
        }
    }
    let mut out = writer.into_inner().map_err(|_| BulkError::Encode { row })?;
    out.flush().map_err(|e| BulkError::io(path, e))?;
    Ok(())
}

/// A household: a father (or a widowed or divorced mother alone), usually a mother,
/// sometimes a grandparent, and children whose names continue the father's.
fn family(rng: &mut StdRng, gov: usize, today: NaiveDate) -> Vec<Member> {
    let size = [2, 3, 3, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 7, 7, 8][rng.gen_range(0..16)];
    let fam = FAMILY_NAMES[rng.gen_range(0..FAMILY_NAMES.len())];
    let grandfather = pick(rng, MALE_NAMES);
    let father = pick(rng, MALE_NAMES);
    let father_age = rng.gen_range(24..62);
    let mut out = Vec::with_capacity(size);
    let chain = |first: (&str, &str), who: (&str, &str)| {
        (
            format!("{} {} {} {}", first.0, who.0, grandfather.0, fam.0),
            format!("{} {} {} {}", first.1, who.1, grandfather.1, fam.1),
        )
    };
    let single_mother = rng.gen_bool(0.15);
    if !single_mother {
        let (ar, la) = (
            format!("{} {} {}", father.0, grandfather.0, fam.0),
            format!("{} {} {}", father.1, grandfather.1, fam.1),
        );
        out.push(person(rng, gov, today, ar, la, Sex::Male, father_age, 0.97));
    }
    let mother_fam = FAMILY_NAMES[rng.gen_range(0..FAMILY_NAMES.len())];
    let (m, mf) = (pick(rng, FEMALE_NAMES), pick(rng, MALE_NAMES));
    let ar = format!("{} {} {}", m.0, mf.0, mother_fam.0);
    let la = format!("{} {} {}", m.1, mf.1, mother_fam.1);
    let mother_age = (father_age - rng.gen_range(0..9)).max(20);
    out.push(person(
        rng,
        gov,
        today,
        ar,
        la,
        Sex::Female,
        mother_age,
        0.95,
    ));
    if size > 4 && rng.gen_bool(0.1) {
        let g = format!("{} {}", grandfather.0, fam.0);
        let gl = format!("{} {}", grandfather.1, fam.1);
        let age = father_age + rng.gen_range(22..32);
        out.push(person(rng, gov, today, g, gl, Sex::Male, age, 0.99));
    }
    while out.len() < size {
        let girl = rng.gen_bool(0.49);
        let first = pick(rng, if girl { FEMALE_NAMES } else { MALE_NAMES });
        let (ar, la) = chain(first, father);
        let sex = if girl { Sex::Female } else { Sex::Male };
        let age = rng.gen_range(0..(mother_age - 17).clamp(1, 24));
        out.push(person(rng, gov, today, ar, la, sex, age, 0.75));
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn person(
    rng: &mut StdRng,
    gov: usize,
    today: NaiveDate,
    name_ar: String,
    latin: String,
    sex: Sex,
    age: i32,
    id_rate: f64,
) -> Member {
    let latest = ymd(today.year() - age, today.month(), 1);
    let birth = date_between(rng, ymd(latest.year() - 1, latest.month(), 1), latest);
    let national_id = rng.gen_bool(id_rate).then(|| {
        let century = if birth.year() >= 2000 { 3 } else { 2 };
        // The 13th digit is odd for males, even for females.
        let seq = rng.gen_range(0..500) * 2 + u32::from(sex == Sex::Male);
        format!(
            "{century}{:02}{:02}{:02}{}{seq:04}{}",
            birth.year() % 100,
            birth.month(),
            birth.day(),
            GOVERNORATES[gov].0,
            rng.gen_range(1..10),
        )
    });
    let birth_form = match rng.gen_range(0..100) {
        0..=79 => 0,
        80..=94 => 1,
        _ => 2,
    };
    Member {
        national_id,
        name_ar,
        name_latin: rng.gen_bool(0.4).then_some(latin),
        sex,
        birth,
        birth_form,
    }
}

fn member_value(
    m: Member,
    household_id: &str,
    i: usize,
    governorate: &str,
    district: Option<&str>,
    enrolled: NaiveDate,
) -> Value {
    let birth = match m.birth_form {
        0 => Some(BirthForm::Text(m.birth)),
        1 => Some(BirthForm::Days(m.birth)),
        _ => None,
    };
    let sex = m.sex;
    record(
        household_id,
        i,
        m.national_id,
        m.name_ar,
        m.name_latin,
        sex,
        birth,
        governorate,
        district,
        enrolled,
    )
}

fn planted_value(
    p: &PlantedChild,
    household_id: &str,
    i: usize,
    district: Option<&str>,
    enrolled: NaiveDate,
) -> Value {
    record(
        household_id,
        i,
        p.national_id.clone(),
        p.name_ar.clone(),
        p.name_latin.clone(),
        p.sex,
        p.birth_date.map(BirthForm::Text),
        &p.governorate,
        district,
        enrolled,
    )
}

enum BirthForm {
    Text(NaiveDate),
    Days(NaiveDate),
}

#[allow(clippy::too_many_arguments)]
fn record(
    household_id: &str,
    i: usize,
    national_id: Option<String>,
    name_ar: String,
    name_latin: Option<String>,
    sex: Sex,
    birth: Option<BirthForm>,
    governorate: &str,
    district: Option<&str>,
    enrolled: NaiveDate,
) -> Value {
    let opt = |s: Option<String>| match s {
        Some(s) => Value::Union(1, Box::new(Value::String(s))),
        None => Value::Union(0, Box::new(Value::Null)),
    };
    let birth = match birth {
        Some(BirthForm::Text(d)) => Value::Union(1, Box::new(Value::String(d.to_string()))),
        Some(BirthForm::Days(d)) => Value::Union(2, Box::new(Value::Date(days(d)))),
        None => Value::Union(0, Box::new(Value::Null)),
    };
    let sex_index = match sex {
        Sex::Female => 0,
        Sex::Male => 1,
        Sex::NotStated => 2,
    };
    Value::Record(vec![
        (
            "household_id".into(),
            Value::String(household_id.to_owned()),
        ),
        (
            "member_id".into(),
            Value::String(format!("{household_id}-{:02}", i + 1)),
        ),
        ("national_id".into(), opt(national_id)),
        ("name_ar".into(), Value::String(name_ar)),
        ("name_latin".into(), opt(name_latin)),
        (
            "sex".into(),
            Value::Enum(sex_index, sex.as_str().to_owned()),
        ),
        ("birth_date".into(), birth),
        ("governorate".into(), Value::String(governorate.to_owned())),
        ("district".into(), opt(district.map(str::to_owned))),
        (
            "enrolled_since".into(),
            Value::Union(1, Box::new(Value::Date(days(enrolled)))),
        ),
    ])
}

/// Children of open cases, fictional, named from the same pools as the file: for an index
/// of realistic size in benchmarks (including the chance collisions of common names).
pub fn synthetic_children(count: usize, seed: u64, today: NaiveDate) -> Vec<ChildKey> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|i| {
            let girl = rng.gen_bool(0.5);
            let first = pick(&mut rng, if girl { FEMALE_NAMES } else { MALE_NAMES });
            let (father, grand) = (pick(&mut rng, MALE_NAMES), pick(&mut rng, MALE_NAMES));
            let gov = GOVERNORATES[rng.gen_range(0..GOVERNORATES.len())];
            let age = rng.gen_range(0..18);
            let birth = date_between(
                &mut rng,
                ymd(today.year() - age - 1, 1, 1),
                ymd(today.year() - age, 1, 1),
            );
            let known = rng.gen_bool(0.7);
            ChildKey {
                case_id: format!("case_synthetic_{i:06}"),
                national_id: None,
                name_ar: format!("{} {} {}", first.0, father.0, grand.0),
                name_latin: None,
                birth_date: known.then_some(birth),
                estimated_age_years: (!known).then_some(age as u8),
                sex: if girl { Sex::Female } else { Sex::Male },
                governorate: gov.1.to_owned(),
            }
        })
        .collect()
}

fn pick<'a>(rng: &mut StdRng, pool: &'a [(&'a str, &'a str)]) -> (&'a str, &'a str) {
    pool[rng.gen_range(0..pool.len())]
}

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
}

fn date_between(rng: &mut StdRng, from: NaiveDate, to: NaiveDate) -> NaiveDate {
    let span = (to - from).num_days().max(1);
    from + chrono::Duration::days(rng.gen_range(0..span))
}

fn days(d: NaiveDate) -> i32 {
    (d - ymd(1970, 1, 1)).num_days() as i32
}
