//! The `file` connector and the snapshot store, through the real binary: Italian CSVs, bad rows,
//! missing sources, restarts from persisted snapshots, atomic refreshes, and CSV loads whose
//! memory does not grow with the file.

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{ConfigDir, Server};
use serde_json::json;

#[test]
fn a_latin1_csv_with_semicolons_and_decimal_commas_loads_and_records_its_bad_row() {
    let config = ConfigDir::empty();
    // Latin-1 bytes: "à" is 0xE0, "è" 0xE8. Line 4 has a field too many, line 6 a quoted newline.
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"Citt\xe0;Popolazione;Superficie km\xb2;Et\xe0 media\n");
    bytes.extend_from_slice(b"Bologna;392.203;140,86;47,2\n");
    bytes.extend_from_slice(b"Imola;69.936;204,94;46,1\n");
    bytes.extend_from_slice(b"Casalecchio;36.615;17,37;47,9;extra\n");
    bytes.extend_from_slice(b"San Lazzaro;32.874;44,72;48,3\n");
    bytes.extend_from_slice(b"\"Sasso\nMarconi\";14.729;96,45;46,8\n");
    config.write_bytes("data/comuni.csv", &bytes);
    config.write(
        "connectors/prova.toml",
        r#"kind = "file"
[[table]]
name = "comuni"
path = "data/comuni.csv"
delimiter = ";"
encoding = "latin1"
decimal = ","
thousands = "."
"#,
    );
    let server = Server::start_ready(&config);
    let rows = server.rows("SELECT * FROM prova.comuni ORDER BY popolazione DESC");
    assert_eq!(rows.len(), 4);
    assert_eq!(
        rows[0],
        json!({"citta": "Bologna", "popolazione": 392203, "superficie_km": 140.86, "eta_media": 47.2})
    );
    assert_eq!(rows[3]["citta"], "Sasso\nMarconi");
    let columns = server.rows("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'comuni' ORDER BY ordinal_position");
    let types: Vec<_> = columns
        .iter()
        .map(|c| c["data_type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types, ["Utf8", "Int64", "Float64", "Float64"]);

    let rejected = server.rows("SELECT * FROM system.rejected_records");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0]["schema_name"], "prova");
    assert_eq!(rejected[0]["table_name"], "comuni");
    assert_eq!(rejected[0]["line"], 4);
    assert!(
        rejected[0]["source"]
            .as_str()
            .unwrap()
            .ends_with("data/comuni.csv")
    );
    assert_eq!(rejected[0]["reason"], "5 fields where the header has 4");
    assert_eq!(rejected[0]["raw"], "Casalecchio;36.615;17,37;47,9;extra");
    assert_eq!(server.table_status("prova.comuni")["rejected"], 1);
}

#[test]
fn a_value_that_breaks_a_declared_type_rejects_its_row_with_the_reason() {
    let config = ConfigDir::empty();
    config.write("data/residenti.csv", "area,eta\nA,34\nB,abc\nC,51\n");
    config.write(
        "connectors/anagrafe.toml",
        "kind = \"file\"\n[[table]]\nname = \"residenti\"\npath = \"data/residenti.csv\"\nschema = { eta = \"int\" }\n",
    );
    let server = Server::start_ready(&config);
    assert_eq!(
        server.rows("SELECT sum(eta) AS s FROM anagrafe.residenti")[0]["s"],
        85
    );
    let rejected = server.rows("SELECT line, reason FROM system.rejected_records");
    assert_eq!(
        rejected,
        vec![json!({"line": 3, "reason": "column `eta`: `abc` is not an integer"})]
    );
}

