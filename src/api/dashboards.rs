//! `/api/v1/dashboards`: what the map dashboard reads. A dashboard's definition with, for every saved
//! query it names, the query's metadata, whether it runs and how fresh its source tables are; the
//! rows of those queries (JSON, or CSV to download); and map layers as GeoJSON.
//!
//! Results come from `crate::results`: computed in the background and kept, so a request never
//! waits for a saved query (except the very first time one is asked for, before any was kept).

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use arrow::array::Array;
use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use arrow::datatypes::{DataType, Schema};
use arrow::record_batch::RecordBatch;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::access::Caller;
use super::error::ApiError;
use super::extract::{Path, Query};
use super::format::{Format, encode};
use crate::auth::Role;
use crate::config::DashboardFile;
use crate::dashboards::source_tables;
use crate::geometry::{is_geometry, wkb_to_geo};
use crate::query::QueryResult;
use crate::results::{Computed, RefreshError};
use crate::service::Service;
use crate::store::TableState;

/// Decimals kept in GeoJSON coordinates: 1e-6° is about 0.1 m, far below what a map shows.
const COORDINATE_SCALE: f64 = 1e6;
/// Bodies smaller than this are not worth compressing.
const GZIP_MIN_BYTES: usize = 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(definition))
        .routes(routes!(data))
        .routes(routes!(layer))
}

/// The formats of a dashboard's data, for the OpenAPI document.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // Never built: it only names the values in the OpenAPI document.
pub enum DataFormat {
    Json,
    Csv,
}

fn dashboard<'a>(state: &'a AppState, name: &str) -> Result<&'a DashboardFile, ApiError> {
    state
        .service
        .config
        .dashboards
        .iter()
        .find(|d| d.name == name)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no dashboard `{name}`; GET /api/v1/dashboards lists them"
            ))
        })
}

/// Dashboards in menu order.
#[utoipa::path(get, path = "/api/v1/dashboards", tag = "dashboards", responses(
    (status = 200, description = "name, title, title_en, description, description_en, has_map of each dashboard", body = Vec<serde_json::Value>),
))]
async fn list(State(state): State<AppState>) -> impl IntoResponse {
    let mut dashboards: Vec<&DashboardFile> = state.service.config.dashboards.iter().collect();
    dashboards.sort_by(|a, b| (a.dashboard.order, &a.name).cmp(&(b.dashboard.order, &b.name)));
    let list: Vec<Value> = dashboards
        .iter()
        .map(|d| {
            json!({
                "name": d.name,
                "title": d.dashboard.title,
                "title_en": d.dashboard.title_en,
                "description": d.dashboard.description,
                "description_en": d.dashboard.description_en,
                "has_map": d.dashboard.map.is_some(),
            })
        })
        .collect();
    axum::Json(list)
}

/// The definition, plus metadata, status and freshness of every saved query it reads. Also starts
/// computing those queries, so their data is ready by the time the page asks for it.
#[utoipa::path(get, path = "/api/v1/dashboards/{name}", tag = "dashboards",
    params(("name" = String, Path, description = "The dashboard", example = "divario_digitale")),
    responses(
        (status = 200, description = "The definition, and for each saved query it reads: metadata, ok/error, freshness", body = serde_json::Value),
        (status = 404, description = "No such dashboard"),
    ))]
