//! CSV as Italian public bodies publish it: any encoding (Latin-1, Windows-1252, UTF-8 with one or
//! more BOMs), `;` or `,`, decimal commas, thousands separators and quoted newlines. Rows are read
//! as text here; `typed.rs` turns them into Arrow columns.

use std::path::Path;

use super::config::FileTableConfig;
use crate::connectors::{ConnectorError, RejectedRecord, truncate_raw};

/// A table of text cells, each row with the line it started on.
pub struct TextTable {
    pub header: Vec<String>,
    pub rows: Vec<TextRow>,
}

pub struct TextRow {
    pub line: u64,
    pub cells: Vec<Option<String>>,
}

/// Decode the bytes to UTF-8 and drop any leading byte-order marks (Bologna's population series
/// carries two).
pub fn decode(path: &Path, bytes: &[u8], label: &str) -> Result<String, ConnectorError> {
    let encoding = encoding_rs::Encoding::for_label(label.as_bytes()).ok_or_else(|| {
        ConnectorError::Parse {
            path: path.to_path_buf(),
            message: format!("unknown encoding `{label}`"),
        }
    })?;
    let (text, had_errors) = if encoding == encoding_rs::UTF_8 {
        encoding.decode_with_bom_removal(bytes)
    } else {
        let (text, _, had_errors) = encoding.decode(bytes);
        (text, had_errors)
    };
    if had_errors {
        let first_bad = match std::str::from_utf8(bytes) {
            Err(e) => e.valid_up_to(),
            Ok(_) => 0,
        };
        let line = bytes[..first_bad].iter().filter(|b| **b == b'\n').count() + 1;
        return Err(ConnectorError::Parse {
            path: path.to_path_buf(),
            message: format!(
                "line {line}: bytes that are not valid {label}; set `encoding` (e.g. \"latin1\")"
            ),
        });
    }
    let text = text.trim_start_matches('\u{feff}').to_string();
    if let Some((count, line)) = replacement_characters(&text) {
        tracing::warn!(
            path = %path.display(),
            count,
            line,
            "the text holds {count} Unicode replacement characters (U+FFFD), the first on line \
             {line}: a sign that the file was converted from the wrong encoding before it was \
             published, or that `encoding` is wrong"
        );
    }
    Ok(text)
}

/// How many U+FFFD the text holds and the line of the first, if any.
pub fn replacement_characters(text: &str) -> Option<(usize, usize)> {
    let first = text.find('\u{fffd}')?;
    let line = text[..first].matches('\n').count() + 1;
    Some((text.matches('\u{fffd}').count(), line))
}

/// Parse CSV text. A row whose field count differs from the header's is rejected with its line;
/// the rest of the file loads.
pub fn parse(
    path: &Path,
    text: &str,
    config: &FileTableConfig,
) -> Result<(TextTable, Vec<RejectedRecord>), ConnectorError> {
    let source = path.display().to_string();
    let body = skip_lines(text, config.skip_lines);
    let line_offset = config.skip_lines as u64;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(config.delimiter as u8)
        .quote(config.quote as u8)
        .has_headers(false)
        .flexible(true)
        .from_reader(body.as_bytes());

    let parse_error = |e: csv::Error| ConnectorError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut records = reader.records();
    let mut header: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    let mut rejected = Vec::new();

    if config.header {
        match records.next() {
            Some(record) => {
                header = record
                    .map_err(parse_error)?
                    .iter()
                    .map(str::to_string)
                    .collect()
            }
            None => {
                return Err(ConnectorError::Parse {
                    path: path.to_path_buf(),
                    message: "the file is empty: no header row".into(),
                });
            }
        }
    }

    let nulls: Vec<&str> = config.null_values.iter().map(String::as_str).collect();
    for record in records {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                let line = e.position().map(|p| p.line() + line_offset);
                rejected.push(RejectedRecord {
                    time: None,
                    source: source.clone(),
                    line,
                    reason: e.to_string(),
                    raw: String::new(),
                });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line()) + line_offset;
        if record.iter().all(|field| field.trim().is_empty()) {
            continue; // blank lines carry nothing
        }
        if header.is_empty() {
            header = match &config.columns {
                Some(columns) => columns.clone(),
                None => (1..=record.len()).map(|i| format!("column_{i}")).collect(),
            };
        }
        if record.len() != header.len() {
            rejected.push(RejectedRecord {
                time: None,
                source: source.clone(),
                line: Some(line),
                reason: format!(
                    "{} fields where the header has {}",
                    record.len(),
                    header.len()
                ),
                raw: truncate_raw(
                    &record
                        .iter()
                        .collect::<Vec<_>>()
                        .join(&config.delimiter.to_string()),
                ),
            });
            continue;
        }
        let cells = record
            .iter()
            .map(|field| {
                let trimmed = field.trim();
                (!trimmed.is_empty() && !nulls.contains(&trimmed)).then(|| trimmed.to_string())
            })
            .collect();
        rows.push(TextRow { line, cells });
    }
    Ok((TextTable { header, rows }, rejected))
}

