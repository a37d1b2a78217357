//! Finding the same child twice. Names are compared after Arabic normalization
//! (diacritics and tatweel stripped; alef, yaa, taa marbuta and hamza carriers folded;
//! "عبد ال…" joined), and transliterations after a consonant skeleton; then birth (exact date
//! or a one-to-two-year age band, since many ages are estimates), sex and location weigh in.
//! A score is a hint for a caseworker, never an automatic merge.

use chrono::{Datelike, NaiveDate};

use crate::record::{Child, Sex};

/// Arabic name normalization for matching (never for storage: names are stored as given).
pub fn normalize_arabic(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let folded = match c {
            // Harakat, tanwin, shadda, sukun, superscript alef, Quranic marks, tatweel.
            '\u{064B}'..='\u{065F}' | '\u{0670}' | '\u{06D6}'..='\u{06ED}' | '\u{0640}' => continue,
            'أ' | 'إ' | 'آ' | 'ٱ' | 'ٲ' | 'ٳ' => 'ا',
            'ى' | 'ئ' | 'ی' => 'ي',
            'ة' => 'ه',
            'ؤ' => 'و',
            'ء' => continue,
            'ك' | 'ک' => 'ك',
            c if c.is_alphabetic() => c,
            _ => ' ',
        };
        out.extend(folded.to_lowercase());
    }
    let words: Vec<&str> = out.split_whitespace().collect();
    // "عبد الله" and "عبدالله" are one name: join عبد / ابو with the word after it.
    let mut joined: Vec<String> = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        if matches!(words[i], "عبد" | "ابو" | "abd" | "abu") && i + 1 < words.len() {
            joined.push(format!("{}{}", words[i], words[i + 1]));
            i += 2;
        } else {
            joined.push(words[i].to_owned());
            i += 1;
        }
    }
    joined.join(" ")
}

/// A transliteration's consonant skeleton: "Mohammed Abdel-Rahman" and "Muhamad Abd
/// al Rahman" come out alike.
pub fn skeleton_latin(name: &str) -> String {
    let lower = name
        .to_lowercase()
        .replace("abdel", "abdal")
        .replace("abdul", "abdal")
        .replace("abd el", "abdal")
        .replace("abd al", "abdal");
    let mut out = String::with_capacity(lower.len());
    for word in lower
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        let mut last = '\0';
        for (i, c) in word.chars().enumerate() {
            let c = match c {
                'q' => 'k',
                'e' | 'o' | 'u' | 'i' | 'y' | 'a' if i > 0 => continue,
                'e' | 'o' | 'u' | 'i' | 'y' => 'a',
                c => c,
            };
            if c != last {
                out.push(c);
                last = c;
            }
        }
    }
    out
}

/// Dice similarity of character bigrams (0–1), on normalized names.
pub fn similarity(a: &str, b: &str) -> f64 {
    let grams = |s: &str| -> Vec<(char, char)> {
        let chars: Vec<char> = format!(" {s} ").chars().collect();
        let mut g: Vec<(char, char)> = chars.windows(2).map(|w| (w[0], w[1])).collect();
        g.sort_unstable();
        g
    };
    let (ga, gb) = (grams(a), grams(b));
    if ga.is_empty() || gb.is_empty() {
        return 0.0;
    }
    let (mut i, mut j, mut common) = (0, 0, 0usize);
    while i < ga.len() && j < gb.len() {
        match ga[i].cmp(&gb[j]) {
            std::cmp::Ordering::Equal => {
                common += 1;
                i += 1;
                j += 1;
            }
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
        }
    }
    2.0 * common as f64 / (ga.len() + gb.len()) as f64
}

/// What matching needs to know about a child, normalized once.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchKey {
    pub name: String,
    pub latin: Option<String>,
    pub sex: Sex,
    /// The birth year range: exact with a date of birth, ±1 around an estimate.
    pub birth_years: (i32, i32),
    pub date_of_birth: Option<NaiveDate>,
    pub governorate: String,
    pub district: Option<String>,
}

impl MatchKey {
    /// `today` anchors estimated ages.
    pub fn of(child: &Child, today: NaiveDate) -> MatchKey {
        let birth_years = match (child.date_of_birth, child.estimated_age_years) {
            (Some(d), _) => (d.year(), d.year()),
            (None, Some(age)) => {
                let y = today.year() - i32::from(age);
                (y - 1, y + 1)
            }
            (None, None) => (today.year() - 18, today.year()),
        };
        MatchKey {
            name: normalize_arabic(&child.name.as_given),
            latin: child.name.transliteration.as_deref().map(skeleton_latin),
            sex: child.sex,
            birth_years,
            date_of_birth: child.date_of_birth,
            governorate: normalize_arabic(&child.governorate),
            district: child.district.as_deref().map(normalize_arabic),
        }
    }
}

/// How alike two children are (0–1). Weights: name 0.5 (Arabic, with the transliteration
/// when both have one), birth 0.25, location 0.15, sex 0.10; different recorded sexes
/// divide the score by three (a data-entry slip is possible, but rare).
pub fn score(a: &MatchKey, b: &MatchKey) -> f64 {
    let arabic = similarity(&a.name, &b.name);
    let name = match (&a.latin, &b.latin) {
        (Some(x), Some(y)) => 0.7 * arabic + 0.3 * similarity(x, y),
        _ => arabic,
    };
    let birth = match (a.date_of_birth, b.date_of_birth) {
        (Some(x), Some(y)) if x == y => 1.0,
        (Some(x), Some(y)) if x.year() == y.year() => 0.6,
        _ => {
            let gap = (a.birth_years.0 - b.birth_years.1)
                .max(b.birth_years.0 - a.birth_years.1)
                .max(0);
            match gap {
                0 => 0.7,
                1 => 0.4,
                2 => 0.2,
                _ => 0.0,
            }
        }
    };
    let location = if a.governorate == b.governorate {
        if a.district.is_some() && a.district == b.district {
            1.0
        } else {
            0.6
        }
    } else {
        0.0
    };
    let same_sex = a.sex == b.sex || a.sex == Sex::NotStated || b.sex == Sex::NotStated;
    let total = 0.5 * name + 0.25 * birth + 0.15 * location + if same_sex { 0.10 } else { 0.0 };
    if same_sex {
        total
    } else {
        total / 3.0
    }
}

