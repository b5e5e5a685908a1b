//! The DCAT-AP_IT catalogue of the datasets a key may read, as JSON-LD. What AgID's guideline
//! makes mandatory is always there: the catalogue's description, publisher and `modified`; each
//! dataset's publisher and rights holder as agents with an IRI, their IPA code and name; dates
//! typed `xsd:date`. The publisher comes from `[catalogue]` in cruscotto.toml.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};

use crate::config::CatalogueConfig;
use crate::datasets::Dataset;

/// Where DCAT-AP_IT names public bodies: the IPA code under dati.gov.it's agent namespace.
const AGENT_BASE: &str = "http://dati.gov.it/resource/Amministrazione/";
const FILE_TYPE: &str = "http://publications.europa.eu/resource/authority/file-type/";

/// The catalogue of `datasets`; `modified` gives each dataset's last change.
pub fn catalogue(
    config: &CatalogueConfig,
    datasets: &[&Dataset],
    modified: impl Fn(&Dataset) -> NaiveDate,
    simulated: impl Fn(&Dataset) -> bool,
) -> Value {
    let publisher = config
        .publisher
        .as_deref()
        .map(|name| agent(name, config.publisher_ipa.as_deref()));
    let entries: Vec<Value> = datasets
        .iter()
        .map(|d| {
            let mut entry = dataset(d, config, publisher.as_ref(), modified(d));
            if simulated(d) {
                label_simulated(&mut entry);
            }
            entry
        })
        .collect();
    let last = datasets
        .iter()
        .map(|d| modified(d))
        .max()
        .unwrap_or_else(|| Utc::now().date_naive());
    let description = config.description.clone().unwrap_or_else(|| {
        "Dataset pubblicati per gli enti partner: conteggi aggregati, con i conteggi piccoli di persone soppressi.".into()
    });
    let description_en = config.description_en.clone().unwrap_or_else(|| {
        "Datasets published for partner agencies: aggregate counts, with small counts of persons suppressed.".into()
    });
    let mut body = json!({
        "@context": {
            "dcat": "http://www.w3.org/ns/dcat#",
            "dct": "http://purl.org/dc/terms/",
            "dcatapit": "http://dati.gov.it/onto/dcatapit#",
            "foaf": "http://xmlns.com/foaf/0.1/",
            "vcard": "http://www.w3.org/2006/vcard/ns#",
            "xsd": "http://www.w3.org/2001/XMLSchema#",
            "cruscotto": "urn:cruscotto:"
        },
        "@id": "/api/v1/datasets",
        "@type": ["dcat:Catalog", "dcatapit:Catalog"],
        "dct:title": [{"@language": "it", "@value": "Dati pubblicati da cruscotto"}, {"@language": "en", "@value": "Datasets published by cruscotto"}],
        "dct:description": [{"@language": "it", "@value": description}, {"@language": "en", "@value": description_en}],
        "dct:modified": date(last),
        "dcat:themeTaxonomy": {"@id": "http://publications.europa.eu/resource/authority/data-theme"},
        "dcat:dataset": entries,
    });
    if let Some(publisher) = publisher {
        body["dct:publisher"] = publisher;
    }
    body
}

/// A dataset computed from a built-in simulator's tables says so in its description and keywords.
fn label_simulated(entry: &mut Value) {
    if let Some(descriptions) = entry["dct:description"].as_array_mut() {
        for d in descriptions {
            let (label, text) = match d["@language"].as_str() {
                Some("en") => (
                    "Simulated data (built-in simulator, not the city's real source)",
                    d["@value"].as_str().unwrap_or_default(),
                ),
                _ => (
                    "Dati simulati (simulatore integrato, non la fonte reale della città)",
                    d["@value"].as_str().unwrap_or_default(),
                ),
            };
            d["@value"] = json!(format!("{label}. {text}"));
        }
    }
    if let Some(keywords) = entry["dcat:keyword"].as_array_mut() {
        keywords.push(json!("dati simulati"));
    }
}

