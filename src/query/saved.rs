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

use crate::config_text::{Problem, files_with_extension, is_sql_identifier};

/// Keys a saved query's comment block may hold. The `persons_*` keys declare disclosure control
/// (see `crate::sdc` and `SavedQuery::person_counts`): `persons` lists the columns holding counts
/// of persons; `persons_derived` the columns a count could be recomputed from, as
/// `share, rate <- count; other <- count2` (a list without `<-` derives from every count);
/// `persons_groups` the columns grouping rows whose totals are published (secondary suppression);
/// `persons_key` the columns identifying a row (to flag counts suppressed upstream).
/// `fallback` names another saved query that answers in this one's place while this one does not
/// plan (a source it reads is not configured or not loaded yet), e.g. an index computed without
/// the sensors in an installation that has none.
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
    "method_en",
    "method_version",
    "columns",
    "columns_en",
    "period",
    "period_column",
    "source",
    "source_en",
    "persons",
    "persons_derived",
    "persons_groups",
    "persons_key",
    "fallback",
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

    /// The disclosure control its `persons_*` metadata declare, or `None` without `persons`.
    pub fn person_counts(&self) -> Option<crate::datasets::PersonCounts> {
        let counts = self.list("persons");
        if counts.is_empty() {
            return None;
        }
        let mut derived: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (columns, from) in self.derivations() {
            for count in from.unwrap_or_else(|| counts.clone()) {
                let entry = derived.entry(count).or_default();
                for column in &columns {
                    if !entry.contains(column) {
                        entry.push(column.clone());
                    }
                }
            }
        }
        Some(crate::datasets::PersonCounts {
            counts,
            derived,
            groups: self.list("persons_groups"),
        })
    }

    /// The columns identifying a row (`persons_key`).
    pub fn persons_key(&self) -> Vec<String> {
        self.list("persons_key")
    }

    fn list(&self, key: &str) -> Vec<String> {
        split_list(self.get(key).unwrap_or(""))
    }

    /// `persons_derived` as (columns, the counts they derive from; `None` = every count).
    fn derivations(&self) -> Vec<(Vec<String>, Option<Vec<String>>)> {
        self.get("persons_derived")
            .unwrap_or("")
            .split(';')
            .filter(|part| !part.trim().is_empty())
            .map(|part| match part.split_once("<-") {
                Some((columns, counts)) => (split_list(columns), Some(split_list(counts))),
                None => (split_list(part), None),
            })
            .collect()
    }
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect()
}

/// Problems with the `persons_*` keys: names that are not columns, derivations from undeclared
/// counts, disclosure control declared without any count.
fn persons_problems(query: &SavedQuery) -> Vec<String> {
    let counts = query.list("persons");
    let mut problems = Vec::new();
    for key in ["persons", "persons_groups", "persons_key"] {
        for column in query.list(key) {
            if !is_sql_identifier(&column) {
                problems.push(format!("{key}: `{column}` is not a column name"));
            }
        }
    }
    if counts.is_empty() {
        for key in ["persons_derived", "persons_groups", "persons_key"] {
            if query.get(key).is_some() {
                problems.push(format!("{key} needs `persons`, the counts it refers to"));
            }
        }
    }
    for (columns, from) in query.derivations() {
        for column in &columns {
            if !is_sql_identifier(column) {
                problems.push(format!("persons_derived: `{column}` is not a column name"));
            }
        }
        for count in from.into_iter().flatten() {
            if !counts.contains(&count) {
                problems.push(format!(
                    "persons_derived: `{count}` is not one of the counts in `persons`"
                ));
            }
        }
    }
    problems
}

