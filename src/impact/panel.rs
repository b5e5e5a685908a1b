//! What the estimator reads, through DataFusion SQL over the service's tables: the interventions,
//! the statistical areas (planar centroid and need indicators from before) and the monthly outcome
//! of each area from the service logs. Months are Europe/Rome's, as the logs' users live them.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Date32Array, Float64Array, Int64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use chrono::NaiveDate;

use super::{ImpactError, Metric};
use crate::query::{QueryEngine, QueryResult};

/// The table of interventions: `id`, `tipo`, `nome`, `lon`, `lat`, `inizio`, `fine`.
pub const INTERVENTIONS: &str = "interventi.elenco";

/// One intervention: what was done, where and when.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Intervention {
    pub id: String,
    /// `apertura_punto`, `chiusura_punto`, `corso`, `volontari`, or what the city records.
    pub tipo: String,
    pub nome: String,
    pub lon: f64,
    pub lat: f64,
    /// The day it started (YYYY-MM-DD); its month is month 0 of the event study.
    pub inizio: NaiveDate,
    pub fine: Option<NaiveDate>,
}

/// A statistical area: its code, name, planar centroid and need indicators.
#[derive(Debug, Clone)]
pub struct Area {
    pub code: i64,
    pub name: String,
    pub centroid: (f64, f64),
    /// Share of residents aged 80 and over, share of adults expected offline (2021).
    pub needs: Vec<Option<f64>>,
}

/// The areas, the months of the logs, and the outcome per area and month.
#[derive(Debug, Clone)]
pub struct Panel {
    pub areas: Vec<Area>,
    /// First day of each month, in order, with no gap.
    pub months: Vec<NaiveDate>,
    /// `values[area][month]`.
    pub values: Vec<Vec<Option<f64>>>,
    /// Each area's weight: its mean monthly requests (share online) or its adults (logins).
    pub weights: Vec<f64>,
}

pub const AREAS_SQL: &str = "
SELECT
    a.codice_area_statistica,
    a.area_statistica,
    ST_XMin(ST_Centroid(a.geometry)) AS lon,
    ST_YMin(ST_Centroid(a.geometry)) AS lat,
    CAST(r.quota_over_80_pct AS DOUBLE) AS quota_over_80_pct,
    CAST(o.quota_offline_attesi_pct AS DOUBLE) AS quota_offline_attesi_pct
FROM bologna.aree_statistiche AS a
LEFT JOIN queries.residenti_per_area AS r ON r.codice_area_statistica = a.codice_area_statistica
LEFT JOIN queries.residenti_offline_attesi AS o ON o.codice_area_statistica = a.codice_area_statistica
ORDER BY a.codice_area_statistica";

/// Months in Europe/Rome: a request at 00:30 on the 1st belongs to the new month.
const LOCAL_MONTH: &str = "CAST(date_trunc('month', arrow_cast(ts, 'Timestamp(Microsecond, Some(\"Europe/Rome\"))')) AS DATE)";

/// The monthly outcome per area: columns `area`, `mese` (a date, the first of the month), `valore`
/// and `peso` (what the value is a share of: requests, or adults).
pub fn outcome_sql(metric: Metric) -> String {
    match metric {
        Metric::OnlineShare => format!(
            "SELECT CAST(area_statistica AS BIGINT) AS area, {LOCAL_MONTH} AS mese,
                    sum(CASE WHEN canale = 'online' THEN 1 ELSE 0 END) * 100.0 / count(*) AS valore,
                    CAST(count(*) AS DOUBLE) AS peso
             FROM service_logs.eventi
             WHERE servizio <> 'accesso_spid_cie'
             GROUP BY 1, 2"
        ),
        Metric::LoginsPerAdult => format!(
            "SELECT CAST(e.area AS BIGINT) AS area, e.mese, e.accessi * 1000.0 / o.adulti AS valore,
                    CAST(o.adulti AS DOUBLE) AS peso
             FROM (SELECT area_statistica AS area, {LOCAL_MONTH} AS mese, count(*) AS accessi
                   FROM service_logs.eventi
                   WHERE servizio = 'accesso_spid_cie'
                   GROUP BY 1, 2) AS e
             JOIN queries.residenti_offline_attesi AS o ON o.codice_area_statistica = e.area
             WHERE o.adulti > 0"
        ),
    }
}