async fn definition(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let file = dashboard(&state, &name)?;
    let service = &state.service;
    let views = service.engine.views();
    let statuses = service.store.statuses();
    let now = Utc::now();
    let mut queries = serde_json::Map::new();
    for (_, query) in file.dashboard.query_references() {
        if queries.contains_key(query) {
            continue;
        }
        let view = views.iter().find(|v| v.name == query);
        let ok = view.is_some_and(|v| v.ok);
        // While a fallback answers, its metadata and sources describe the numbers shown.
        let answering = view.and_then(|v| v.fallback.as_deref()).unwrap_or(query);
        let saved = service.engine.saved().iter().find(|q| q.name == answering);
        let sources: Vec<Value> = source_tables(query, service.engine.saved(), &views)
            .into_iter()
            .map(|table| {
                let status = statuses.iter().find(|s| format!("{}.{}", s.schema, s.table) == table);
                match status {
                    Some(s) => {
                        let effective = s.effective_state(now);
                        json!({
                            "table": table,
                            "state": effective,
                            "stale": !matches!(effective, TableState::Fresh),
                            "last_success": s.last_success,
                            "last_error": s.last_error,
                            "simulated": s.simulated,
                        })
                    }
                    None => json!({ "table": table, "state": "missing", "stale": true, "last_success": null,
                                    "last_error": "no connector provides this table", "simulated": false }),
                }
            })
            .collect();
        // The oldest last success is when the panel's data as a whole was last brought up to date.
        let updated_at: Option<DateTime<Utc>> = sources
            .iter()
            .map(|s| {
                s["last_success"]
                    .as_str()
                    .and_then(|t| t.parse::<DateTime<Utc>>().ok())
            })
            .collect::<Option<Vec<_>>>()
            .and_then(|times| times.into_iter().min());
        let stale = sources.iter().any(|s| s["stale"] == json!(true));
        // Any simulated source makes the panel's data simulated.
        let simulated = sources.iter().any(|s| s["simulated"] == json!(true));
        let kept = service.results.entry(query);
        let result = json!({
            "computed_at": kept.computed.as_ref().map(|c| c.computed_at),
            "refresh_failed_at": kept.failure.as_ref().map(|f| f.at),
            "refresh_error": kept.failure.as_ref().map(|f| f.error.clone()),
        });
        // A query that no longer plans still has its last result to show, with the reason.
        let servable = ok || kept.computed.is_some();
        queries.insert(
            query.to_string(),
            json!({
                "name": query,
                "metadata": saved.map(|q| q.metadata.clone()),
                "ok": servable,
                "error": view.and_then(|v| v.error.clone()),
                "fallback": view.and_then(|v| v.fallback.clone()),
                "result": result,
                "freshness": { "updated_at": updated_at, "stale": stale, "simulated": simulated, "sources": sources,
                               "max_age_days": file.dashboard.max_age.as_secs() / 86_400 },
            }),
        );
    }
    let body = json!({
        "name": file.name,
        "dashboard": file.dashboard,
        "queries": queries,
        "generated_at": now,
    });
    let body = serde_json::to_vec(&body).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(compressed(&headers, body, "application/json"))
}

#[derive(Debug, Deserialize)]
struct DataParams {
    /// `json` (default) or `csv`.
    format: Option<String>,
}

/// The rows of a saved query the dashboard reads, geometry left out, in a stable order.
#[utoipa::path(get, path = "/api/v1/dashboards/{name}/data/{query}", tag = "dashboards",
    params(
        ("name" = String, Path, description = "The dashboard", example = "divario_digitale"),
        ("query" = String, Path, description = "A saved query the dashboard reads", example = "anziani_per_area"),
        ("format" = inline(Option<DataFormat>), Query, description = "`json` (default) or `csv` (a download)"),
    ),
    responses(
        (status = 200, description = "The rows", headers(("X-Row-Count" = u64, description = "Rows in the result")),
         content((Vec<serde_json::Value> = "application/json"), ("text/csv"))),
        (status = 400, description = "The saved query does not run over the current tables"),
        (status = 404, description = "No such dashboard, or it does not read this saved query"),
        (status = 406, description = "A format other than json or csv"),
    ))]
async fn data(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, query)): Path<(String, String)>,
    Query(params): Query<DataParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let file = dashboard(&state, &name)?;
    if !file.dashboard.reads(&query) {
        return Err(ApiError::NotFound(format!(
            "dashboard `{name}` does not read the saved query `{query}`"
        )));
    }
    let format = match params.format.as_deref() {
        None | Some("json") => Format::Json,
        Some("csv") => Format::Csv,
        Some(other) => {
            return Err(ApiError::NotAcceptable(format!(
                "format `{other}` is not available here; use json or csv"
            )));
        }
    };
    let result = for_caller(&caller, kept_result(&state.service, &query).await?);
    let table = tokio::task::spawn_blocking(move || without_geometry_sorted(&result))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let rows = table.rows();
    let body = encode(&table, format)?;
    let mut response = compressed(&headers, body, format.content_type());
    let out = response.headers_mut();
    out.insert("x-row-count", HeaderValue::from(rows));
    if format == Format::Csv {
        let disposition = format!("attachment; filename=\"{query}.csv\"");
        out.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_str(&disposition).map_err(|e| ApiError::Internal(e.to_string()))?,
        );
    }
    Ok(response)
}

/// A map layer of the dashboard (its areas or a point layer) as a GeoJSON FeatureCollection.
#[utoipa::path(get, path = "/api/v1/dashboards/{name}/layers/{query}", tag = "dashboards",
    params(
        ("name" = String, Path, description = "The dashboard", example = "divario_digitale"),
        ("query" = String, Path, description = "The saved query of one of its map layers", example = "aree_statistiche_mappa"),
    ),
    responses(
        (status = 200, description = "A FeatureCollection; coordinates to 6 decimals", body = serde_json::Value, content_type = "application/geo+json"),
        (status = 400, description = "The saved query does not run over the current tables"),
        (status = 404, description = "No such dashboard, or no such layer in it"),
    ))]