fn skip_lines(text: &str, lines: usize) -> &str {
    let mut rest = text;
    for _ in 0..lines {
        match rest.find('\n') {
            Some(i) => rest = &rest[i + 1..],
            None => return "",
        }
    }
    rest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(delimiter: char) -> FileTableConfig {
        let text = format!("name = \"t\"\npath = \"x.csv\"\ndelimiter = \"{delimiter}\"");
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn a_headerless_file_takes_its_declared_column_names() {
        let mut headerless = config(';');
        headerless.header = false;
        let (table, _) = parse(Path::new("t.csv"), "1;Navile\n2;Reno\n", &headerless).unwrap();
        assert_eq!(table.header, vec!["column_1", "column_2"]);
        headerless.columns = Some(vec!["codice".into(), "quartiere".into()]);
        let (table, rejected) =
            parse(Path::new("t.csv"), "1;Navile\n2;Reno\n3\n", &headerless).unwrap();
        assert_eq!(table.header, vec!["codice", "quartiere"]);
        assert_eq!(table.rows.len(), 2);
        assert_eq!(rejected[0].reason, "1 fields where the header has 2");
    }

    #[test]
    fn latin1_is_decoded_and_boms_are_stripped() {
        let latin1 = b"citt\xe0;et\xe0\n";
        assert_eq!(
            decode(Path::new("x"), latin1, "latin1").unwrap(),
            "città;età\n"
        );
        let two_boms = "\u{feff}\u{feff}Quartiere;Zona\n".as_bytes();
        assert_eq!(
            decode(Path::new("x"), two_boms, "utf-8").unwrap(),
            "Quartiere;Zona\n"
        );
    }

    #[test]
    fn invalid_utf8_names_the_line_and_the_fix() {
        let err = decode(Path::new("a.csv"), b"a;b\n1;citt\xe0\n", "utf-8").unwrap_err();
        assert_eq!(
            err.to_string(),
            "a.csv: line 2: bytes that are not valid utf-8; set `encoding` (e.g. \"latin1\")"
        );
    }

    #[test]
    fn replacement_characters_are_counted_with_the_first_line() {
        assert_eq!(
            replacement_characters("a;b\nCitt\u{fffd};1\nPi\u{fffd}\u{fffd};2\n"),
            Some((3, 2))
        );
        assert_eq!(replacement_characters("a;b\nCittà;1\n"), None);
    }

    #[test]
    fn line_numbers_count_from_the_header_after_a_bom() {
        let text = decode(
            Path::new("x"),
            "\u{feff}Anno;Codice\n2016;01\n2017;02\n".as_bytes(),
            "utf-8",
        )
        .unwrap();
        let (table, _) = parse(Path::new("t.csv"), &text, &config(';')).unwrap();
        assert_eq!(
            table.rows.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![2, 3]
        );
    }

    #[test]
    fn short_rows_are_rejected_with_their_line_and_quoted_newlines_kept() {
        let text = "a;b\n1;\"two\nlines\"\n3\n4;5\n";
        let (table, rejected) = parse(Path::new("t.csv"), text, &config(';')).unwrap();
        assert_eq!(table.header, vec!["a", "b"]);
        assert_eq!(table.rows.len(), 2);
        assert_eq!(table.rows[0].cells[1].as_deref(), Some("two\nlines"));
        assert_eq!(table.rows[1].line, 5);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].line, Some(4));
        assert_eq!(rejected[0].reason, "1 fields where the header has 2");
    }
}
