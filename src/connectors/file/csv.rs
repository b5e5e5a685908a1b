//! CSV as Italian public bodies publish it: any encoding (Latin-1, Windows-1252, UTF-8 with one or
//! more BOMs), `;` or `,`, decimal commas, thousands separators and quoted newlines. Rows are read
//! as text here; `typed.rs` turns them into Arrow columns.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::config::FileTableConfig;
use super::decode::{Decoded, SkipLines, read_error, warn_replacements};
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
    let mut decoded = Decoded::new(path, bytes, label)?;
    let mut text = String::with_capacity(bytes.len());
    decoded
        .read_to_string(&mut text)
        .map_err(|e| read_error(path, e))?;
    warn_replacements(path, decoded.replacement_characters());
    Ok(text)
}

/// Parse CSV text. A row whose field count differs from the header's is rejected with its line;
/// the rest of the file loads.
pub fn parse(
    path: &Path,
    text: &str,
    config: &FileTableConfig,
) -> Result<(TextTable, Vec<RejectedRecord>), ConnectorError> {
    let mut records = Records::new(path, text.as_bytes(), config)?;
    let mut rows = Vec::new();
    let mut rejected = Vec::new();
    for record in records.by_ref() {
        match record? {
            Record::Row(row) => rows.push(row),
            Record::Rejected(record) => rejected.push(record),
        }
    }
    let header = records.header().to_vec();
    Ok((TextTable { header, rows }, rejected))
}

/// One record of a CSV file: a row of cells, or a row refused with its line and reason.
pub enum Record {
    Row(TextRow),
    Rejected(RejectedRecord),
}

/// The records of CSV text, read one at a time from `R` (text already decoded to UTF-8): memory
/// holds a row, whatever the size of the file. Lines before the header are skipped
/// (`skip_lines`), blank lines carry nothing, and a row whose field count differs from the
/// header's is rejected with its line.
pub struct Records<R: Read> {
    path: PathBuf,
    source: String,
    records: csv::StringRecordsIntoIter<SkipLines<R>>,
    header: Vec<String>,
    /// The names of a headerless file's columns, if declared.
    columns: Option<Vec<String>>,
    nulls: Vec<String>,
    delimiter: char,
    line_offset: u64,
}

