//! CSV and NDJSON files read in two streaming passes, in memory bounded by a batch whatever the
//! file's size. The first pass reads every value to decide each column's type, keeping only what
//! inference needs (not the values); the second turns the rows into typed batches of
//! `ROWS_PER_BATCH` rows, each reshaped and handed on while the next is read. The file is read in
//! a blocking task, off the async workers, which sends the batches through a bounded channel.
//!
//! A JSON document and a GeoJSON file are still read whole (`read_file`): their records are the
//! items of one array inside one document, which serde_json cannot hand out one at a time.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::{mpsc, oneshot};

use super::config::{FileFormat, FileTableConfig};
use super::csv::{Record, Records};
use super::decode::{Decoded, read_error, warn_replacements};
use super::typed::{self, Inference, NumberFormat, Typer};
use super::{
    PreparedBatches, cast_declared, check_declared, column_name, declared_crs, json, names,
    reshape, reshaped,
};
use crate::connectors::{ConnectorError, RejectedRecord};

/// Batches read ahead of the one being reshaped and written.
const BATCHES_AHEAD: usize = 2;

/// A batch as read, with the records refused while reading it.
type ReadBatch = Result<(RecordBatch, Vec<RejectedRecord>), ConnectorError>;

/// A CSV or NDJSON file's rows as the table declares them: typed, and reshaped batch by batch;
/// and the schema they have, known before the first batch.
pub(super) async fn text_batches(
    table: FileTableConfig,
    path: PathBuf,
) -> Result<(SchemaRef, PreparedBatches), ConnectorError> {
    read_batches(table, path, crate::store::ROWS_PER_BATCH).await
}

async fn read_batches(
    table: FileTableConfig,
    path: PathBuf,
    rows_per_batch: usize,
) -> Result<(SchemaRef, PreparedBatches), ConnectorError> {
    let source = path.display().to_string();
    declared_crs(&table, &source)?;
    // Point geometry and unpivot work row by row; so does a filter, unless it holds a subquery.
    let mut per_batch = table.clone();
    let whole_filter = per_batch.filter.take_if(|predicate| !row_by_row(predicate));

    let (schema_sender, schema_receiver) = oneshot::channel();
    let (batch_sender, batch_receiver) = mpsc::channel(BATCHES_AHEAD);
    let reader = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            let mut outlet = Outlet {
                schema: Some(schema_sender),
                batches: batch_sender,
                rows_per_batch,
            };
            let read = match table.format() {
                Some(FileFormat::Csv) => read_csv(&table, &path, &mut outlet),
                Some(FileFormat::Ndjson) => read_ndjson(&table, &path, &mut outlet),
                other => Err(ConnectorError::Parse {
                    path: path.clone(),
                    message: format!("{other:?} is not read row by row"),
                }),
            };
            if let Err(error) = read {
                outlet.fail(error);
            }
        })
    };
    let typed = match schema_receiver.await {
        Ok(schema) => schema?,
        Err(_) => return Err(reader_failed(&path, reader.await.err())),
    };
    // The reader's batches; a reader that stopped without a word (it panicked) is an error, not
    // the end of the table.
    let read = futures::stream::unfold(
        (batch_receiver, Some(reader), path.clone()),
        |(mut receiver, reader, path)| async move {
            if let Some(read) = receiver.recv().await {
                return Some((read, (receiver, reader, path)));
            }
            let failure = reader?.await.err()?;
            Some((
                Err(reader_failed(&path, Some(failure))),
                (receiver, None, path),
            ))
        },
    );
    let schema = reshaped(&per_batch, &source, RecordBatch::new_empty(typed))
        .await?
        .0
        .schema();
    let per_batch = Arc::new(per_batch);
    let batches = {
        let source = source.clone();
        read.then(move |read| {
            let (table, source) = (per_batch.clone(), source.clone());
            async move {
                let (batch, mut rejected) = read?;
                let (batch, refused) = reshaped(&table, &source, batch).await?;
                rejected.extend(refused);
                Ok((batch, rejected))
            }
        })
        .boxed()
    };
    let Some(predicate) = whole_filter else {
        return Ok((schema, batches));
    };
    tracing::warn!(
        path = %source,
        filter = %predicate,
        "the filter holds a subquery, which must see the whole table: the table is held in \
         memory to be filtered"
    );
    let read: Vec<(RecordBatch, Vec<RejectedRecord>)> = batches.try_collect().await?;
    let (batches, rejected): (Vec<_>, Vec<_>) = read.into_iter().unzip();
    let whole = arrow::compute::concat_batches(&schema, &batches)
        .map_err(|e| reshape::transform_error(&source, e.to_string()))?;
    let kept = reshape::filter(&source, whole, &predicate).await?;
    let rejected: Vec<RejectedRecord> = rejected.into_iter().flatten().collect();
    Ok((
        schema,
        futures::stream::once(async move { Ok((kept, rejected)) }).boxed(),
    ))
}

