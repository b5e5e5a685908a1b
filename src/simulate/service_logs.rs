//! The service logs as a Parquet file, for a demo with no PostgreSQL: the same events, columns
//! and types as `servizi.eventi` of `cruscotto simulate postgres`, written once when the file a
//! file connector's table names is missing (`simulate = { kind = "service_logs", ... }`).

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::{Datelike, NaiveDate, NaiveDateTime, TimeZone, Utc, Weekday};

use super::SimulateError;
use super::effect::{EffectPlan, SimulatedEffect};
use super::events::{CHANNELS, SERVICES, age_band, events};
use super::population::{read_areas, residents};

/// What a generated service-log file holds.
#[derive(Debug, Clone)]
pub struct ServiceLogOptions {
    /// The fragility file giving each area's population and share over 80.
    pub areas: std::path::PathBuf,
    pub seed: u64,
    pub events: u64,
    pub year: i32,
}

/// The events as one batch: `id`, `ts` (UTC), `servizio`, `canale`, `area_statistica`,
/// `fascia_eta`, sorted by time as the events are.
pub async fn service_log_batch(options: &ServiceLogOptions) -> Result<RecordBatch, SimulateError> {
    service_log_batch_with_effect(options, None).await
}

/// The events as `service_log_batch` makes them, with a known effect of interventions injected
/// (see `effect.rs`): the same events, some requests moved online.
pub async fn service_log_batch_with_effect(
    options: &ServiceLogOptions,
    effect: Option<&SimulatedEffect>,
) -> Result<RecordBatch, SimulateError> {
    let plan = effect.map(EffectPlan::read).transpose()?;
    let areas = read_areas(&options.areas).await?;
    let (seed, count, year) = (options.seed, options.events, options.year);
    let year_start = NaiveDate::from_ymd_opt(year, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .ok_or_else(|| SimulateError::Data {
            path: options.areas.clone(),
            message: format!("{year} is not a year"),
        })?;
    tokio::task::spawn_blocking(move || {
        let residents = residents(&areas, seed);
        let mut events = events(&residents, year, count, seed);
        if let Some(plan) = &plan {
            plan.apply(&mut events, year, seed);
        }
        let ts: Vec<i64> = events
            .iter()
            .map(|e| {
                let local = year_start + chrono::Duration::seconds(e.second_of_year as i64);
                rome_to_utc(local).timestamp_micros()
            })
            .collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(1..=events.len() as i64)),
            Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC")),
            Arc::new(StringArray::from_iter_values(
                events.iter().map(|e| SERVICES[e.service as usize].name),
            )),
            Arc::new(StringArray::from_iter_values(
                events.iter().map(|e| CHANNELS[e.channel as usize]),
            )),
            Arc::new(Int32Array::from_iter_values(events.iter().map(|e| e.area))),
            Arc::new(StringArray::from_iter_values(
                events.iter().map(|e| age_band(e.age)),
            )),
        ];
        RecordBatch::try_new(schema(), columns).map_err(|e| SimulateError::Data {
            path: "service_logs".into(),
            message: e.to_string(),
        })
    })
    .await
    .map_err(|e| SimulateError::Data {
        path: options.areas.clone(),
        message: format!("generator task failed: {e}"),
    })?
}

/// Write the events to `path`, atomically (`store::write_atomically`): a crash never leaves half
/// a file where the connector reads.
pub async fn write_service_logs(
    path: &Path,
    options: &ServiceLogOptions,
) -> Result<usize, SimulateError> {
    write_service_logs_with_effect(path, options, None).await
}

/// `write_service_logs` with a known effect of interventions injected (see `effect.rs`).
pub async fn write_service_logs_with_effect(
    path: &Path,
    options: &ServiceLogOptions,
    effect: Option<&SimulatedEffect>,
) -> Result<usize, SimulateError> {
    let batch = service_log_batch_with_effect(options, effect).await?;
    let rows = batch.num_rows();
    let target = path.to_path_buf();
    let write =
        move || crate::store::write_atomically(&target, batch.schema(), &[batch], Vec::new());
    tokio::task::spawn_blocking(write)
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
        .map_err(|message| SimulateError::Data {
            path: path.to_path_buf(),
            message,
        })?;
    Ok(rows)
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("servizio", DataType::Utf8, false),
        Field::new("canale", DataType::Utf8, false),
        Field::new("area_statistica", DataType::Int32, false),
        Field::new("fascia_eta", DataType::Utf8, false),
    ]))
}

/// A local time of Europe/Rome as UTC: UTC+2 from the last Sunday of March at 02:00 to the last
/// Sunday of October at 03:00 (the EU rule), UTC+1 otherwise.
fn rome_to_utc(local: NaiveDateTime) -> chrono::DateTime<Utc> {
    let last_sunday = |month: u32| {
        let first_of_next = NaiveDate::from_ymd_opt(local.year(), month + 1, 1).expect("a month");
        let mut day = first_of_next.pred_opt().expect("a day");
        while day.weekday() != Weekday::Sun {
            day = day.pred_opt().expect("a day");
        }
        day
    };
    let summer_from = last_sunday(3).and_hms_opt(2, 0, 0).expect("a time");
    let summer_until = last_sunday(10).and_hms_opt(3, 0, 0).expect("a time");
    let offset_hours = if local >= summer_from && local < summer_until {
        2
    } else {
        1
    };
    Utc.from_utc_datetime(&(local - chrono::Duration::hours(offset_hours)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rome_is_one_hour_ahead_in_winter_and_two_in_summer() {
        let at = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
        // 2023: summer time from 26 March to 29 October.
        for (local, utc) in [
            ("2023-01-15 10:00:00", "2023-01-15T09:00:00+00:00"),
            ("2023-03-26 01:59:59", "2023-03-26T00:59:59+00:00"),
            ("2023-03-26 03:00:00", "2023-03-26T01:00:00+00:00"),
            ("2023-07-01 12:00:00", "2023-07-01T10:00:00+00:00"),
            ("2023-10-29 03:00:00", "2023-10-29T02:00:00+00:00"),
        ] {
            assert_eq!(rome_to_utc(at(local)).to_rfc3339(), utc, "{local}");
        }
    }
}
