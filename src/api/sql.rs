//! `/api/v1/sql`: read-only SQL for analysts. The SQL comes as the body (`text/plain` or
//! `application/sql`), as JSON `{"sql": "..."}`, or as `?q=` on a GET.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::access::{AuditDetail, Caller, with_audit};
use super::error::ApiError;
use super::extract::Query;
use super::format::{Format, ResultFormat, encode, encode_stream};
use crate::auth::Role;

/// Results up to this many rows are encoded on the request's own task (a millisecond or so).
const INLINE_ENCODE_ROWS: usize = 10_000;
/// JSON results over this many rows are streamed in chunks (below it, one body with its length
/// reaches the client sooner: measured on the 3,600-row result of `benches/sql.rs`).
const STREAM_ROWS: usize = 10_000;
/// Of a body over the SQL size limit, up to this many more bytes are read and dropped before the
/// 413 is sent, within `DRAIN_TIME`: a server that answers and closes while the client is still
/// writing resets the connection, and the client sees a broken pipe instead of the 413.
const DRAIN_BYTES: usize = 16 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(10);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sql_get, sql_post))
        .routes(routes!(saved_queries))
        .routes(routes!(tables))
}

#[derive(Debug, Deserialize)]
pub struct SqlParams {
    /// Output format: json, ndjson, csv, arrow, parquet.
    format: Option<String>,
    /// The SQL, for GET requests.
    q: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SqlBody {
    /// One read-only statement.
    sql: String,
}

/// Run read-only SQL given as `?q=`; for analysts and admins.
#[utoipa::path(get, path = "/api/v1/sql", tag = "sql",
    params(
        ("q" = String, Query, description = "One read-only statement: SELECT, WITH, EXPLAIN, SHOW or DESCRIBE", example = "SELECT * FROM residenti_per_area LIMIT 5"),
        ("format" = inline(Option<ResultFormat>), Query, description = "Result format; else the `Accept` header, else JSON"),
    ),
    responses(
        (status = 200, description = "The rows: a JSON array of objects, or the format asked for", headers(("X-Row-Count" = u64, description = "Rows in the result"), ("Server-Timing" = String, description = "`query;dur=<ms>, encode;dur=<ms>`: the server's time to run the query and to encode its result")),
         content((Vec<serde_json::Value> = "application/json"), ("application/x-ndjson"), ("text/csv"), ("application/vnd.apache.arrow.stream"), ("application/vnd.apache.parquet"))),
        (status = 400, description = "The SQL does not parse, is not read-only, or cannot be planned"),
        (status = 403, description = "A partner key: SQL is for analysts and admins"),
        (status = 406, description = "The format asked for is not available"),
        (status = 413, description = "The SQL is over the size limit"),
        (status = 422, description = "The query went over its time, memory or row limit"),
    ))]
async fn sql_get(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<SqlParams>,
    headers: HeaderMap,
) -> Response {
    let Some(sql) = params.q.clone() else {
        return ApiError::BadRequest("missing `q`: the SQL to run (or POST it as the body)".into())
            .into_response();
    };
    run(state, caller, &sql, params.format.as_deref(), &headers).await
}

/// Run read-only SQL sent as the body; for analysts and admins.
#[utoipa::path(post, path = "/api/v1/sql", tag = "sql",
    params(("format" = inline(Option<ResultFormat>), Query, description = "Result format; else the `Accept` header, else JSON")),
    request_body(description = "One read-only statement, as text or as `{\"sql\": \"...\"}`",
        content((String = "text/plain", example = "SELECT zona, sum(residenti) AS residenti FROM residenti_per_area GROUP BY zona"), (String = "application/sql"), (SqlBody = "application/json"))),
    responses(
        (status = 200, description = "The rows: a JSON array of objects, or the format asked for", headers(("X-Row-Count" = u64, description = "Rows in the result"), ("Server-Timing" = String, description = "`query;dur=<ms>, encode;dur=<ms>`: the server's time to run the query and to encode its result")),
         content((Vec<serde_json::Value> = "application/json"), ("application/x-ndjson"), ("text/csv"), ("application/vnd.apache.arrow.stream"), ("application/vnd.apache.parquet"))),
        (status = 400, description = "The SQL does not parse, is not read-only, or cannot be planned; or the body is not valid"),
        (status = 403, description = "A partner key: SQL is for analysts and admins"),
        (status = 406, description = "The format asked for is not available"),
        (status = 413, description = "The SQL is over the size limit"),
        (status = 415, description = "A body type other than text/plain, application/sql or application/json"),
        (status = 422, description = "The query went over its time, memory or row limit"),
    ))]