/// Parse one saved query's text.
/// Read a saved query file; its SQL must be read-only and at most `max_depth` deep
/// (`[query] max_expression_depth`).
pub fn parse(
    name: &str,
    file: &Path,
    text: &str,
    max_depth: usize,
) -> Result<SavedQuery, Vec<Problem>> {
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
    } else if let Err(e) = super::guard::check(&sql, max_depth) {
        let (line, _) = crate::config_text::line_and_column(text, body_start);
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
    for key in ["columns", "columns_en"] {
        if let Some(value) = metadata.get(key)
            && let Err(problem) = column_labels(value)
        {
            problems.push(Problem::new(file, Some(key.into()), problem));
        }
    }
    let query = SavedQuery {
        name: name.to_string(),
        file: file.to_path_buf(),
        title,
        metadata,
        sql,
    };
    for problem in persons_problems(&query) {
        problems.push(Problem::new(file, Some("persons".into()), problem));
    }
    if problems.is_empty() {
        Ok(query)
    } else {
        Err(problems)
    }
}

/// A column's label and unit, as the dashboard shows them in table headers and legends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnLabel {
    pub column: String,
    pub label: String,
    pub unit: Option<String>,
}

/// `-- columns: name = Label [unit]; other = Other label` (and `columns_en`): the labels and units
/// of a query's output columns. Every item needs a column name, `=` and a label.
pub fn column_labels(text: &str) -> Result<Vec<ColumnLabel>, String> {
    text.split(';')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (column, rest) = item
                .split_once('=')
                .ok_or_else(|| format!("`{item}`: expected `column = label [unit]`"))?;
            let column = column.trim();
            if !is_sql_identifier(column) {
                return Err(format!("`{column}` is not a column name"));
            }
            let rest = rest.trim();
            let (label, unit) = match rest.strip_suffix(']').and_then(|r| r.rsplit_once('[')) {
                Some((label, unit)) => (label.trim(), Some(unit.trim().to_string())),
                None => (rest, None),
            };
            if label.is_empty() {
                return Err(format!("`{column}` has no label"));
            }
            Ok(ColumnLabel {
                column: column.to_string(),
                label: label.to_string(),
                unit: unit.filter(|u| !u.is_empty()),
            })
        })
        .collect()
}

