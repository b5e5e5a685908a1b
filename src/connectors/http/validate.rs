//! Checks of an `http` connector file beyond parsing: URLs, pointers, header names, what
//! pagination, incremental pulls and authentication need. Each problem names its key.

use std::path::Path;
use std::time::Duration;

use super::config::*;
use crate::config_text::{Problem, is_sql_identifier, resolve};
use crate::connectors::file::ColumnType;

impl HttpConnectorConfig {
    pub fn validate(&self, file: &Path, base_dir: &Path) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut error =
            |key: String, message: String| problems.push(Problem::new(file, Some(key), message));
        if self.tables.is_empty() {
            error(
                "table".into(),
                "no `[[table]]`: an http connector needs at least one table".into(),
            );
        }
        for name in self.headers.keys() {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                error(
                    format!("headers.{name}"),
                    format!("`{name}` is not a valid header name"),
                );
            }
        }
        if self.retry.attempts == 0 {
            error(
                "retry.attempts".into(),
                "must be at least 1 (the first attempt)".into(),
            );
        }
        validate_auth(&self.auth, &mut error);
        let mut names = std::collections::BTreeSet::new();
        for (i, table) in self.tables.iter().enumerate() {
            let at = |key: &str| format!("table[{i}].{key}");
            if !is_sql_identifier(&table.name) {
                error(
                    at("name"),
                    format!(
                        "`{}` is not a valid table name: use lowercase letters, digits and `_`",
                        table.name
                    ),
                );
            }
            if !names.insert(table.name.clone()) {
                error(
                    at("name"),
                    format!("table `{}` is declared twice", table.name),
                );
            }
            validate_table(table, &at, &mut error);
        }
        if self.enabled
            && let AuthConfig::Pdnd(pdnd) = &self.auth
        {
            let files = [
                ("auth.private_key", Some(&pdnd.private_key)),
                ("auth.kid_file", pdnd.kid_file.as_ref()),
            ];
            for (key, relative) in files {
                let Some(relative) = relative else { continue };
                let path = resolve(base_dir, relative);
                if !path.is_file() {
                    problems.push(Problem::warning(
                        file,
                        Some(key.into()),
                        format!(
                            "`{}` does not exist; the tables will fail until it appears",
                            path.display()
                        ),
                    ));
                }
            }
        }
        problems
    }
}

fn validate_url(text: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(&text.replace(SINCE, "x"))
        .map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" => Ok(()),
        other => Err(format!(
            "`{text}`: the scheme must be http or https, not `{other}`"
        )),
    }
}

fn validate_pointer(pointer: &str) -> Result<(), String> {
    if pointer.is_empty() || pointer.starts_with('/') {
        Ok(())
    } else {
        Err(format!(
            "`{pointer}` is not a JSON pointer: it starts with `/`, e.g. `/data/items`"
        ))
    }
}

fn validate_auth(auth: &AuthConfig, error: &mut impl FnMut(String, String)) {
    match auth {
        AuthConfig::None | AuthConfig::Bearer(_) => {}
        AuthConfig::ApiKey(key) => {
            if reqwest::header::HeaderName::from_bytes(key.header.as_bytes()).is_err() {
                error(
                    "auth.header".into(),
                    format!("`{}` is not a valid header name", key.header),
                );
            }
        }
        AuthConfig::Oauth2(oauth) => {
            if let Err(e) = validate_url(&oauth.token_url) {
                error("auth.token_url".into(), e);
            }
        }
        AuthConfig::Pdnd(pdnd) => {
            if let Err(e) = validate_url(&pdnd.token_url) {
                error("auth.token_url".into(), e);
            }
            let mut required = vec![
                ("client_id", &pdnd.client_id),
                ("purpose_id", &pdnd.purpose_id),
                ("audience", &pdnd.audience),
            ];
            if let Some(kid) = &pdnd.kid {
                required.push(("kid", kid));
            }
            if let Some(audit) = &pdnd.audit {
                required.extend([
                    ("audit.audience", &audit.audience),
                    ("audit.user_id", &audit.user_id),
                    ("audit.user_location", &audit.user_location),
                    ("audit.loa", &audit.loa),
                ]);
            }
            for (key, value) in required {
                if value.trim().is_empty() {
                    error(format!("auth.{key}"), "must not be empty".into());
                }
            }
            let jwk = pdnd
                .private_key
                .extension()
                .is_some_and(|e| e == "json" || e == "jwk");
            match (&pdnd.kid, &pdnd.kid_file) {
                (Some(_), Some(_)) => error(
                    "auth.kid_file".into(),
                    "set `kid` or `kid_file`, not both".into(),
                ),
                (None, None) if !jwk => error(
                    "auth.kid".into(),
                    "missing: set `kid`, or `kid_file`, or make `private_key` a JWK (`.jwk` or `.json`) holding its `kid`".into(),
                ),
                _ => {}
            }
            if pdnd.assertion_lifetime < Duration::from_secs(1) {
                error(
                    "auth.assertion_lifetime".into(),
                    "must be at least one second".into(),
                );
            }
        }
    }
}