#[test]
fn a_missing_source_fails_its_table_only() {
    let config = ConfigDir::empty();
    config.write("data/ok.csv", "a\n1\n2\n");
    config.write(
        "connectors/misto.toml",
        "kind = \"file\"\n[[table]]\nname = \"presente\"\npath = \"data/ok.csv\"\n[[table]]\nname = \"assente\"\npath = \"data/assente.csv\"\n",
    );
    // `check` warns about the missing file (it may appear later: not an error)...
    let (code, _, stderr) = config.run(&["check"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("warning: ")
            && stderr.contains("connectors/misto.toml: table[1].path:")
            && stderr.contains("assente.csv"),
        "{stderr}"
    );
    // ...and the service starts anyway, serving what it can.
    let server = Server::start(&config);
    // The tables of a connector are settled one after the other: wait for both.
    server.wait_until("first load", |s| {
        s.table_status("misto.presente")["state"] == "fresh"
            && s.table_status("misto.assente")["state"] != "loading"
    });
    let missing = server.table_status("misto.assente");
    assert_eq!(missing["state"], "failed");
    assert_eq!(missing["stale"], true);
    let error = missing["last_error"].as_str().unwrap();
    assert!(
        error.contains("data/assente.csv") && error.contains("No such file"),
        "{error}"
    );
    assert_eq!(
        server.rows("SELECT count(*) AS n FROM misto.presente")[0]["n"],
        2
    );
    assert_eq!(server.get_json("/status")["status"], "degraded");
}

#[test]
fn a_restart_with_the_source_removed_serves_the_persisted_snapshot_marked_stale() {
    let config = ConfigDir::empty();
    config.write("data/sensori.csv", "id,valore\n1,10\n2,20\n3,30\n");
    config.write(
        "connectors/iot.toml",
        "kind = \"file\"\n[[table]]\nname = \"sensori\"\npath = \"data/sensori.csv\"\n",
    );
    let server = Server::start_ready(&config);
    assert_eq!(
        server.rows("SELECT sum(valore) AS s FROM iot.sensori")[0]["s"],
        60
    );
    let first_success = server.table_status("iot.sensori")["last_success"].clone();
    server.stop();

    std::fs::remove_file(config.path().join("data/sensori.csv")).unwrap();
    let server = Server::start(&config);
    server.wait_until("the reload attempt", |s| {
        s.table_status("iot.sensori")["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot read"))
    });
    assert_eq!(
        server.rows("SELECT sum(valore) AS s FROM iot.sensori")[0]["s"],
        60
    );
    let table = server.table_status("iot.sensori");
    assert_eq!(table["state"], "stale");
    assert_eq!(table["stale"], true);
    assert_eq!(table["from_persisted_snapshot"], true);
    assert_eq!(table["last_success"], first_success);
    assert!(
        table["last_error"]
            .as_str()
            .unwrap()
            .contains("sensori.csv")
    );
}

