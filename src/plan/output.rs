//! A plan in the formats it is exported in: JSON (everything), GeoJSON (the chosen and open sites
//! and the demand points, for a GIS) and CSV (the chosen and open sites, for a spreadsheet).

use serde_json::{Value, json};

use super::saved::SavedPlan;

/// The formats a plan is answered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanFormat {
    Json,
    GeoJson,
    Csv,
}

impl PlanFormat {
    pub const NAMES: &'static str = "json, geojson, csv";

    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "json" => Some(Self::Json),
            "geojson" => Some(Self::GeoJson),
            "csv" => Some(Self::Csv),
            _ => None,
        }
    }

    pub fn from_media_type(media: &str) -> Option<Self> {
        match media {
            "application/json" | "application/*" | "*/*" => Some(Self::Json),
            "application/geo+json" => Some(Self::GeoJson),
            "text/csv" | "text/*" => Some(Self::Csv),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::GeoJson => "application/geo+json",
            Self::Csv => "text/csv; charset=utf-8",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::GeoJson => "geojson",
            Self::Csv => "csv",
        }
    }
}

/// The plan in a format.
pub fn encode(plan: &SavedPlan, format: PlanFormat) -> Result<Vec<u8>, String> {
    match format {
        PlanFormat::Json => serde_json::to_vec(plan).map_err(|e| e.to_string()),
        PlanFormat::GeoJson => serde_json::to_vec(&geojson(plan)).map_err(|e| e.to_string()),
        PlanFormat::Csv => csv(plan),
    }
}

fn point(lon: f64, lat: f64) -> Value {
    json!({ "type": "Point", "coordinates": [lon, lat] })
}

/// A FeatureCollection: chosen sites (`role` = `new`), open sites (`open`) and demand points
/// (`demand`), with the plan's figures as foreign members.
pub fn geojson(plan: &SavedPlan) -> Value {
    let result = &plan.result;
    let mut features = Vec::new();
    for chosen in &result.chosen {
        features.push(json!({
            "type": "Feature",
            "geometry": point(chosen.site.lon, chosen.site.lat),
            "properties": {
                "role": "new", "rank": chosen.rank, "id": chosen.site.id, "name": chosen.site.name,
                "kind": chosen.site.kind, "adds": chosen.adds, "within_radius": chosen.within_radius,
                "radius_m": result.radius_m, "capacity": chosen.site.capacity,
            },
        }));
    }
    for site in &result.open {
        features.push(json!({
            "type": "Feature",
            "geometry": point(site.lon, site.lat),
            "properties": { "role": "open", "id": site.id, "name": site.name, "kind": site.kind,
                            "radius_m": result.radius_m, "capacity": site.capacity },
        }));
    }
    for demand in &result.demand {
        features.push(json!({
            "type": "Feature",
            "geometry": point(demand.point.lon, demand.point.lat),
            "properties": { "role": "demand", "id": demand.point.id, "name": demand.point.name,
                            "weight": demand.point.weight, "covered_by": demand.covered_by, "served": demand.served },
        }));
    }
    json!({
        "type": "FeatureCollection",
        "plan": {
            "id": plan.id, "created_at": plan.created_at, "request": plan.request,
            "covered": result.covered, "open_covered": result.open_covered,
            "method": result.solver.method, "optimal": result.solver.optimal, "gap": result.solver.gap,
        },
        "features": features,
    })
}

/// One row per site: the chosen ones by rank, then the open ones.
pub fn csv(plan: &SavedPlan) -> Result<Vec<u8>, String> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let failed = |e: csv::Error| e.to_string();
    writer
        .write_record([
            "ruolo",
            "posizione",
            "id",
            "nome",
            "tipo",
            "lon",
            "lat",
            "persone_aggiunte",
            "persone_entro_raggio",
            "raggio_m",
            "aree_coperte",
        ])
        .map_err(failed)?;
    let radius = plan.result.radius_m.to_string();
    for chosen in &plan.result.chosen {
        writer
            .write_record([
                "nuovo",
                &chosen.rank.to_string(),
                &chosen.site.id,
                &chosen.site.name,
                &chosen.site.kind,
                &chosen.site.lon.to_string(),
                &chosen.site.lat.to_string(),
                &format!("{:.1}", chosen.adds),
                &format!("{:.1}", chosen.within_radius),
                &radius,
                &chosen.covers.join(" "),
            ])
            .map_err(failed)?;
    }
    for site in &plan.result.open {
        writer
            .write_record([
                "aperto",
                "",
                &site.id,
                &site.name,
                &site.kind,
                &site.lon.to_string(),
                &site.lat.to_string(),
                "",
                "",
                &radius,
                "",
            ])
            .map_err(failed)?;
    }
    writer.into_inner().map_err(|e| e.to_string())
}