fn validate_table(
    table: &HttpTableConfig,
    at: &dyn Fn(&str) -> String,
    error: &mut impl FnMut(String, String),
) {
    if let Err(e) = validate_url(&table.url) {
        error(at("url"), e);
    }
    for name in table.headers.keys() {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            error(
                at(&format!("headers.{name}")),
                format!("`{name}` is not a valid header name"),
            );
        }
    }
    if let Some(pointer) = &table.json_pointer {
        if let Err(e) = validate_pointer(pointer) {
            error(at("json_pointer"), e);
        }
        if table.format != ResponseFormat::Json {
            error(
                at("json_pointer"),
                "only JSON responses have a `json_pointer`".into(),
            );
        }
    }
    if table.max_pages == 0 {
        error(at("max_pages"), "must be at least 1".into());
    }
    let json_only = |what: &str, error: &mut dyn FnMut(String, String)| {
        if table.format != ResponseFormat::Json {
            error(at("pagination"), format!("{what} needs JSON responses"));
        }
    };
    match &table.pagination {
        Pagination::None | Pagination::Link => {}
        Pagination::Page(page) => {
            if page.size == Some(0) {
                error(at("pagination.size"), "must be at least 1".into());
            }
            if let Some(total) = &page.total {
                if let Err(e) = validate_pointer(total) {
                    error(at("pagination.total"), e);
                }
                json_only("`total`", error);
            }
        }
        Pagination::Offset(offset) => {
            if offset.limit == 0 {
                error(at("pagination.limit"), "must be at least 1".into());
            }
            if let Some(total) = &offset.total {
                if let Err(e) = validate_pointer(total) {
                    error(at("pagination.total"), e);
                }
                json_only("`total`", error);
            }
        }
        Pagination::Cursor(cursor) => {
            if let Err(e) = validate_pointer(&cursor.next) {
                error(at("pagination.next"), e);
            }
            json_only("cursor pagination", error);
        }
    }
    for (column, _) in &table.schema {
        if column.is_empty() {
            error(at("schema"), "a column name is empty".into());
        }
    }
    let since_written = table.url.contains(SINCE)
        || table.query.values().any(|v| v.contains(SINCE))
        || table.body.as_deref().is_some_and(|b| b.contains(SINCE));
    if let Some(incremental) = &table.incremental {
        if table.schema.is_empty() {
            error(
                at("incremental"),
                "an incremental table needs a declared `schema`: its rows are appended across pulls, so its columns must not depend on what one pull returns".into(),
            );
        }
        match table.schema.get(&incremental.column) {
            None if !table.schema.is_empty() => error(
                at("incremental.column"),
                format!(
                    "`{}` is not a column of the declared `schema`",
                    incremental.column
                ),
            ),
            Some(ColumnType::Bool) => error(
                at("incremental.column"),
                "a boolean column cannot be a cursor".into(),
            ),
            _ => {}
        }
        if let Some(column) = incremental.retention_column() {
            let key = match incremental.retention_column {
                Some(_) => "incremental.retention_column",
                None => "incremental.retention",
            };
            match table.schema.get(column) {
                Some(ColumnType::Date | ColumnType::Timestamp) => {}
                _ => error(
                    at(key),
                    format!(
                        "the retention is measured on `{column}`, which must be a `date` or `timestamp` column of the declared `schema`"
                    ),
                ),
            }
            if incremental.retention.is_some_and(|r| r.is_zero()) {
                error(
                    at("incremental.retention"),
                    "retention must be longer than zero".into(),
                );
            }
        }
        if incremental.param.is_none() && !since_written {
            error(
                at("incremental"),
                "set `param` (the query parameter taking the cursor) or write `{since}` in `url`, `query` or `body`".into(),
            );
        }
    }
    if since_written && table.incremental.is_none() {
        error(at("incremental"), "`{since}` is written in the request but the table has no `incremental` to give it a value".into());
    }
    if table.body.is_some() && table.method == Method::Get {
        error(
            at("body"),
            "a GET request has no body: set `method = \"POST\"`".into(),
        );
    }
    let csv = &table.csv;
    if table.format == ResponseFormat::Csv {
        if encoding_rs::Encoding::for_label(csv.encoding.as_bytes()).is_none() {
            error(
                at("csv.encoding"),
                format!("unknown encoding `{}`", csv.encoding),
            );
        }
        if !matches!(csv.decimal, '.' | ',') {
            error(
                at("csv.decimal"),
                "the decimal separator must be `.` or `,`".into(),
            );
        }
        if !csv.delimiter.is_ascii() || !csv.quote.is_ascii() {
            error(
                at("csv.delimiter"),
                "the delimiter and quote must be ASCII characters".into(),
            );
        }
    }
    if let Some(point) = &table.point {
        let pair = point.lon.is_some() && point.lat.is_some();
        if pair == point.lat_lon.is_some() {
            error(
                at("point"),
                "set either `lon` and `lat`, or `lat_lon`".into(),
            );
        }
    }
    if let Some(filter) = &table.filter
        && let Err(e) = datafusion::sql::parser::DFParser::parse_sql_into_expr(filter)
    {
        error(at("filter"), format!("not a SQL predicate: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> HttpConnectorConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_retention_is_measured_on_a_declared_date_or_timestamp_column() {
        let problems = |incremental: &str| -> Vec<String> {
            parse(&format!(
                "kind = \"http\"\n[[table]]\nname = \"t\"\nurl = \"https://a/x\"\n\
                 schema = {{ id = \"int\", giorno = \"date\", nota = \"text\" }}\n\
                 incremental = {{ param = \"dal\", start = \"0\", {incremental} }}\n"
            ))
            .validate(Path::new("c.toml"), Path::new("."))
            .iter()
            .map(ToString::to_string)
            .collect()
        };
        assert!(problems("column = \"giorno\", retention = \"30d\"").is_empty());
        assert!(
            problems("column = \"id\", retention = \"30d\", retention_column = \"giorno\"")
                .is_empty()
        );
        let by_id = problems("column = \"id\", retention = \"30d\"");
        assert!(
            by_id
                .iter()
                .any(|p| p
                    .contains("table[0].incremental.retention: the retention is measured on `id`")),
            "{by_id:?}"
        );
        let by_text = problems("column = \"id\", retention = \"30d\", retention_column = \"nota\"");
        assert!(
            by_text
                .iter()
                .any(|p| p.contains("table[0].incremental.retention_column:")
                    && p.contains("`nota`")),
            "{by_text:?}"
        );
        let zero = problems("column = \"giorno\", retention = \"0s\"");
        assert!(
            zero.iter().any(|p| p.contains("longer than zero")),
            "{zero:?}"
        );
    }

    #[test]
    fn incremental_tables_need_a_schema_with_the_cursor_column_and_somewhere_to_send_it() {
        let config = parse(
            "kind = \"http\"\n[[table]]\nname = \"t\"\nurl = \"https://a/x\"\nincremental = { column = \"updated_at\", start = \"0\" }\n",
        );
        let problems: Vec<String> = config
            .validate(Path::new("c.toml"), Path::new("."))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            problems.iter().any(|p| p
                .contains("table[0].incremental: an incremental table needs a declared `schema`")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("set `param`")),
            "{problems:?}"
        );
        let config = parse(
            "kind = \"http\"\n[[table]]\nname = \"t\"\nurl = \"https://a/x?dal={since}\"\nschema = { id = \"int\" }\nincremental = { column = \"updated_at\", start = \"0\" }\n",
        );
        let problems: Vec<String> = config
            .validate(Path::new("c.toml"), Path::new("."))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            problems,
            [
                "c.toml: table[0].incremental.column: `updated_at` is not a column of the declared `schema`"
            ]
        );
    }
}
