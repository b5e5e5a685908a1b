//! Reading configuration text, a leaf every module that reads a file of the configuration may
//! use: a problem located in its file, `${ENV}` interpolation, paths relative to the
//! configuration, and SQL identifiers. It imports nothing of the crate.

use std::fmt;
use std::path::{Path, PathBuf};

/// One thing wrong with the configuration, located as precisely as the parser allows.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub file: PathBuf,
    /// `line N` or `key path`, when known.
    pub location: Option<String>,
    pub message: String,
    /// A warning does not stop the service (a source file may appear later); an error does.
    pub warning: bool,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(f, "{}: {}: {}", self.file.display(), location, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl Problem {
    pub fn new(file: &Path, location: Option<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            location,
            message: message.into(),
            warning: false,
        }
    }

    pub fn warning(file: &Path, location: Option<String>, message: impl Into<String>) -> Self {
        Self {
            warning: true,
            ..Self::new(file, location, message)
        }
    }

    /// A TOML or serde error, with the line and column the parser reported.
    pub fn from_toml(file: &Path, text: &str, error: &toml::de::Error) -> Self {
        let location = error.span().map(|span| {
            let (line, column) = line_and_column(text, span.start);
            format!("line {line}, column {column}")
        });
        Self::new(file, location, error.message().trim().to_string())
    }
}

/// 1-based line and column of a byte offset.
pub fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Replace `${NAME}` with the environment variable NAME; `$${` stays a literal `${`.
/// A variable that is not set is a problem naming the file and line, never an empty string.
pub fn interpolate_env(file: &Path, text: &str) -> Result<String, Problem> {
    interpolate_with(file, text, |name| std::env::var(name).ok())
}

fn interpolate_with(
    file: &Path,
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, Problem> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        if after.starts_with("$${") {
            out.push_str("${");
            rest = &after[3..];
        } else if let Some(body) = after.strip_prefix("${") {
            let offset = text.len() - after.len();
            let (line, _) = line_and_column(text, offset);
            let Some(end) = body.find('}') else {
                return Err(Problem::new(
                    file,
                    Some(format!("line {line}")),
                    "`${` without a closing `}`",
                ));
            };
            let name = &body[..end];
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(Problem::new(
                    file,
                    Some(format!("line {line}")),
                    format!("`${{{name}}}` is not a valid environment variable reference"),
                ));
            }
            match lookup(name) {
                Some(value) => out.push_str(&value),
                None => {
                    return Err(Problem::new(
                        file,
                        Some(format!("line {line}")),
                        format!("environment variable `{name}` is not set"),
                    ));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A path of the configuration: relative ones are relative to the configuration's folder.
pub fn resolve(base_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base_dir.join(path)
    }
}

pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Problem> {
    let raw = std::fs::read_to_string(path)
        .map_err(|e| Problem::new(path, None, format!("cannot read the file: {e}")))?;
    let text = interpolate_env(path, &raw)?;
    toml::from_str(&text).map_err(|e| Problem::from_toml(path, &text, &e))
}

/// Files with the given extension in a folder, sorted so that order never depends on the disk.
pub fn files_with_extension(dir: &Path, extension: &str) -> std::io::Result<Vec<PathBuf>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    Ok(files)
}

/// A name usable unquoted in SQL: lowercase letters, digits and `_`, not starting with a digit.
pub fn is_sql_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "REGISTRY_URL").then(|| "postgres://db/registry".to_string())
    }

    #[test]
    fn interpolates_set_variables_and_keeps_escaped_dollars() {
        let file = Path::new("x.toml");
        let text = "url = \"${REGISTRY_URL}\"\nprice = \"$5 and $${LITERAL}\"";
        let out = interpolate_with(file, text, env).unwrap();
        assert_eq!(
            out,
            "url = \"postgres://db/registry\"\nprice = \"$5 and ${LITERAL}\""
        );
    }

    #[test]
    fn a_missing_variable_names_the_variable_and_line() {
        let file = Path::new("connectors/registry.toml");
        let err = interpolate_with(file, "a = 1\nurl = \"${MISSING_ONE}\"", env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "connectors/registry.toml: line 2: environment variable `MISSING_ONE` is not set"
        );
    }

    #[test]
    fn sql_identifiers() {
        assert!(is_sql_identifier("bologna"));
        assert!(is_sql_identifier("wifi_2024"));
        assert!(!is_sql_identifier("Bologna"));
        assert!(!is_sql_identifier("2bologna"));
        assert!(!is_sql_identifier("bo-logna"));
    }
}
