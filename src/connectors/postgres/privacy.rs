//! What may leave the registry. Two checks, both on what a query does rather than on the names it
//! uses: no output column may be an identifying column or an expression over one (through the
//! column lineage of `lineage.rs`), and a query reading a table of persons (`person_tables`, found
//! in PostgreSQL's own plan, so views count too) may not return person-level rows.

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::GenericClient;

use super::config::is_identifying;
use super::connect::describe;
use super::lineage::{self, Origin};
use super::load::quote_identifier;
use super::types::Raw;

/// An output column carrying identifying data, and the base columns it comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub column: String,
    pub origins: BTreeSet<Origin>,
}

/// The sentence for a table that fails because of `findings` (not empty).
pub fn identifying_message(findings: &[Finding]) -> String {
    let columns: Vec<String> = findings
        .iter()
        .map(|f| {
            let origins: Vec<String> = f
                .origins
                .iter()
                .map(|(relation, column)| {
                    if relation.is_empty() {
                        format!("`{column}`")
                    } else {
                        format!("`{column}` of {relation}")
                    }
                })
                .collect();
            format!(
                "column `{}` is computed from the identifying column {}",
                f.column,
                origins.join(" and ")
            )
        })
        .collect();
    format!(
        "{}: identifying data may not leave the registry, not even transformed (an identifying \
         column may only be counted, a date reduced to its year); aggregate in PostgreSQL, e.g. \
         counts by area, sex and age band",
        columns.join("; ")
    )
}

fn findings_of(outputs: Vec<lineage::OutputLineage>, names: Option<&[String]>) -> Vec<Finding> {
    outputs
        .into_iter()
        .enumerate()
        .filter(|(_, output)| !output.identifying.is_empty())
        .map(|(i, output)| Finding {
            // PostgreSQL's own name for the column when the counts agree.
            column: names
                .filter(|n| n.len() > i)
                .map_or(output.name.clone(), |n| n[i].clone()),
            origins: output.identifying,
        })
        .collect()
}

/// The check without a database: base tables' columns are unknown, so `*` over them cannot be
/// judged and references are judged by the base column's name. `Err` when the query does not parse.
pub fn offline_findings(query: &str) -> Result<Vec<Finding>, String> {
    let parsed = lineage::parse(query)?;
    let outputs = lineage::lineage(&parsed, &|_| None, &is_identifying)
        .into_iter()
        .map(|mut output| {
            output
                .identifying
                .retain(|(_, column)| is_identifying(column));
            output
        })
        .collect();
    Ok(findings_of(outputs, None))
}

/// The check against the database, which lists every relation's columns. `names` are the output
/// columns PostgreSQL reports. A query the parser here does not understand is judged by those
/// names. `Err` is a database error.
pub async fn findings<C: GenericClient + Sync>(
    client: &C,
    query: &str,
    names: &[String],
) -> Result<Vec<Finding>, String> {
    let parsed = match lineage::parse(query) {
        Ok(parsed) => parsed,
        Err(_) => {
            return Ok(names
                .iter()
                .filter(|n| is_identifying(n))
                .map(|n| Finding {
                    column: n.clone(),
                    origins: BTreeSet::from([(String::new(), n.clone())]),
                })
                .collect());
        }
    };
    let mut columns: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for relation in lineage::relations(&parsed) {
        // to_regclass answers NULL for a name that is not a relation (a CTE, a function).
        let rows = client
            .query(
                "SELECT attname::text FROM pg_attribute \
                  WHERE attrelid = to_regclass($1::text) AND attnum > 0 AND NOT attisdropped \
                  ORDER BY attnum",
                &[&relation],
            )
            .await
            .map_err(|e| describe(&e, None))?;
        if !rows.is_empty() {
            columns.insert(relation, rows.iter().map(|r| r.get(0)).collect());
        }
    }
    let outputs = lineage::lineage(&parsed, &|r| columns.get(r).cloned(), &is_identifying);
    Ok(findings_of(outputs, Some(names)))
}

/// The largest table of persons the query reads (from PostgreSQL's plan), with its row count:
/// `None` when it reads none of `person_tables`.
pub async fn persons_read<C: GenericClient + Sync>(
    client: &C,
    query: &str,
    person_tables: &[String],
) -> Result<Option<(String, i64)>, String> {
    if person_tables.is_empty() {
        return Ok(None);
    }
    let rows = client
        .query(&format!("EXPLAIN (VERBOSE, FORMAT JSON) {query}"), &[])
        .await
        .map_err(|e| describe(&e, None))?;
    let plan: serde_json::Value = rows
        .first()
        .and_then(|row| row.try_get::<_, Raw<'_>>(0).ok())
        .and_then(|raw| serde_json::from_slice(raw.0).ok())
        .ok_or("PostgreSQL's plan of the query could not be read")?;
    let mut scanned = BTreeSet::new();
    scanned_relations(&plan, &mut scanned);
    let mut largest: Option<(String, i64)> = None;
    for (schema, relation) in scanned {
        let listed = person_tables.iter().any(|t| match t.split_once('.') {
            Some((s, r)) => s == schema && r == relation,
            None => t == &relation,
        });
        if !listed {
            continue;
        }
        let count: i64 = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM {}.{}",
                    quote_identifier(&schema),
                    quote_identifier(&relation)
                ),
                &[],
            )
            .await
            .map_err(|e| describe(&e, None))?
            .get(0);
        if largest.as_ref().is_none_or(|(_, n)| count > *n) {
            largest = Some((format!("{schema}.{relation}"), count));
        }
    }
    Ok(largest)
}

