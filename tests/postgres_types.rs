//! Every PostgreSQL type the connector supports, with NULLs, into Arrow with the right values;
//! values that do not fit are rejected records with their reason; unsupported types are a clear
//! error naming the column and the type.

mod postgres_support;

use std::path::Path;

use arrow::array::{
    Array, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array, Int16Array,
    Int32Array, Int64Array, ListArray, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatch;
use cruscotto::connectors::{ConnectorConfig, LoadMode, LoadState, Loaded, LoadedTable, TableLoad};
use postgres_support::{Pg, unique, url};

fn load(connector_toml: &str) -> Vec<TableLoad> {
    let config = ConnectorConfig::parse(Path::new("connectors/registro.toml"), connector_toml)
        .expect("valid connector file");
    assert!(
        config
            .validate(Path::new("connectors/registro.toml"), Path::new("."))
            .iter()
            .all(|p| p.warning)
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let connector = config.build(Path::new("."));
        let mut loads = connector.load(&LoadState::default()).await;
        // A replaced table streams its rows: read them here, as the store would.
        for load in &mut loads {
            if load.result.is_err() {
                continue;
            }
            let Ok(loaded) = std::mem::replace(&mut load.result, Ok(Loaded::Unchanged)) else {
                continue;
            };
            load.result = match loaded.collect().await {
                Ok(rows) => Ok(Loaded::Whole(rows.expect("rows"))),
                Err(e) => Err(cruscotto::connectors::ConnectorError::Parse {
                    path: "stream".into(),
                    message: e.to_string(),
                }),
            };
        }
        loads
    })
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| {
            panic!(
                "column {name} has type {}",
                batch.column_by_name(name).unwrap().data_type()
            )
        })
}

fn one_batch(loaded: &LoadedTable) -> RecordBatch {
    arrow::compute::concat_batches(&loaded.schema, &loaded.batches).unwrap()
}

