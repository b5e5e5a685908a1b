//! Published datasets for partner agencies: `datasets/<name>.toml` names a saved query and carries
//! the DCAT-AP_IT metadata, the columns partners may filter on, and — for counts of persons —
//! the columns subject to statistical disclosure control.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config_text::{Problem, files_with_extension, is_sql_identifier, read_toml};
use crate::query::saved::SavedQuery;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    pub title: String,
    #[serde(default)]
    pub title_en: Option<String>,
    pub description: String,
    #[serde(default)]
    pub description_en: Option<String>,
    /// The saved query (queries/<name>.sql) whose rows are published.
    pub query: String,
    /// Licence URI, e.g. https://creativecommons.org/licenses/by/4.0/
    pub licence: String,
    /// The body that holds the rights on the data (`dct:rightsHolder`), by name.
    pub publisher: String,
    /// Its IPA code (e.g. `m_it`); not needed when it is the catalogue's publisher
    /// (`[catalogue]` in cruscotto.toml).
    #[serde(default)]
    pub publisher_ipa: Option<String>,
    /// EU frequency code: ANNUAL, MONTHLY, WEEKLY, DAILY, IRREG, …
    pub update_frequency: String,
    /// EU data-theme codes: SOCI, GOVE, TECH, HEAL, REGI, …
    #[serde(default)]
    pub themes: Vec<String>,
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Spatial coverage, e.g. "Bologna".
    pub spatial: String,
    #[serde(default)]
    pub temporal: Option<Temporal>,
    /// A column whose values are unique: pages follow it, so a page boundary survives a refresh.
    pub key: String,
    /// Columns partners may filter on (eq, in, range).
    #[serde(default)]
    pub filters: Vec<String>,
    /// Present when the rows hold counts of persons.
    #[serde(default)]
    pub persons: Option<PersonCounts>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Temporal {
    pub start: chrono::NaiveDate,
    pub end: chrono::NaiveDate,
}

/// Statistical disclosure control of a dataset of counts of persons.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonCounts {
    /// Columns holding counts of persons: a cell below the threshold is suppressed.
    pub counts: Vec<String>,
    /// Columns from which a count could be recomputed (a share, a rate): suppressed with it.
    #[serde(default)]
    pub derived: BTreeMap<String, Vec<String>>,
    /// Columns grouping the rows whose counts add up to a published total (e.g. the zone of an
    /// area). Within a group a lone suppressed cell could be recovered by subtraction, so a
    /// second cell is suppressed too. Empty: the whole dataset is one group.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// Disclosure control is declared once, in the saved query, so the dashboard, the map and every
/// dataset built on the query suppress the same cells: a dataset's `[persons]` must be covered by
/// the query's `persons_*` metadata. Returns what is missing.
fn undeclared(dataset: &PersonCounts, query: Option<&PersonCounts>, name: &str) -> Option<String> {
    let Some(query) = query else {
        return Some(format!(
            "declare the counts in queries/{name}.sql (`-- persons: ...`), where every output that reads them picks them up"
        ));
    };
    let mut missing: Vec<String> = dataset
        .counts
        .iter()
        .filter(|c| !query.counts.contains(c))
        .map(|c| format!("`{c}` in `-- persons:`"))
        .collect();
    for (count, columns) in &dataset.derived {
        for column in columns {
            if !query.derived.get(count).is_some_and(|d| d.contains(column)) {
                missing.push(format!("`{column} <- {count}` in `-- persons_derived:`"));
            }
        }
    }
    if dataset.groups != query.groups {
        missing.push(format!(
            "`{}` in `-- persons_groups:`",
            dataset.groups.join(", ")
        ));
    }
    (!missing.is_empty()).then(|| {
        format!(
            "queries/{name}.sql must declare what the dataset declares: {}",
            missing.join(", ")
        )
    })
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    pub file: PathBuf,
    pub config: DatasetConfig,
}

pub fn load_dir(dir: &Path, queries: &[SavedQuery], problems: &mut Vec<Problem>) -> Vec<Dataset> {
    let files = match files_with_extension(dir, "toml") {
        Ok(files) => files,
        Err(e) => {
            problems.push(Problem::new(
                dir,
                None,
                format!("cannot list the folder: {e}"),
            ));
            return Vec::new();
        }
    };
    let mut datasets = Vec::new();
    for file in files {
        let name = file
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if !is_sql_identifier(&name) {
            problems.push(Problem::new(
                &file,
                None,
                format!(
                    "`{name}` is the dataset's name in URLs: use lowercase letters, digits and `_`"
                ),
            ));
            continue;
        }
        let config: DatasetConfig = match read_toml(&file) {
            Ok(config) => config,
            Err(problem) => {
                problems.push(problem);
                continue;
            }
        };
        if !queries.iter().any(|q| q.name == config.query) {
            problems.push(Problem::new(
                &file,
                Some("query".into()),
                format!(
                    "`{}` is not a saved query (no file queries/{}.sql)",
                    config.query, config.query
                ),
            ));
        }
        if let Some(persons) = &config.persons {
            let declared = queries
                .iter()
                .find(|q| q.name == config.query)
                .and_then(SavedQuery::person_counts);
            if let Some(problem) = undeclared(persons, declared.as_ref(), &config.query) {
                problems.push(Problem::new(&file, Some("persons".into()), problem));
            }
            if persons.counts.is_empty() {
                problems.push(Problem::new(
                    &file,
                    Some("persons.counts".into()),
                    "name at least one column of counts of persons",
                ));
            }
            for count in persons.derived.keys() {
                if !persons.counts.contains(count) {
                    problems.push(Problem::new(
                        &file,
                        Some(format!("persons.derived.{count}")),
                        format!("`{count}` is not listed in persons.counts"),
                    ));
                }
            }
        }
        datasets.push(Dataset { name, file, config });
    }
    datasets
}