#[test]
fn readers_during_refreshes_never_see_a_partial_table() {
    let config = ConfigDir::empty();
    // The readers query as fast as the server answers: on a quiet machine that is over the
    // default rate limit, which is not what this test is about.
    config.write(
        "cruscotto.toml",
        "data_dir = \"var\"\n[access]\nanonymous = \"analyst\"\nrequests_per_minute = 1000000\nburst = 100000\n",
    );
    let version = |rows: usize, label: &str| {
        let mut text = String::from("n,label\n");
        for i in 0..rows {
            text.push_str(&format!("{i},{label}\n"));
        }
        text
    };
    config.write("data/flusso.csv", &version(1000, "a"));
    config.write(
        "connectors/flusso.toml",
        "kind = \"file\"\nrefresh = \"50ms\"\n[[table]]\nname = \"letture\"\npath = \"data/flusso.csv\"\n",
    );
    let server = Arc::new(Server::start_ready(&config));

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let path = config.path().to_path_buf();
        std::thread::spawn(move || {
            let mut flip = false;
            while !stop.load(Ordering::Relaxed) {
                let text = if flip {
                    version(1000, "a")
                } else {
                    version(2000, "b")
                };
                let temporary = path.join("data/flusso.partial");
                std::fs::write(&temporary, text).unwrap();
                std::fs::rename(&temporary, path.join("data/flusso.csv")).unwrap();
                flip = !flip;
                std::thread::sleep(std::time::Duration::from_millis(30));
            }
        })
    };
    let mut seen_a = 0;
    let mut seen_b = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while (seen_a < 20 || seen_b < 20) && std::time::Instant::now() < deadline {
        let row = &server.rows("SELECT count(*) AS n, min(label) AS lo, max(label) AS hi, sum(n) AS total FROM flusso.letture")[0];
        match (
            row["n"].as_u64().unwrap(),
            row["lo"].as_str().unwrap(),
            row["hi"].as_str().unwrap(),
        ) {
            (1000, "a", "a") => {
                assert_eq!(row["total"], 999 * 1000 / 2);
                seen_a += 1;
            }
            (2000, "b", "b") => {
                assert_eq!(row["total"], 1999 * 2000 / 2);
                seen_b += 1;
            }
            _ => panic!("a partial or mixed table was visible: {row}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        seen_a >= 20 && seen_b >= 20,
        "both versions should have been served (a: {seen_a}, b: {seen_b})"
    );
}

#[test]
fn json_ndjson_geojson_and_a_reshaped_wide_table() {
    let config = ConfigDir::empty();
    config.write(
        "data/doc.json",
        r#"{"data": {"items": [{"Codice": "01", "Valore": 1.5}, {"Codice": "02", "Valore": 2}]}}"#,
    );
    config.write(
        "data/righe.ndjson",
        "{\"id\": 1, \"ok\": true}\nnot json\n{\"id\": 2, \"ok\": false}\n",
    );
    config.write(
        "data/punti.geojson",
        r#"{"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {"Nome": "quadrato"}, "geometry": {"type": "Polygon", "coordinates": [[[0,0],[2,0],[2,2],[0,2],[0,0]]]}},
            {"type": "Feature", "properties": {"Nome": "fuori"}, "geometry": {"type": "Point", "coordinates": [5, 5]}}
        ]}"#,
    );
    config.write(
        "data/serie.csv",
        "Zona;2021;2022;2023\nNord;10;11;12\nSud;20;;22\n",
    );
    config.write(
        "connectors/vari.toml",
        r#"kind = "file"
[[table]]
name = "doc"
path = "data/doc.json"
json_pointer = "/data/items"
[[table]]
name = "righe"
path = "data/righe.ndjson"
[[table]]
name = "forme"
path = "data/punti.geojson"
[[table]]
name = "serie"
path = "data/serie.csv"
delimiter = ";"
unpivot = { columns_matching = "^[0-9]{4}$", name_column = "anno", value_column = "valore", name_type = "int" }
"#,
    );
    let server = Server::start_ready(&config);
    assert_eq!(
        server.rows("SELECT codice, valore FROM vari.doc ORDER BY codice"),
        vec![
            json!({"codice": "01", "valore": 1.5}),
            json!({"codice": "02", "valore": 2.0})
        ]
    );
    assert_eq!(
        server.rows("SELECT count(*) AS n FROM vari.righe")[0]["n"],
        2
    );
    let rejected = server.rows("SELECT table_name, line FROM system.rejected_records");
    assert_eq!(rejected, vec![json!({"table_name": "righe", "line": 2})]);
    let shapes = server.rows(
        "SELECT nome, ST_Area(geometry) AS area, ST_Contains(geometry, ST_Point(1.0, 1.0)) AS contiene, ST_AsText(ST_Centroid(geometry)) AS centro, ST_AsGeoJSON(geometry) AS gj FROM vari.forme ORDER BY nome",
    );
    assert_eq!(shapes[1]["nome"], "quadrato");
    assert_eq!(shapes[1]["area"], 4.0);
    assert_eq!(shapes[1]["contiene"], true);
    assert_eq!(shapes[1]["centro"], "POINT(1 1)");
    let geojson: serde_json::Value =
        serde_json::from_str(shapes[0]["gj"].as_str().unwrap()).unwrap();
    assert_eq!(geojson, json!({"type": "Point", "coordinates": [5.0, 5.0]}));
    // Geometry columns come out as WKT in JSON.
    assert_eq!(
        server.rows("SELECT geometry FROM vari.forme WHERE nome = 'fuori'")[0]["geometry"],
        "POINT(5 5)"
    );
    let series = server.rows("SELECT zona, anno, valore FROM vari.serie ORDER BY zona, anno");
    assert_eq!(series.len(), 6);
    assert_eq!(
        series[0],
        json!({"zona": "Nord", "anno": 2021, "valore": 10})
    );
    assert_eq!(
        series[4],
        json!({"zona": "Sud", "anno": 2022, "valore": null})
    );
}

