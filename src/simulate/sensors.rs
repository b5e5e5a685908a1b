//! `cruscotto simulate sensors`: realistic readings for the demo city over MQTT, from the sensor
//! registry (`data/bologna/sensori.csv`): clients connected to the 303 BolognaWiFi access points
//! with a daily curve, download/upload and latency from the probes at the libraries, people
//! counted at libraries and facilitation points, and SenML packs from environmental sensors;
//! plus a share of malformed messages of every kind the connector rejects.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{Timelike, Utc};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use super::SimulateError;
use super::rng::Rng;

#[derive(Debug, Clone)]
pub struct SensorOptions {
    /// `mqtt://host:port`.
    pub broker: String,
    /// Messages per second; 0 = as fast as the broker takes them.
    pub rate: u64,
    /// Stop after this many messages (None: run until interrupted).
    pub count: Option<u64>,
    /// Share of messages that are malformed on purpose.
    pub malformed_share: f64,
    pub seed: u64,
    /// The sensor registry (CSV with `sensor_id`, `kind`).
    pub registry: PathBuf,
    /// First level of every topic.
    pub prefix: String,
}

#[derive(Debug, Clone, Default)]
pub struct SensorSummary {
    pub sensors: usize,
    pub published: u64,
    pub malformed: u64,
    pub elapsed: Duration,
}

#[derive(Debug, Clone)]
struct Sensor {
    id: String,
    kind: String,
}

/// The malformed messages produced, one of each in turn.
const MALFORMED: &[&str] = &[
    "not_json",
    "missing_field",
    "wrong_type",
    "unknown_sensor",
    "not_senml",
];

fn read_registry(path: &Path) -> Result<Vec<Sensor>, SimulateError> {
    let data = |message: String| SimulateError::Data {
        path: path.to_path_buf(),
        message,
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| data(e.to_string()))?;
    let headers = reader.headers().map_err(|e| data(e.to_string()))?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| data(format!("no `{name}` column")))
    };
    let (id, kind) = (column("sensor_id")?, column("kind")?);
    let mut sensors = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| data(e.to_string()))?;
        sensors.push(Sensor {
            id: record[id].to_string(),
            kind: record[kind].to_string(),
        });
    }
    if sensors.is_empty() {
        return Err(data("no sensors".into()));
    }
    Ok(sensors)
}

/// Share of the day's peak at this hour (Europe/Rome, roughly UTC+1): low at night, peaks late
/// morning and afternoon.
fn daily_curve(hour_utc: u32) -> f64 {
    const CURVE: [f64; 24] = [
        0.05, 0.03, 0.02, 0.02, 0.02, 0.04, 0.1, 0.3, 0.55, 0.75, 0.9, 1.0, 0.95, 0.85, 0.85, 0.9,
        0.95, 0.9, 0.8, 0.65, 0.5, 0.35, 0.2, 0.1,
    ];
    CURVE[((hour_utc + 1) % 24) as usize]
}

/// The line a probe measures, fixed per probe by its id: download and upload in Mbit/s at a
/// quiet hour, and latency in ms. From copper (ADSL) to fibre to the home, as a city's libraries
/// and schools have them.
fn probe_line(sensor_id: &str) -> (f64, f64, f64) {
    const LINES: [(f64, f64, f64); 5] = [
        (14.0, 1.0, 35.0),   // ADSL
        (48.0, 12.0, 18.0),  // FTTC
        (95.0, 20.0, 14.0),  // FTTC, vectoring
        (290.0, 60.0, 8.0),  // FTTH
        (880.0, 280.0, 5.0), // FTTH, gigabit
    ];
    // FNV-1a: the same probe gets the same line in every run and every release.
    let hash = sensor_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    LINES[(hash % LINES.len() as u64) as usize]
}