async fn run(engine: &Arc<QueryEngine>, what: &str, sql: &str) -> Result<QueryResult, ImpactError> {
    engine
        .execute(sql)
        .await
        .map_err(|source| ImpactError::Query {
            what: what.to_string(),
            source,
        })
}

fn column(
    result: &QueryResult,
    batch: usize,
    name: &str,
    to: &DataType,
    what: &str,
) -> Result<ArrayRef, ImpactError> {
    let b = &result.batches[batch];
    let index = b
        .schema()
        .index_of(name)
        .map_err(|_| ImpactError::Data(format!("{what}: no column `{name}`")))?;
    cast(b.column(index), to)
        .map_err(|e| ImpactError::Data(format!("{what}: column `{name}` is not {to}: {e}")))
}

fn optional_f64(a: &Float64Array, i: usize) -> Option<f64> {
    (!a.is_null(i))
        .then(|| a.value(i))
        .filter(|v| v.is_finite())
}

fn date(a: &Date32Array, i: usize) -> Option<NaiveDate> {
    (!a.is_null(i)).then(|| a.value_as_date(i)).flatten()
}

/// Every intervention in the table, in the order of their start and id.
pub async fn interventions(engine: &Arc<QueryEngine>) -> Result<Vec<Intervention>, ImpactError> {
    let what = format!("the interventions ({INTERVENTIONS})");
    let sql = format!(
        "SELECT CAST(id AS VARCHAR) AS id, CAST(tipo AS VARCHAR) AS tipo, CAST(nome AS VARCHAR) AS nome,
                CAST(lon AS DOUBLE) AS lon, CAST(lat AS DOUBLE) AS lat,
                CAST(inizio AS DATE) AS inizio, CAST(fine AS DATE) AS fine
         FROM {INTERVENTIONS} ORDER BY inizio, id"
    );
    let result = run(engine, &what, &sql).await?;
    let mut out = Vec::new();
    for b in 0..result.batches.len() {
        let text = |name: &str| column(&result, b, name, &DataType::Utf8, &what);
        let (ids, kinds, names) = (text("id")?, text("tipo")?, text("nome")?);
        let lon = column(&result, b, "lon", &DataType::Float64, &what)?;
        let lat = column(&result, b, "lat", &DataType::Float64, &what)?;
        let start = column(&result, b, "inizio", &DataType::Date32, &what)?;
        let end = column(&result, b, "fine", &DataType::Date32, &what)?;
        let ids = ids.as_any().downcast_ref::<StringArray>().expect("Utf8");
        let kinds = kinds.as_any().downcast_ref::<StringArray>().expect("Utf8");
        let names = names.as_any().downcast_ref::<StringArray>().expect("Utf8");
        let lon = lon
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("Float64");
        let lat = lat
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("Float64");
        let start = start
            .as_any()
            .downcast_ref::<Date32Array>()
            .expect("Date32");
        let end = end.as_any().downcast_ref::<Date32Array>().expect("Date32");
        for i in 0..ids.len() {
            let id = if ids.is_null(i) {
                String::new()
            } else {
                ids.value(i).to_string()
            };
            let complete = (optional_f64(lon, i), optional_f64(lat, i), date(start, i));
            let (Some(lon), Some(lat), Some(inizio)) = complete else {
                return Err(ImpactError::Data(format!(
                    "{what}: intervention `{id}` needs `lon`, `lat` and `inizio` (a date)"
                )));
            };
            out.push(Intervention {
                id,
                tipo: if kinds.is_null(i) {
                    String::new()
                } else {
                    kinds.value(i).to_string()
                },
                nome: if names.is_null(i) {
                    String::new()
                } else {
                    names.value(i).to_string()
                },
                lon,
                lat,
                inizio,
                fine: date(end, i),
            });
        }
    }
    Ok(out)
}

/// The areas and the monthly outcome of `metric`.
pub async fn panel(engine: &Arc<QueryEngine>, metric: Metric) -> Result<Panel, ImpactError> {
    let result = run(engine, AREAS_WHAT, AREAS_SQL).await?;
    let areas = areas_from(&result)?;
    let what = format!("the monthly {} (service_logs.eventi)", metric.name());
    let outcomes = run(engine, &what, &outcome_sql(metric)).await?;
    panel_from(areas, &outcomes, metric)
}

const AREAS_WHAT: &str = "the statistical areas (bologna.aree_statistiche, residenti_per_area, residenti_offline_attesi)";