#[test]
fn a_parquet_file_loads_with_its_types_and_declared_casts() {
    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;

    let config = ConfigDir::empty();
    let schema = Arc::new(Schema::new(vec![
        Field::new("Sensor Id", DataType::Utf8, false),
        Field::new("Area", DataType::Int64, false),
        Field::new("Valore", DataType::Float64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["ap-1", "ap-2", "ap-3"])),
            Arc::new(Int64Array::from(vec![5, 7, 5])),
            Arc::new(Float64Array::from(vec![Some(1.5), None, Some(4.0)])),
        ],
    )
    .unwrap();
    std::fs::create_dir_all(config.path().join("data")).unwrap();
    let file = std::fs::File::create(config.path().join("data/letture.parquet")).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    config.write(
        "connectors/sensori.toml",
        "kind = \"file\"\n[[table]]\nname = \"letture\"\npath = \"data/letture.parquet\"\nschema = { area = \"text\" }\n",
    );
    let server = Server::start_ready(&config);
    let rows =
        server.rows("SELECT sensor_id, area, valore FROM sensori.letture ORDER BY sensor_id");
    assert_eq!(
        rows[0],
        json!({"sensor_id": "ap-1", "area": "5", "valore": 1.5})
    );
    assert_eq!(rows[1]["valore"], serde_json::Value::Null);
    assert_eq!(
        server.rows("SELECT sum(valore) AS s FROM sensori.letture WHERE area = '5'")[0]["s"],
        5.5
    );
}

/// Stations whose location is text in the forms open data uses: each parses to its point, and one
/// that does not is a rejected record with its reason, never a silent NULL geometry.
#[test]
fn points_written_as_text_parse_and_a_bad_one_is_rejected() {
    let config = ConfigDir::empty();
    config.write(
        "data/stazioni.csv",
        "id;nome;location\n\
         1;Verziere;\"(45.4636, 9.1953)\"\n\
         2;Pascal;\"45,4785, 9,2355\"\n\
         3;Marche;POINT(9.1970 45.4961)\n\
         4;Senato;\"45.4712 9.1980\"\n\
         5;Ignota;da definire\n\
         6;Invertita;\"(145.46, 9.19)\"\n\
         7;Nuova;\n",
    );
    config.write(
        "connectors/aria.toml",
        r#"kind = "file"
[[table]]
name = "stazioni"
path = "data/stazioni.csv"
delimiter = ";"
schema = { location = "text" }
point = { lat_lon = "location" }
"#,
    );
    let server = Server::start_ready(&config);
    let rows = server.rows(
        "SELECT id, round(ST_XMin(geometry), 4) AS lon, round(ST_YMin(geometry), 4) AS lat \
         FROM aria.stazioni ORDER BY id",
    );
    assert_eq!(
        rows,
        vec![
            json!({"id": 1, "lon": 9.1953, "lat": 45.4636}),
            json!({"id": 2, "lon": 9.2355, "lat": 45.4785}),
            json!({"id": 3, "lon": 9.197, "lat": 45.4961}),
            json!({"id": 4, "lon": 9.198, "lat": 45.4712}),
            json!({"id": 7, "lon": null, "lat": null}),
        ]
    );
    let rejected = server.rows(
        "SELECT reason, raw FROM system.rejected_records WHERE table_name = 'stazioni' ORDER BY raw",
    );
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert!(
        rejected[0]["raw"].as_str().unwrap().contains("id=5"),
        "{rejected:?}"
    );
    assert_eq!(
        rejected[0]["reason"],
        "no point: `location`: \"da definire\" is not a point: expected \"lat, lon\", \"(lat, lon)\" or WKT POINT(lon lat)"
    );
    assert!(
        rejected[1]["raw"].as_str().unwrap().contains("id=6"),
        "{rejected:?}"
    );
    assert!(
        rejected[1]["reason"]
            .as_str()
            .unwrap()
            .contains("outside WGS84's bounds"),
        "{rejected:?}"
    );
    assert_eq!(server.table_status("aria.stazioni")["rejected"], 2);
}

const QUARTIERI: [&str; 6] = [
    "Borgo Panigale-Reno",
    "Navile",
    "Porto-Saragozza",
    "San Donato-San Vitale",
    "Santo Stefano",
    "Savena",
];

