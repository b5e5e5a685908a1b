//! The DCAT-AP_IT catalogue at /api/v1/datasets against the shapes in tests/validators/dcat (the
//! EU DCAT-AP 2.1.1 shapes and vocabularies, and AgID's mandatory elements), run with pyshacl on
//! what the real binary serves. The only findings allowed are the two file types the EU list of
//! 2017 lacks (ARROW, PARQUET).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ConfigDir, REPO, Server};
use serde_json::Value;

fn validators() -> PathBuf {
    std::env::var_os("CRUSCOTTO_VALIDATORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(REPO).join("tests/validators"))
}

/// `$CRUSCOTTO_PYTHON`, else the virtualenv `.ci/run` installs pyshacl into, else `python3`.
fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("CRUSCOTTO_PYTHON") {
        return python.into();
    }
    let venv = std::env::var_os("HOME")
        .map(|home| Path::new(&home).join(".cache/cruscotto-venv/bin/python"))
        .filter(|p| p.exists());
    venv.unwrap_or_else(|| "python3".into())
}

/// The violations the validator reports for a catalogue, but the two known vocabulary gaps.
fn violations(catalogue: &Value, dir: &Path) -> Vec<String> {
    let file = dir.join("catalogue.jsonld");
    std::fs::write(&file, serde_json::to_vec(catalogue).unwrap()).unwrap();
    let script = validators().join("dcat/validate.py");
    let output = Command::new(python())
        .arg(&script)
        .arg(&file)
        .arg("json-ld")
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stdout.lines().any(|l| l.starts_with("dcat: ")),
        "the validator did not run (pip install -r tests/validators/requirements.txt, as .ci/run does):\n{stdout}\n{stderr}"
    );
    stdout
        .lines()
        .filter(|l| l.starts_with("VIOLATION"))
        .filter(|l| !known_gap(l))
        .map(str::to_string)
        .collect()
}

/// A finding on `dct:format` whose value is the ARROW or PARQUET file type (printed as a prefixed
/// name or an IRI).
fn known_gap(line: &str) -> bool {
    let value = line
        .split(' ')
        .find_map(|word| word.strip_prefix("value="))
        .unwrap_or("")
        .trim_end_matches('>');
    line.contains(" path=dct:format ") && (value.ends_with("ARROW") || value.ends_with("PARQUET"))
}

fn with_catalogue(publisher: &str, ipa: &str) -> ConfigDir {
    let config = ConfigDir::demo();
    let toml = std::fs::read_to_string(config.config_file()).unwrap();
    let toml = toml
        .replace(
            "publisher = \"Comune di Bologna\"",
            &format!("publisher = \"{publisher}\""),
        )
        .replace(
            "publisher_ipa = \"c_a944\"",
            &format!("publisher_ipa = \"{ipa}\""),
        );
    config.write("cruscotto.toml", &toml);
    // A dataset whose rights are held by another body, with its own IPA code.
    config.write(
        "datasets/certificati_anpr.toml",
        r#"title = "Certificati ANPR"
description = "Certificati online per comune"
query = "anpr_certificati_per_1000"
licence = "https://creativecommons.org/publicdomain/zero/1.0/"
publisher = "Ministero dell'Interno"
publisher_ipa = "m_it"
update_frequency = "IRREG"
themes = ["GOVE"]
spatial = "Città metropolitana di Bologna"
key = "cod_istat_comune"
"#,
    );
    config
}

fn catalogue(server: &Server) -> Value {
    let response = server
        .client
        .get(format!("{}/api/v1/datasets", server.url))
        .header("accept", "application/ld+json")
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/ld+json");
    response.json().unwrap()
}

#[test]
fn the_catalogue_conforms_to_dcat_ap_it_but_for_the_missing_file_types() {
    let config = with_catalogue("Comune di Bologna", "c_a944");
    let server = Server::start_ready(&config);
    let body = catalogue(&server);
    let found = violations(&body, config.path());
    assert!(
        found.is_empty(),
        "{} violations:\n{}",
        found.len(),
        found.join("\n")
    );

    // Catalogue and datasets name their publisher by IPA code, dates are typed.
    let publisher = &body["dct:publisher"];
    assert_eq!(publisher["dct:identifier"], "c_a944");
    assert_eq!(publisher["foaf:name"], "Comune di Bologna");
    assert_eq!(body["dct:modified"]["@type"], "xsd:date");
    let datasets = body["dcat:dataset"].as_array().unwrap();
    assert_eq!(datasets.len(), 2);
    let anpr = datasets
        .iter()
        .find(|d| d["dct:identifier"] == "certificati_anpr")
        .unwrap();
    assert_eq!(anpr["dct:rightsHolder"]["dct:identifier"], "m_it");
    assert_eq!(anpr["dct:publisher"]["dct:identifier"], "c_a944");
}

#[test]
fn the_publisher_comes_from_the_configuration() {
    // Another body, with names that need escaping in JSON and IRIs.
    for (name, ipa) in [
        ("Comune di Reggio nell'Emilia", "c_h223"),
        ("Unione \"Terre\" di Pianura", "u_tdp"),
    ] {
        let config = with_catalogue(&name.replace('"', "\\\""), ipa);
        let server = Server::start_ready(&config);
        let body = catalogue(&server);
        let found = violations(&body, config.path());
        assert!(
            found.is_empty(),
            "{name}: {} violations:\n{}",
            found.len(),
            found.join("\n")
        );
        assert_eq!(body["dct:publisher"]["foaf:name"], name);
        assert_eq!(body["dct:publisher"]["dct:identifier"], ipa);
        for dataset in body["dcat:dataset"].as_array().unwrap() {
            assert_eq!(dataset["dct:publisher"]["dct:identifier"], ipa);
        }
    }
}