async fn sql_post(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<SqlParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let sql = read_body(body, state.service.engine.limits().max_sql_bytes)
        .await
        .and_then(|body| read_sql(&headers, &body));
    match sql {
        Ok(sql) => run(state, caller, &sql, params.format.as_deref(), &headers).await,
        Err(error) => error.into_response(),
    }
}

/// The largest body accepted around `max_sql_bytes` of SQL: room for a JSON envelope.
pub fn body_limit(max_sql_bytes: usize) -> usize {
    max_sql_bytes + 1024
}

/// The body, when it is within `body_limit`. A longer one is read on and dropped (see
/// `DRAIN_BYTES`) so that the client gets to read the 413.
async fn read_body(body: Body, max_sql_bytes: usize) -> Result<Vec<u8>, ApiError> {
    let limit = body_limit(max_sql_bytes);
    let mut stream = body.into_data_stream();
    let mut read = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("reading the request body: {e}")))?;
        if read.len() + chunk.len() > limit {
            let mut dropped = read.len() + chunk.len();
            let _ = tokio::time::timeout(DRAIN_TIME, async {
                while dropped <= limit + DRAIN_BYTES {
                    match stream.next().await {
                        Some(Ok(chunk)) => dropped += chunk.len(),
                        _ => break,
                    }
                }
            })
            .await;
            return Err(ApiError::PayloadTooLarge(format!(
                "the request body is over the limit of {max_sql_bytes} bytes of SQL"
            )));
        }
        read.extend_from_slice(&chunk);
    }
    Ok(read)
}

fn read_sql(headers: &HeaderMap, body: &[u8]) -> Result<String, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/plain");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let sql = match media.as_str() {
        "application/json" => {
            let parsed: SqlBody = serde_json::from_slice(body).map_err(|e| {
                ApiError::BadRequest(format!("the JSON body must be {{\"sql\": \"...\"}}: {e}"))
            })?;
            parsed.sql
        }
        "text/plain" | "application/sql" | "" | "application/x-www-form-urlencoded" => {
            String::from_utf8(body.to_vec())
                .map_err(|_| ApiError::BadRequest("the SQL is not valid UTF-8".into()))?
        }
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "cannot read a `{other}` body; send the SQL as text/plain or application/sql, or JSON {{\"sql\": \"...\"}}"
            )));
        }
    };
    Ok(sql)
}

/// Run the SQL for an analyst or admin; the audit trail records the text, the rows and the outcome.
async fn run(
    state: AppState,
    caller: Caller,
    sql: &str,
    format: Option<&str>,
    headers: &HeaderMap,
) -> Response {
    let result = execute(&state, &caller, sql, format, headers).await;
    let rows = result.as_ref().map_or(0, |(rows, _)| *rows);
    let detail = AuditDetail {
        action: "sql",
        target: sql.to_string(),
        rows,
    };
    match result {
        Ok((_, response)) => with_audit(detail, response),
        Err(error) => with_audit(detail, error),
    }
}

async fn execute(
    state: &AppState,
    caller: &Caller,
    sql: &str,
    format: Option<&str>,
    headers: &HeaderMap,
) -> Result<(u64, Response), ApiError> {
    caller.require(Role::Analyst)?;
    let format = Format::negotiate(format, headers)?;
    let started = Instant::now();
    let result = run_statement(state, caller, sql, Default::default()).await?;
    let query_time = started.elapsed();
    let rows = result.rows();
    let started = Instant::now();
    // JSON is streamed as it is encoded, so the client reads while the rest is written; other
    // formats are encoded whole, a small result in place and a large one off the async workers.
    let json = matches!(format, Format::Json | Format::Ndjson);
    let mut response = if json && rows > STREAM_ROWS {
        axum::body::Body::from_stream(encode_stream(result, format)).into_response()
    } else if rows <= INLINE_ENCODE_ROWS {
        encode(&result, format)?.into_response()
    } else {
        tokio::task::spawn_blocking(move || encode(&result, format))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??
            .into_response()
    };
    let encode_time = started.elapsed();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert("x-row-count", HeaderValue::from(rows));
    headers.insert(
        "server-timing",
        HeaderValue::try_from(server_timing(query_time, encode_time)).expect("ASCII header value"),
    );
    Ok((rows as u64, response))
}