async fn layer(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, query)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let file = dashboard(&state, &name)?;
    let map = file.dashboard.map.as_ref();
    // The layer's geometry column and every column the page reads from it.
    let layer = map.and_then(|m| {
        if m.areas.query == query {
            let a = &m.areas;
            let optional = [&a.population, &a.group_labels].into_iter().flatten();
            let columns = [&a.id, &a.name].into_iter().chain(optional).cloned();
            return Some((a.geometry.clone(), columns.collect::<Vec<_>>()));
        }
        m.points
            .iter()
            .find(|p| p.query == query)
            .map(|p| (p.geometry.clone(), vec![p.label.clone()]))
    });
    let Some((geometry_column, columns)) = layer else {
        return Err(ApiError::NotFound(format!(
            "`{query}` is not a map layer of dashboard `{name}`"
        )));
    };
    let result = for_caller(&caller, kept_result(&state.service, &query).await?);
    let missing: Vec<String> = std::iter::once(&geometry_column)
        .chain(&columns)
        .filter(|c| result.schema.index_of(c).is_err())
        .map(|c| format!("`{c}`"))
        .collect();
    if !missing.is_empty() {
        let present: Vec<&str> = result
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        return Err(ApiError::Configuration(format!(
            "dashboard `{name}` (dashboards/{name}.toml): the map layer `{query}` names {} that \
             the saved query does not return; its columns are {present:?}",
            missing.join(", ")
        )));
    }
    let key = (
        Arc::as_ptr(&state.service) as usize,
        query.clone(),
        geometry_column.clone(),
    );
    let cached = layer_cache()
        .lock()
        .expect("layer cache lock")
        .get(&key)
        .filter(|body| Arc::ptr_eq(&body.result, &result))
        .cloned();
    let body = match cached {
        Some(body) => body,
        None => {
            let body = tokio::task::spawn_blocking(move || -> Result<LayerBody, ApiError> {
                let plain = feature_collection(&result, &geometry_column)?;
                let gzipped = gzip(&plain, flate2::Compression::default());
                Ok(LayerBody {
                    result,
                    plain: plain.into(),
                    gzipped: gzipped.map(Into::into),
                })
            })
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
            let body = Arc::new(body);
            layer_cache()
                .lock()
                .expect("layer cache lock")
                .insert(key, body.clone());
            body
        }
    };
    Ok(encoded_response(
        &headers,
        body.plain.clone(),
        body.gzipped.clone(),
        "application/geo+json",
    ))
}

/// A layer's GeoJSON, plain and gzipped, with the result it was made from: served again while
/// the cached result is the same.
struct LayerBody {
    result: Arc<QueryResult>,
    plain: axum::body::Bytes,
    gzipped: Option<axum::body::Bytes>,
}

/// Layer bodies by (service, saved query, geometry column).
fn layer_cache() -> &'static Mutex<HashMap<(usize, String, String), Arc<LayerBody>>> {
    static CACHE: OnceLock<Mutex<HashMap<(usize, String, String), Arc<LayerBody>>>> =
        OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// A public dashboard must not give away what the dataset API hides from partners: below analyst
/// (anonymous visitors, partner keys), a saved query that declares counts of persons, or reads one
/// that does, is answered with its published version (see `crate::sdc`): the same cells are
/// suppressed in the dashboard, its map and every dataset, and what is computed from a suppressed
/// cell is computed from NULL. Analysts and admins get the raw result.
fn for_caller(caller: &Caller, computed: Computed) -> Arc<QueryResult> {
    let trusted = caller
        .0
        .as_ref()
        .is_some_and(|p| p.is_at_least(Role::Analyst));
    match computed.published {
        Some(published) if !trusted => published,
        _ => computed.raw,
    }
}

/// The last result of a saved query (see `crate::results`), as an API error when there is none.
async fn kept_result(service: &Arc<Service>, query: &str) -> Result<Computed, ApiError> {
    service
        .results
        .get(service, query)
        .await
        .map_err(|e| match e {
            RefreshError::NotPlanned { .. } => ApiError::BadRequest(e.to_string()),
            RefreshError::Failed(failure) if failure.not_planned => {
                ApiError::BadRequest(failure.error)
            }
            RefreshError::Query(e) => ApiError::Query(e),
            RefreshError::Failed(failure) => ApiError::Unavailable(failure.error),
            RefreshError::Publish(detail) => ApiError::Internal(detail),
        })
}

