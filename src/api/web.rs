//! The browser front end, built into the binary by build.rs (our files from web/src/, the vendor
//! libraries from npm): nothing is fetched from elsewhere at run time. `/` is the map dashboard,
//! `/assets/...` everything it loads, each served gzip-compressed when the browser accepts it.

use super::extract::Path;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::error::ApiError;
use crate::config::CityConfig;

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
            get(
                |State(state): State<AppState>, headers: HeaderMap| async move {
                    serve(&state.pages, "/", &headers)
                },
            ),
        )
        .route("/assets/{*path}", get(asset))
}

async fn asset(
    State(state): State<AppState>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    serve(&state.pages, &format!("/assets/{path}"), &headers)
}

/// The pages that name the city (`[city]` in `cruscotto.toml`), rendered once at start from
/// their templates in web/src: `{{title}}`, `{{brand}}`, `{{description}}`, `{{attribution}}`
/// and `{{city}}` (the same as JSON, for the scripts: English texts, the map's first view).
pub struct Pages {
    pages: Vec<Asset>,
}

impl Pages {
    /// The pages for `city`; its logo is read from `base_dir` (the configuration's folder).
    pub fn new(city: &CityConfig, base_dir: &std::path::Path) -> Self {
        let name = city.name.as_deref().unwrap_or_default();
        let title = if name.is_empty() {
            "cruscotto".to_string()
        } else {
            format!("cruscotto — {name}")
        };
        let brand = |tagline: Option<&str>| {
            [Some(name), tagline]
                .into_iter()
                .flatten()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" · ")
        };
        let description = city.description.clone().unwrap_or_else(|| {
            format!("{title}: indicatori della città, con fonti e periodo di ogni dato.")
        });
        let script = serde_json::json!({
            "name": name,
            "istat_code": city.istat_code,
            "brand": [brand(city.tagline.as_deref()), brand(city.tagline_en.as_deref().or(city.tagline.as_deref()))],
            "attribution": [
                city.attribution.as_deref().unwrap_or_default(),
                city.attribution_en.as_deref().or(city.attribution.as_deref()).unwrap_or_default(),
            ],
            "center": city.center,
            "zoom": city.zoom,
        })
        .to_string()
        // Inside <script>: no "</" may close it.
        .replace("</", "<\\/");
        let values = [
            ("{{title}}", escape(&title)),
            ("{{brand}}", escape(&brand(city.tagline.as_deref()))),
            ("{{description}}", escape(&description)),
            (
                "{{attribution}}",
                escape(city.attribution.as_deref().unwrap_or_default()),
            ),
            ("{{city}}", script),
            ("{{logo}}", String::new()),
        ];
        let logo = city.logo.as_ref().and_then(|file| {
            let path = crate::config_text::resolve(base_dir, file);
            let content_type = crate::config::logo_content_type(&path)?;
            match std::fs::read(&path) {
                Ok(bytes) => Some(render("/assets/city-logo", content_type, bytes)),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot read the city logo");
                    None
                }
            }
        });
        let mut values = values;
        if logo.is_some() {
            values[5].1 = format!(
                "<img class=\"city-logo\" src=\"/assets/city-logo\" alt=\"{}\" width=\"48\" height=\"48\">",
                escape(name)
            );
        }
        let pages = ["/", "/assets/sql.html"]
            .into_iter()
            .filter_map(|path| ASSETS.iter().find(|a| a.path == path))
            .map(|template| {
                let mut text = String::from_utf8_lossy(template.body).into_owned();
                for (key, value) in &values {
                    text = text.replace(key, value);
                }
                render(template.path, template.content_type, text.into_bytes())
            })
            .chain(logo)
            .collect();
        Self { pages }
    }

    fn get(&self, path: &str) -> Option<&Asset> {
        self.pages
            .iter()
            .find(|p| p.path == path)
            .or_else(|| ASSETS.iter().find(|a| a.path == path))
    }
}

/// A rendered page as an asset: its body, gzip and an ETag of its content. Rendered once per
/// process, so the leaked bytes are bounded.
fn render(path: &'static str, content_type: &'static str, body: Vec<u8>) -> Asset {
    use std::hash::{Hash, Hasher};
    use std::io::Write;
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gzip.write_all(&body).expect("gzip into memory");
    let gzip = gzip.finish().expect("gzip into memory");
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    Asset {
        path,
        content_type,
        etag: Box::leak(format!("\"{:016x}\"", hasher.finish()).into_boxed_str()),
        body: Box::leak(body.into_boxed_slice()),
        gzip: Box::leak(gzip.into_boxed_slice()),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn serve(pages: &Pages, path: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = pages.get(path) else {
        return ApiError::NotFound(format!("no file {path}")).into_response();
    };
    let mut out = HeaderMap::new();
    out.insert(
        header::ETAG,
        HeaderValue::from_str(asset.etag).expect("an ETag is ASCII"),
    );
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
    fn the_pages_name_the_configured_city_and_no_other() {
        let city = CityConfig {
            name: Some("Comune di Prova & Co".into()),
            tagline: Some("servizi".into()),
            attribution: Some("Dati: Comune di Prova (CC BY 4.0)".into()),
            ..Default::default()
        };
        let pages = Pages::new(&city, std::path::Path::new("."));
        for path in ["/", "/assets/sql.html"] {
            let page = String::from_utf8_lossy(pages.get(path).unwrap().body).into_owned();
            assert!(
                page.contains("<title>cruscotto — Comune di Prova &amp; Co</title>"),
                "{path}"
            );
            assert!(!page.contains("Bologna"), "{path} names Bologna");
            assert!(!page.contains("{{"), "{path} has a placeholder left");
        }
        let index = String::from_utf8_lossy(pages.get("/").unwrap().body).into_owned();
        assert!(index.contains("Comune di Prova &amp; Co · servizi"));
        assert!(index.contains("Dati: Comune di Prova (CC BY 4.0)"));
        let bare = Pages::new(&CityConfig::default(), std::path::Path::new("."));
        let index = String::from_utf8_lossy(bare.get("/").unwrap().body).into_owned();
        assert!(index.contains("<title>cruscotto</title>"));
    }

    #[test]
    fn the_city_logo_is_served_and_shown_in_the_header() {
        let dir = std::env::temp_dir().join(format!("cruscotto-logo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let svg = b"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 10 10'><rect width='10' height='10'/></svg>";
        std::fs::write(dir.join("stemma.svg"), svg).unwrap();
        let city = CityConfig {
            name: Some("Comune di Prova".into()),
            logo: Some("stemma.svg".into()),
            ..Default::default()
        };
        let pages = Pages::new(&city, &dir);
        let logo = pages.get("/assets/city-logo").expect("the logo is served");
        assert_eq!(logo.body, svg);
        assert_eq!(logo.content_type, "image/svg+xml");
        let index = String::from_utf8_lossy(pages.get("/").unwrap().body).into_owned();
        assert!(index.contains(
            "<img class=\"city-logo\" src=\"/assets/city-logo\" alt=\"Comune di Prova\""
        ));
        let bare = Pages::new(&CityConfig::default(), &dir);
        assert!(bare.get("/assets/city-logo").is_none());
        let index = String::from_utf8_lossy(bare.get("/").unwrap().body).into_owned();
        assert!(!index.contains("city-logo"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