/// The statement path every protocol shares (HTTP here, PostgreSQL and Flight SQL in
/// `crate::protocols`): the role check (SQL is for analysts and admins; a partner key is refused),
/// then the engine's read-only guard and limits. The caller writes the audit entry.
pub async fn run_statement(
    state: &AppState,
    caller: &Caller,
    sql: &str,
    execution: crate::query::Execution,
) -> Result<crate::query::QueryResult, ApiError> {
    let principal = caller.require(Role::Analyst)?;
    Ok(state
        .service
        .engine
        .execute_with(sql, principal.role, execution)
        .await?)
}

/// `Server-Timing` (W3C): the query (guard, planning, execution) and the encoding of its result,
/// in milliseconds, so a client can tell the server's time from the network's. A streamed body
/// is encoded while it is sent: its `encode` is the time to start the stream.
fn server_timing(query: Duration, encode: Duration) -> String {
    format!(
        "query;dur={:.3}, encode;dur={:.3}",
        query.as_secs_f64() * 1000.0,
        encode.as_secs_f64() * 1000.0
    )
}

/// The saved queries with their metadata, and whether each plans over the current tables.
#[utoipa::path(get, path = "/api/v1/queries", tag = "sql", responses(
    (status = 200, description = "Every saved query: name, view, metadata, SQL, whether it plans", body = Vec<serde_json::Value>),
    (status = 403, description = "A partner key: for analysts and admins"),
))]
async fn saved_queries(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Role::Analyst)?;
    let views = state.service.engine.views();
    let queries: Vec<serde_json::Value> = state
        .service
        .engine
        .saved()
        .iter()
        .map(|q| {
            let view = views.iter().find(|v| v.name == q.name);
            serde_json::json!({
                "name": q.name,
                "view": format!("city.queries.{}", q.name),
                "metadata": q.metadata,
                "sql": q.sql,
                "ok": view.is_some_and(|v| v.ok),
                "error": view.and_then(|v| v.error.clone()),
                "fallback": view.and_then(|v| v.fallback.clone()),
            })
        })
        .collect();
    Ok(axum::Json(queries))
}

/// Every table an analyst can query, with its columns.
#[utoipa::path(get, path = "/api/v1/tables", tag = "sql", responses(
    (status = 200, description = "One row per column: table_schema, table_name, column_name, data_type", body = Vec<serde_json::Value>),
    (status = 403, description = "A partner key: for analysts and admins"),
))]
async fn tables(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(Role::Analyst)?;
    // Text is Utf8 in every result, whether the table is read in place (as Utf8View) or not.
    let sql = "SELECT table_schema, table_name, column_name, \
               CASE data_type WHEN 'Utf8View' THEN 'Utf8' ELSE data_type END AS data_type \
               FROM information_schema.columns \
               WHERE table_catalog = 'city' AND table_schema <> 'pg_catalog' \
               ORDER BY table_schema, table_name, ordinal_position";
    let result = state.service.engine.execute(sql).await?;
    let body = encode(&result, Format::Json)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A body of `chunks` pieces of `size` bytes that counts the pieces read from it.
    fn counted_body(chunks: usize, size: usize) -> (Body, Arc<AtomicUsize>) {
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = pulled.clone();
        let stream = futures::stream::iter(0..chunks).map(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b' '; size]))
        });
        (Body::from_stream(stream), pulled)
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole() {
        let (body, _) = counted_body(3, 1000);
        assert_eq!(read_body(body, 2000).await.unwrap().len(), 3000);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_read_to_its_end_before_the_413() {
        let (body, pulled) = counted_body(40, 1024);
        let error = read_body(body, 2000).await.unwrap_err();
        assert!(matches!(error, ApiError::PayloadTooLarge(_)), "{error:?}");
        assert!(error.to_string().contains("2000 bytes"), "{error}");
        assert_eq!(pulled.load(Ordering::SeqCst), 40);
    }

    #[tokio::test]
    async fn draining_stops_after_drain_bytes() {
        let chunk = 1024 * 1024;
        let (body, pulled) = counted_body(DRAIN_BYTES / chunk * 4, chunk);
        let error = read_body(body, 2000).await.unwrap_err();
        assert!(matches!(error, ApiError::PayloadTooLarge(_)), "{error:?}");
        let pulled = pulled.load(Ordering::SeqCst);
        assert!(
            pulled <= DRAIN_BYTES / chunk + 2,
            "read {pulled} chunks of a MiB"
        );
    }
}