/// One message: topic and payload.
fn reading(
    prefix: &str,
    sensor: &Sensor,
    metric_turn: u64,
    seconds: f64,
    rng: &mut Rng,
) -> (String, String) {
    let hour = chrono::DateTime::from_timestamp(seconds as i64, 0)
        .unwrap_or_default()
        .hour();
    let curve = daily_curve(hour);
    let json = |kind: &str, metric: &str, value: f64, unit: &str| {
        (
            format!("{prefix}/{kind}/{}/{metric}", sensor.id),
            format!("{{\"v\":{value:.2},\"t\":{seconds:.3},\"u\":\"{unit}\"}}"),
        )
    };
    match sensor.kind.as_str() {
        "wifi_ap" => json(
            "wifi",
            "clients",
            (curve * 40.0 * (0.6 + 0.8 * rng.unit())).round(),
            "clients",
        ),
        "connectivity_probe" => {
            // Each probe sits on its own kind of line (fixed per probe), and throughput falls a
            // little when the library is busy.
            let (download_line, upload_line, base_latency) = probe_line(&sensor.id);
            let busy = 1.0 - 0.3 * curve;
            match metric_turn % 3 {
                0 => json(
                    "sonda",
                    "download_mbps",
                    download_line * (0.75 + 0.25 * rng.unit()) * busy,
                    "Mbit/s",
                ),
                1 => json(
                    "sonda",
                    "upload_mbps",
                    upload_line * (0.75 + 0.25 * rng.unit()) * busy,
                    "Mbit/s",
                ),
                _ => json(
                    "sonda",
                    "latency_ms",
                    base_latency + 20.0 * rng.unit() * (0.6 + curve),
                    "ms",
                ),
            }
        }
        "people_counter" => json(
            "contapersone",
            "people",
            (curve * 12.0 * rng.unit()).round(),
            "persone",
        ),
        _ => {
            let pack = format!(
                "[{{\"bn\":\"{}/\",\"bt\":{seconds:.3},\"n\":\"pm10\",\"u\":\"ug/m3\",\"v\":{:.1}}},\
                 {{\"n\":\"pm2_5\",\"u\":\"ug/m3\",\"v\":{:.1}}},{{\"n\":\"temperature\",\"u\":\"Cel\",\"v\":{:.1}}},\
                 {{\"n\":\"noise\",\"u\":\"dB\",\"v\":{:.1}}}]",
                sensor.id,
                15.0 + 30.0 * rng.unit(),
                8.0 + 18.0 * rng.unit(),
                8.0 + 14.0 * rng.unit(),
                45.0 + 25.0 * curve + 5.0 * rng.unit()
            );
            (format!("{prefix}/ambiente/{}", sensor.id), pack)
        }
    }
}

fn malformed(prefix: &str, kind: &str, sensor: &Sensor, seconds: f64) -> (String, String) {
    match kind {
        "not_json" => (
            format!("{prefix}/sonda/{}/latency_ms", sensor.id),
            "latency=12ms".to_string(),
        ),
        "missing_field" => (
            format!("{prefix}/sonda/{}/latency_ms", sensor.id),
            format!("{{\"valore\":12,\"t\":{seconds:.3}}}"),
        ),
        "wrong_type" => (
            format!("{prefix}/sonda/{}/latency_ms", sensor.id),
            format!("{{\"v\":\"alta\",\"t\":{seconds:.3}}}"),
        ),
        "unknown_sensor" => (
            "{prefix}/sonda/sonda-sconosciuta-99/latency_ms".replace("{prefix}", prefix),
            format!("{{\"v\":12,\"t\":{seconds:.3}}}"),
        ),
        _ => (
            format!("{prefix}/ambiente/{}", sensor.id),
            "{\"n\":\"pm10\",\"v\":21}".to_string(),
        ),
    }
}

/// The messages of the registry's sensors, in turn: what `cruscotto simulate sensors` publishes,
/// and what an MQTT connector with `[simulate]` feeds itself when there is no broker.
pub struct SensorFeed {
    registry: Vec<Sensor>,
    prefix: String,
    malformed_share: f64,
    rng: Rng,
    turn: u64,
    malformed: u64,
    last_millis: Vec<i64>,
}

impl SensorFeed {
    pub fn new(
        registry: &Path,
        prefix: &str,
        seed: u64,
        malformed_share: f64,
    ) -> Result<Self, SimulateError> {
        let registry = read_registry(registry)?;
        let sensors = registry.len();
        Ok(Self {
            registry,
            prefix: prefix.to_string(),
            malformed_share,
            rng: Rng::fork(seed, 1),
            turn: 0,
            malformed: 0,
            last_millis: vec![0; sensors],
        })
    }

    pub fn sensors(&self) -> usize {
        self.registry.len()
    }

    /// Malformed messages produced so far.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// The next sensor's message at `now_millis`: sensors in turn, so each reports at a steady
    /// pace and never twice in one instant.
    pub fn next(&mut self, now_millis: i64) -> (String, String) {
        let index = (self.turn % self.registry.len() as u64) as usize;
        let metric_turn = self.turn / self.registry.len() as u64;
        self.turn += 1;
        // Each sensor's readings at least a millisecond apart: the publisher can outrun the
        // clock, and two readings of a sensor at the same time are one reading to the connector.
        let millis = now_millis.max(self.last_millis[index] + 1);
        self.last_millis[index] = millis;
        let seconds = millis as f64 / 1e3;
        let sensor = &self.registry[index];
        if self.rng.chance(self.malformed_share) {
            self.malformed += 1;
            let kind = MALFORMED[(self.malformed % MALFORMED.len() as u64) as usize];
            malformed(&self.prefix, kind, sensor, seconds)
        } else {
            reading(&self.prefix, sensor, metric_turn, seconds, &mut self.rng)
        }
    }