/// Every (schema, relation) a plan scans, in every node and subplan.
fn scanned_relations(value: &serde_json::Value, out: &mut BTreeSet<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            if let (Some(schema), Some(relation)) = (
                map.get("Schema").and_then(|s| s.as_str()),
                map.get("Relation Name").and_then(|s| s.as_str()),
            ) {
                out.insert((schema.to_string(), relation.to_string()));
            }
            for child in map.values() {
                scanned_relations(child, out);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                scanned_relations(item, out);
            }
        }
        _ => {}
    }
}

/// How many rows a query reading `persons` persons may return.
pub fn row_limit(persons: i64, max_rows_per_person: f64) -> u64 {
    (persons.max(0) as f64 * max_rows_per_person).floor() as u64
}

/// The sentence for a table that returned more than `limit` rows.
pub fn person_rows_message(
    limit: u64,
    relation: &str,
    persons: i64,
    max_rows_per_person: f64,
) -> String {
    format!(
        "the query returns more than {limit} rows while reading {persons} persons from \
         {relation} (max_rows_per_person = {max_rows_per_person}): its rows are person-level; \
         aggregate in PostgreSQL (GROUP BY) so individual records never leave the registry"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registry of the simulator, plus what real registries have.
    fn columns_of(relation: &str) -> Option<Vec<String>> {
        let names: &[&str] = match relation {
            "anagrafe.residenti" | "residenti" => &[
                "id",
                "codice_fiscale",
                "cognome",
                "nome",
                "data_nascita",
                "anno_nascita",
                "sesso",
                "area_statistica",
                "cittadinanza",
                "famiglia_id",
            ],
            "anagrafe.aree" => &["codice", "nome_area"],
            _ => return None,
        };
        Some(names.iter().map(|s| s.to_string()).collect())
    }

    fn identifying_columns(query: &str) -> Vec<String> {
        let parsed = lineage::parse(query).unwrap_or_else(|e| panic!("{query}: {e}"));
        findings_of(
            lineage::lineage(&parsed, &columns_of, &is_identifying),
            None,
        )
        .into_iter()
        .map(|f| f.column)
        .collect()
    }

    #[test]
    fn identifying_data_is_followed_through_what_the_query_does() {
        let cases: &[(&str, &[&str])] = &[
            (
                "SELECT codice_fiscale, count(*) AS n FROM anagrafe.residenti GROUP BY codice_fiscale",
                &["codice_fiscale"],
            ),
            (
                "SELECT lower(codice_fiscale) AS chiave FROM anagrafe.residenti",
                &["chiave"],
            ),
            (
                "SELECT upper(r.codice_fiscale) AS k, count(*) FROM anagrafe.residenti r GROUP BY 1",
                &["k"],
            ),
            (
                "SELECT md5(codice_fiscale || 'sale') AS pseudonimo FROM anagrafe.residenti",
                &["pseudonimo"],
            ),
            (
                "SELECT substr(cognome, 1, 3) AS c3, area_statistica FROM anagrafe.residenti",
                &["c3"],
            ),
            (
                "SELECT chiave FROM (SELECT lower(codice_fiscale) AS chiave FROM anagrafe.residenti) s",
                &["chiave"],
            ),
            (
                "SELECT x FROM (SELECT codice_fiscale FROM anagrafe.residenti) AS s(x)",
                &["x"],
            ),
            (
                "WITH p AS (SELECT nome || ' ' || cognome AS chi FROM anagrafe.residenti) SELECT chi AS etichetta FROM p",
                &["etichetta"],
            ),
            (
                "WITH p(a) AS (SELECT data_nascita FROM anagrafe.residenti) SELECT a FROM p",
                &["a"],
            ),
            (
                "SELECT * FROM anagrafe.residenti",
                &["codice_fiscale", "cognome", "nome", "data_nascita"],
            ),
            (
                "SELECT r.* FROM anagrafe.residenti r JOIN anagrafe.aree a ON a.codice = r.area_statistica",
                &["codice_fiscale", "cognome", "nome", "data_nascita"],
            ),
            (
                "SELECT s.* FROM (SELECT codice_fiscale AS k FROM anagrafe.residenti) s",
                &["k"],
            ),
            (
                "SELECT to_jsonb(r) AS riga FROM anagrafe.residenti r",
                &["riga"],
            ),
            (
                "SELECT area_statistica FROM anagrafe.residenti UNION ALL SELECT codice_fiscale FROM anagrafe.residenti",
                &["area_statistica"],
            ),
            (
                "SELECT (SELECT max(codice_fiscale) FROM anagrafe.residenti) AS ultimo",
                &["ultimo"],
            ),
            (
                "SELECT CASE WHEN sesso = 'F' THEN nome ELSE cognome END AS n FROM anagrafe.residenti",
                &["n"],
            ),
            (
                "SELECT date_trunc('month', data_nascita) AS mese, count(*) FROM anagrafe.residenti GROUP BY 1",
                &["mese"],
            ),
            (
                "SELECT string_agg(codice_fiscale, ',') AS elenco FROM anagrafe.residenti GROUP BY area_statistica",
                &["elenco"],
            ),
            ("SELECT \"CODICE_FISCALE\" FROM t", &["CODICE_FISCALE"]),
            (
                "SELECT codice_fiscale::text AS k FROM anagrafe.residenti",
                &["k"],
            ),
            // Not identifying: counts, years, and columns that only share a name.
            (
                "SELECT area_statistica, count(DISTINCT codice_fiscale) AS persone FROM anagrafe.residenti GROUP BY 1",
                &[],
            ),
            (
                "SELECT extract(year FROM data_nascita) AS anno, count(*) FROM anagrafe.residenti GROUP BY 1",
                &[],
            ),
            (
                "SELECT date_part('year', data_nascita) AS anno, count(*) AS n FROM anagrafe.residenti GROUP BY 1",
                &[],
            ),
            (
                "SELECT count(*) AS codice_fiscale FROM anagrafe.residenti",
                &[],
            ),
            (
                "SELECT area_statistica AS nome, count(*) FROM anagrafe.residenti GROUP BY 1",
                &[],
            ),
            (
                "SELECT a.nome_area, count(*) FROM anagrafe.residenti r JOIN anagrafe.aree a ON a.codice = r.area_statistica GROUP BY 1",
                &[],
            ),
            (
                "SELECT id, anno_nascita, sesso FROM anagrafe.residenti",
                &[],
            ),
            (
                "SELECT area_statistica, count(*) FROM anagrafe.residenti WHERE codice_fiscale IS NOT NULL GROUP BY 1",
                &[],
            ),
        ];
        for (query, expected) in cases {
            assert_eq!(
                identifying_columns(query),
                expected.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "{query}"
            );
        }
    }

    #[test]
    fn every_identifying_column_under_every_wrapping_is_found() {
        let wrappings = [
            "{c}",
            "lower({c})",
            "upper(trim({c}))",
            "{c}::varchar",
            "coalesce({c}, '')",
            "substring({c} from 1 for 6)",
            "{c} || '-'",
            "md5({c}::text)",
            "min({c})",
            "array_agg({c})",
        ];
        for column in ["codice_fiscale", "cognome", "nome", "data_nascita"] {
            for wrapping in wrappings {
                let expr = wrapping.replace("{c}", column);
                for query in [
                    format!("SELECT {expr} AS out FROM anagrafe.residenti"),
                    format!("SELECT out FROM (SELECT {expr} AS out FROM anagrafe.residenti) s"),
                    format!(
                        "WITH w AS (SELECT {expr} AS out FROM anagrafe.residenti) SELECT w.out FROM w"
                    ),
                    format!("SELECT {expr} AS out, count(*) FROM anagrafe.residenti r GROUP BY 1"),
                ] {
                    assert_eq!(
                        identifying_columns(&query),
                        vec!["out".to_string()],
                        "{query}"
                    );
                }
                let counted =
                    format!("SELECT count(DISTINCT {expr}) AS out FROM anagrafe.residenti");
                assert!(identifying_columns(&counted).is_empty(), "{counted}");
            }
        }
    }

    #[test]
    fn offline_the_names_of_base_columns_decide() {
        let found = offline_findings("SELECT lower(r.codice_fiscale) AS chiave FROM x.residenti r")
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].column, "chiave");
        // `*` over a table nobody listed is not judged offline.
        assert!(
            offline_findings("SELECT * FROM x.residenti")
                .unwrap()
                .is_empty()
        );
        assert!(offline_findings("SELECT a FROM t WHERE a = = 1").is_err());
        let message = identifying_message(&found);
        assert!(message.starts_with("column `chiave` is computed from the identifying column `codice_fiscale` of x.residenti"), "{message}");
    }

    #[test]
    fn the_row_limit_is_a_fraction_of_the_persons() {
        assert_eq!(row_limit(392_162, 0.05), 19_608);
        assert_eq!(row_limit(0, 0.05), 0);
        assert_eq!(row_limit(1_000, 1.0), 1_000);
    }
}