/// How many of a name's words make blocks: a first name, a father's, a grandfather's
/// and a family name.
const BLOCK_WORDS: usize = 4;

/// The blocks a name falls in, for finding candidates without comparing against every
/// stored child: one per pair of its first four words (so a child is found again when one
/// word is misspelt, missing or added), each word reduced to its consonants (long vowels
/// are the letters most often written or left out), hashed to 32 bits. A one-word name
/// makes one block of that word, an empty one the block of the empty word. Hash
/// collisions only add candidates, which [`score`] then ranks.
pub fn name_blocks(name: &str) -> Vec<i32> {
    let words: Vec<String> = name
        .split_whitespace()
        .take(BLOCK_WORDS)
        .map(consonants)
        .collect();
    let mut blocks = Vec::with_capacity(6);
    if words.len() <= 1 {
        blocks.push(block_hash(words.first().map_or("", String::as_str), ""));
    }
    for i in 0..words.len() {
        for j in i + 1..words.len() {
            let b = block_hash(&words[i], &words[j]);
            if !blocks.contains(&b) {
                blocks.push(b);
            }
        }
    }
    blocks
}

/// A place's block (its normalized governorate, hashed), to rank candidates of the same
/// place first.
pub fn place_block(governorate: &str) -> i32 {
    block_hash(governorate, "")
}

/// A normalized word without its long vowels (ا و ي), unless nothing else is left.
fn consonants(word: &str) -> String {
    let c: String = word
        .chars()
        .filter(|c| !matches!(c, 'ا' | 'و' | 'ي'))
        .collect();
    if c.is_empty() {
        word.to_owned()
    } else {
        c
    }
}

/// FNV-1a over two words with a separator, as a signed 32-bit number (PostgreSQL's
/// `int`). Stable across versions and machines: blocks are stored.
fn block_hash(a: &str, b: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for byte in a.bytes().chain([0u8]).chain(b.bytes()) {
        h ^= u32::from(byte);
        h = h.wrapping_mul(0x0100_0193);
    }
    i32::from_ne_bytes(h.to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 22).unwrap()
    }

    #[test]
    fn arabic_spelling_variants_fold_together() {
        assert_eq!(
            normalize_arabic("مَرْيَم أَحْمَد عبد الله"),
            normalize_arabic("مريم احمد عبدالله")
        );
        assert_eq!(normalize_arabic("فاطمة"), normalize_arabic("فاطمه"));
        assert_eq!(normalize_arabic("مصطفى"), normalize_arabic("مصطفي"));
        assert_eq!(normalize_arabic("إسراء"), normalize_arabic("اسرا"));
        assert_eq!(normalize_arabic("محـــمد"), "محمد");
    }

    #[test]
    fn transliterations_share_a_skeleton() {
        assert_eq!(
            skeleton_latin("Mohammed Abdel-Rahman"),
            skeleton_latin("Muhamad Abd al Rahman")
        );
        assert_eq!(skeleton_latin("Qasim"), skeleton_latin("Kassem"));
    }

    #[test]
    fn the_same_child_written_differently_scores_high_and_a_stranger_low() {
        let a = fixtures::details().child;
        let mut b = a.clone();
        b.name.as_given = "مَرْيَم احمد عبدالله".into();
        b.name.transliteration = Some("Mariam Ahmed Abdallah".into());
        b.date_of_birth = None;
        b.estimated_age_years = Some(12);
        let (ka, kb) = (MatchKey::of(&a, today()), MatchKey::of(&b, today()));
        assert!(score(&ka, &kb) > 0.8, "{}", score(&ka, &kb));
        let mut stranger = a.clone();
        stranger.name.as_given = "خالد يوسف".into();
        stranger.name.transliteration = Some("Khaled Youssef".into());
        stranger.sex = Sex::Male;
        stranger.date_of_birth = NaiveDate::from_ymd_opt(2019, 1, 1);
        assert!(score(&ka, &MatchKey::of(&stranger, today())) < 0.3);
    }

    #[test]
    fn a_misspelt_or_missing_word_keeps_a_block_in_common() {
        let a = name_blocks(&normalize_arabic("مريم أحمد عبد الله"));
        assert_eq!(a.len(), 3);
        // Spelling variants the normalization folds land in the same blocks.
        assert_eq!(a, name_blocks(&normalize_arabic("مَرْيَم احمد عبدالله")));
        // A long vowel written or not: the same blocks.
        assert_eq!(
            name_blocks(&normalize_arabic("داود سليمان")),
            name_blocks(&normalize_arabic("داوود سلمان"))
        );
        let typo = name_blocks(&normalize_arabic("مريم احمت عبدالله"));
        assert_eq!(typo.iter().filter(|b| a.contains(b)).count(), 1);
        let short = name_blocks(&normalize_arabic("مريم عبدالله"));
        assert!(short.iter().all(|b| a.contains(b)));
        assert_eq!(name_blocks("مريم").len(), 1);
        assert_eq!(name_blocks(""), vec![block_hash("", "")]);
        // Stored blocks must not change between versions.
        assert_eq!(block_hash("a", "b"), 284_404_690);
        assert_eq!(place_block("حلب"), block_hash("حلب", ""));
    }
}
