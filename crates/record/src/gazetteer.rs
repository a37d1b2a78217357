//! Places are a gazetteer, not free text: governorates (and, where configured, their
//! districts) with their official Arabic and English names and codes. A place written
//! in any of those forms, or with the usual variants of Arabic spelling (ة/ه, ى/ي, hamza
//! forms, diacritics, a leading "محافظة"), is the same place, and is stored under its
//! official Arabic name, so routing, caps and statistics agree. Anything else is refused
//! with the allowed values, instead of a referral that silently reaches no one.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::matching::normalize_arabic;
use crate::record::Child;
use crate::validate::{Problem, Violations};

/// The configured places (`[gazetteer]` in the configuration).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gazetteer {
    pub governorates: Vec<Governorate>,
    /// Folded spelling → index in `governorates`, made on first use.
    #[serde(skip)]
    index: OnceLock<HashMap<String, usize>>,
}

/// A governorate and, where known, its districts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Governorate {
    /// The official code (for Egypt, CAPMAS's two digits).
    pub code: String,
    pub name_ar: String,
    pub name_en: String,
    /// Districts (أحياء / مراكز). Empty: not yet in the gazetteer, and then any district
    /// is taken as written.
    #[serde(default)]
    pub districts: Vec<District>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct District {
    pub name_ar: String,
    pub name_en: String,
}

/// A spelling reduced to what tells places apart.
fn fold(raw: &str) -> String {
    let folded = normalize_arabic(raw.trim());
    let folded = folded.strip_prefix("محافظه ").unwrap_or(&folded);
    let folded = folded.strip_suffix(" governorate").unwrap_or(folded);
    folded.trim().to_owned()
}

impl Gazetteer {
    pub fn new(governorates: Vec<Governorate>) -> Gazetteer {
        Gazetteer {
            governorates,
            index: OnceLock::new(),
        }
    }

    fn index(&self) -> &HashMap<String, usize> {
        self.index.get_or_init(|| {
            let mut index = HashMap::new();
            for (i, g) in self.governorates.iter().enumerate() {
                index.insert(fold(&g.name_ar), i);
                index.insert(fold(&g.name_en), i);
                // Codes are digits, which folding (made for names) drops.
                index.insert(format!("#{}", g.code.trim()), i);
            }
            index
        })
    }

    /// The governorate `raw` names, however it is spelt.
    pub fn governorate(&self, raw: &str) -> Option<&Governorate> {
        let index = self.index();
        let folded = fold(raw);
        let found = match folded.is_empty() {
            true => index.get(&format!("#{}", raw.trim())),
            false => index.get(&folded),
        };
        found.map(|i| &self.governorates[*i])
    }

    /// The allowed governorates, for a refusal: "القاهرة (Cairo), …".
    pub fn choices(&self) -> String {
        let names: Vec<String> = self
            .governorates
            .iter()
            .map(|g| format!("{} ({})", g.name_ar, g.name_en))
            .collect();
        names.join(", ")
    }

    /// Replaces the child's governorate and district by their official Arabic names, or
    /// records why it cannot (the field, and the allowed values; never the value sent).
    pub fn place_child(&self, v: &mut Violations, prefix: &str, child: &mut Child) {
        if child.governorate.trim().is_empty() {
            return; // reported as required by the record's own validation
        }
        let Some(g) = self.governorate(&child.governorate) else {
            v.push(
                format!("{prefix}.child.governorate"),
                Problem::NotInGazetteer {
                    choices: self.choices(),
                },
            );
            return;
        };
        child.governorate = g.name_ar.clone();
        let Some(district) = child.district.as_mut() else {
            return;
        };
        if g.districts.is_empty() {
            return;
        }
        match g.district(district) {
            Some(d) => *district = d.name_ar.clone(),
            None => v.push(
                format!("{prefix}.child.district"),
                Problem::NotInGazetteer {
                    choices: g.district_choices(),
                },
            ),
        }
    }
}

impl Governorate {
    /// The district `raw` names in this governorate, however it is spelt.
    pub fn district(&self, raw: &str) -> Option<&District> {
        let key = fold(raw);
        self.districts
            .iter()
            .find(|d| fold(&d.name_ar) == key || fold(&d.name_en) == key)
    }

    fn district_choices(&self) -> String {
        let names: Vec<String> = self
            .districts
            .iter()
            .map(|d| format!("{} ({})", d.name_ar, d.name_en))
            .collect();
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn egypt() -> Gazetteer {
        let g = |code: &str, ar: &str, en: &str, districts: &[(&str, &str)]| Governorate {
            code: code.into(),
            name_ar: ar.into(),
            name_en: en.into(),
            districts: districts
                .iter()
                .map(|(ar, en)| District {
                    name_ar: (*ar).into(),
                    name_en: (*en).into(),
                })
                .collect(),
        };
        Gazetteer::new(vec![
            g("01", "القاهرة", "Cairo", &[("شبرا", "Shubra")]),
            g("21", "الجيزة", "Giza", &[]),
            g("02", "الإسكندرية", "Alexandria", &[]),
        ])
    }

    #[test]
    fn one_place_however_it_is_written() {
        let z = egypt();
        for spelling in [
            "القاهرة",
            "القاهره",
            " محافظة القاهرة ",
            "cairo",
            "Cairo Governorate",
            "01",
        ] {
            assert_eq!(
                z.governorate(spelling).map(|g| g.code.as_str()),
                Some("01"),
                "{spelling}"
            );
        }
        assert_eq!(
            z.governorate("الاسكندريه").map(|g| g.code.as_str()),
            Some("02")
        );
        assert!(z.governorate("أطلانطس").is_none());
    }

    #[test]
    fn a_child_is_placed_under_official_names_or_refused_with_the_choices() {
        let z = egypt();
        let mut child = crate::fixtures::details().child;
        child.governorate = "القاهره".into();
        child.district = Some("شبرا".into());
        let mut v = Violations::new();
        z.place_child(&mut v, "referral", &mut child);
        assert!(v.is_empty(), "{v}");
        assert_eq!(child.governorate, "القاهرة");

        child.governorate = "أطلانطس".into();
        let mut v = Violations::new();
        z.place_child(&mut v, "referral", &mut child);
        assert!(v.has("referral.child.governorate", "not_in_gazetteer"));
        assert!(!v.to_string().contains("أطلانطس"), "never the value sent");
        assert!(
            v.to_string().contains("الجيزة (Giza)"),
            "the allowed values"
        );

        child.governorate = "Cairo".into();
        child.district = Some("حي لا يوجد".into());
        let mut v = Violations::new();
        z.place_child(&mut v, "referral", &mut child);
        assert!(v.has("referral.child.district", "not_in_gazetteer"));
        // A governorate without districts in the gazetteer takes the district as written.
        child.governorate = "Giza".into();
        let mut v = Violations::new();
        z.place_child(&mut v, "referral", &mut child);
        assert!(v.is_empty());
    }
}
