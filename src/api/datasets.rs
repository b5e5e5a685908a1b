//! `/api/v1/datasets`: published datasets for partner agencies. The list is DCAT-AP_IT JSON-LD;
//! a dataset's rows come as JSON, CSV, Arrow, Parquet or GeoJSON, with field selection, filters
//! bound as typed values (never spliced into SQL), keyset paging and ETags. Partners see counts
//! of persons after disclosure control; analysts and admins see the raw aggregates.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use arrow::array::Array;
use arrow::record_batch::RecordBatch;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::{Expr, lit};
use datafusion::prelude::SessionContext;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::access::{AuditDenied, AuditDetail, Caller, with_audit};
use super::error::ApiError;
use super::extract::{Path, Query};
use super::format::{Format, encode};
use crate::auth::{Principal, Role};
use crate::datasets::Dataset;
use crate::geometry::{is_geometry, wkb_to_geojson};
use crate::query::QueryResult;

mod catalogue;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(rows))
}

/// The names `?format=` takes on a dataset, for the OpenAPI document.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // Never built: it only names the values in the OpenAPI document.
pub enum DatasetFormat {
    Json,
    Ndjson,
    Csv,
    Arrow,
    Parquet,
    Geojson,
}

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
const RESERVED_PARAMS: &[&str] = &["fields", "cursor", "limit", "format"];

/// Full dataset contents, computed once per data generation and per audience.
#[derive(Default)]
pub struct DatasetCache {
    entries: Mutex<HashMap<(String, bool), Arc<Cached>>>,
}

struct Cached {
    generation: u64,
    batches: Vec<RecordBatch>,
    /// Hash of the contents: the base of the ETag.
    digest: String,
}

fn find<'a>(state: &'a AppState, name: &str) -> Result<&'a Dataset, ApiError> {
    state
        .service
        .config
        .datasets
        .iter()
        .find(|d| d.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no dataset `{name}`")))
}

/// A partner outside the dataset's scope gets the same answer as for a dataset that does not exist.
fn visible<'a>(
    state: &'a AppState,
    principal: &Principal,
    name: &str,
) -> Result<&'a Dataset, ApiError> {
    match find(state, name) {
        Ok(dataset) if principal.may_read_dataset(name) => Ok(dataset),
        _ => Err(ApiError::NotFound(format!("no dataset `{name}`"))),
    }
}

/// The datasets this key may read, as a DCAT-AP_IT catalogue (JSON-LD).
#[utoipa::path(get, path = "/api/v1/datasets", tag = "datasets", operation_id = "list_datasets", responses(
    (status = 200, description = "A `dcat:Catalog` whose `dcat:dataset` lists the datasets in the key's scope", body = serde_json::Value, content_type = "application/ld+json"),
))]
async fn list(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let principal = caller.require(Role::Partner)?;
    let statuses = state.service.store.statuses();
    let last_success = statuses.iter().filter_map(|s| s.last_success).max();
    let config = &state.service.config;
    let datasets: Vec<&Dataset> = config
        .datasets
        .iter()
        .filter(|d| principal.may_read_dataset(&d.name))
        .collect();
    let simulated = |d: &Dataset| {
        crate::dashboards::source_tables(
            &d.config.query,
            state.service.engine.saved(),
            &state.service.engine.views(),
        )
        .iter()
        .any(|table| {
            statuses
                .iter()
                .any(|s| s.simulated && format!("{}.{}", s.schema, s.table) == *table)
        })
    };
    let body = catalogue::catalogue(
        &config.service.catalogue,
        &datasets,
        |d| catalogue::last_change(d, last_success),
        simulated,
    );
    Ok((
        [(header::CONTENT_TYPE, "application/ld+json")],
        body.to_string(),
    )
        .into_response())
}