fn reader_failed(path: &Path, failure: Option<tokio::task::JoinError>) -> ConnectorError {
    ConnectorError::Parse {
        path: path.to_path_buf(),
        message: match failure {
            Some(e) => format!("reader task failed: {e}"),
            None => "reader task failed".into(),
        },
    }
}

/// Whether a filter gives the same rows applied to each batch on its own as to the whole table:
/// it does unless it holds a subquery (`anno = (SELECT max(anno) FROM t)`), which would see one
/// batch only. A predicate that does not parse fails where it is applied, with its message.
fn row_by_row(predicate: &str) -> bool {
    use datafusion::sql::sqlparser::ast::{Expr, visit_expressions};
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let Ok(expression) = Parser::new(&GenericDialect {})
        .try_with_sql(predicate)
        .and_then(|mut parser| parser.parse_expr())
    else {
        return true;
    };
    let subquery = visit_expressions(&expression, |e| match e {
        Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    });
    subquery.is_continue()
}

/// Where the reading task sends what it reads: the schema once, then the batches.
struct Outlet {
    schema: Option<oneshot::Sender<Result<SchemaRef, ConnectorError>>>,
    batches: mpsc::Sender<ReadBatch>,
    rows_per_batch: usize,
}

impl Outlet {
    fn schema(&mut self, schema: SchemaRef) {
        if let Some(sender) = self.schema.take() {
            let _ = sender.send(Ok(schema));
        }
    }

    /// Hand on a batch, waiting while `BATCHES_AHEAD` are not taken yet. False when nobody
    /// takes them any more (the load was given up): reading can stop.
    fn batch(&self, batch: RecordBatch, rejected: Vec<RejectedRecord>) -> bool {
        self.batches.blocking_send(Ok((batch, rejected))).is_ok()
    }

    fn fail(mut self, error: ConnectorError) {
        match self.schema.take() {
            Some(sender) => {
                let _ = sender.send(Err(error));
            }
            None => {
                let _ = self.batches.blocking_send(Err(error));
            }
        }
    }
}

/// A file changed between the two passes: what the first pass decided may not fit.
fn changed(path: &Path) -> ConnectorError {
    ConnectorError::Parse {
        path: path.to_path_buf(),
        message: "the file changed while it was read (its columns are not those read first); \
                  it is read again at the next refresh"
            .into(),
    }
}

