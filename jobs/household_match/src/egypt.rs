//! Egypt's governorates (so "القاهرة", "Cairo" and the CAPMAS code "01" are one place),
//! and the name pools the synthetic file generator draws from (fictional people).

use std::borrow::Cow;
use std::collections::HashMap;

use himaya_record::matching::normalize_arabic;

/// (CAPMAS code, Arabic name, English name). The code is also digits 8–9 of the national
/// number of a person born there.
pub const GOVERNORATES: &[(&str, &str, &str)] = &[
    ("01", "القاهرة", "Cairo"),
    ("02", "الإسكندرية", "Alexandria"),
    ("03", "بورسعيد", "Port Said"),
    ("04", "السويس", "Suez"),
    ("11", "دمياط", "Damietta"),
    ("12", "الدقهلية", "Dakahlia"),
    ("13", "الشرقية", "Sharqia"),
    ("14", "القليوبية", "Qalyubia"),
    ("15", "كفر الشيخ", "Kafr El Sheikh"),
    ("16", "الغربية", "Gharbia"),
    ("17", "المنوفية", "Monufia"),
    ("18", "البحيرة", "Beheira"),
    ("19", "الإسماعيلية", "Ismailia"),
    ("21", "الجيزة", "Giza"),
    ("22", "بني سويف", "Beni Suef"),
    ("23", "الفيوم", "Faiyum"),
    ("24", "المنيا", "Minya"),
    ("25", "أسيوط", "Asyut"),
    ("26", "سوهاج", "Sohag"),
    ("27", "قنا", "Qena"),
    ("28", "أسوان", "Aswan"),
    ("29", "الأقصر", "Luxor"),
    ("31", "البحر الأحمر", "Red Sea"),
    ("32", "الوادي الجديد", "New Valley"),
    ("33", "مطروح", "Matrouh"),
    ("34", "شمال سيناء", "North Sinai"),
    ("35", "جنوب سيناء", "South Sinai"),
];

/// Governorate spellings folded to one key: the normalized Arabic name for the 27 known
/// governorates, the normalized text itself for anything else (so two sources spelling an
/// unknown place alike still meet).
#[derive(Debug, Clone)]
pub struct Governorates {
    /// Exact spellings seen in files (Arabic, English any case, codes) → canonical key.
    /// Checked before normalizing, which is the costly part on millions of rows.
    exact: HashMap<String, String>,
}

impl Default for Governorates {
    fn default() -> Self {
        let mut exact = HashMap::new();
        for (code, ar, en) in GOVERNORATES {
            let key = normalize_arabic(ar);
            let spellings = [
                (*code).to_owned(),
                (*ar).to_owned(),
                key.clone(),
                format!("محافظة {ar}"),
                en.to_lowercase(),
                (*en).to_owned(),
                en.to_uppercase(),
            ];
            for s in spellings {
                exact.insert(s, key.clone());
            }
        }
        Governorates { exact }
    }
}

impl Governorates {
    /// The canonical key of a governorate as written anywhere.
    pub fn key<'a>(&'a self, raw: &str) -> Cow<'a, str> {
        let raw = raw.trim();
        if let Some(k) = self.exact.get(raw) {
            return Cow::Borrowed(k);
        }
        let lower = raw.to_lowercase();
        if let Some(k) = self.exact.get(&lower) {
            return Cow::Borrowed(k);
        }
        let folded = normalize_arabic(raw);
        let folded = folded.strip_prefix("محافظه ").unwrap_or(&folded).to_owned();
        match self.exact.get(&folded) {
            Some(k) => Cow::Borrowed(k),
            None => Cow::Owned(folded),
        }
    }
}

/// (Arabic, Latin) first names; boys.
pub const MALE_NAMES: &[(&str, &str)] = &[
    ("محمد", "Mohamed"),
    ("أحمد", "Ahmed"),
    ("محمود", "Mahmoud"),
    ("مصطفى", "Mostafa"),
    ("علي", "Ali"),
    ("حسن", "Hassan"),
    ("حسين", "Hussein"),
    ("إبراهيم", "Ibrahim"),
    ("عبد الله", "Abdallah"),
    ("عبد الرحمن", "Abdelrahman"),
    ("يوسف", "Youssef"),
    ("عمر", "Omar"),
    ("خالد", "Khaled"),
    ("طارق", "Tarek"),
    ("سعيد", "Said"),
    ("السيد", "Elsayed"),
    ("عادل", "Adel"),
    ("كريم", "Karim"),
    ("هاني", "Hany"),
    ("وليد", "Walid"),
    ("أشرف", "Ashraf"),
    ("جمال", "Gamal"),
    ("رضا", "Reda"),
    ("شريف", "Sherif"),
    ("ياسر", "Yasser"),
    ("عمرو", "Amr"),
    ("إسلام", "Eslam"),
    ("مينا", "Mina"),
    ("جرجس", "Girgis"),
    ("بيشوي", "Bishoy"),
    ("صلاح", "Salah"),
    ("فتحي", "Fathy"),
    ("عبد العزيز", "Abdelaziz"),
    ("حمدي", "Hamdy"),
    ("زياد", "Ziad"),
    ("آدم", "Adam"),
    ("مالك", "Malek"),
    ("ناصر", "Nasser"),
    ("رمضان", "Ramadan"),
    ("صابر", "Saber"),
];