/// A dataset's rows, one page at a time. Partners see counts of persons after disclosure control:
/// a cell below the threshold is null, with `<column>_suppressed` true.
#[utoipa::path(get, path = "/api/v1/datasets/{name}", tag = "datasets",
    params(
        ("name" = String, Path, description = "The dataset, as `dct:identifier` in the catalogue", example = "residenti_per_area"),
        ("format" = inline(Option<DatasetFormat>), Query, description = "Result format (GeoJSON for datasets with a geometry); else the `Accept` header, else JSON"),
        ("fields" = Option<String>, Query, description = "Columns to return, comma-separated; the key is needed when there is more than one page", example = "codice_area_statistica,residenti"),
        ("cursor" = Option<String>, Query, description = "Where the next page starts: `next_cursor` of the previous page; valid only for the dataset that gave it"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 10000, description = "Rows per page (default 1000; at most `access.max_page`, 10000 by default)"),
        ("filters" = Option<HashMap<String, String>>, Query, style = Form, explode,
         description = "Filters on the dataset's declared columns (`cruscotto:filters` in the catalogue): `<column>=v` (equal), `<column>.in=a,b` (one of), `<column>.min=v`, `<column>.max=v` (range, inclusive). Values are typed by the column and bound, never spliced into SQL.",
         example = json!({"zona": "Lame", "residenti.min": "1000"})),
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` from an earlier answer: 304 when the page has not changed"),
    ),
    responses(
        (status = 200, description = "A page of rows. JSON: `{dataset, items, next_cursor, links: {next}}`; other formats: the rows, the next page in the `Link` header",
         headers(("ETag" = String, description = "Changes when the page's data changes"), ("X-Row-Count" = u64, description = "Rows in this page"), ("Link" = String, description = "`<url>; rel=\"next\"` when there is a next page")),
         content((serde_json::Value = "application/json"), ("application/x-ndjson"), ("text/csv"), ("application/vnd.apache.arrow.stream"), ("application/vnd.apache.parquet"), (serde_json::Value = "application/geo+json"))),
        (status = 304, description = "Not modified since the `ETag` given in `If-None-Match`"),
        (status = 400, description = "A filter, `fields`, `limit` or `cursor` that is not valid for this dataset"),
        (status = 404, description = "No such dataset, or not in this key's scope (the same answer)"),
        (status = 406, description = "The format asked for is not available (GeoJSON without a geometry)"),
    ))]
async fn rows(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let target = if params.is_empty() {
        name.clone()
    } else {
        format!("{name}?{}", serde_urlencoded_pairs(&params))
    };
    match serve_rows(&state, &caller, &name, &params, &headers).await {
        Ok((rows, response)) => with_audit(
            AuditDetail {
                action: "dataset",
                target,
                rows,
            },
            response,
        ),
        Err(error) => {
            let mut response = with_audit(
                AuditDetail {
                    action: "dataset",
                    target,
                    rows: 0,
                },
                error,
            );
            // Out of scope: the answer is the 404 of a missing dataset, the audit trail says denied.
            let out_of_scope = caller
                .0
                .as_ref()
                .is_some_and(|p| !p.may_read_dataset(&name))
                && find(&state, &name).is_ok();
            if out_of_scope {
                response.extensions_mut().insert(AuditDenied);
            }
            response
        }
    }
}

