//! Saved queries: each `queries/<name>.sql` becomes the view `city.queries.<name>`. Its leading
//! comment block holds the metadata, one `-- key: value` per line (a line without a key continues
//! the previous value):
//!
//! ```sql
//! -- title: Residenti per area statistica
//! -- title_en: Residents per statistical area
//! -- description: Popolazione residente 2021 e quota di over 80.
//! -- unit: persone
//! SELECT ...
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{Problem, files_with_extension, is_sql_identifier};

/// Keys a saved query's comment block may hold.
/// `persons` lists the columns holding counts of persons, `persons_derived` the columns a count
/// could be recomputed from: callers below analyst get them through the dashboard after disclosure
/// control (see `SavedQuery::person_counts`).
pub const KEYS: &[&str] = &[
    "title",
    "title_en",
    "description",
    "description_en",
    "unit",
    "unit_en",
    "polarity",
    "sources",
    "method",
    "method_version",
    "persons",
    "persons_derived",
];

#[derive(Debug, Clone, Serialize)]
pub struct SavedQuery {
    pub name: String,
    #[serde(skip)]
    pub file: PathBuf,
    pub title: String,
    /// Every metadata key given, `title` included.
    pub metadata: BTreeMap<String, String>,
    pub sql: String,
}

impl SavedQuery {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// The disclosure control its `persons` and `persons_derived` metadata declare: each derived
    /// column is hidden in a row where any count is, and the whole result is one group.
    pub fn person_counts(&self) -> Option<crate::datasets::PersonCounts> {
        let list = |key: &str| -> Vec<String> {
            self.get(key)
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        };
        let counts = list("persons");
        if counts.is_empty() {
            return None;
        }
        let derived = list("persons_derived");
        let derived = counts
            .iter()
            .map(|c| (c.clone(), derived.clone()))
            .collect();
        Some(crate::datasets::PersonCounts {
            counts,
            derived,
            groups: Vec::new(),
        })
    }
}

/// Parse one saved query's text.
pub fn parse(name: &str, file: &Path, text: &str) -> Result<SavedQuery, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut metadata: BTreeMap<String, String> = BTreeMap::new();
    let mut last_key: Option<String> = None;
    let mut body_start = text.len();
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim();
        let Some(comment) = trimmed.strip_prefix("--") else {
            if trimmed.is_empty() {
                offset += line.len();
                continue;
            }
            body_start = offset;
            break;
        };
        offset += line.len();
        let comment = comment.trim();
        let key_value = comment
            .split_once(':')
            .filter(|(k, _)| is_sql_identifier(k.trim()));
        match key_value {
            Some((key, value)) => {
                let key = key.trim().to_string();
                if !KEYS.contains(&key.as_str()) {
                    problems.push(Problem::new(
                        file,
                        Some(format!("line {}", index + 1)),
                        format!("unknown metadata key `{key}`; expected one of {KEYS:?}"),
                    ));
                }
                metadata.insert(key.clone(), value.trim().to_string());
                last_key = Some(key);
            }
            None => match &last_key {
                Some(key) if !comment.is_empty() => {
                    let value = metadata.entry(key.clone()).or_default();
                    value.push(' ');
                    value.push_str(comment);
                }
                _ => {}
            },
        }
    }
    let sql = text[body_start..]
        .trim()
        .trim_end_matches(';')
        .trim()
        .to_string();
    let title = metadata.get("title").cloned().unwrap_or_default();
    if title.is_empty() {
        problems.push(Problem::new(
            file,
            Some("line 1".into()),
            "missing `-- title: ...` in the leading comment block",
        ));
    }
    if sql.is_empty() {
        problems.push(Problem::new(file, None, "no SQL after the comment block"));
    } else if let Err(e) = super::guard::check(&sql) {
        let (line, _) = crate::config::line_and_column(text, body_start);
        problems.push(Problem::new(
            file,
            Some(format!("line {line}")),
            e.to_string(),
        ));
    }
    if let Some(polarity) = metadata.get("polarity") {
        if !matches!(
            polarity.as_str(),
            "higher_is_worse" | "higher_is_better" | "neutral"
        ) {
            problems.push(Problem::new(
                file,
                Some("polarity".into()),
                "polarity must be higher_is_worse, higher_is_better or neutral",
            ));
        }
    }
    if problems.is_empty() {
        Ok(SavedQuery {
            name: name.to_string(),
            file: file.to_path_buf(),
            title,
            metadata,
            sql,
        })
    } else {
        Err(problems)
    }
}

pub fn load_dir(dir: &Path, problems: &mut Vec<Problem>) -> Vec<SavedQuery> {
    let files = match files_with_extension(dir, "sql") {
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
    let mut queries = Vec::new();
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
                    "`{name}` is the view's name in SQL: use lowercase letters, digits and `_`"
                ),
            ));
            continue;
        }
        match std::fs::read_to_string(&file) {
            Ok(text) => match parse(&name, &file, &text) {
                Ok(query) => queries.push(query),
                Err(found) => problems.extend(found),
            },
            Err(e) => problems.push(Problem::new(
                &file,
                None,
                format!("cannot read the file: {e}"),
            )),
        }
    }
    queries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_and_sql_are_split() {
        let text = "-- title: Residenti per area\n-- description: Popolazione 2021\n--   e quota over 80.\n-- unit: persone\n\nSELECT 1 AS x;\n";
        let query = parse("residents", Path::new("q.sql"), text).unwrap();
        assert_eq!(query.title, "Residenti per area");
        assert_eq!(
            query.get("description"),
            Some("Popolazione 2021 e quota over 80.")
        );
        assert_eq!(query.get("unit"), Some("persone"));
        assert_eq!(query.sql, "SELECT 1 AS x");
    }

    #[test]
    fn problems_name_the_line() {
        let text = "-- title: T\n-- colour: red\nDROP TABLE x";
        let problems = parse("q", Path::new("queries/q.sql"), text).unwrap_err();
        let messages: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(
            messages[0].starts_with("queries/q.sql: line 2: unknown metadata key `colour`"),
            "{messages:?}"
        );
        assert!(
            messages[1].starts_with("queries/q.sql: line 3: `DROP TABLE` is not allowed"),
            "{messages:?}"
        );
    }
}
