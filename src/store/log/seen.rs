//! The readings a log table holds, to recognise one delivered again, kept per day: the days
//! from `RECENT_DAYS` before the newest on are always held; an older day is read from its parts
//! on disk when a reading of it arrives, and let go at the next compaction. So memory holds the
//! hashes of a few days, not of the table's history. When the time column is not part of the
//! reading key, a key of one day may meet one of another, and every row is held as one "day".

use std::collections::{BTreeMap, HashSet};

use arrow::array::{Array, TimestampMicrosecondArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatch;

use super::{DAY_MICROS, row_hashes};

/// Days held whatever happens: today's readings and late ones of the day before.
pub const RECENT_DAYS: i64 = 2;
/// The one "day" of a table whose reading key has no time.
const ALL_DAYS: i64 = i64::MIN;

#[derive(Default)]
struct DayReadings {
    /// Hashes of the key columns (sensor, metric, time).
    keys: HashSet<u64>,
    /// Hashes of every compared column: the readings themselves.
    readings: HashSet<u64>,
}

pub struct Seen {
    /// Key columns.
    dedupe: Vec<String>,
    /// Every column but the arrival time.
    compared: Vec<String>,
    /// The time column, when it is part of the key.
    time_column: Option<String>,
    days: BTreeMap<i64, DayReadings>,
}

/// Per row of a batch: its day, its key hash, its reading hash.
pub struct Hashed {
    pub days: Vec<i64>,
    pub keys: Vec<u64>,
    pub readings: Vec<u64>,
}

impl Seen {
    pub fn new(dedupe: Vec<String>, compared: Vec<String>, time_column: &str) -> Self {
        let time_column = dedupe
            .iter()
            .any(|c| c == time_column)
            .then(|| time_column.to_string());
        Self {
            dedupe,
            compared,
            time_column,
            days: BTreeMap::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.dedupe.is_empty()
    }

    /// The days a new table holds from the start, given the newest day it has rows of.
    pub fn recent(&self, newest: i64) -> std::ops::RangeFrom<i64> {
        match self.time_column {
            Some(_) => newest - (RECENT_DAYS - 1)..,
            None => ALL_DAYS..,
        }
    }

    pub fn hash(&self, batch: &RecordBatch) -> Result<Hashed, String> {
        Ok(Hashed {
            days: self.days_of(batch)?,
            keys: row_hashes(batch, &self.dedupe)?,
            readings: row_hashes(batch, &self.compared)?,
        })
    }

    fn days_of(&self, batch: &RecordBatch) -> Result<Vec<i64>, String> {
        let Some(column) = &self.time_column else {
            return Ok(vec![ALL_DAYS; batch.num_rows()]);
        };
        let times = batch
            .column_by_name(column)
            .ok_or_else(|| format!("no column `{column}`"))?;
        let times = cast(times, &DataType::Timestamp(TimeUnit::Microsecond, None))
            .map_err(|e| e.to_string())?;
        let times = times
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .expect("cast to timestamp");
        Ok((0..times.len())
            .map(|i| match times.is_null(i) {
                true => 0,
                false => times.value(i).div_euclid(DAY_MICROS),
            })
            .collect())
    }

    pub fn is_held(&self, day: i64) -> bool {
        self.days.contains_key(&day)
    }

    /// Start holding `day`, with the rows of it among `batches` (its parts and the WAL tail).
    pub fn hold<'a>(
        &mut self,
        day: i64,
        batches: impl Iterator<Item = &'a RecordBatch>,
    ) -> Result<(), String> {
        let mut held = DayReadings::default();
        for batch in batches {
            let hashed = self.hash(batch)?;
            for row in 0..batch.num_rows() {
                if hashed.days[row] == day {
                    held.keys.insert(hashed.keys[row]);
                    held.readings.insert(hashed.readings[row]);
                }
            }
        }
        self.days.insert(day, held);
        Ok(())
    }

    /// Add rows stored now (their days held or not: rows of a day not held are found on disk
    /// when it is).
    pub fn add(&mut self, day: i64, key: u64, reading: u64) {
        if let Some(held) = self.days.get_mut(&day) {
            held.keys.insert(key);
            held.readings.insert(reading);
        }
    }

    pub fn has_reading(&self, day: i64, reading: u64) -> bool {
        self.days
            .get(&day)
            .is_some_and(|d| d.readings.contains(&reading))
    }

    pub fn has_key(&self, day: i64, key: u64) -> bool {
        self.days.get(&day).is_some_and(|d| d.keys.contains(&key))
    }

    /// Let go of the days before the recent ones.
    pub fn forget_old(&mut self, newest: i64) {
        let keep = self.recent(newest).start;
        self.days.retain(|day, _| *day >= keep);
    }
}