impl<R: Read> Records<R> {
    /// Start reading, the header first when the file has one.
    pub fn new(path: &Path, text: R, config: &FileTableConfig) -> Result<Self, ConnectorError> {
        let reader = csv::ReaderBuilder::new()
            .delimiter(config.delimiter as u8)
            .quote(config.quote as u8)
            .has_headers(false)
            .flexible(true)
            .from_reader(SkipLines::new(text, config.skip_lines));
        let mut records = Self {
            path: path.to_path_buf(),
            source: path.display().to_string(),
            records: reader.into_records(),
            header: Vec::new(),
            columns: config.columns.clone(),
            nulls: config.null_values.clone(),
            delimiter: config.delimiter,
            line_offset: config.skip_lines as u64,
        };
        if config.header {
            match records.records.next() {
                Some(record) => {
                    records.header = record
                        .map_err(|e| records.error(e))?
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
        Ok(records)
    }

    /// The header as written in the file; for a headerless file, known from its first row on
    /// (the declared `columns`, or `column_1`, `column_2`, …), empty before.
    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// The text read from, once the records are read.
    pub fn into_text(self) -> R {
        self.records.into_reader().into_inner().into_inner()
    }

    /// A CSV error that stops the file: text that cannot be read or decoded.
    fn error(&self, error: csv::Error) -> ConnectorError {
        let message = error.to_string();
        match error.into_kind() {
            csv::ErrorKind::Io(e) => read_error(&self.path, e),
            _ => ConnectorError::Parse {
                path: self.path.clone(),
                message,
            },
        }
    }

    fn record(&mut self, record: csv::StringRecord) -> Option<Record> {
        let line = record.position().map_or(0, |p| p.line()) + self.line_offset;
        if record.iter().all(|field| field.trim().is_empty()) {
            return None; // blank lines carry nothing
        }
        if self.header.is_empty() {
            self.header = match &self.columns {
                Some(columns) => columns.clone(),
                None => (1..=record.len()).map(|i| format!("column_{i}")).collect(),
            };
        }
        if record.len() != self.header.len() {
            return Some(Record::Rejected(RejectedRecord {
                time: None,
                source: self.source.clone(),
                line: Some(line),
                reason: format!(
                    "{} fields where the header has {}",
                    record.len(),
                    self.header.len()
                ),
                raw: truncate_raw(
                    &record
                        .iter()
                        .collect::<Vec<_>>()
                        .join(&self.delimiter.to_string()),
                ),
            }));
        }
        let cells = record
            .iter()
            .map(|field| {
                let trimmed = field.trim();
                (!trimmed.is_empty() && !self.nulls.iter().any(|null| null == trimmed))
                    .then(|| trimmed.to_string())
            })
            .collect();
        Some(Record::Row(TextRow { line, cells }))
    }
}

impl<R: Read> Iterator for Records<R> {
    type Item = Result<Record, ConnectorError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let record = match self.records.next()? {
                Ok(record) => record,
                Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => {
                    return Some(Err(self.error(e)));
                }
                Err(e) => {
                    let line = e.position().map(|p| p.line() + self.line_offset);
                    return Some(Ok(Record::Rejected(RejectedRecord {
                        time: None,
                        source: self.source.clone(),
                        line,
                        reason: e.to_string(),
                        raw: String::new(),
                    })));
                }
            };
            if let Some(record) = self.record(record) {
                return Some(Ok(record));
            }
        }
    }
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

    #[test]
    fn records_read_in_small_chunks_keep_quoted_newlines_characters_and_lines() {
        // Latin-1; line 1 is skipped, line 4 ends a quoted newline, line 5 is blank, line 6 is
        // short.
        let bytes =
            b"Titolo\nCitt\xe0;Nota\nBologna;\"due\nrighe\"\n\nImola;x;y\nCesena;\"\xe8\"\n";
        let mut skipping = config(';');
        skipping.skip_lines = 1;
        for chunk in 1..=9 {
            let path = Path::new("t.csv");
            let text = Decoded::with_chunk(path, &bytes[..], "latin1", chunk).unwrap();
            let mut records = Records::new(path, text, &skipping).unwrap();
            let (mut rows, mut rejected) = (Vec::new(), Vec::new());
            for record in records.by_ref() {
                match record.unwrap() {
                    Record::Row(row) => rows.push((row.line, row.cells)),
                    Record::Rejected(record) => rejected.push((record.line, record.raw)),
                }
            }
            assert_eq!(records.header(), ["Città", "Nota"], "chunk {chunk}");
            assert_eq!(
                rows,
                vec![
                    (3, vec![Some("Bologna".into()), Some("due\nrighe".into())]),
                    (7, vec![Some("Cesena".into()), Some("è".into())]),
                ],
                "chunk {chunk}"
            );
            // The csv crate counts the blank line before the short row as its start, as it
            // did when the file was parsed whole.
            assert_eq!(
                rejected,
                vec![(Some(5), "Imola;x;y".into())],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn bytes_not_in_the_encoding_stop_the_records_with_their_line() {
        let bytes = b"a;b\n1;2\n3;citt\xe0\n";
        let path = Path::new("t.csv");
        let text = Decoded::with_chunk(path, &bytes[..], "utf-8", 4).unwrap();
        let failure = Records::new(path, text, &config(';'))
            .unwrap()
            .find_map(Result::err)
            .expect("an error");
        assert_eq!(
            failure.to_string(),
            "t.csv: line 3: bytes that are not valid utf-8; set `encoding` (e.g. \"latin1\")"
        );
    }
}
