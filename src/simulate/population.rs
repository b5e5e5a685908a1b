//! Synthetic residents of Bologna: one row per person, no real person. Each statistical area gets
//! exactly its 2021 resident population and its share of residents aged 80 and over, both read
//! from the fragility file (`data/bologna/indici-di-fragilita-dal-2021.csv`) through the file
//! connector, so the simulator reads the data the way the service does.

use std::path::Path;

use arrow::array::{Array, Float64Array, Int64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;

use super::SimulateError;
use super::rng::Rng;
use crate::connectors::file::{FileTableConfig, load_table};

/// The year the registry describes (that of the fragility file's populations).
pub const REGISTRY_YEAR: i32 = 2021;

/// One statistical area as the fragility file gives it.
#[derive(Debug, Clone)]
pub struct Area {
    pub code: i32,
    pub name: String,
    pub quartiere: String,
    pub population: u32,
    /// Share of residents aged 80 and over, in percent; missing for a few tiny areas.
    pub share_over_80: Option<f64>,
}

impl Area {
    /// Residents aged 80 and over: the file's share of the population, rounded; for an area
    /// without a published share, the city-wide share.
    pub fn over_80(&self, city_share: f64) -> u32 {
        (self.population as f64 * self.share_over_80.unwrap_or(city_share) / 100.0).round() as u32
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Resident {
    pub area: i32,
    pub birth_year: i32,
    pub female: bool,
    /// Index into `CITIZENSHIPS`.
    pub citizenship: u8,
    pub household: u32,
}

/// Citizenships: Italian first, then the largest foreign communities in Bologna, with weights
/// roughly proportional to their residents (Comune di Bologna, stranieri residenti, 2021).
pub const CITIZENSHIPS: &[(&str, f64)] = &[
    ("Italia", 0.0),
    ("Romania", 16.0),
    ("Bangladesh", 11.0),
    ("Filippine", 8.0),
    ("Pakistan", 8.0),
    ("Ucraina", 7.0),
    ("Cina", 7.0),
    ("Marocco", 7.0),
    ("Moldova", 6.0),
    ("Albania", 6.0),
    ("Altri paesi", 24.0),
];

/// Relative number of residents per five-year band from 0–4 to 75–79, a rounded shape of
/// Bologna's 2021 age pyramid (few children, a bulge at 45–59).
const AGE_BANDS_UNDER_80: [f64; 16] = [
    3.6, 4.0, 4.2, 4.2, 5.3, 6.5, 6.8, 6.9, 7.5, 8.4, 8.8, 8.3, 7.1, 6.2, 6.3, 5.4,
];
/// Relative number of residents aged 80–84, 85–89, 90–94 and 95–99.
const AGE_BANDS_OVER_80: [f64; 4] = [45.0, 33.0, 17.0, 5.0];
/// Share of women: higher among the oldest (the popolazione series gives 52% city-wide).
const FEMALE_UNDER_80: f64 = 0.505;
const FEMALE_OVER_80: f64 = 0.62;
/// Share of foreign citizens by age, from the popolazione series for 2021 (21% of minors, 15% of
/// adults), with very few among the oldest.
fn foreign_share(age: i32) -> f64 {
    match age {
        ..18 => 0.21,
        18..80 => 0.16,
        _ => 0.02,
    }
}

/// Household sizes 1..=5 and their weights (Bologna: about half the households are one person).
const HOUSEHOLD_SIZES: [f64; 5] = [49.0, 26.0, 13.0, 9.0, 3.0];

/// The 90 statistical areas of 2021, read through the file connector.
pub async fn read_areas(path: &Path) -> Result<Vec<Area>, SimulateError> {
    let data_error = |message: String| SimulateError::Data {
        path: path.to_path_buf(),
        message,
    };
    let mut table = toml::Table::new();
    table.insert("name".into(), "fragilita".into());
    table.insert("path".into(), path.display().to_string().into());
    table.insert("delimiter".into(), ";".into());
    table.insert("filter".into(), format!("anno = {REGISTRY_YEAR}").into());
    let config: FileTableConfig = table.try_into().map_err(|e| data_error(format!("{e}")))?;
    let loaded = load_table(config, path.to_path_buf())
        .await
        .map_err(|e| data_error(e.to_string()))?;
    let mut areas = Vec::new();
    for batch in &loaded.batches {
        let column = |name: &str, to: &DataType| {
            let index = batch
                .schema()
                .index_of(name)
                .map_err(|_| data_error(format!("no column `{name}`")))?;
            cast(batch.column(index), to).map_err(|e| data_error(format!("column `{name}`: {e}")))
        };
        let codes = column("cod_area_statistica", &DataType::Int64)?;
        let names = column("area_statistica", &DataType::Utf8)?;
        let quartieri = column("quartiere", &DataType::Utf8)?;
        let populations = column("popolazione_residente", &DataType::Int64)?;
        let shares = column("perc_residenti_oltre_80_anni", &DataType::Float64)?;
        let codes = codes
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("cast to Int64");
        let names = names
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("cast to Utf8");
        let quartieri = quartieri
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("cast to Utf8");
        let populations = populations
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("cast to Int64");
        let shares = shares
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("cast to Float64");
        for row in 0..batch.num_rows() {
            if codes.is_null(row) || populations.is_null(row) {
                return Err(data_error(format!(
                    "row {} has no area code or population",
                    row + 1
                )));
            }
            areas.push(Area {
                code: codes.value(row) as i32,
                name: names.value(row).to_string(),
                quartiere: quartieri.value(row).to_string(),
                population: populations.value(row).max(0) as u32,
                share_over_80: (!shares.is_null(row)).then(|| shares.value(row)),
            });
        }
    }
    if areas.is_empty() {
        return Err(data_error(format!("no {REGISTRY_YEAR} rows")));
    }
    areas.sort_by_key(|a| a.code);
    Ok(areas)
}

/// The city-wide share of residents aged 80 and over, over the areas that publish one.
pub fn city_share_over_80(areas: &[Area]) -> f64 {
    let (over, total) = areas
        .iter()
        .filter_map(|a| {
            a.share_over_80
                .map(|s| (a.population as f64 * s / 100.0, a.population as f64))
        })
        .fold((0.0, 0.0), |(o, t), (a, b)| (o + a, t + b));
    if total > 0.0 {
        100.0 * over / total
    } else {
        0.0
    }
}

/// Every resident, area by area; household ids are unique across the city.
pub fn residents(areas: &[Area], seed: u64) -> Vec<Resident> {
    let city_share = city_share_over_80(areas);
    let mut out = Vec::with_capacity(areas.iter().map(|a| a.population as usize).sum());
    let mut next_household = 1u32;
    for area in areas {
        let mut rng = Rng::fork(seed, area.code as u64);
        let over_80 = area.over_80(city_share).min(area.population);
        let mut people: Vec<Resident> = (0..area.population)
            .map(|k| {
                let age = if k < over_80 {
                    80 + 5 * rng.weighted(&AGE_BANDS_OVER_80) as i32 + rng.below(5) as i32
                } else {
                    5 * rng.weighted(&AGE_BANDS_UNDER_80) as i32 + rng.below(5) as i32
                };
                let female = rng.chance(if age >= 80 {
                    FEMALE_OVER_80
                } else {
                    FEMALE_UNDER_80
                });
                let citizenship = if rng.chance(foreign_share(age)) {
                    let weights: Vec<f64> = CITIZENSHIPS.iter().map(|c| c.1).collect();
                    rng.weighted(&weights) as u8
                } else {
                    0
                };
                Resident {
                    area: area.code,
                    birth_year: REGISTRY_YEAR - age,
                    female,
                    citizenship,
                    household: 0,
                }
            })
            .collect();
        assign_households(&mut people, &mut rng, &mut next_household);
        out.extend(people);
    }
    out
}

/// Group an area's people into households: each is headed by an adult; minors join households
/// of two or more, never live alone.
fn assign_households(people: &mut [Resident], rng: &mut Rng, next: &mut u32) {
    let adult = |r: &Resident| REGISTRY_YEAR - r.birth_year >= 18;
    let mut adults: Vec<usize> = (0..people.len()).filter(|&i| adult(&people[i])).collect();
    let mut minors: Vec<usize> = (0..people.len()).filter(|&i| !adult(&people[i])).collect();
    let mut families: Vec<(u32, usize)> = Vec::new();
    while let Some(head) = adults.pop() {
        let id = *next;
        *next += 1;
        people[head].household = id;
        let size = 1 + rng.weighted(&HOUSEHOLD_SIZES);
        for _ in 1..size {
            let Some(member) = minors.pop().or_else(|| adults.pop()) else {
                break;
            };
            people[member].household = id;
        }
        families.push((id, size));
    }
    // Minors left over (an area of few adults) join an existing household.
    for minor in minors {
        people[minor].household = match families.len() {
            0 => {
                *next += 1;
                *next - 1
            }
            n => families[rng.below(n as u64) as usize].0,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn area(code: i32, population: u32, share: Option<f64>) -> Area {
        Area {
            code,
            name: format!("a{code}"),
            quartiere: "q".into(),
            population,
            share_over_80: share,
        }
    }

    #[test]
    fn each_area_gets_its_population_and_over_80s() {
        let areas = vec![
            area(1, 1000, Some(12.3)),
            area(2, 81, None),
            area(3, 5000, Some(4.0)),
        ];
        let people = residents(&areas, 42);
        let city = city_share_over_80(&areas);
        for a in &areas {
            let mine: Vec<_> = people.iter().filter(|r| r.area == a.code).collect();
            assert_eq!(mine.len() as u32, a.population);
            let old = mine
                .iter()
                .filter(|r| REGISTRY_YEAR - r.birth_year >= 80)
                .count() as u32;
            assert_eq!(old, a.over_80(city));
        }
        assert!(people.iter().all(|r| r.household > 0));
        let again = residents(&areas, 42);
        assert!(
            people
                .iter()
                .zip(&again)
                .all(|(a, b)| a.birth_year == b.birth_year && a.household == b.household)
        );
    }
}
