//! The administrative units in memory: 34 provinces and 3,321 communes (shipped with the
//! program, loaded into the database on first start, read back from it).

use crate::store::{AdminUnitRow, Commune, Province, Store};
use std::collections::HashMap;

const SHIPPED_CSV: &str = include_str!("../migrations/data/vn-admin-units-2025.csv");

/// Parses the shipped list of provinces and communes (July 2025 reform, GSO codes).
pub fn shipped_units() -> Vec<AdminUnitRow> {
    csv::Reader::from_reader(SHIPPED_CSV.as_bytes())
        .deserialize()
        .collect::<Result<Vec<AdminUnitRow>, _>>()
        .expect("the shipped administrative-units list parses")
}

/// Provinces and communes, indexed for the form and for validation.
pub struct Geo {
    provinces: Vec<Province>,
    communes: Vec<Commune>,
    by_code: HashMap<i64, usize>,
    by_province: HashMap<i64, Vec<usize>>,
    /// Each commune's name folded for search (no accents, no "Xã"/"Phường" prefix).
    folded: Vec<String>,
}

impl Geo {
    /// Reads the units from the store.
    pub async fn load(store: &Store) -> Result<Geo, crate::store::StoreError> {
        Ok(Geo::new(store.provinces().await?, store.communes().await?))
    }

    /// Indexes the given units.
    pub fn new(provinces: Vec<Province>, mut communes: Vec<Commune>) -> Geo {
        communes.sort_by(|a, b| {
            (a.province_code, sort_key(&a.name)).cmp(&(b.province_code, sort_key(&b.name)))
        });
        let mut by_code = HashMap::new();
        let mut by_province: HashMap<i64, Vec<usize>> = HashMap::new();
        for (i, c) in communes.iter().enumerate() {
            by_code.insert(c.code, i);
            by_province.entry(c.province_code).or_default().push(i);
        }
        let folded = communes.iter().map(|c| fold(&sort_key(&c.name))).collect();
        Geo {
            provinces,
            communes,
            by_code,
            by_province,
            folded,
        }
    }

    /// Every province, by code.
    pub fn provinces(&self) -> &[Province] {
        &self.provinces
    }

    /// A province by code.
    pub fn province(&self, code: i64) -> Option<&Province> {
        self.provinces.iter().find(|p| p.code == code)
    }

    /// A commune by code.
    pub fn commune(&self, code: i64) -> Option<&Commune> {
        self.by_code.get(&code).map(|i| &self.communes[*i])
    }

    /// A province's communes, by name.
    pub fn communes_of(&self, province: i64) -> impl Iterator<Item = &Commune> {
        self.by_province
            .get(&province)
            .into_iter()
            .flatten()
            .map(|i| &self.communes[*i])
    }

    /// Communes whose name matches `query` with accents and case ignored ("hoang van thu"
    /// finds "Xã Hoàng Văn Thụ"): the names equal to the query when there are any, else
    /// those that start with it, else those that contain it; at most `limit`.
    pub fn search_communes(&self, query: &str, limit: usize) -> Vec<&Commune> {
        let q = fold(&sort_key(query.trim()));
        if q.is_empty() {
            return Vec::new();
        }
        let mut ranked: Vec<(u8, usize)> = self
            .folded
            .iter()
            .enumerate()
            .filter_map(|(i, name)| {
                if *name == q {
                    Some((0, i))
                } else if name.starts_with(&q) {
                    Some((1, i))
                } else if name.contains(&q) {
                    Some((2, i))
                } else {
                    None
                }
            })
            .collect();
        ranked.sort();
        let best = ranked.first().map(|r| r.0);
        ranked
            .into_iter()
            .take_while(|r| Some(r.0) == best)
            .take(limit)
            .map(|(_, i)| &self.communes[i])
            .collect()
    }

    /// How many communes are known.
    pub fn commune_count(&self) -> usize {
        self.communes.len()
    }
}

/// Sorts "Phường Ba Đình" under B, not under "Phường".
fn sort_key(name: &str) -> String {
    let lower = name.trim().to_lowercase();
    let rest = [
        "phường ",
        "xã ",
        "đặc khu ",
        "thị trấn ",
        "phuong ",
        "xa ",
        "dac khu ",
    ]
    .iter()
    .find_map(|p| lower.strip_prefix(p))
    .unwrap_or(&lower);
    rest.to_owned()
}

/// Folds text for matching what people type on phones: lower case, Vietnamese accents
/// and đ removed, runs of spaces and punctuation made one space.
pub fn fold(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.nfd() {
        if ('\u{300}'..='\u{36f}').contains(&c) {
            continue;
        }
        let c = match c {
            'đ' | 'Đ' => 'd',
            c => c,
        };
        if c.is_alphanumeric() {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.extend(c.to_lowercase());
        } else {
            space = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_ignores_accents_case_and_punctuation() {
        assert_eq!(fold("  Hoàng  Văn Thụ! "), "hoang van thu");
        assert_eq!(fold("ĐÀ LẠT"), "da lat");
        assert_eq!(fold("/Mới"), "moi");
    }

    #[test]
    fn commune_search_finds_names_without_accents() {
        let units = shipped_units();
        let provinces = vec![];
        let communes = units
            .iter()
            .map(|u| Commune {
                code: u.commune_code,
                province_code: u.province_code,
                name: u.commune_name.clone(),
            })
            .collect();
        let geo = Geo::new(provinces, communes);
        let found = geo.search_communes("hoang van thu", 9);
        assert_eq!(found[0].name, "Xã Hoàng Văn Thụ");
        assert_eq!(geo.search_communes("Phường Hoàn Kiếm", 9)[0].code, 70);
        assert!(geo.search_communes("   ", 9).is_empty());
        assert!(geo.search_communes("zzzz", 9).is_empty());
    }

    #[test]
    fn shipped_list_has_34_provinces_and_3321_communes() {
        let units = shipped_units();
        assert_eq!(units.len(), 3321);
        let mut provinces: Vec<i64> = units.iter().map(|u| u.province_code).collect();
        provinces.sort();
        provinces.dedup();
        assert_eq!(provinces.len(), 34);
    }
}
