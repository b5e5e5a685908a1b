//! The running connector: one task reads the broker session and decodes messages, a bounded
//! channel carries them to a writer task (`write.rs`) that makes each group durable (one fsync
//! per log table) and only then acknowledges the group's messages (PUBACK). When the writer
//! falls behind, the channel fills, the reader stops polling the broker, and the broker keeps the
//! rest: nothing is dropped. A crash before the PUBACK means the broker delivers again; the
//! writer recognises the redelivery and stores it once.
//!
//! The client reads packets of any size MQTT allows: a message larger than `max_payload` is
//! not decoded but rejected (`too_large`, its first bytes kept) and acknowledged like any other,
//! so it cannot stop the session. Only its first bytes outlive the read.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS, SubscribeFilter, Transport};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::config::{MqttConnectorConfig, SensorSimulation};
use super::mapping::{Cell, Layout, RejectKind, Rejection, rejected_schema};
use super::topic;
use super::write::{Delivery, excerpt, message_key, write_loop};
use crate::store::Store;
use crate::store::log::{LogOptions, LogTable};
use crate::store::rollup::RollupSpec;

const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Acknowledgements waiting to be sent: more than the broker can have in flight, so the writer
/// never waits on them.
const ACK_CAPACITY: usize = 65_536;
/// The largest packet MQTT can carry (a remaining length of 256 MiB - 1, plus the fixed
/// header): the client reads whatever the broker delivers, so no message can break the session.
const MAX_MQTT_PACKET: usize = 268_435_455 + 5;

/// One table of the connector, opened in the store.
pub(super) struct OpenTable {
    pub layout: Layout,
    pub rows: Arc<LogTable>,
    pub rejected: Arc<LogTable>,
}

fn days(duration: Option<Duration>) -> Option<i64> {
    duration.map(|d| (d.as_secs() / 86_400) as i64)
}

