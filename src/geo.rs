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
}

impl Geo {
    /// Reads the units from the store.
    pub async fn load(store: &Store) -> Result<Geo, sqlx::Error> {
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
        Geo {
            provinces,
            communes,
            by_code,
            by_province,
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

    /// How many communes are known.
    pub fn commune_count(&self) -> usize {
        self.communes.len()
    }
}

/// Sorts "Phường Ba Đình" under B, not under "Phường".
fn sort_key(name: &str) -> String {
    let rest = ["Phường ", "Xã ", "Đặc khu ", "Thị trấn "]
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name);
    rest.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

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