    /// Past readings: every sensor's every metric once per `step` from `from_seconds` up to
    /// `until_seconds` (a history for a first start, so charts have days to show).
    pub fn history(
        &mut self,
        from_seconds: i64,
        until_seconds: i64,
        step_seconds: i64,
    ) -> Vec<(String, String)> {
        let mut messages = Vec::new();
        let mut at = from_seconds;
        while at < until_seconds {
            for sensor in &self.registry {
                let metrics = if sensor.kind == "connectivity_probe" {
                    3
                } else {
                    1
                };
                for metric_turn in 0..metrics {
                    // Spread over the step, not all at its first second.
                    let seconds = at as f64 + self.rng.below(step_seconds.max(1) as u64) as f64;
                    // Never a reading from the future: the last step ends at `until_seconds`.
                    if seconds >= until_seconds as f64 {
                        continue;
                    }
                    messages.push(reading(
                        &self.prefix,
                        sensor,
                        metric_turn,
                        seconds,
                        &mut self.rng,
                    ));
                }
            }
            at += step_seconds.max(1);
        }
        messages
    }
}

/// Publish readings at QoS 1 until `count` (or forever), and wait for the broker to acknowledge
/// every one.
pub async fn sensors(options: &SensorOptions) -> Result<SensorSummary, SimulateError> {
    let mut feed = SensorFeed::new(
        &options.registry,
        &options.prefix,
        options.seed,
        options.malformed_share,
    )?;
    let broker = |message: String| SimulateError::Mqtt {
        broker: options.broker.clone(),
        message,
    };
    let rest = options
        .broker
        .strip_prefix("mqtt://")
        .ok_or_else(|| broker("use an mqtt:// URL".into()))?;
    let (host, port) = rest
        .trim_end_matches('/')
        .rsplit_once(':')
        .map_or((rest, 1883), |(h, p)| (h, p.parse().unwrap_or(1883)));
    let mut mqtt = MqttOptions::new(
        format!("cruscotto-simulator-{}", std::process::id()),
        host,
        port,
    );
    mqtt.set_keep_alive(Duration::from_secs(30));
    mqtt.set_inflight(1000);
    let (client, mut eventloop) = AsyncClient::new(mqtt, 10_000);
    let (acks_tx, mut acks) = tokio::sync::watch::channel(0u64);
    let (error_tx, mut error_rx) = tokio::sync::watch::channel(None::<String>);
    let poller = tokio::spawn(async move {
        let mut acknowledged = 0u64;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    acknowledged += 1;
                    let _ = acks_tx.send(acknowledged);
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = error_tx.send(Some(e.to_string()));
                    return;
                }
            }
        }
    });

    let mut summary = SensorSummary {
        sensors: feed.sensors(),
        ..SensorSummary::default()
    };
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_millis(10));
    let mut budget = 0.0;
    'publishing: loop {
        if options.rate > 0 {
            ticks.tick().await;
            budget += options.rate as f64 / 100.0;
        } else {
            budget = 1000.0;
        }
        while budget >= 1.0 {
            if options.count.is_some_and(|c| summary.published >= c) {
                break 'publishing;
            }
            if let Some(error) = error_rx.borrow_and_update().clone() {
                return Err(broker(error));
            }
            budget -= 1.0;
            let (topic, payload) = feed.next(Utc::now().timestamp_millis());
            summary.malformed = feed.malformed();
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .map_err(|e| broker(e.to_string()))?;
            summary.published += 1;
        }
    }
    // Done when the broker has every message.
    while *acks.borrow() < summary.published {
        if let Some(error) = error_rx.borrow().clone() {
            return Err(broker(error));
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), acks.changed()).await;
    }
    summary.elapsed = started.elapsed();
    let _ = client.disconnect().await;
    poller.abort();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_fit_the_shipped_connector() {
        let mut rng = Rng::new(1);
        let probe = Sensor {
            id: "sonda-x".into(),
            kind: "connectivity_probe".into(),
        };
        let (topic, payload) = reading("bologna", &probe, 2, 1_700_000_000.5, &mut rng);
        assert_eq!(topic, "bologna/sonda/sonda-x/latency_ms");
        let value: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert!(
            value["v"].is_number() && value["t"].as_f64() == Some(1_700_000_000.5),
            "{payload}"
        );
        let environment = Sensor {
            id: "amb-01".into(),
            kind: "environment".into(),
        };
        let (topic, pack) = reading("bologna", &environment, 0, 1_700_000_000.0, &mut rng);
        assert_eq!(topic, "bologna/ambiente/amb-01");
        assert_eq!(
            crate::connectors::mqtt::resolve_senml(pack.as_bytes(), 0)
                .unwrap()
                .len(),
            4
        );
        for kind in MALFORMED {
            let (_, payload) = malformed("bologna", kind, &probe, 1.0);
            assert!(!payload.is_empty());
        }
    }
}