/// The areas from the result of `AREAS_SQL`.
pub fn areas_from(result: &QueryResult) -> Result<Vec<Area>, ImpactError> {
    let what = AREAS_WHAT;
    let mut areas = Vec::new();
    for b in 0..result.batches.len() {
        let codes = column(result, b, "codice_area_statistica", &DataType::Int64, what)?;
        let names = column(result, b, "area_statistica", &DataType::Utf8, what)?;
        let floats: Vec<ArrayRef> = [
            "lon",
            "lat",
            "quota_over_80_pct",
            "quota_offline_attesi_pct",
        ]
        .iter()
        .map(|n| column(result, b, n, &DataType::Float64, what))
        .collect::<Result<_, _>>()?;
        let codes = codes.as_any().downcast_ref::<Int64Array>().expect("Int64");
        let names = names.as_any().downcast_ref::<StringArray>().expect("Utf8");
        let f: Vec<&Float64Array> = floats
            .iter()
            .map(|a| a.as_any().downcast_ref::<Float64Array>().expect("Float64"))
            .collect();
        for i in 0..codes.len() {
            let (Some(lon), Some(lat)) = (optional_f64(f[0], i), optional_f64(f[1], i)) else {
                continue;
            };
            if codes.is_null(i) {
                continue;
            }
            areas.push(Area {
                code: codes.value(i),
                name: if names.is_null(i) {
                    String::new()
                } else {
                    names.value(i).to_string()
                },
                centroid: (lon, lat),
                needs: vec![optional_f64(f[2], i), optional_f64(f[3], i)],
            });
        }
    }
    if areas.is_empty() {
        return Err(ImpactError::Data(format!(
            "{what}: no area with a geometry"
        )));
    }
    Ok(areas)
}

/// The panel of `areas` from the result of `outcome_sql(metric)`.
pub fn panel_from(
    areas: Vec<Area>,
    outcomes: &QueryResult,
    metric: Metric,
) -> Result<Panel, ImpactError> {
    let what = format!("the monthly {} (service_logs.eventi)", metric.name());
    let result = outcomes;
    let mut observed: HashMap<(i64, NaiveDate), f64> = HashMap::new();
    let mut sizes: HashMap<i64, (f64, usize)> = HashMap::new();
    let mut months = BTreeSet::new();
    for b in 0..result.batches.len() {
        let area = column(result, b, "area", &DataType::Int64, &what)?;
        let month = column(result, b, "mese", &DataType::Date32, &what)?;
        let value = column(result, b, "valore", &DataType::Float64, &what)?;
        let weight = column(result, b, "peso", &DataType::Float64, &what)?;
        let weight = weight
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("Float64");
        let area = area.as_any().downcast_ref::<Int64Array>().expect("Int64");
        let month = month
            .as_any()
            .downcast_ref::<Date32Array>()
            .expect("Date32");
        let value = value
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("Float64");
        for i in 0..area.len() {
            let (Some(m), Some(v)) = (date(month, i), optional_f64(value, i)) else {
                continue;
            };
            if area.is_null(i) {
                continue;
            }
            months.insert(m);
            observed.insert((area.value(i), m), v);
            if let Some(w) = optional_f64(weight, i).filter(|w| *w > 0.0) {
                let size = sizes.entry(area.value(i)).or_insert((0.0, 0));
                size.0 += w;
                size.1 += 1;
            }
        }
    }
    let (Some(&first), Some(&last)) = (months.first(), months.last()) else {
        return Err(ImpactError::Data(format!(
            "{what}: the service logs have no rows"
        )));
    };
    let months = month_range(first, last);
    let values = areas
        .iter()
        .map(|a| {
            months
                .iter()
                .map(|m| observed.get(&(a.code, *m)).copied())
                .collect()
        })
        .collect();
    let weights = areas
        .iter()
        .map(|a| sizes.get(&a.code).map_or(0.0, |(sum, n)| sum / *n as f64))
        .collect();
    Ok(Panel {
        areas,
        months,
        values,
        weights,
    })
}

/// The first days of the months from `first` to `last`, both included.
pub fn month_range(first: NaiveDate, last: NaiveDate) -> Vec<NaiveDate> {
    let mut out = Vec::new();
    let mut m = first;
    while m <= last {
        out.push(m);
        m = m
            .checked_add_months(chrono::Months::new(1))
            .expect("a month after");
    }
    out
}