/// The non-geometry columns, sorted by every sortable column in order, so a CSV is reproducible.
fn without_geometry_sorted(result: &QueryResult) -> Result<QueryResult, ApiError> {
    let failed =
        |e: arrow::error::ArrowError| ApiError::Internal(format!("cannot prepare the rows: {e}"));
    let keep: Vec<usize> = (0..result.schema.fields().len())
        .filter(|&i| !is_geometry(result.schema.field(i)))
        .collect();
    let schema = Arc::new(result.schema.project(&keep).map_err(failed)?);
    let batches: Vec<RecordBatch> = result
        .batches
        .iter()
        .map(|b| b.project(&keep))
        .collect::<Result<_, _>>()
        .map_err(failed)?;
    let all = concat_batches(&schema, &batches).map_err(failed)?;
    let sort_columns: Vec<SortColumn> = all
        .columns()
        .iter()
        .zip(schema.fields())
        .filter(|(_, field)| sortable(field.data_type()))
        .map(|(column, _)| SortColumn {
            values: column.clone(),
            options: None,
        })
        .collect();
    let sorted = if sort_columns.is_empty() || all.num_rows() < 2 {
        all
    } else {
        let indices = lexsort_to_indices(&sort_columns, None).map_err(failed)?;
        take_record_batch(&all, &indices).map_err(failed)?
    };
    Ok(QueryResult {
        schema,
        batches: vec![sorted],
    })
}

fn sortable(data_type: &DataType) -> bool {
    data_type.is_primitive()
        || matches!(
            data_type,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean
        )
}

/// Rows as GeoJSON features: the geometry column becomes the geometry, the others the properties.
fn feature_collection(result: &QueryResult, geometry_column: &str) -> Result<Vec<u8>, ApiError> {
    let schema: &Schema = &result.schema;
    let Ok(geometry_index) = schema.index_of(geometry_column) else {
        return Err(ApiError::Internal(format!(
            "the layer has no column `{geometry_column}`"
        )));
    };
    let keep: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| !is_geometry(schema.field(i)))
        .collect();
    let mut features = Vec::with_capacity(result.rows());
    for batch in &result.batches {
        let properties_batch = batch
            .project(&keep)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let properties_result = QueryResult {
            schema: properties_batch.schema(),
            batches: vec![properties_batch],
        };
        let properties: Vec<Value> =
            serde_json::from_slice(&encode(&properties_result, Format::Json)?)
                .map_err(|e| ApiError::Internal(format!("cannot read back the properties: {e}")))?;
        let geometries = batch
            .column(geometry_index)
            .as_any()
            .downcast_ref::<arrow::array::BinaryArray>()
            .ok_or_else(|| {
                ApiError::Configuration(format!(
                    "the map layer's `{geometry_column}` is not a geometry (WKB) column"
                ))
            })?;
        for (row, properties) in properties.into_iter().enumerate() {
            let geometry = match geometries
                .is_valid(row)
                .then(|| wkb_to_geo(geometries.value(row)))
            {
                Some(Ok(geometry)) => {
                    let rounded = geo::MapCoords::map_coords(&geometry, |c| geo::Coord {
                        x: (c.x * COORDINATE_SCALE).round() / COORDINATE_SCALE,
                        y: (c.y * COORDINATE_SCALE).round() / COORDINATE_SCALE,
                    });
                    serde_json::to_value(geojson::Geometry::new(geojson::GeometryValue::from(
                        &rounded,
                    )))
                    .map_err(|e| ApiError::Internal(e.to_string()))?
                }
                Some(Err(_)) | None => Value::Null,
            };
            features
                .push(json!({ "type": "Feature", "geometry": geometry, "properties": properties }));
        }
    }
    serde_json::to_vec(&json!({ "type": "FeatureCollection", "features": features }))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// The body, gzip-compressed when the client accepts it and it is worth it.
fn compressed(headers: &HeaderMap, body: Vec<u8>, content_type: &'static str) -> Response {
    let gzipped = accepts_gzip(headers)
        .then(|| gzip(&body, flate2::Compression::fast()))
        .flatten();
    encoded_response(headers, body.into(), gzipped.map(Into::into), content_type)
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|e| e.split(';').next().is_some_and(|e| e.trim() == "gzip"))
        })
}

/// `body` gzipped, unless it is too small to be worth it.
fn gzip(body: &[u8], level: flate2::Compression) -> Option<Vec<u8>> {
    if body.len() < GZIP_MIN_BYTES {
        return None;
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), level);
    encoder.write_all(body).ok()?;
    encoder.finish().ok()
}

/// The gzipped body when there is one and the client accepts it, else the plain one.
fn encoded_response(
    headers: &HeaderMap,
    plain: axum::body::Bytes,
    gzipped: Option<axum::body::Bytes>,
    content_type: &'static str,
) -> Response {
    let mut response_headers = HeaderMap::new();
    response_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response_headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    match gzipped {
        Some(gzipped) if accepts_gzip(headers) => {
            response_headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            (response_headers, gzipped).into_response()
        }
        _ => (response_headers, plain).into_response(),
    }
}