fn serde_urlencoded_pairs(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

async fn serve_rows(
    state: &AppState,
    caller: &Caller,
    name: &str,
    params: &BTreeMap<String, String>,
    headers: &HeaderMap,
) -> Result<(u64, Response), ApiError> {
    let principal = caller.require(Role::Partner)?;
    let dataset = visible(state, principal, name)?;
    // Partners see what the public sees: the saved query's published version (see `crate::sdc`).
    let protect = principal.role == Role::Partner;
    let format = match params.get("format").map(String::as_str) {
        Some("geojson") => None,
        other => Some(Format::negotiate(other, headers)?),
    };
    let limit = match params.get("limit") {
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=state.access.config.max_page).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "`limit` must be a whole number from 1 to {}",
                    state.access.config.max_page
                ))
            })?,
        None => 1000.min(state.access.config.max_page),
    };
    let cached = contents(state, dataset, protect).await?;
    let etag = etag(&cached.digest, params);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        response.headers_mut().insert(
            header::ETAG,
            HeaderValue::from_str(&etag).expect("hex etag"),
        );
        return Ok((0, response));
    }

    let ctx = SessionContext::new();
    let mut frame = ctx
        .read_batches(cached.batches.clone())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let schema = frame.schema().clone();
    let column_type = |column: &str| {
        schema
            .field_with_unqualified_name(column)
            .map(|f| f.data_type().clone())
    };

    // Filters: only on declared columns, each value parsed to the column's type.
    for (key, value) in params
        .iter()
        .filter(|(k, _)| !RESERVED_PARAMS.contains(&k.as_str()))
    {
        let (column, operator) = key.split_once('.').unwrap_or((key.as_str(), "eq"));
        if !dataset.config.filters.iter().any(|f| f == column) {
            return Err(ApiError::BadRequest(format!(
                "cannot filter on `{column}`: filterable columns are {:?}; other parameters are {:?}",
                dataset.config.filters, RESERVED_PARAMS
            )));
        }
        let data_type = column_type(column)
            .map_err(|_| ApiError::BadRequest(format!("the dataset has no column `{column}`")))?;
        let typed = |text: &str| {
            ScalarValue::try_from_string(text.to_string(), &data_type).map_err(|_| {
                ApiError::BadRequest(format!(
                    "`{text}` is not a valid {data_type} value for `{column}`"
                ))
            })
        };
        let field = Expr::Column(Column::new_unqualified(column));
        let predicate = match operator {
            "eq" => field.eq(lit(typed(value)?)),
            "in" => {
                let values = value
                    .split(',')
                    .map(|v| typed(v).map(lit))
                    .collect::<Result<Vec<_>, _>>()?;
                field.in_list(values, false)
            }
            "min" => field.gt_eq(lit(typed(value)?)),
            "max" => field.lt_eq(lit(typed(value)?)),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown filter operator `{other}` in `{key}`: use `{column}=`, `{column}.in=`, `{column}.min=` or `{column}.max=`"
                )));
            }
        };
        frame = frame
            .filter(predicate)
            .map_err(|e| ApiError::BadRequest(e.strip_backtrace()))?;
    }

    // Keyset paging on the dataset's key.
    let key = &dataset.config.key;
    let key_type = column_type(key).map_err(|_| {
        ApiError::Internal(format!(
            "dataset `{name}` declares key `{key}`, which is not one of its columns"
        ))
    })?;
    if let Some(cursor) = params.get("cursor") {
        let after = decode_cursor(cursor, name)?;
        let value = ScalarValue::try_from_string(after, &key_type)
            .map_err(|_| ApiError::BadRequest("the cursor is not valid for this dataset".into()))?;
        frame = frame
            .filter(Expr::Column(Column::new_unqualified(key)).gt(lit(value)))
            .map_err(|e| ApiError::Internal(e.strip_backtrace()))?;
    }
    frame = frame
        .sort(vec![
            Expr::Column(Column::new_unqualified(key)).sort(true, false),
        ])
        .and_then(|f| f.limit(0, Some(limit + 1)))
        .map_err(|e| ApiError::Internal(e.strip_backtrace()))?;

    if let Some(fields) = params.get("fields") {
        let mut wanted: Vec<&str> = fields
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .collect();
        for field in &wanted {
            if column_type(field).is_err() {
                return Err(ApiError::BadRequest(format!(
                    "the dataset has no field `{field}`"
                )));
            }
        }
        // Suppression flags travel with the counts they describe.
        let flags: Vec<String> = wanted
            .iter()
            .map(|f| format!("{f}_suppressed"))
            .filter(|f| column_type(f).is_ok())
            .collect();
        wanted.extend(flags.iter().map(String::as_str));
        frame = frame
            .select_columns(&wanted)
            .map_err(|e| ApiError::BadRequest(e.strip_backtrace()))?;
    }

    let mut batches = frame
        .collect()
        .await
        .map_err(|e| ApiError::Internal(e.strip_backtrace()))?;
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let next_cursor = if total > limit {
        let all = arrow::compute::concat_batches(&batches[0].schema(), &batches)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let page = all.slice(0, limit);
        let last = match page.schema().index_of(key) {
            Ok(i) => display_value(page.column(i), limit - 1),
            Err(_) => {
                return Err(ApiError::BadRequest(format!(
                    "`fields` must include the key `{key}` when the result has more than one page"
                )));
            }
        };
        batches = vec![page];
        Some(BASE64.encode(json!({"d": name, "k": last}).to_string()))
    } else {
        None
    };
    let rows = batches.iter().map(RecordBatch::num_rows).sum::<usize>() as u64;
    let schema = batches
        .first()
        .map(|b| b.schema())
        .unwrap_or_else(|| Arc::new(schema.as_arrow().clone()));
    let result = QueryResult { schema, batches };

    let next_link = next_cursor.as_ref().map(|c| {
        let mut next: Vec<String> = params
            .iter()
            .filter(|(k, _)| k.as_str() != "cursor")
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect();
        next.push(format!("cursor={c}"));
        format!("/api/v1/datasets/{name}?{}", next.join("&"))
    });
    let (content_type, body) = match format {
        None => ("application/geo+json", geojson(&result)?),
        Some(Format::Json) => {
            // The rows' JSON goes in as written: parsing it back into values to wrap it cost more
            // than writing it.
            let items = encode(&result, Format::Json)?;
            let mut body = Vec::with_capacity(items.len() + 256);
            body.extend_from_slice(format!("{{\"dataset\":{},\"items\":", json!(name)).as_bytes());
            body.extend_from_slice(&items);
            body.extend_from_slice(
                format!(
                    ",\"next_cursor\":{},\"links\":{{\"next\":{}}}}}",
                    json!(next_cursor),
                    json!(next_link)
                )
                .as_bytes(),
            );
            ("application/json", body)
        }
        Some(other) => (other.content_type(), encode(&result, other)?),
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex etag"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    headers.insert("x-row-count", HeaderValue::from(rows));
    if let Some(link) = next_link {
        if let Ok(value) = HeaderValue::from_str(&format!("<{link}>; rel=\"next\"")) {
            headers.insert(header::LINK, value);
        }
    }
    Ok((rows, response))
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b',' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn display_value(column: &arrow::array::ArrayRef, row: usize) -> String {
    let options = arrow::util::display::FormatOptions::default();
    arrow::util::display::ArrayFormatter::try_new(column.as_ref(), &options)
        .map(|f| f.value(row).to_string())
        .unwrap_or_default()
}

fn decode_cursor(cursor: &str, dataset: &str) -> Result<String, ApiError> {
    let invalid = || {
        ApiError::BadRequest(
            "the cursor is not valid for this dataset; start again without `cursor`".into(),
        )
    };
    let bytes = BASE64.decode(cursor).map_err(|_| invalid())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if value["d"] != dataset {
        return Err(invalid());
    }
    value["k"].as_str().map(str::to_string).ok_or_else(invalid)
}

fn etag(digest: &str, params: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(digest.as_bytes());
    for (k, v) in params {
        hasher.update(format!("\u{1f}{k}={v}").as_bytes());
    }
    let hash = hasher.finalize();
    format!(
        "\"{}\"",
        hash.iter()
            .take(12)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// The dataset's rows for this audience, from the cache when the data has not changed.
async fn contents(
    state: &AppState,
    dataset: &Dataset,
    protect: bool,
) -> Result<Arc<Cached>, ApiError> {
    let generation = state.service.engine.generation();
    let key = (dataset.name.clone(), protect);
    if let Some(hit) = state
        .datasets
        .entries
        .lock()
        .expect("dataset cache")
        .get(&key)
        .filter(|c| c.generation == generation)
    {
        return Ok(hit.clone());
    }
    let published = match protect {
        true => crate::sdc::published(
            &state.service,
            &dataset.config.query,
            state.access.config.min_count,
        )
        .await
        .map_err(|e| match e {
            crate::sdc::PublishError::Query(e) => ApiError::Query(e),
            other => ApiError::Internal(format!("dataset `{}`: {other}", dataset.name)),
        })?,
        false => None,
    };
    let (result, batches) = match published {
        Some(published) => (published.as_ref().clone(), published.batches.clone()),
        None => {
            let sql = format!("SELECT * FROM city.queries.{}", dataset.config.query);
            let result = state.service.engine.execute(&sql).await?;
            let batches = result.batches.clone();
            (result, batches)
        }
    };
    let mut hasher = Sha256::new();
    let ipc = encode(
        &QueryResult {
            schema: batches
                .first()
                .map(|b| b.schema())
                .unwrap_or(result.schema.clone()),
            batches: batches.clone(),
        },
        Format::Arrow,
    )?;
    hasher.update(&ipc);
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let cached = Arc::new(Cached {
        generation,
        batches,
        digest,
    });
    state
        .datasets
        .entries
        .lock()
        .expect("dataset cache")
        .insert(key, cached.clone());
    Ok(cached)
}

/// Rows with a geometry column as a GeoJSON FeatureCollection; the other columns are properties.
fn geojson(result: &QueryResult) -> Result<Vec<u8>, ApiError> {
    let Some(geometry_index) = result.schema.fields().iter().position(|f| is_geometry(f)) else {
        return Err(ApiError::NotAcceptable("this dataset has no geometry: GeoJSON is not available; use json, csv, arrow or parquet".into()));
    };
    let properties_schema = Arc::new(
        result
            .schema
            .project(
                &(0..result.schema.fields().len())
                    .filter(|i| *i != geometry_index)
                    .collect::<Vec<_>>(),
            )
            .map_err(|e| ApiError::Internal(e.to_string()))?,
    );
    let mut features = Vec::new();
    for batch in &result.batches {
        let geometries = batch
            .column(geometry_index)
            .as_any()
            .downcast_ref::<arrow::array::BinaryArray>()
            .expect("geometry is Binary");
        let properties = batch
            .project(
                &(0..batch.num_columns())
                    .filter(|i| *i != geometry_index)
                    .collect::<Vec<_>>(),
            )
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let properties: Value = serde_json::from_slice(&encode(
            &QueryResult {
                schema: properties_schema.clone(),
                batches: vec![properties],
            },
            Format::Json,
        )?)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        for (row, props) in properties.as_array().into_iter().flatten().enumerate() {
            let geometry = if geometries.is_null(row) {
                Value::Null
            } else {
                serde_json::from_str(
                    &wkb_to_geojson(geometries.value(row)).map_err(ApiError::Internal)?,
                )
                .map_err(|e| ApiError::Internal(e.to_string()))?
            };
            features.push(json!({"type": "Feature", "geometry": geometry, "properties": props}));
        }
    }
    Ok(json!({"type": "FeatureCollection", "features": features})
        .to_string()
        .into_bytes())
}