fn open(path: &Path, table: &FileTableConfig) -> Result<Decoded<File>, ConnectorError> {
    let file = File::open(path).map_err(|source| ConnectorError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Decoded::new(path, file, &table.encoding)
}

/// The final names of a CSV file's columns: normalised, renamed, made unique.
fn columns_of(table: &FileTableConfig, header: &[String]) -> Vec<String> {
    names::deduplicate(
        header
            .iter()
            .enumerate()
            .map(|(i, h)| column_name(table, h, i + 1))
            .collect(),
    )
}

fn read_csv(
    table: &FileTableConfig,
    path: &Path,
    outlet: &mut Outlet,
) -> Result<(), ConnectorError> {
    let source = path.display().to_string();
    let format = NumberFormat {
        decimal: table.decimal,
        thousands: table.thousands,
    };

    // Pass one: the header, and what the values of each undeclared column allow it to be.
    let mut records = Records::new(path, open(path, table)?, table)?;
    let mut inferred: Vec<Inference> = Vec::new();
    let mut declared: Vec<bool> = Vec::new();
    while let Some(record) = records.next() {
        let Record::Row(row) = record? else {
            continue;
        };
        if inferred.is_empty() {
            let columns = columns_of(table, records.header());
            declared = columns
                .iter()
                .map(|c| table.schema.contains_key(c))
                .collect();
            inferred = vec![Inference::default(); columns.len()];
        }
        for ((inference, declared), cell) in inferred.iter_mut().zip(&declared).zip(&row.cells) {
            if let (Some(value), false) = (cell, declared) {
                inference.see(value, format);
            }
        }
    }
    let header = records.header().to_vec();
    warn_replacements(path, records.into_text().replacement_characters());
    let columns = columns_of(table, &header);
    check_declared(path, table, &columns)?;
    inferred.resize(columns.len(), Inference::default());
    let kinds = typed::kinds(&columns, &table.schema, &inferred);

    // Pass two: the rows, typed, a batch at a time.
    let records = Records::new(path, open(path, table)?, table)?;
    if !records.header().is_empty() && records.header() != header {
        return Err(changed(path));
    }
    let mut typer = Typer::new(&source, &columns, kinds, format, table.delimiter);
    outlet.schema(typer.schema());
    let (mut refused, mut bad_values) = (Vec::new(), Vec::new());
    let mut sent = false;
    for record in records {
        match record? {
            Record::Rejected(record) => refused.push(record),
            Record::Row(row) => {
                if row.cells.len() != columns.len() {
                    return Err(changed(path));
                }
                bad_values.extend(typer.push(&row));
                if typer.rows() == outlet.rows_per_batch {
                    // A batch's rejected records as a whole file's: those of its rows' shape first.
                    refused.append(&mut bad_values);
                    if !outlet.batch(typer.finish_batch()?, std::mem::take(&mut refused)) {
                        return Ok(());
                    }
                    sent = true;
                }
            }
        }
    }
    if typer.rows() > 0 || !sent || !refused.is_empty() || !bad_values.is_empty() {
        refused.append(&mut bad_values);
        outlet.batch(typer.finish_batch()?, refused);
    }
    typer.warn_placeholders();
    Ok(())
}

/// The lines of a decoded text file, numbered from 1, without their line endings (as
/// `str::lines` gives them).
struct Lines {
    reader: BufReader<Decoded<File>>,
    path: PathBuf,
    line: String,
    number: u64,
}

impl Lines {
    fn open(table: &FileTableConfig, path: &Path) -> Result<Self, ConnectorError> {
        Ok(Self {
            reader: BufReader::new(open(path, table)?),
            path: path.to_path_buf(),
            line: String::new(),
            number: 0,
        })
    }

    fn next_line(&mut self) -> Result<Option<(u64, &str)>, ConnectorError> {
        self.line.clear();
        let read = self
            .reader
            .read_line(&mut self.line)
            .map_err(|e| read_error(&self.path, e))?;
        if read == 0 {
            return Ok(None);
        }
        self.number += 1;
        let line = match self.line.strip_suffix('\n') {
            Some(rest) => rest.strip_suffix('\r').unwrap_or(rest),
            None => &self.line,
        };
        Ok(Some((self.number, line)))
    }
}

fn read_ndjson(
    table: &FileTableConfig,
    path: &Path,
    outlet: &mut Outlet,
) -> Result<(), ConnectorError> {
    let rename = |key: &str| column_name(table, key, 0);

    // Pass one: the schema, inferred from every object as it is read.
    let mut lines = Lines::open(table, path)?;
    let mut failure = None;
    let objects = std::iter::from_fn(|| {
        loop {
            match lines.next_line() {
                Err(e) => {
                    failure = Some(e);
                    return None;
                }
                Ok(None) => return None,
                Ok(Some((number, line))) => {
                    if let Ok(Some(object)) = json::ndjson_line(path, number, line) {
                        return Some(Ok(json::renamed(object, rename)));
                    }
                }
            }
        }
    });
    let inferred = json::infer_schema(path, objects);
    if let Some(e) = failure {
        return Err(e);
    }
    let inferred = inferred?;
    warn_replacements(path, lines.reader.get_ref().replacement_characters());
    // Declared types are casts: checked on no rows before any is read.
    let empty = cast_declared(path, table, RecordBatch::new_empty(inferred.clone()))?;
    outlet.schema(empty.schema());

    // Pass two: the objects, a batch at a time.
    let mut lines = Lines::open(table, path)?;
    let (mut objects, mut rejected) = (Vec::new(), Vec::new());
    let mut sent = false;
    while let Some((number, line)) = lines.next_line()? {
        match json::ndjson_line(path, number, line) {
            Ok(Some(object)) => objects.push(json::renamed(object, rename)),
            Ok(None) => {}
            Err(record) => rejected.push(record),
        }
        if objects.len() == outlet.rows_per_batch {
            let batch = json::values_to_batch(path, inferred.clone(), &objects)?;
            objects.clear();
            let batch = cast_declared(path, table, batch)?;
            if !outlet.batch(batch, std::mem::take(&mut rejected)) {
                return Ok(());
            }
            sent = true;
        }
    }
    if !objects.is_empty() || !sent || !rejected.is_empty() {
        let batch = json::values_to_batch(path, inferred, &objects)?;
        outlet.batch(cast_declared(path, table, batch)?, rejected);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Float64Array, Int64Array, StringArray};
    use arrow::datatypes::DataType;

    fn table(settings: &str) -> FileTableConfig {
        toml::from_str(settings).unwrap()
    }

    /// The schema, the batches and the rejected records of a file read `rows` rows at a time.
    async fn read(
        table: FileTableConfig,
        path: &Path,
        rows: usize,
    ) -> (SchemaRef, Vec<RecordBatch>, Vec<RejectedRecord>) {
        let (schema, batches) = read_batches(table, path.to_path_buf(), rows).await.unwrap();
        let read: Vec<_> = batches.try_collect().await.unwrap();
        let (batches, rejected): (Vec<_>, Vec<_>) = read.into_iter().unzip();
        for batch in &batches {
            assert_eq!(batch.schema(), schema);
        }
        (schema, batches, rejected.into_iter().flatten().collect())
    }

    fn floats(batches: &[RecordBatch], column: &str) -> Vec<Option<f64>> {
        batches
            .iter()
            .flat_map(|b| {
                let values = b.column_by_name(column).unwrap();
                let values = values.as_any().downcast_ref::<Float64Array>().unwrap();
                values.iter().collect::<Vec<_>>()
            })
            .collect()
    }

    /// Latin-1, a title line, codes, placeholders, a quoted newline: rows 0–9 on lines 3–12,
    /// `10;Imola;2,5;-` on line 13, row 11 on lines 14–15, a short row on line 16.
    fn comuni(dir: &Path) -> PathBuf {
        let mut bytes = b"Titolo\nCodice;Citt\xe0;Valore;Residenti\n".to_vec();
        for i in 0..10 {
            bytes.extend(format!("0{i};Bologna;{i};{}\n", i * 100).bytes());
        }
        bytes.extend(b"10;Imola;2,5;-\n11;\"Sasso\nMarconi\";3;n.d.\n12;x\n");
        let path = dir.join("comuni.csv");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    const COMUNI: &str = "name = \"comuni\"\npath = \"comuni.csv\"\ndelimiter = \";\"\n\
                          decimal = \",\"\nencoding = \"latin1\"\nskip_lines = 1\n";

    #[tokio::test]
    async fn a_csv_read_in_batches_is_typed_from_every_value_and_keeps_its_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = comuni(dir.path());
        let (schema, batches, rejected) = read(table(COMUNI), &path, 4).await;
        let types: Vec<(&str, &DataType)> = schema
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.data_type()))
            .collect();
        assert_eq!(
            types,
            [
                ("codice", &DataType::Utf8),
                ("citta", &DataType::Utf8),
                // `2,5` is in the third batch: the first two are typed for it too.
                ("valore", &DataType::Float64),
                ("residenti", &DataType::Int64),
            ]
        );
        let sizes: Vec<usize> = batches.iter().map(RecordBatch::num_rows).collect();
        assert_eq!(
            sizes,
            [4, 4, 4, 0],
            "the last holds the short row's rejection"
        );
        let mut values: Vec<Option<f64>> = (0..10).map(|i| Some(i as f64)).collect();
        values.extend([Some(2.5), Some(3.0)]);
        assert_eq!(floats(&batches, "valore"), values);
        let last = batches[2].column_by_name("citta").unwrap();
        let last = last.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(last.value(3), "Sasso\nMarconi");
        let residents = batches[2].column_by_name("residenti").unwrap();
        let residents = residents.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(residents.null_count(), 2, "placeholders read as NULL");
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].line, Some(16));
        assert_eq!(rejected[0].reason, "2 fields where the header has 4");
    }

    #[tokio::test]
    async fn a_row_wise_filter_applies_per_batch_and_a_subquery_sees_the_whole_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = comuni(dir.path());
        let filtered = format!("{COMUNI}filter = \"valore > 4\"\n");
        let (_, batches, _) = read(table(&filtered), &path, 4).await;
        let kept: Vec<Option<f64>> = (5..10).map(|i| Some(i as f64)).collect();
        assert_eq!(floats(&batches, "valore"), kept);

        let largest = format!("{COMUNI}filter = \"valore = (SELECT max(valore) FROM t)\"\n");
        let (schema, batches, rejected) = read(table(&largest), &path, 4).await;
        assert_eq!(
            floats(&batches, "valore"),
            [Some(9.0)],
            "not each batch's largest"
        );
        assert_eq!(schema.field(2).data_type(), &DataType::Float64);
        assert_eq!(rejected.len(), 1);
        assert!(row_by_row(
            "anno = 2021 AND quartiere IN ('Navile', 'Savena')"
        ));
        assert!(!row_by_row("anno IN (SELECT anno FROM t)"));
        assert!(!row_by_row("EXISTS (SELECT 1 FROM t WHERE anno > 2021)"));
    }

    #[tokio::test]
    async fn a_wide_table_unpivots_batch_by_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serie.csv");
        std::fs::write(&path, "Zona;2021;2022\nNord;10;11\nSud;20;\nEst;1,5;2\n").unwrap();
        let settings = "name = \"serie\"\npath = \"serie.csv\"\ndelimiter = \";\"\n\
                        decimal = \",\"\nunpivot = { columns_matching = \"^[0-9]{4}$\", \
                        name_column = \"anno\", value_column = \"valore\", name_type = \"int\" }\n";
        let (schema, batches, _) = read(table(settings), &path, 2).await;
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["zona", "anno", "valore"]);
        assert_eq!(
            floats(&batches, "valore"),
            [
                Some(10.0),
                Some(20.0),
                Some(11.0),
                None,
                Some(1.5),
                Some(2.0)
            ]
        );
    }

    #[tokio::test]
    async fn ndjson_is_typed_from_every_line_and_read_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("righe.ndjson");
        let text = "\u{feff}{\"A\": 1}\n\n{\"A\": 2, \"B c\": \"x\"}\r\nnot json\n{\"A\": 3.5}\n";
        std::fs::write(&path, text).unwrap();
        let (schema, batches, rejected) =
            read(table("name = \"righe\"\npath = \"righe.ndjson\""), &path, 2).await;
        assert_eq!(
            schema.field_with_name("a").unwrap().data_type(),
            &DataType::Float64
        );
        assert_eq!(
            schema.field_with_name("b_c").unwrap().data_type(),
            &DataType::Utf8
        );
        let sizes: Vec<usize> = batches.iter().map(RecordBatch::num_rows).collect();
        assert_eq!(sizes, [2, 1]);
        assert_eq!(floats(&batches, "a"), [Some(1.0), Some(2.0), Some(3.5)]);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].line, Some(4));
        assert_eq!(rejected[0].raw, "not json");

        let declared = "name = \"righe\"\npath = \"righe.ndjson\"\nschema = { a = \"text\" }";
        let (schema, _, _) = read(table(declared), &path, 2).await;
        assert_eq!(
            schema.field_with_name("a").unwrap().data_type(),
            &DataType::Utf8
        );
    }

    #[tokio::test]
    async fn a_file_that_cannot_be_read_fails_before_any_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = comuni(dir.path());
        let missing = format!("{COMUNI}schema = {{ popolazione = \"int\" }}\n");
        let Err(error) = read_batches(table(&missing), path.clone(), 4).await else {
            panic!("a declared column that is not in the file loaded");
        };
        assert!(
            error
                .to_string()
                .contains("declared in `schema` but not in the file"),
            "{error}"
        );
        // Declared UTF-8, the Latin-1 "à" of the header is on line 2.
        let utf8 = COMUNI.replace("latin1", "utf-8");
        let Err(error) = read_batches(table(&utf8), path, 4).await else {
            panic!("Latin-1 read as UTF-8 loaded");
        };
        assert!(
            error.to_string().ends_with(
                "line 2: bytes that are not valid utf-8; set `encoding` (e.g. \"latin1\")"
            ),
            "{error}"
        );
    }
}
