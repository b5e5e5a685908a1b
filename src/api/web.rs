//! The browser front end, built into the binary by build.rs (our files from web/src/, the vendor
//! libraries from npm): nothing is fetched from elsewhere at run time. `/` is the map dashboard,
//! `/assets/...` everything it loads, each served gzip-compressed when the browser accepts it.

use super::extract::Path;
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::error::ApiError;

/// One embedded file.
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub etag: &'static str,
    pub body: &'static [u8],
    pub gzip: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The page only talks to this server: scripts, styles, fonts and data are all `'self'`. MapLibre
/// needs `blob:` workers and inline styles; Bootstrap Italia inlines a font as `data:`; images may
/// come from https: only for the optional basemap tiles of a dashboard's `map.basemap`.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data: blob: https:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; \
     child-src 'self' blob:; object-src 'none'; base-uri 'self'; frame-ancestors 'self'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|headers: HeaderMap| async move { serve("/", &headers) }),
        )
        .route("/assets/{*path}", get(asset))
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&format!("/assets/{path}"), &headers)
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return ApiError::NotFound(format!("no file {path}")).into_response();
    };
    let mut out = HeaderMap::new();
    out.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    // Revalidate every time (a cheap 304): the file names carry no version.
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if path == "/" {
        out.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
    }
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == asset.etag));
    if not_modified {
        return (StatusCode::NOT_MODIFIED, out).into_response();
    }
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|e| e.split(';').next().is_some_and(|e| e.trim() == "gzip"))
        });
    if gzip && asset.gzip.len() < asset.body.len() {
        out.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        (out, asset.gzip).into_response()
    } else {
        (out, asset.body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_the_vendor_libraries_are_embedded() {
        for path in [
            "/",
            "/assets/app.mjs",
            "/assets/vendor/maplibre-gl/maplibre-gl.mjs",
            "/assets/vendor/maplibre-gl/maplibre-gl-worker.mjs",
            "/assets/vendor/echarts/echarts.esm.min.mjs",
            "/assets/vendor/bootstrap-italia/css/bootstrap-italia.min.css",
        ] {
            let asset = ASSETS
                .iter()
                .find(|a| a.path == path)
                .unwrap_or_else(|| panic!("{path} is not embedded"));
            assert!(asset.body.len() > 100 && !asset.gzip.is_empty(), "{path}");
        }
    }
}
