//! The children of open cases, indexed so each household member costs a hash lookup or
//! two: by national number, and by (governorate, first two name parts). Candidates found
//! by name are then scored with the record crate's duplicate-search score and kept only
//! when birth and sex agree.

use std::collections::HashMap;

use chrono::{Datelike, NaiveDate};
use himaya_record::matching::{normalize_arabic, score, skeleton_latin, MatchKey};
use himaya_record::Sex;
use serde::Serialize;

use super::egypt::Governorates;
use super::row::MemberRow;

/// A name match needs at least this score (0–1, see `himaya_record::matching::score`):
/// same first two name parts, birth in the same year band, same governorate and sex.
pub const MIN_NAME_SCORE: f64 = 0.75;

/// Members born more than this many years ago cannot be a child of an open case (under
/// 18, with slack for estimated ages), so their names are not even normalized.
const MAX_CHILD_AGE_YEARS: i32 = 20;

/// What the index needs of a child in an open case.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildKey {
    pub case_id: String,
    pub national_id: Option<String>,
    pub name_ar: String,
    pub name_latin: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub estimated_age_years: Option<u8>,
    pub sex: Sex,
    pub governorate: String,
}

/// Why a member was matched to a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchBasis {
    NationalId,
    NameBirthGovernorate,
}

/// One member ↔ case match.
#[derive(Debug, Clone, PartialEq)]
pub struct Match<'i> {
    pub case_id: &'i str,
    pub basis: MatchBasis,
    pub score: f64,
}

struct Indexed {
    case_id: String,
    national_id: Option<String>,
    key: MatchKey,
    /// How many parts the normalized Arabic name has.
    parts: usize,
}

/// The match index. Built once per import; read-only while rows stream through. Its
/// `Debug` shows sizes only: it holds children's names and numbers.
pub struct MatchIndex {
    children: Vec<Indexed>,
    by_national_id: HashMap<String, Vec<u32>>,
    /// "governorate \u{1f} first two name parts" → children.
    by_name: HashMap<String, Vec<u32>>,
    governorates: Governorates,
    today: NaiveDate,
}

impl std::fmt::Debug for MatchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatchIndex")
            .field("children", &self.children.len())
            .field("national_ids", &self.by_national_id.len())
            .field("name_keys", &self.by_name.len())
            .field("today", &self.today)
            .finish()
    }
}

impl MatchIndex {
    /// `today` anchors estimated ages and bounds birth dates.
    pub fn build(children: impl IntoIterator<Item = ChildKey>, today: NaiveDate) -> MatchIndex {
        let mut index = MatchIndex {
            children: Vec::new(),
            by_national_id: HashMap::new(),
            by_name: HashMap::new(),
            governorates: Governorates::default(),
            today,
        };
        for child in children {
            index.insert(child);
        }
        index
    }

    fn insert(&mut self, child: ChildKey) {
        let Ok(at) = u32::try_from(self.children.len()) else {
            return;
        };
        let name = normalize_arabic(&child.name_ar);
        let governorate = self.governorates.key(&child.governorate).into_owned();
        let national_id = child.national_id.as_deref().and_then(normalize_national_id);
        if let Some(id) = &national_id {
            self.by_national_id.entry(id.clone()).or_default().push(at);
        }
        let parts = name.split(' ').count();
        let mut key = String::new();
        if name_key(&mut key, &governorate, &name) {
            self.by_name.entry(key).or_default().push(at);
        }
        let birth_years = match (child.birth_date, child.estimated_age_years) {
            (Some(d), _) => (d.year(), d.year()),
            (None, Some(age)) => {
                let y = self.today.year() - i32::from(age);
                (y - 1, y + 1)
            }
            (None, None) => (self.today.year() - 18, self.today.year()),
        };
        self.children.push(Indexed {
            case_id: child.case_id,
            national_id,
            key: MatchKey {
                name,
                latin: child.name_latin.as_deref().map(skeleton_latin),
                sex: child.sex,
                birth_years,
                date_of_birth: child.birth_date,
                governorate,
                district: None,
            },
            parts,
        });
    }

    pub fn len(&self) -> usize {
        self.children.len()
    }

    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    pub fn today(&self) -> NaiveDate {
        self.today
    }

