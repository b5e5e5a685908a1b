//! `cruscotto simulate postgres`: a realistic registry (`anagrafe`) and service-log (`servizi`)
//! database for Bologna, for the demo and the tests. Deterministic given a seed; rows go in with
//! `COPY ... FROM STDIN`, so a million events take seconds. `cruscotto simulate sensors`
//! (`sensors.rs`) publishes sensor readings over MQTT.

mod effect;
mod events;
mod population;
pub(crate) mod rng;
mod sensors;
mod service_logs;

pub use effect::{EffectPlan, SimulatedEffect};
pub use events::{CHANNELS, SERVICES, age_band, internet_use};
pub use population::{Area, REGISTRY_YEAR, city_share_over_80, read_areas};
pub use sensors::{SensorFeed, SensorOptions, SensorSummary, sensors};
pub use service_logs::{
    ServiceLogOptions, service_log_batch, service_log_batch_with_effect, write_service_logs,
    write_service_logs_with_effect,
};

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::SinkExt;
use tokio_postgres::NoTls;

use crate::connectors::postgres::redacted_url;

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("{}: {message}", path.display())]
    Data { path: PathBuf, message: String },
    #[error("PostgreSQL at {url}: {message}")]
    Postgres { url: String, message: String },
    #[error("MQTT broker {broker}: {message}")]
    Mqtt { broker: String, message: String },
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Where to create the schemas; the database must exist.
    pub url: String,
    pub seed: u64,
    pub events: u64,
    /// The year of the service events.
    pub year: i32,
    /// The fragility file the areas' populations come from.
    pub fragility: PathBuf,
    /// Drop `anagrafe` and `servizi` first when they exist (otherwise their presence is an error).
    pub replace: bool,
}

#[derive(Debug, Clone)]
pub struct Summary {
    pub areas: usize,
    pub residents: usize,
    pub households: usize,
    pub events: usize,
    pub generate: Duration,
    pub load: Duration,
}

/// Rows are sent to PostgreSQL in chunks of about this many bytes.
const COPY_CHUNK: usize = 1 << 20;

pub async fn postgres(options: &Options) -> Result<Summary, SimulateError> {
    postgres_with_effect(options, None).await
}

/// `postgres` with a known effect of interventions injected into the service events (see
/// `effect.rs`).
pub async fn postgres_with_effect(
    options: &Options,
    effect: Option<&SimulatedEffect>,
) -> Result<Summary, SimulateError> {
    let plan = effect.map(EffectPlan::read).transpose()?;
    let url = redacted_url(&options.url);
    let pg = |e: tokio_postgres::Error| SimulateError::Postgres {
        url: url.clone(),
        message: describe(&e),
    };

    let started = Instant::now();
    let areas = read_areas(&options.fragility).await?;
    let residents = population::residents(&areas, options.seed);
    let mut events = events::events(&residents, options.year, options.events, options.seed);
    if let Some(plan) = &plan {
        plan.apply(&mut events, options.year, options.seed);
    }
    let generate = started.elapsed();

    let started = Instant::now();
    let config: tokio_postgres::Config =
        options
            .url
            .parse()
            .map_err(|e: tokio_postgres::Error| SimulateError::Postgres {
                url: url.clone(),
                message: format!("not a PostgreSQL URL: {e}"),
            })?;
    let (mut client, connection) = config.connect(NoTls).await.map_err(pg)?;
    let connection = tokio::spawn(connection);
    let existing: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname IN ('anagrafe', 'servizi')",
            &[],
        )
        .await
        .map_err(pg)?
        .get(0);
    if existing > 0 && !options.replace {
        return Err(SimulateError::Postgres {
            url: url.clone(),
            message: "schema `anagrafe` or `servizi` already exists: pass --replace to drop and refill them".into(),
        });
    }
    // One transaction: the database holds either the whole simulation or what it held before.
    let transaction = client.transaction().await.map_err(pg)?;
    if existing > 0 {
        transaction.batch_execute(DROP).await.map_err(pg)?;
    }
    transaction.batch_execute(SCHEMA).await.map_err(pg)?;

    let mut text = String::new();
    let city_share = city_share_over_80(&areas);
    for area in &areas {
        let share = area
            .share_over_80
            .map_or("\\N".to_string(), |s| format!("{s:.1}"));
        writeln!(
            text,
            "{}\t{}\t{}\t{}\t{}\t{}",
            area.code,
            copy_text(&area.name),
            copy_text(&area.quartiere),
            area.population,
            share,
            area.over_80(city_share)
        )
        .unwrap();
    }
    let mut copy = Copy::start(&transaction, "COPY anagrafe.aree_statistiche FROM STDIN")
        .await
        .map_err(pg)?;
    copy.text = text;
    copy.finish().await.map_err(pg)?;

    let mut copy = Copy::start(&transaction, "COPY anagrafe.residenti FROM STDIN")
        .await
        .map_err(pg)?;
    for (i, r) in residents.iter().enumerate() {
        let citizenship = population::CITIZENSHIPS[r.citizenship as usize].0;
        writeln!(
            copy.text,
            "{}\t{}\t{}\t{}\t{}\t{}",
            i + 1,
            r.area,
            r.birth_year,
            if r.female { 'F' } else { 'M' },
            citizenship,
            r.household
        )
        .unwrap();
        copy.flush_if_full().await.map_err(pg)?;
    }
    copy.finish().await.map_err(pg)?;

    // Event times are local (Europe/Rome); PostgreSQL applies the daylight-saving rules.
    transaction
        .batch_execute("SET LOCAL TIME ZONE 'Europe/Rome'")
        .await
        .map_err(pg)?;
    let year_start = chrono::NaiveDate::from_ymd_opt(options.year, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .ok_or_else(|| SimulateError::Postgres {
            url: url.clone(),
            message: format!("{} is not a year", options.year),
        })?;
    let mut copy = Copy::start(&transaction, "COPY servizi.eventi FROM STDIN")
        .await
        .map_err(pg)?;
    for (i, e) in events.iter().enumerate() {
        let at = year_start + chrono::Duration::seconds(e.second_of_year as i64);
        writeln!(
            copy.text,
            "{}\t{}\t{}\t{}\t{}\t{}",
            i + 1,
            at.format("%Y-%m-%d %H:%M:%S"),
            SERVICES[e.service as usize].name,
            CHANNELS[e.channel as usize],
            e.area,
            age_band(e.age)
        )
        .unwrap();
        copy.flush_if_full().await.map_err(pg)?;
    }
    copy.finish().await.map_err(pg)?;

    transaction.batch_execute(INDEXES).await.map_err(pg)?;
    transaction.commit().await.map_err(pg)?;
    client
        .batch_execute("ANALYZE anagrafe.residenti; ANALYZE servizi.eventi")
        .await
        .map_err(pg)?;
    drop(client);
    let _ = connection.await;

    let mut households: Vec<u32> = residents.iter().map(|r| r.household).collect();
    households.sort_unstable();
    households.dedup();
    Ok(Summary {
        areas: areas.len(),
        residents: residents.len(),
        households: households.len(),
        events: events.len(),
        generate,
        load: started.elapsed(),
    })
}