/// Open (and recover) the connector's log tables, so their rows are served at once.
pub fn open_tables(
    store: &Store,
    schema: &str,
    config: &MqttConnectorConfig,
    source: &str,
) -> Result<(), String> {
    if !config.enabled {
        return Ok(());
    }
    let refresh = config.expected_interval;
    for table in &config.tables {
        let layout = Layout::new(table).map_err(|e| format!("table `{}`: {e}", table.name))?;
        let rollup = table.rollup.as_ref().map(|name| RollupSpec {
            table: name.clone(),
            keys: ["sensor_id", "metric"]
                .iter()
                .filter(|c| layout.has_column(c))
                .map(|c| c.to_string())
                .collect(),
            value: "value".into(),
            retention_days: days(table.rollup_retention),
        });
        let options = LogOptions {
            time_column: "ts".into(),
            dedupe: layout.dedupe_columns(),
            arrival: vec!["received_at".into()],
            retention_days: days(table.retention),
            compact_rows: config.compact_rows,
            rollup,
        };
        store
            .open_log(
                schema,
                &table.name,
                source,
                layout.schema(),
                options,
                refresh,
            )
            .map_err(|e| e.to_string())?;
        let rejected = LogOptions {
            time_column: "received_at".into(),
            dedupe: Vec::new(),
            arrival: Vec::new(),
            retention_days: days(table.retention),
            compact_rows: config.compact_rows,
            rollup: None,
        };
        store
            .open_log(
                schema,
                &table.rejected_table_name(),
                source,
                rejected_schema(),
                rejected,
                refresh,
            )
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Run the connector until the process ends.
pub async fn run(
    store: Arc<Store>,
    schema: String,
    config: MqttConnectorConfig,
    base_dir: PathBuf,
) {
    if !config.enabled {
        return;
    }
    let source = config.source();
    let mut tables = Vec::new();
    for table in &config.tables {
        let (Ok(layout), Some(rows), Some(rejected)) = (
            Layout::new(table),
            store.log_table(&schema, &table.name),
            store.log_table(&schema, &table.rejected_table_name()),
        ) else {
            warn!(connector = %schema, table = %table.name, "MQTT table not opened; the connector does not start");
            return;
        };
        if !rows.is_writable() || !rejected.is_writable() {
            let message = format!(
                "another cruscotto process writes {}: this one serves the table read-only and does not subscribe",
                rows.dir().display()
            );
            for name in config.table_names() {
                store.record_failure(&schema, &name, &source, &message);
            }
            return;
        }
        tables.push(OpenTable {
            layout,
            rows,
            rejected,
        });
    }
    let tables = Arc::new(tables);
    let mut registry = Registry::new(store.clone(), config.registry.clone());
    registry
        .wait_until_loaded(&store, &schema, &config, &source)
        .await;

    if let Some(simulation) = config.simulate.clone() {
        let sender = spawn_writer(&store, &schema, &source, &tables, &config, None);
        let feed = Simulated {
            store,
            schema,
            source,
            config,
            tables,
            registry,
            sender,
        };
        feed.run(&simulation, &base_dir).await;
        return;
    }

    let options = match mqtt_options(&config, &base_dir) {
        Ok(options) => options,
        Err(e) => {
            for name in config.table_names() {
                store.record_failure(&schema, &name, &source, &e);
            }
            return;
        }
    };
    let (client, mut eventloop) = AsyncClient::new(options, ACK_CAPACITY);
    let sender = spawn_writer(
        &store,
        &schema,
        &source,
        &tables,
        &config,
        Some(client.clone()),
    );

    let filters: Vec<SubscribeFilter> = config
        .tables
        .iter()
        .flat_map(|t| t.topics.iter())
        .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce))
        .collect();
    let mut failures = 0u32;
    let mut last_arrival = 0i64;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                info!(connector = %schema, broker = %source, session_present = ack.session_present, "connected to the MQTT broker");
                failures = 0;
                // Subscribing again on a resumed session is harmless and covers a broker that
                // lost it.
                if let Err(e) = client.subscribe_many(filters.clone()).await {
                    warn!(connector = %schema, error = %e, "cannot subscribe");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let refused = ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure));
                for (i, table) in config.tables.iter().enumerate() {
                    if refused {
                        store.record_failure(
                            &schema,
                            &table.name,
                            &source,
                            "the broker refused a subscription",
                        );
                    } else {
                        store.log_progress(
                            &schema,
                            &table.name,
                            &source,
                            tables[i].rejected.row_count(),
                        );
                        store.log_progress(&schema, &table.rejected_table_name(), &source, 0);
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                // Strictly increasing: two readings timed at arrival never share a time.
                let received_at = chrono::Utc::now().timestamp_micros().max(last_arrival + 1);
                last_arrival = received_at;
                registry.refresh();
                let delivery = decode(&config, &tables, &registry, publish, received_at);
                // A full channel blocks here: the broker is not polled until the writer catches up.
                if sender.send(delivery).await.is_err() {
                    warn!(connector = %schema, "the writer stopped; the connector stops");
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                failures = failures.saturating_add(1);
                let message = format!("MQTT broker {source}: {e}");
                for name in config.table_names() {
                    store.record_failure(&schema, &name, &source, &message);
                }
                let delay = backoff(failures);
                warn!(connector = %schema, error = %e, retry_in_ms = delay.as_millis() as u64, "MQTT connection lost; reconnecting");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Start the writer (durable groups, then acknowledgements through `client`, if there is a
/// broker) and the compaction of the tables; returns the writer's channel.
fn spawn_writer(
    store: &Arc<Store>,
    schema: &str,
    source: &str,
    tables: &Arc<Vec<OpenTable>>,
    config: &MqttConnectorConfig,
    client: Option<AsyncClient>,
) -> mpsc::Sender<Delivery> {
    let (sender, receiver) = mpsc::channel::<Delivery>(config.channel_capacity);
    tokio::spawn(write_loop(
        store.clone(),
        schema.to_string(),
        source.to_string(),
        tables.clone(),
        client,
        receiver,
        config.max_group,
    ));
    tokio::spawn(compact_loop(
        store.clone(),
        schema.to_string(),
        source.to_string(),
        tables.clone(),
        config.compact_every,
    ));
    sender
}

/// A connector fed by the built-in sensor simulator instead of a broker: the same decoding,
/// registry check, write-ahead log and rollups; no acknowledgement to send.
struct Simulated {
    store: Arc<Store>,
    schema: String,
    source: String,
    config: MqttConnectorConfig,
    tables: Arc<Vec<OpenTable>>,
    registry: Registry,
    sender: mpsc::Sender<Delivery>,
}

impl Simulated {
    async fn run(mut self, simulation: &SensorSimulation, base_dir: &Path) {
        let registry_file = crate::config_text::resolve(base_dir, &simulation.registry);
        let mut feed = match crate::simulate::SensorFeed::new(
            &registry_file,
            &simulation.prefix,
            simulation.seed,
            simulation.malformed_share,
        ) {
            Ok(feed) => feed,
            Err(e) => {
                for name in self.config.table_names() {
                    self.store
                        .record_failure(&self.schema, &name, &self.source, &e.to_string());
                }
                return;
            }
        };
        for table in self.tables.iter() {
            self.store.log_progress(
                &self.schema,
                &table.layout.table,
                &self.source,
                table.rejected.row_count(),
            );
            self.store
                .log_progress(&self.schema, &table.rejected.table, &self.source, 0);
        }
        let mut last_arrival = 0i64;
        // A first start: a history, so the charts have days to show at once.
        let empty = self.tables.iter().all(|t| t.rows.row_count() == 0);
        if empty && !simulation.history.is_zero() {
            let now = chrono::Utc::now().timestamp();
            // From a midnight (UTC), so the first day of the history is a whole day.
            let from = (now - simulation.history.as_secs() as i64).div_euclid(86_400) * 86_400;
            let history = feed.history(from, now, 3_600);
            info!(connector = %self.schema, messages = history.len(), "simulated sensor history");
            for (number, (topic, payload)) in history.into_iter().enumerate() {
                if !self
                    .deliver(topic, payload, number, &mut last_arrival)
                    .await
                {
                    return;
                }
            }
            // Compact once the writer has the history, so the rollups cover it at once rather
            // than at the next scheduled compaction.
            while self.sender.capacity() < self.sender.max_capacity() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // ... and has committed its last group: the row counts stop moving.
            let counts =
                |tables: &[OpenTable]| -> usize { tables.iter().map(|t| t.rows.row_count()).sum() };
            let (mut last, mut steady) = (counts(&self.tables), 0);
            for _ in 0..200 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let now = counts(&self.tables);
                steady = if now == last { steady + 1 } else { 0 };
                last = now;
                if steady >= 3 {
                    break;
                }
            }
            for table in self.tables.iter() {
                let rows = table.rows.clone();
                let compacted = tokio::task::spawn_blocking(move || rows.compact()).await;
                if let Ok(Err(e)) = compacted {
                    warn!(connector = %self.schema, error = %e, "compaction failed; the WAL keeps the rows");
                }
            }
        }
        if simulation.rate == 0.0 {
            info!(connector = %self.schema, sensors = feed.sensors(), "simulated sensors: the history only, no live readings");
            // The writer stays open: the connector is not stopped, only quiet.
            return std::future::pending().await;
        }
        info!(connector = %self.schema, sensors = feed.sensors(), rate = simulation.rate, "simulated sensors reporting");
        let period = Duration::from_secs_f64(1.0 / simulation.rate);
        let mut ticks = tokio::time::interval(period.max(Duration::from_millis(1)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for number in 0usize.. {
            ticks.tick().await;
            let (topic, payload) = feed.next(chrono::Utc::now().timestamp_millis());
            if !self
                .deliver(topic, payload, number, &mut last_arrival)
                .await
            {
                return;
            }
        }
    }

    /// Decode one message and hand it to the writer; false once the writer has stopped.
    async fn deliver(
        &mut self,
        topic: String,
        payload: String,
        number: usize,
        last_arrival: &mut i64,
    ) -> bool {
        let received_at = chrono::Utc::now().timestamp_micros().max(*last_arrival + 1);
        *last_arrival = received_at;
        self.registry.refresh();
        // At most once: nothing to acknowledge. The packet id varies as a broker's would.
        let mut publish = Publish::new(topic, QoS::AtMostOnce, payload);
        publish.pkid = (number % u16::MAX as usize) as u16 + 1;
        let delivery = decode(
            &self.config,
            &self.tables,
            &self.registry,
            publish,
            received_at,
        );
        if self.sender.send(delivery).await.is_err() {
            warn!(connector = %self.schema, "the writer stopped; the simulated feed stops");
            return false;
        }
        true
    }
}

fn decode(
    config: &MqttConnectorConfig,
    tables: &[OpenTable],
    registry: &Registry,
    mut publish: Publish,
    received_at: i64,
) -> Delivery {
    let key = message_key(&publish);
    let index = config
        .tables
        .iter()
        .position(|t| t.topics.iter().any(|f| topic::matches(f, &publish.topic)));
    let delivery = |publish, table, excerpt, outcome| Delivery {
        publish,
        table,
        received_at,
        key,
        excerpt,
        outcome,
        redelivered: false,
    };
    let size = publish.payload.len();
    let limit = config.max_payload.as_u64();
    if size as u64 > limit {
        // Only the first bytes are kept: the rest is released now, not when acknowledged.
        let kept = excerpt(&publish.payload);
        publish.payload = bytes::Bytes::new();
        let rejection = Rejection {
            kind: RejectKind::TooLarge,
            reason: format!(
                "payload of {size} bytes is larger than max_payload ({}); only its first bytes are kept",
                config.max_payload.display().iec()
            ),
        };
        return delivery(publish, index.unwrap_or(0), Some(kept), Err(rejection));
    }
    let Some(index) = index else {
        let reason = format!("topic `{}` matches no table's topics", publish.topic);
        let rejection = Rejection {
            kind: RejectKind::Topic,
            reason,
        };
        return delivery(publish, 0, None, Err(rejection));
    };
    let layout = &tables[index].layout;
    let outcome = layout
        .decode(&publish.topic, &publish.payload, received_at)
        .and_then(|rows| {
            for row in &rows {
                if let Cell::Text(sensor) = &row[layout.sensor_column] {
                    if !registry.knows(sensor) {
                        return Err(Rejection {
                            kind: RejectKind::UnknownSensor,
                            reason: format!(
                                "unknown sensor `{sensor}`: not in the registry {}",
                                registry.name.as_deref().unwrap_or("")
                            ),
                        });
                    }
                }
            }
            Ok(rows)
        });
    delivery(publish, index, None, outcome)
}

/// Compact every table's WAL at a steady pace, also when readings trickle in.
async fn compact_loop(
    store: Arc<Store>,
    schema: String,
    source: String,
    tables: Arc<Vec<OpenTable>>,
    every: Duration,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        for table in tables.iter() {
            for log in [table.rows.clone(), table.rejected.clone()] {
                let name = log.table.clone();
                match tokio::task::spawn_blocking(move || log.compact()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        warn!(connector = %schema, table = %name, error = %e, "compaction failed; the WAL keeps the rows")
                    }
                    Err(e) => {
                        warn!(connector = %schema, table = %name, error = %e, "compaction task failed")
                    }
                }
            }
            store.log_progress(
                &schema,
                &table.layout.table,
                &source,
                table.rejected.row_count(),
            );
        }
    }
}

/// The sensor ids of the registry table, reloaded when the store changes.
struct Registry {
    store: Arc<Store>,
    name: Option<String>,
    changes: tokio::sync::watch::Receiver<u64>,
    ids: HashSet<String>,
}

impl Registry {
    fn new(store: Arc<Store>, name: Option<String>) -> Self {
        let changes = store.subscribe();
        Self {
            store,
            name,
            changes,
            ids: HashSet::new(),
        }
    }

    fn knows(&self, sensor: &str) -> bool {
        self.name.is_none() || self.ids.contains(sensor)
    }

    /// Reload the ids if the store changed; returns whether the registry table exists.
    fn refresh(&mut self) -> bool {
        let Some(name) = &self.name else { return true };
        if !self.changes.has_changed().unwrap_or(false) && !self.ids.is_empty() {
            return true;
        }
        self.changes.borrow_and_update();
        let (schema, table) = name.split_once('.').unwrap_or(("", name));
        let Some((table_schema, batches)) = self.store.table_batches(schema, table) else {
            return false;
        };
        let Ok(index) = table_schema.index_of("sensor_id") else {
            return false;
        };
        let mut ids = HashSet::new();
        for batch in &batches {
            let column =
                arrow::compute::cast(batch.column(index), &arrow::datatypes::DataType::Utf8).ok();
            if let Some(column) = column
                .as_ref()
                .and_then(|c| c.as_any().downcast_ref::<arrow::array::StringArray>())
            {
                ids.extend(column.iter().flatten().map(str::to_string));
            }
        }
        self.ids = ids;
        true
    }

    /// Readings are not read before the registry is there: with a persistent session the
    /// broker keeps them, where reading them now would reject every one as unknown.
    async fn wait_until_loaded(
        &mut self,
        store: &Store,
        schema: &str,
        config: &MqttConnectorConfig,
        source: &str,
    ) {
        let mut reported = false;
        while !self.refresh() {
            if !reported {
                let message = format!(
                    "waiting for the sensor registry {} (no such table, or no `sensor_id` column)",
                    self.name.as_deref().unwrap_or("")
                );
                for name in config.table_names() {
                    store.record_failure(schema, &name, source, &message);
                }
                reported = true;
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), self.changes.changed()).await;
        }
    }
}

/// Session options: persistent session, manual acknowledgements, credentials, TLS.
fn mqtt_options(config: &MqttConnectorConfig, base_dir: &Path) -> Result<MqttOptions, String> {
    let address = config.broker_address()?;
    let mut options = MqttOptions::new(config.client_id.clone(), address.host, address.port);
    options.set_clean_session(false);
    options.set_manual_acks(true);
    options.set_keep_alive(config.keep_alive);
    // Incoming: anything MQTT can carry (`max_payload` is enforced on the message, which is
    // then rejected and acknowledged; a client limit would drop the connection instead, and
    // the broker would deliver the same message again, for ever).
    options.set_max_packet_size(MAX_MQTT_PACKET, 64 * 1024);
    if let Some(user) = &config.username {
        options.set_credentials(
            user.0.clone(),
            config
                .password
                .as_ref()
                .map(|p| p.0.clone())
                .unwrap_or_default(),
        );
    }
    if address.tls {
        options.set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(Arc::new(tls_config(
                config
                    .ca_file
                    .as_ref()
                    .map(|p| crate::config_text::resolve(base_dir, p))
                    .as_deref(),
            )?)),
        ));
    }
    Ok(options)
}

fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for certificate in CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?
            {
                let certificate =
                    certificate.map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                roots
                    .add(certificate)
                    .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "ca_file {} holds no PEM certificate",
                    path.display()
                ));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Exponential backoff with ±25% jitter.
pub(super) fn backoff(failures: u32) -> Duration {
    let exponential = FIRST_BACKOFF.saturating_mul(1u32 << failures.min(16).saturating_sub(1));
    exponential
        .min(MAX_BACKOFF)
        .mul_f64(rand::rng().random_range(0.75..1.25))
}