/// A service log as a municipality publishes it, `rows` rows of about 50 bytes: `;`-separated,
/// amounts with a decimal comma. Row `i` has id `i`, area `i % 90`, amount `i % 1000` euros and
/// `i % 100` cents. After the rows comes one short row, on line `rows + 2`.
fn write_service_log(path: &Path, rows: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(out, "Id;Area;Importo;Sportello").unwrap();
    for i in 0..rows {
        writeln!(
            out,
            "{i};{};{},{:02};Sportello {}",
            i % 90,
            i % 1000,
            i % 100,
            QUARTIERI[i % QUARTIERI.len()]
        )
        .unwrap();
    }
    writeln!(out, "troncata;1").unwrap();
    out.flush().unwrap();
}

/// The process's peak resident memory (VmHWM) in bytes.
fn peak_rss(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmHWM in kB in /proc/<pid>/status");
    kib * 1024
}

/// A CSV of 1M rows and one of 4M (~200 MB): the peak memory of the server that loaded the
/// larger is within a bound of the smaller's, well below what reading the file whole would add,
/// and both tables answer exactly, typed from every value, with the short row rejected at its
/// line past the first batches.
#[test]
fn memory_of_a_csv_load_does_not_grow_with_the_rows() {
    let mut peaks = Vec::new();
    for rows in [1_000_000u64, 4_000_000] {
        let config = ConfigDir::empty();
        // Every table on disk, whatever its size: what is compared is the load, not a cache.
        config.write(
            "cruscotto.toml",
            "data_dir = \"var\"\n[access]\nanonymous = \"analyst\"\n[storage]\nmemory_cache = \"1 MiB\"\n",
        );
        config.write(
            "connectors/servizi.toml",
            "kind = \"file\"\n[[table]]\nname = \"accessi\"\npath = \"data/accessi.csv\"\n\
             delimiter = \";\"\ndecimal = \",\"\n",
        );
        let data = config.path().join("data/accessi.csv");
        write_service_log(&data, rows as usize);
        let megabytes = std::fs::metadata(&data).unwrap().len() >> 20;
        let server = Server::start_ready(&config);
        let status = server.table_status("servizi.accessi");
        assert_eq!(status["state"], "fresh", "{status}");
        assert_eq!(status["storage"], "disk", "{status}");
        let peak = peak_rss(&server);

        let totals = &server.rows(
            "SELECT count(*) AS n, sum(id) AS ids, sum(area) AS areas, \
             sum(CAST(round(importo * 100) AS BIGINT)) AS cents, \
             count(DISTINCT sportello) AS sportelli FROM servizi.accessi",
        )[0];
        let cents: u64 = (0..rows).map(|i| (i % 1000) * 100 + i % 100).sum();
        let areas: u64 = (0..rows).map(|i| i % 90).sum();
        assert_eq!(
            totals,
            &json!({
                "n": rows,
                "ids": rows * (rows - 1) / 2,
                "areas": areas,
                "cents": cents,
                "sportelli": QUARTIERI.len(),
            })
        );
        let columns = server.rows(
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_name = 'accessi' ORDER BY ordinal_position",
        );
        assert_eq!(
            columns,
            vec![
                json!({"column_name": "id", "data_type": "Int64"}),
                json!({"column_name": "area", "data_type": "Int64"}),
                json!({"column_name": "importo", "data_type": "Float64"}),
                // Read in place from its version file: text as Arrow's view type.
                json!({"column_name": "sportello", "data_type": "Utf8View"}),
            ]
        );
        let rejected = server.rows("SELECT line, reason FROM system.rejected_records");
        assert_eq!(
            rejected,
            vec![json!({"line": rows + 2, "reason": "2 fields where the header has 4"})]
        );
        eprintln!(
            "{rows} rows ({megabytes} MiB of CSV): peak RSS {} MiB",
            peak >> 20
        );
        peaks.push(peak);
    }
    // Read whole, 3M more rows would add well over 500 MiB (the file's bytes, its decoded text,
    // a String per cell); the debug build's peaks move by up to ~55 MiB from run to run.
    let bound = 96 << 20;
    assert!(
        peaks[1] < peaks[0] + bound,
        "peak RSS of the load: {} MiB for 4M rows vs {} MiB for 1M rows",
        peaks[1] >> 20,
        peaks[0] >> 20
    );
}