const DROP: &str = "DROP SCHEMA IF EXISTS anagrafe CASCADE; DROP SCHEMA IF EXISTS servizi CASCADE;";

const SCHEMA: &str = "
CREATE SCHEMA anagrafe;
CREATE SCHEMA servizi;
COMMENT ON SCHEMA anagrafe IS 'Synthetic population registry of Bologna (cruscotto simulate): no real person';
COMMENT ON SCHEMA servizi IS 'Synthetic service logs of Bologna (cruscotto simulate)';
CREATE TABLE anagrafe.aree_statistiche (
    codice integer NOT NULL,
    denominazione text NOT NULL,
    quartiere text NOT NULL,
    popolazione_2021 integer NOT NULL,
    perc_over_80 numeric(4,1),
    residenti_over_80 integer NOT NULL
);
CREATE TABLE anagrafe.residenti (
    id bigint NOT NULL,
    area_statistica integer NOT NULL,
    anno_nascita integer NOT NULL,
    sesso char(1) NOT NULL CHECK (sesso IN ('F', 'M')),
    cittadinanza text NOT NULL,
    famiglia_id bigint NOT NULL
);
CREATE TABLE servizi.eventi (
    id bigint NOT NULL,
    ts timestamptz NOT NULL,
    servizio text NOT NULL,
    canale text NOT NULL CHECK (canale IN ('online', 'sportello', 'punto_facilitazione')),
    area_statistica integer NOT NULL,
    fascia_eta text NOT NULL
);
";

/// Keys and indexes are built after the rows are in: much faster than maintaining them per row.
const INDEXES: &str = "
ALTER TABLE anagrafe.aree_statistiche ADD PRIMARY KEY (codice);
ALTER TABLE anagrafe.residenti ADD PRIMARY KEY (id);
CREATE INDEX ON anagrafe.residenti (area_statistica);
ALTER TABLE servizi.eventi ADD PRIMARY KEY (id);
CREATE INDEX ON servizi.eventi (ts);
";

/// Rows in COPY's text format, sent in chunks as they are written: memory stays at one chunk.
struct Copy {
    sink: std::pin::Pin<Box<tokio_postgres::CopyInSink<Bytes>>>,
    text: String,
}

impl Copy {
    async fn start(
        transaction: &tokio_postgres::Transaction<'_>,
        statement: &str,
    ) -> Result<Self, tokio_postgres::Error> {
        let sink = Box::pin(transaction.copy_in(statement).await?);
        Ok(Self {
            sink,
            text: String::with_capacity(COPY_CHUNK + 256),
        })
    }

    async fn flush_if_full(&mut self) -> Result<(), tokio_postgres::Error> {
        if self.text.len() >= COPY_CHUNK {
            let chunk = std::mem::replace(&mut self.text, String::with_capacity(COPY_CHUNK + 256));
            self.sink.feed(Bytes::from(chunk)).await?;
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<u64, tokio_postgres::Error> {
        if !self.text.is_empty() {
            let chunk = std::mem::take(&mut self.text);
            self.sink.feed(Bytes::from(chunk)).await?;
        }
        self.sink.as_mut().finish().await
    }
}

/// A value in COPY's text format.
fn copy_text(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    }
}