    /// The cases a member matches: by national number first, then by name, birth and
    /// governorate for cases not already matched. `scratch` is reused across rows.
    pub fn lookup<'i>(
        &'i self,
        row: &MemberRow<'_>,
        scratch: &mut String,
        out: &mut Vec<Match<'i>>,
    ) {
        out.clear();
        let row_id = row.national_id.as_deref().and_then(normalize_national_id);
        if let Some(hits) = row_id.as_ref().and_then(|id| self.by_national_id.get(id)) {
            for &i in hits {
                out.push(Match {
                    case_id: &self.children[i as usize].case_id,
                    basis: MatchBasis::NationalId,
                    score: 1.0,
                });
            }
        }
        let Some(born) = row.birth_date else {
            return; // name and governorate alone are too weak
        };
        if self.today.year() - born.year() > MAX_CHILD_AGE_YEARS || self.by_name.is_empty() {
            return;
        }
        let name = normalize_arabic(row.name_ar);
        let governorate = self.governorates.key(row.governorate);
        if !name_key(scratch, &governorate, &name) {
            return;
        }
        let Some(candidates) = self.by_name.get(scratch.as_str()) else {
            return;
        };
        for &i in candidates {
            let child = &self.children[i as usize];
            let already = out.iter().any(|m| m.case_id == child.case_id);
            // Two different national numbers are two different people.
            let contradicts = matches!((&row_id, &child.national_id), (Some(a), Some(b)) if a != b);
            if already || contradicts {
                continue;
            }
            if let Some(s) = name_score(child, row, &name, &governorate, born) {
                out.push(Match {
                    case_id: &child.case_id,
                    basis: MatchBasis::NameBirthGovernorate,
                    score: s,
                });
            }
        }
    }
}

/// Scores a name candidate; `None` when birth or sex disagree or the score is low.
/// Arabic names are chains (first, father, grandfather, family) and one side often stops
/// earlier, so both are compared on the parts they both have.
fn name_score(
    child: &Indexed,
    row: &MemberRow<'_>,
    name: &str,
    governorate: &str,
    born: NaiveDate,
) -> Option<f64> {
    let c = &child.key;
    let birth_ok = match c.date_of_birth {
        Some(d) => d == born,
        None => c.birth_years.0 - 1 <= born.year() && born.year() <= c.birth_years.1 + 1,
    };
    let sex_ok = c.sex == row.sex || c.sex == Sex::NotStated || row.sex == Sex::NotStated;
    if !birth_ok || !sex_ok {
        return None;
    }
    let parts = child.parts.min(name.split(' ').count());
    let row_latin = row.name_latin.map(skeleton_latin);
    let latin_parts = match (&c.latin, &row_latin) {
        (Some(a), Some(b)) => a.split(' ').count().min(b.split(' ').count()),
        _ => 0,
    };
    let child_side = MatchKey {
        name: first_parts(&c.name, parts).to_owned(),
        latin: c
            .latin
            .as_deref()
            .map(|l| first_parts(l, latin_parts).to_owned()),
        ..c.clone()
    };
    let row_side = MatchKey {
        name: first_parts(name, parts).to_owned(),
        latin: row_latin
            .as_deref()
            .map(|l| first_parts(l, latin_parts).to_owned()),
        sex: row.sex,
        birth_years: (born.year(), born.year()),
        date_of_birth: Some(born),
        governorate: governorate.to_owned(),
        district: None,
    };
    let s = score(&child_side, &row_side);
    (s >= MIN_NAME_SCORE).then_some((s * 1000.0).round() / 1000.0)
}