/// (Arabic, Latin) first names; girls.
pub const FEMALE_NAMES: &[(&str, &str)] = &[
    ("فاطمة", "Fatma"),
    ("مريم", "Mariam"),
    ("آية", "Aya"),
    ("نور", "Nour"),
    ("هبة", "Heba"),
    ("منى", "Mona"),
    ("سارة", "Sara"),
    ("ياسمين", "Yasmin"),
    ("دعاء", "Doaa"),
    ("أسماء", "Asmaa"),
    ("إسراء", "Esraa"),
    ("شيماء", "Shaimaa"),
    ("زينب", "Zeinab"),
    ("هدى", "Hoda"),
    ("نادية", "Nadia"),
    ("سمر", "Samar"),
    ("رانيا", "Rania"),
    ("مروة", "Marwa"),
    ("حبيبة", "Habiba"),
    ("جنى", "Jana"),
    ("ملك", "Malak"),
    ("فرح", "Farah"),
    ("روان", "Rawan"),
    ("سلمى", "Salma"),
    ("أمل", "Amal"),
    ("وفاء", "Wafaa"),
    ("نجلاء", "Naglaa"),
    ("هناء", "Hanaa"),
    ("مارينا", "Marina"),
    ("كريستين", "Christine"),
    ("دينا", "Dina"),
    ("إيمان", "Eman"),
    ("سعاد", "Soad"),
    ("رحاب", "Rehab"),
    ("شهد", "Shahd"),
    ("لجين", "Logain"),
];

/// (Arabic, Latin) family names.
pub const FAMILY_NAMES: &[(&str, &str)] = &[
    ("الشافعي", "Elshafei"),
    ("المصري", "Elmasry"),
    ("النجار", "Elnaggar"),
    ("الجمال", "Elgammal"),
    ("حسانين", "Hassanein"),
    ("عبد العال", "Abdelaal"),
    ("الشربيني", "Elsherbiny"),
    ("البنا", "Elbanna"),
    ("الصعيدي", "Elsaidy"),
    ("منصور", "Mansour"),
    ("سليمان", "Soliman"),
    ("درويش", "Darwish"),
    ("زكي", "Zaki"),
    ("عثمان", "Osman"),
    ("رزق", "Rizk"),
    ("جاد", "Gad"),
    ("حنا", "Hanna"),
    ("غالي", "Ghaly"),
    ("فرج", "Farag"),
    ("قنديل", "Kandil"),
    ("بدوي", "Badawy"),
    ("شحاتة", "Shehata"),
    ("عطية", "Attia"),
    ("موسى", "Moussa"),
    ("الحسيني", "Elhusseiny"),
    ("الدسوقي", "Eldesouky"),
    ("الطنطاوي", "Eltantawy"),
    ("المنياوي", "Elminyawy"),
    ("أبو زيد", "Abouzeid"),
    ("عبد الحميد", "Abdelhamid"),
];

/// District names (a markaz or qism); the generator pairs them with any governorate.
pub const DISTRICTS: &[&str] = &[
    "قسم أول",
    "قسم ثان",
    "مركز البندر",
    "مركز الشرق",
    "مركز الغرب",
    "حي الشمال",
    "حي الجنوب",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_governorate_however_it_is_written() {
        let g = Governorates::default();
        let cairo = g.key("القاهرة").into_owned();
        for s in [
            "القاهره",
            "Cairo",
            "CAIRO",
            " cairo ",
            "01",
            "محافظة القاهرة",
        ] {
            assert_eq!(g.key(s), cairo, "{s}");
        }
        assert_ne!(g.key("الجيزة"), cairo);
        assert_eq!(g.key("مكان ما"), normalize_arabic("مكان ما"));
        assert_eq!(GOVERNORATES.len(), 27);
    }
}