#[test]
fn every_supported_type_round_trips_with_nulls() {
    let pg = Pg::connect();
    let schema = unique("t_types");
    let url = url();
    pg.execute(&format!(
        "CREATE SCHEMA {schema};
         CREATE TYPE {schema}.canale AS ENUM ('online', 'sportello');
         CREATE TABLE {schema}.t (
            id int4, flag bool, small int2, big int8, f4 float4, f8 float8,
            importo numeric(20,6), quota numeric(5,2), libero numeric,
            etichetta text, codice varchar(8), sigla char(3), canale {schema}.canale,
            giorno date, istante timestamp, istante_tz timestamptz,
            uid uuid, doc jsonb, doc_json json,
            etichette text[], piccoli int2[], numeri int4[], grandi int8[]
         );
         INSERT INTO {schema}.t VALUES
         (1, true, -32768, 9223372036854775807, 1.5, -2.25,
          12345678901234.123456, -999.99, 1.5,
          'àèìòù €', 'AB12', 'BO', 'online',
          '2021-12-31', '2024-02-29 13:45:30.123456', '2024-06-01 10:00:00+02',
          'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{{\"a\": [1, 2], \"b\": null}}', '{{\"x\":1}}',
          ARRAY['uno', NULL, 'tre'], ARRAY[1, NULL]::int2[], ARRAY[7, 8, 9], ARRAY[NULL, 5000000000]::int8[]),
         (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
         (3, false, 0, 0, 0, 0, 0, 0, 0, '', '', '', 'sportello', '1900-01-01', '1970-01-01 00:00:00', '1999-12-31 23:59:59.999999+00',
          '00000000-0000-0000-0000-000000000000', '[]', 'null', ARRAY[]::text[], ARRAY[]::int2[], ARRAY[]::int4[], ARRAY[]::int8[]);"
    ));
    let loads = load(&format!(
        "kind = \"postgres\"\nurl = \"{url}\"\nbatch_rows = 2\n[[table]]\nname = \"tipi\"\nquery = \"SELECT * FROM {schema}.t ORDER BY id\"\n"
    ));
    pg.execute(&format!("DROP SCHEMA {schema} CASCADE"));

    let loaded = loads
        .into_iter()
        .next()
        .unwrap()
        .result
        .map(whole)
        .expect("the table loads");
    assert_eq!(loaded.mode, LoadMode::Replace);
    // Rows stream into batches of `batch_rows`.
    assert_eq!(
        loaded
            .batches
            .iter()
            .map(RecordBatch::num_rows)
            .collect::<Vec<_>>(),
        vec![2, 1]
    );
    assert!(loaded.rejected.is_empty(), "{:?}", loaded.rejected);
    let b = one_batch(&loaded);
    let types: Vec<(String, DataType)> = b
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    let type_of = |name: &str| types.iter().find(|(n, _)| n == name).unwrap().1.clone();
    assert_eq!(type_of("importo"), DataType::Decimal128(20, 6));
    assert_eq!(type_of("quota"), DataType::Decimal128(5, 2));
    assert_eq!(type_of("libero"), DataType::Decimal128(38, 10));
    assert_eq!(
        type_of("istante"),
        DataType::Timestamp(TimeUnit::Microsecond, None)
    );
    assert_eq!(
        type_of("istante_tz"),
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    assert_eq!(type_of("giorno"), DataType::Date32);

    assert_eq!(
        column::<Int32Array>(&b, "id").values().to_vec(),
        vec![1, 2, 3]
    );
    let flag = column::<BooleanArray>(&b, "flag");
    assert!(flag.value(0) && flag.is_null(1) && !flag.value(2));
    assert_eq!(column::<Int16Array>(&b, "small").value(0), -32768);
    assert_eq!(column::<Int64Array>(&b, "big").value(0), i64::MAX);
    assert_eq!(column::<Float32Array>(&b, "f4").value(0), 1.5);
    assert_eq!(column::<Float64Array>(&b, "f8").value(0), -2.25);
    let importo = column::<Decimal128Array>(&b, "importo");
    assert_eq!(importo.value(0), 12_345_678_901_234_123_456);
    assert_eq!(importo.value_as_string(0), "12345678901234.123456");
    assert_eq!(
        column::<Decimal128Array>(&b, "quota").value_as_string(0),
        "-999.99"
    );
    assert_eq!(
        column::<Decimal128Array>(&b, "libero").value(0),
        15_000_000_000
    );
    assert_eq!(column::<StringArray>(&b, "etichetta").value(0), "àèìòù €");
    assert_eq!(column::<StringArray>(&b, "codice").value(0), "AB12");
    assert_eq!(column::<StringArray>(&b, "sigla").value(0), "BO ");
    assert_eq!(column::<StringArray>(&b, "canale").value(2), "sportello");
    // 2021-12-31 is day 18992 since 1970-01-01; 1900-01-01 is before the epoch.
    assert_eq!(column::<Date32Array>(&b, "giorno").value(0), 18_992);
    assert_eq!(column::<Date32Array>(&b, "giorno").value(2), -25_567);
    assert_eq!(
        column::<TimestampMicrosecondArray>(&b, "istante").value(0),
        1_709_214_330_123_456
    );
    assert_eq!(
        column::<TimestampMicrosecondArray>(&b, "istante").value(2),
        0
    );
    // 10:00 at +02 is 08:00 UTC.
    assert_eq!(
        column::<TimestampMicrosecondArray>(&b, "istante_tz").value(0),
        1_717_228_800_000_000
    );
    assert_eq!(
        column::<TimestampMicrosecondArray>(&b, "istante_tz").value(2),
        946_684_799_999_999
    );
    assert_eq!(
        column::<StringArray>(&b, "uid").value(0),
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    );
    let doc: serde_json::Value =
        serde_json::from_str(column::<StringArray>(&b, "doc").value(0)).unwrap();
    assert_eq!(doc, serde_json::json!({"a": [1, 2], "b": null}));
    assert_eq!(column::<StringArray>(&b, "doc_json").value(0), "{\"x\":1}");

    let labels = column::<ListArray>(&b, "etichette");
    let first = labels.value(0);
    let first = first.as_any().downcast_ref::<StringArray>().unwrap();
    assert_eq!(
        (
            first.len(),
            first.value(0),
            first.is_null(1),
            first.value(2)
        ),
        (3, "uno", true, "tre")
    );
    assert!(labels.is_null(1));
    assert_eq!(labels.value(2).len(), 0);
    assert!(!labels.is_null(2));
    let small = column::<ListArray>(&b, "piccoli").value(0);
    let small = small.as_any().downcast_ref::<Int16Array>().unwrap();
    assert_eq!((small.value(0), small.is_null(1)), (1, true));
    let numbers = column::<ListArray>(&b, "numeri").value(0);
    assert_eq!(
        numbers
            .as_any()
            .downcast_ref::<Int32Array>()
            .unwrap()
            .values()
            .to_vec(),
        vec![7, 8, 9]
    );
    let big = column::<ListArray>(&b, "grandi").value(0);
    let big = big.as_any().downcast_ref::<Int64Array>().unwrap();
    assert!(big.is_null(0));
    assert_eq!(big.value(1), 5_000_000_000);

    // The second row is NULL in every column but the id.
    for index in 1..b.num_columns() {
        assert!(
            b.column(index).is_null(1),
            "column {} row 2 should be NULL",
            b.schema().field(index).name()
        );
    }
}

#[test]
fn values_that_do_not_fit_are_rejected_with_their_reason_and_unsupported_types_name_the_column() {
    let pg = Pg::connect();
    let schema = unique("t_misfit");
    let url = url();
    pg.execute(&format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.t (id int4, valore numeric, giorno date);
         INSERT INTO {schema}.t VALUES (1, 2.5, '2024-01-01'), (2, 1.0/3, '2024-01-02'), (3, 4, 'infinity'), (4, 'NaN', '2024-01-04');"
    ));
    let loads = load(&format!(
        "kind = \"postgres\"\nurl = \"{url}\"\n\
         [[table]]\nname = \"valori\"\nquery = \"SELECT id, valore, giorno FROM {schema}.t ORDER BY id\"\n\
         [[table]]\nname = \"durate\"\nquery = \"SELECT id, now() - giorno::timestamptz AS attesa, point(1, 2) AS luogo FROM {schema}.t\"\n"
    ));
    pg.execute(&format!("DROP SCHEMA {schema} CASCADE"));

    let mut loads = loads.into_iter();
    let values = loads
        .next()
        .unwrap()
        .result
        .map(whole)
        .expect("the table loads without the rejected rows");
    let b = one_batch(&values);
    assert_eq!(column::<Int32Array>(&b, "id").values().to_vec(), vec![1]);
    assert_eq!(
        column::<Decimal128Array>(&b, "valore").value_as_string(0),
        "2.5000000000"
    );
    let reasons: Vec<(Option<u64>, String)> = values
        .rejected
        .iter()
        .map(|r| (r.line, r.reason.clone()))
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert_eq!(reasons[0].0, Some(2));
    assert!(
        reasons[0]
            .1
            .starts_with("column `valore`: 0.33333333333333333333 does not fit numeric(38,10)"),
        "{reasons:?}"
    );
    assert!(
        reasons[1]
            .1
            .contains("column `giorno`: the date is ±infinity"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].1.contains("column `valore`: NaN does not fit"),
        "{reasons:?}"
    );
    assert!(
        values.rejected[0].raw.contains("id=2")
            && values.rejected[0].raw.contains("giorno=2024-01-02"),
        "{}",
        values.rejected[0].raw
    );

    let error = loads
        .next()
        .unwrap()
        .result
        .map(whole)
        .err()
        .expect("unsupported types fail the table")
        .to_string();
    assert!(
        error.contains("column `attesa`: type `interval` is not supported"),
        "{error}"
    );
    assert!(
        error.contains("column `luogo`: type `point` is not supported"),
        "{error}"
    );
    assert!(error.contains("cast it in the query"), "{error}");
}

/// A load's rows, which this connector returns in memory.
fn whole(loaded: Loaded) -> LoadedTable {
    loaded.into_whole().expect("rows in memory")
}