fn first_parts(s: &str, n: usize) -> &str {
    match s.match_indices(' ').nth(n.saturating_sub(1)) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

/// Writes the name key into `out`; false when the name has fewer than two parts (a single
/// name is matched by national number only).
fn name_key(out: &mut String, governorate: &str, normalized_name: &str) -> bool {
    let mut parts = normalized_name.split(' ').filter(|p| !p.is_empty());
    let (Some(a), Some(b)) = (parts.next(), parts.next()) else {
        return false;
    };
    out.clear();
    out.push_str(governorate);
    out.push('\u{1f}');
    out.push_str(a);
    out.push(' ');
    out.push_str(b);
    true
}

/// A national number as digits only (Arabic-Indic and Persian digits folded, spaces and
/// dashes dropped); `None` for anything too short to identify a person.
pub fn normalize_national_id(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(14);
    for c in raw.chars() {
        match c {
            '0'..='9' => out.push(c),
            '\u{0660}'..='\u{0669}' => out.push(char::from(b'0' + (c as u32 - 0x0660) as u8)),
            '\u{06F0}'..='\u{06F9}' => out.push(char::from(b'0' + (c as u32 - 0x06F0) as u8)),
            ' ' | '-' | '\u{a0}' => {}
            _ => return None,
        }
    }
    (out.len() >= 8).then_some(out)
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 22).unwrap()
    }

    fn child(case: &str, name: &str, born: Option<NaiveDate>, age: Option<u8>) -> ChildKey {
        ChildKey {
            case_id: case.into(),
            national_id: None,
            name_ar: name.into(),
            name_latin: None,
            birth_date: born,
            estimated_age_years: age,
            sex: Sex::Female,
            governorate: "القاهرة".into(),
        }
    }

    fn row<'a>(name: &'a str, born: Option<NaiveDate>, gov: &'a str) -> MemberRow<'a> {
        MemberRow {
            household_id: Cow::Borrowed("h"),
            member_id: Cow::Borrowed("m"),
            national_id: None,
            name_ar: name,
            name_latin: None,
            sex: Sex::Female,
            birth_date: born,
            governorate: gov,
            district: None,
            enrolled_since: None,
        }
    }

    fn find<'i>(index: &'i MatchIndex, r: &MemberRow<'_>) -> Vec<Match<'i>> {
        let (mut s, mut out) = (String::new(), Vec::new());
        index.lookup(r, &mut s, &mut out);
        out
    }

    #[test]
    fn a_longer_registered_name_spelled_differently_matches() {
        let born = NaiveDate::from_ymd_opt(2014, 3, 9);
        let index = MatchIndex::build([child("case_a", "مريم أحمد", born, None)], today());
        let m = find(&index, &row("مَرْيَم احمد عبدالله حسن", born, "Cairo"));
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].basis, MatchBasis::NameBirthGovernorate);
        assert!(m[0].score >= MIN_NAME_SCORE);
        // Another birth date, another governorate, a one-part name: no match.
        assert!(find(
            &index,
            &row("مريم أحمد", NaiveDate::from_ymd_opt(2014, 3, 10), "01")
        )
        .is_empty());
        assert!(find(&index, &row("مريم أحمد", born, "الجيزة")).is_empty());
        assert!(find(&index, &row("مريم", born, "القاهرة")).is_empty());
        assert!(find(&index, &row("مريم أحمد", None, "القاهرة")).is_empty());
    }

    #[test]
    fn an_estimated_age_matches_within_its_band() {
        let index = MatchIndex::build([child("case_b", "نور محمد علي", None, Some(12))], today());
        let near = row(
            "نور محمد علي",
            NaiveDate::from_ymd_opt(2015, 6, 1),
            "القاهرة",
        );
        let far = row(
            "نور محمد علي",
            NaiveDate::from_ymd_opt(2010, 6, 1),
            "القاهرة",
        );
        assert_eq!(find(&index, &near).len(), 1);
        assert!(find(&index, &far).is_empty());
    }

    #[test]
    fn the_national_number_wins_and_contradicts() {
        let born = NaiveDate::from_ymd_opt(2014, 3, 9);
        let mut c = child("case_c", "مريم أحمد", born, None);
        c.national_id = Some("31403090101234".into());
        let index = MatchIndex::build([c], today());
        let mut r = row("اسم آخر تماما", None, "أسوان");
        r.national_id = Some(Cow::Borrowed("٣١٤٠٣٠٩٠١٠١٢٣٤"));
        let m = find(&index, &r);
        assert_eq!(
            (m.len(), m[0].basis, m[0].score),
            (1, MatchBasis::NationalId, 1.0)
        );
        let mut other = row("مريم أحمد", born, "القاهرة");
        other.national_id = Some(Cow::Borrowed("31403090109999"));
        assert!(find(&index, &other).is_empty());
    }

    #[test]
    fn national_numbers_are_digits_only() {
        assert_eq!(
            normalize_national_id("3140309 0101-234").as_deref(),
            Some("31403090101234")
        );
        assert_eq!(normalize_national_id("n/a"), None);
        assert_eq!(normalize_national_id("12"), None);
    }
}