pub fn load_dir(dir: &Path, max_depth: usize, problems: &mut Vec<Problem>) -> Vec<SavedQuery> {
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
            Ok(text) => match parse(&name, &file, &text, max_depth) {
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
    problems.extend(fallback_problems(&queries));
    queries
}

/// A `fallback` must name another saved query, itself without a fallback (one step, so the
/// query answering is always either the one named or its fallback).
fn fallback_problems(queries: &[SavedQuery]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for query in queries {
        let Some(fallback) = query.get("fallback") else {
            continue;
        };
        let problem = match queries.iter().find(|q| q.name == fallback) {
            _ if fallback == query.name => Some(format!("`{fallback}` is this query itself")),
            None => Some(format!("`{fallback}` is not a saved query")),
            Some(other) if other.get("fallback").is_some() => Some(format!(
                "`{fallback}` has a fallback of its own; a fallback must plan without one"
            )),
            Some(_) => None,
        };
        if let Some(problem) = problem {
            problems.push(Problem::new(&query.file, Some("fallback".into()), problem));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPTH: usize = 1000;

    #[test]
    fn a_fallback_names_another_saved_query_without_a_fallback() {
        let query = |name: &str, fallback: Option<&str>| {
            let head = fallback.map_or(String::new(), |f| format!("-- fallback: {f}\n"));
            parse(
                name,
                Path::new(&format!("{name}.sql")),
                &format!("-- title: {name}\n{head}SELECT 1 AS x"),
                DEPTH,
            )
            .unwrap()
        };
        let messages = |queries: &[SavedQuery]| -> Vec<String> {
            fallback_problems(queries)
                .into_iter()
                .map(|p| format!("{}: {}", p.file.display(), p.message))
                .collect()
        };
        assert!(messages(&[query("a", Some("b")), query("b", None)]).is_empty());
        assert_eq!(
            messages(&[query("a", Some("a"))]),
            ["a.sql: `a` is this query itself"]
        );
        assert_eq!(
            messages(&[query("a", Some("missing"))]),
            ["a.sql: `missing` is not a saved query"]
        );
        assert_eq!(
            messages(&[
                query("a", Some("b")),
                query("b", Some("c")),
                query("c", None)
            ]),
            ["a.sql: `b` has a fallback of its own; a fallback must plan without one"]
        );
    }

    #[test]
    fn metadata_and_sql_are_split() {
        let text = "-- title: Residenti per area\n-- description: Popolazione 2021\n--   e quota over 80.\n-- unit: persone\n\nSELECT 1 AS x;\n";
        let query = parse("residents", Path::new("q.sql"), text, DEPTH).unwrap();
        assert_eq!(query.title, "Residenti per area");
        assert_eq!(
            query.get("description"),
            Some("Popolazione 2021 e quota over 80.")
        );
        assert_eq!(query.get("unit"), Some("persone"));
        assert_eq!(query.sql, "SELECT 1 AS x");
    }

    #[test]
    fn persons_metadata_declares_counts_derivations_groups_and_key() {
        let text = "-- title: T\n-- persons: over_80, soli\n\
                    -- persons_derived: quota, stima <- over_80; quota_soli <- soli; tutto\n\
                    -- persons_groups: zona\n-- persons_key: area\nSELECT 1";
        let query = parse("q", Path::new("q.sql"), text, DEPTH).unwrap();
        let rules = query.person_counts().unwrap();
        assert_eq!(rules.counts, ["over_80", "soli"]);
        assert_eq!(rules.derived["over_80"], ["quota", "stima", "tutto"]);
        assert_eq!(rules.derived["soli"], ["quota_soli", "tutto"]);
        assert_eq!(rules.groups, ["zona"]);
        assert_eq!(query.persons_key(), ["area"]);

        let bad = "-- title: T\n-- persons: a\n-- persons_derived: x <- b\nSELECT 1";
        let problems = parse("q", Path::new("q.sql"), bad, DEPTH).unwrap_err();
        assert!(
            problems[0]
                .to_string()
                .contains("`b` is not one of the counts"),
            "{problems:?}"
        );
        let orphan = "-- title: T\n-- persons_derived: x\nSELECT 1";
        assert!(parse("q", Path::new("q.sql"), orphan, DEPTH).is_err());
    }

    #[test]
    fn problems_name_the_line() {
        let text = "-- title: T\n-- colour: red\nDROP TABLE x";
        let problems = parse("q", Path::new("queries/q.sql"), text, DEPTH).unwrap_err();
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

#[cfg(test)]
mod column_label_tests {
    use super::*;

    #[test]
    fn column_labels_carry_a_label_and_an_optional_unit() {
        let labels = column_labels(
            "over_65_soli_pct = Over 65 che vivono soli [% degli over 65];\n area_statistica = Area statistica;",
        )
        .unwrap();
        assert_eq!(
            labels,
            [
                ColumnLabel {
                    column: "over_65_soli_pct".into(),
                    label: "Over 65 che vivono soli".into(),
                    unit: Some("% degli over 65".into()),
                },
                ColumnLabel {
                    column: "area_statistica".into(),
                    label: "Area statistica".into(),
                    unit: None,
                },
            ]
        );
        for (bad, says) in [
            (
                "over_65_soli_pct Over 65",
                "expected `column = label [unit]`",
            ),
            ("Over 65 = x", "is not a column name"),
            ("x = [%]", "has no label"),
        ] {
            let error = column_labels(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
        let problems = parse(
            "q",
            Path::new("queries/q.sql"),
            "-- title: Q\n-- columns: a Label\nSELECT 1 AS a",
            64,
        )
        .unwrap_err();
        assert!(
            problems[0].to_string().contains("columns"),
            "{}",
            problems[0]
        );
    }
}