fn dataset(
    d: &Dataset,
    catalogue: &CatalogueConfig,
    publisher: Option<&Value>,
    modified: NaiveDate,
) -> Value {
    let c = &d.config;
    let text = |it: &str, en: &Option<String>| {
        let mut values = vec![json!({"@language": "it", "@value": it})];
        if let Some(en) = en {
            values.push(json!({"@language": "en", "@value": en}));
        }
        values
    };
    let url = format!("/api/v1/datasets/{}", d.name);
    let distributions: Vec<Value> = [
        ("JSON", "application/json"),
        ("CSV", "text/csv"),
        ("ARROW", "application/vnd.apache.arrow.stream"),
        ("PARQUET", "application/vnd.apache.parquet"),
    ]
    .iter()
    .map(|(format, media)| {
        let access = format!("{url}?format={}", format.to_ascii_lowercase());
        json!({
            "@id": access,
            "@type": ["dcat:Distribution", "dcatapit:Distribution"],
            "dct:title": format!("{} ({format})", c.title),
            "dcat:accessURL": {"@id": access},
            "dct:format": {"@id": format!("{FILE_TYPE}{format}")},
            "dcat:mediaType": media,
            "dct:license": {"@id": c.licence},
        })
    })
    .collect();
    // The rights holder is a body by name; the catalogue's publisher lends it its IPA code.
    let same_body = catalogue.publisher.as_deref() == Some(c.publisher.as_str());
    let ipa = c
        .publisher_ipa
        .as_deref()
        .or(catalogue.publisher_ipa.as_deref().filter(|_| same_body));
    let rights_holder = agent(&c.publisher, ipa);
    let mut value = json!({
        "@id": url,
        "@type": ["dcat:Dataset", "dcatapit:Dataset"],
        "dct:identifier": d.name,
        "dct:title": text(&c.title, &c.title_en),
        "dct:description": text(&c.description, &c.description_en),
        "dct:modified": date(modified),
        "dct:rightsHolder": rights_holder,
        "dct:accrualPeriodicity": {"@id": format!("http://publications.europa.eu/resource/authority/frequency/{}", c.update_frequency)},
        "dcat:theme": c.themes.iter().map(|t| json!({"@id": format!("http://publications.europa.eu/resource/authority/data-theme/{t}")})).collect::<Vec<_>>(),
        "dcat:keyword": c.keywords,
        "dct:spatial": {"@type": "dct:Location", "dct:identifier": c.spatial},
        "dct:license": {"@id": c.licence},
        "dcat:distribution": distributions,
        "cruscotto:countsOfPersons": c.persons.is_some(),
        "cruscotto:filters": c.filters,
    });
    if let Some(publisher) = publisher {
        value["dct:publisher"] = publisher.clone();
    }
    if let (Some(name), Some(email)) = (&catalogue.contact_name, &catalogue.contact_email) {
        value["dcat:contactPoint"] = json!({
            "@type": ["vcard:Organization", "dcatapit:Organization"],
            "vcard:fn": name,
            "vcard:hasEmail": {"@id": format!("mailto:{email}")},
        });
    }
    if let Some(t) = &c.temporal {
        value["dct:temporal"] = json!({"@type": "dct:PeriodOfTime", "dcat:startDate": date(t.start), "dcat:endDate": date(t.end)});
    }
    value
}

/// A public body as DCAT-AP_IT wants it: an IRI (from its IPA code), typed `dcatapit:Agent`,
/// with its code as `dct:identifier` and its name. Without a code there is no IRI to give it but
/// one of ours, and no identifier: the catalogue says so rather than invent one.
fn agent(name: &str, ipa: Option<&str>) -> Value {
    let id = match ipa {
        Some(code) => format!("{AGENT_BASE}{code}"),
        None => format!("urn:cruscotto:agent:{}", slug(name)),
    };
    let mut value = json!({
        "@id": id,
        "@type": ["foaf:Agent", "dcatapit:Agent"],
        "foaf:name": name,
    });
    if let Some(code) = ipa {
        value["dct:identifier"] = json!(code);
    }
    value
}

fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

fn date(day: NaiveDate) -> Value {
    json!({"@value": day.to_string(), "@type": "xsd:date"})
}

/// A dataset's last change: the newest successful load of the data, else (nothing loaded yet)
/// its definition file's.
pub fn last_change(d: &Dataset, last_success: Option<DateTime<Utc>>) -> NaiveDate {
    last_success
        .or_else(|| {
            std::fs::metadata(&d.file)
                .and_then(|m| m.modified())
                .ok()
                .map(DateTime::<Utc>::from)
        })
        .unwrap_or_else(Utc::now)
        .date_naive()
}
