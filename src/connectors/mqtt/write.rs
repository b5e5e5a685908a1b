//! The writer: groups of decoded messages made durable (one fsync per log table), then
//! acknowledged (PUBACK), in the order they arrived.
//!
//! Exactly once, whatever the mapping: every message has a key (topic, packet id, payload),
//! recorded in the WAL with the rows or the rejection it produced. A message the broker marks as
//! a redelivery (DUP) whose key is recorded, or earlier in the same group, was handled already:
//! it is acknowledged and nothing is stored again, so readings timed at arrival and rejected
//! messages are not stored twice after a crash. Other messages go through the log table's
//! reading deduplication: a reading stored already is not stored again, and a message with a
//! reading whose sensor, metric and time are stored with other values is rejected as `conflict`.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use rumqttc::{AsyncClient, Publish};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tracing::warn;

use super::mapping::{Cell, RejectKind, Rejection, rejected_schema};
use super::run::{OpenTable, backoff};
use crate::connectors::{MAX_RAW_RECORD, truncate_raw};
use crate::store::Store;
use crate::store::log::MessageRows;

/// A message read from the broker, decoded, on its way to being durable.
pub(super) struct Delivery {
    /// Kept to acknowledge it; an oversized message's payload is dropped at once (`excerpt`).
    pub publish: Publish,
    pub table: usize,
    pub received_at: i64,
    /// Recognises the message when the broker delivers it again.
    pub key: u64,
    /// The start of an oversized payload, the only part kept.
    pub excerpt: Option<String>,
    pub outcome: Result<Vec<Vec<Cell>>, Rejection>,
    /// Found to be a redelivery of a message handled already (set by `prepare`).
    pub redelivered: bool,
}

impl Delivery {
    /// The payload as the rejected table keeps it: text, at most `MAX_RAW_RECORD` bytes.
    fn payload_text(&self) -> String {
        match &self.excerpt {
            Some(excerpt) => excerpt.clone(),
            None => excerpt(&self.publish.payload),
        }
    }
}

/// The first bytes of a payload as text: never more than `MAX_RAW_RECORD` (plus `…`), however
/// large the payload.
pub(super) fn excerpt(payload: &[u8]) -> String {
    let head = &payload[..payload.len().min(MAX_RAW_RECORD + 4)];
    let text = truncate_raw(&String::from_utf8_lossy(head));
    if head.len() < payload.len() && !text.ends_with('…') {
        format!("{text}…")
    } else {
        text
    }
}

/// The key of a message: topic, packet id and payload. The broker redelivers a message with its
/// packet id; two messages in flight never share one.
pub(super) fn message_key(publish: &Publish) -> u64 {
    let mut hash = Sha256::new();
    hash.update((publish.topic.len() as u64).to_le_bytes());
    hash.update(publish.topic.as_bytes());
    hash.update(publish.pkid.to_le_bytes());
    hash.update(&publish.payload);
    let digest = hash.finalize();
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// Make groups of deliveries durable, then acknowledge them, in the order they arrived.
pub(super) async fn write_loop(
    store: Arc<Store>,
    schema: String,
    source: String,
    tables: Arc<Vec<OpenTable>>,
    client: Option<AsyncClient>,
    mut receiver: mpsc::Receiver<Delivery>,
    max_group: usize,
) {
    let mut group: Vec<Delivery> = Vec::with_capacity(max_group);
    let compacting = Arc::new(AtomicBool::new(false));
    // Acknowledgements of durable messages not yet handed to the event loop, in order. The
    // writer never waits for room in the client's request channel: the event loop may itself be
    // waiting for room in ours, and each would wait for the other.
    let mut unsent: VecDeque<Publish> = VecDeque::new();
    loop {
        flush_acks(client.as_ref(), &mut unsent);
        let received = if unsent.is_empty() {
            receiver.recv_many(&mut group, max_group).await
        } else {
            tokio::select! {
                received = receiver.recv_many(&mut group, max_group) => received,
                _ = tokio::time::sleep(Duration::from_millis(2)) => continue,
            }
        };
        if received == 0 {
            return;
        }
        let mut failures = 0u32;
        // Built once: a retry appends the same batches (a retry after a partial commit finds
        // the rows stored and stores nothing twice).
        let prepared = Arc::new(prepare(&tables, &mut group));
        let deliveries = Arc::new(std::mem::take(&mut group));
        // Until the group is durable nothing is acknowledged; a store that keeps failing keeps
        // the channel full, and the broker keeps the messages.
        loop {
            let outcome = {
                let (tables, prepared, deliveries) =
                    (tables.clone(), prepared.clone(), deliveries.clone());
                tokio::task::spawn_blocking(move || commit(&tables, &prepared, &deliveries)).await
            };
            match outcome {
                Ok(Ok(stored)) => {
                    record_metrics(&schema, &tables, &deliveries, &prepared, &stored);
                    break;
                }
                Ok(Err(message)) => {
                    failures += 1;
                    for table in tables.iter() {
                        store.record_failure(&schema, &table.layout.table, &source, &message);
                    }
                    tokio::time::sleep(backoff(failures)).await;
                }
                Err(join) => {
                    failures += 1;
                    warn!(connector = %schema, error = %join, "store task failed; retrying the group");
                    tokio::time::sleep(backoff(failures)).await;
                }
            }
        }
        // The store task has ended: this is the only reference left.
        let Ok(deliveries) = Arc::try_unwrap(deliveries) else {
            unreachable!("the store task has ended, and its reference with it")
        };
        unsent.extend(deliveries.into_iter().map(|d| d.publish));
        flush_acks(client.as_ref(), &mut unsent);
        for table in tables.iter() {
            store.log_progress(
                &schema,
                &table.layout.table,
                &source,
                table.rejected.row_count(),
            );
            store.log_progress(&schema, &table.rejected.table, &source, 0);
            if table.rows.wants_compaction() && !compacting.swap(true, Ordering::AcqRel) {
                let (rows, flag) = (table.rows.clone(), compacting.clone());
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = rows.compact() {
                        warn!(table = %rows.table, error = %e, "compaction failed; the WAL keeps the rows");
                    }
                    flag.store(false, Ordering::Release);
                });
            }
        }
    }
}

/// Hand as many acknowledgements as fit to the event loop, oldest first.
/// Without a broker (a simulated feed) there is nothing to acknowledge.
fn flush_acks(client: Option<&AsyncClient>, unsent: &mut VecDeque<Publish>) {
    let Some(client) = client else {
        unsent.clear();
        return;
    };
    while let Some(publish) = unsent.front() {
        // A full request channel: the event loop drains it when it next runs; try again then.
        if client.try_ack(publish).is_err() {
            return;
        }
        unsent.pop_front();
    }
}

/// The rows of one table in a group: one batch, the rows of each message, and which delivery
/// each message is.
struct TableRows {
    batch: RecordBatch,
    messages: Vec<MessageRows>,
    deliveries: Vec<usize>,
}

/// Rows and rejections of a group, per table.
struct Prepared {
    rows: Vec<Option<TableRows>>,
    /// Rejected deliveries per table (indices into the group).
    rejected: Vec<Vec<usize>>,
    /// Deliveries recognised as redeliveries of messages handled already.
    redelivered: usize,
}

/// Takes the decoded rows out of the deliveries (only their messages are needed afterwards, to
/// acknowledge them and to describe a conflict).
fn prepare(tables: &[OpenTable], group: &mut [Delivery]) -> Result<Prepared, String> {
    let mut rows: Vec<Vec<Vec<Cell>>> = vec![Vec::new(); tables.len()];
    let mut messages: Vec<Vec<MessageRows>> = vec![Vec::new(); tables.len()];
    let mut message_deliveries: Vec<Vec<usize>> = vec![Vec::new(); tables.len()];
    let mut rejected: Vec<Vec<usize>> = vec![Vec::new(); tables.len()];
    let mut in_group: HashSet<u64> = HashSet::new();
    let mut redelivered = 0;
    for (index, delivery) in group.iter_mut().enumerate() {
        let table = &tables[delivery.table];
        let first_in_group = in_group.insert(delivery.key);
        if delivery.publish.dup
            && (!first_in_group
                || table.rows.has_message(delivery.key)
                || table.rejected.has_message(delivery.key))
        {
            redelivered += 1;
            delivery.redelivered = true;
            delivery.outcome = Ok(Vec::new());
            continue;
        }
        match &mut delivery.outcome {
            Ok(decoded) => {
                let start = rows[delivery.table].len();
                rows[delivery.table].append(decoded);
                messages[delivery.table].push(MessageRows {
                    key: Some(delivery.key),
                    rows: start..rows[delivery.table].len(),
                });
                message_deliveries[delivery.table].push(index);
            }
            Err(_) => rejected[delivery.table].push(index),
        }
    }
    let rows = tables
        .iter()
        .zip(rows)
        .zip(messages.into_iter().zip(message_deliveries))
        .map(|((table, rows), (messages, deliveries))| {
            if rows.is_empty() {
                return Ok(None);
            }
            Ok(Some(TableRows {
                batch: table.layout.batch(&rows)?,
                messages,
                deliveries,
            }))
        })
        .collect::<Result<_, String>>()?;
    Ok(Prepared {
        rows,
        rejected,
        redelivered,
    })
}

/// What a commit did in one table.
#[derive(Debug, Default, Clone, Copy)]
struct Stored {
    rows: usize,
    duplicates: usize,
    conflicts: usize,
}

/// Append a prepared group: each table's rows, then its rejected messages (those rejected when
/// decoded and those whose readings conflict with stored ones).
fn commit(
    tables: &[OpenTable],
    prepared: &Result<Prepared, String>,
    group: &[Delivery],
) -> Result<Vec<Stored>, String> {
    let prepared = prepared.as_ref().map_err(Clone::clone)?;
    let mut stored = Vec::new();
    for (i, table) in tables.iter().enumerate() {
        let mut counts = Stored::default();
        let mut rejected: Vec<Vec<Cell>> = Vec::new();
        let mut keys: Vec<MessageRows> = Vec::new();
        let mut reject = |delivery: &Delivery, kind: RejectKind, reason: String| {
            keys.push(MessageRows {
                key: Some(delivery.key),
                rows: rejected.len()..rejected.len() + 1,
            });
            rejected.push(vec![
                Cell::Time(delivery.received_at),
                Cell::Text(delivery.publish.topic.clone()),
                Cell::Text(kind.as_str().to_string()),
                Cell::Text(reason),
                Cell::Text(delivery.payload_text()),
            ]);
        };
        if let Some(rows) = &prepared.rows[i] {
            let appended = table
                .rows
                .append_messages(&rows.batch, &rows.messages)
                .map_err(|e| e.to_string())?;
            counts.rows = appended.stored;
            counts.duplicates = appended.duplicates;
            counts.conflicts = appended.conflicts.len();
            for conflict in &appended.conflicts {
                let delivery = &group[rows.deliveries[conflict.message]];
                reject(
                    delivery,
                    RejectKind::Conflict,
                    conflict_reason(&rows.batch, conflict.row),
                );
            }
        }
        for &index in &prepared.rejected[i] {
            let delivery = &group[index];
            if let Err(rejection) = &delivery.outcome {
                reject(delivery, rejection.kind, rejection.reason.clone());
            }
        }
        if !rejected.is_empty() {
            let batch = super::mapping::batch(&rejected_schema(), &rejected)?;
            table
                .rejected
                .append_messages(&batch, &keys)
                .map_err(|e| e.to_string())?;
        }
        stored.push(counts);
    }
    Ok(stored)
}

/// Which reading a conflicting row repeats, for the rejected table.
fn conflict_reason(batch: &RecordBatch, row: usize) -> String {
    let value = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| arrow::util::display::array_value_to_string(c, row).ok())
            .unwrap_or_default()
    };
    format!(
        "sensor `{}`, metric `{}` at {}: a reading with other values is stored already; this one is not stored",
        value("sensor_id"),
        value("metric"),
        value("ts")
    )
}

fn record_metrics(
    schema: &str,
    tables: &[OpenTable],
    group: &[Delivery],
    prepared: &Result<Prepared, String>,
    stored: &[Stored],
) {
    for (table, counts) in tables.iter().zip(stored) {
        let labels = [
            ("schema", schema.to_string()),
            ("table", table.layout.table.clone()),
        ];
        metrics::counter!("cruscotto_mqtt_readings_stored_total", &labels)
            .increment(counts.rows as u64);
        metrics::counter!("cruscotto_mqtt_readings_duplicate_total", &labels)
            .increment(counts.duplicates as u64);
        if counts.conflicts > 0 {
            metrics::counter!("cruscotto_mqtt_rejected_total", "schema" => schema.to_string(), "table" => table.layout.table.clone(), "reason" => RejectKind::Conflict.as_str())
                .increment(counts.conflicts as u64);
        }
    }
    if let Ok(prepared) = prepared {
        if prepared.redelivered > 0 {
            metrics::counter!("cruscotto_mqtt_redeliveries_total", "schema" => schema.to_string())
                .increment(prepared.redelivered as u64);
        }
    }
    // Counted per group, not per message: a metric lookup per reading would cost more than the
    // rest of its way to the WAL.
    let mut messages: std::collections::BTreeMap<(usize, &'static str), u64> = Default::default();
    let mut rejected: std::collections::BTreeMap<(usize, &'static str), u64> = Default::default();
    for delivery in group {
        match &delivery.outcome {
            Ok(_) if delivery.redelivered => {
                *messages.entry((delivery.table, "redelivered")).or_default() += 1
            }
            Ok(_) => *messages.entry((delivery.table, "stored")).or_default() += 1,
            Err(rejection) => {
                *messages.entry((delivery.table, "rejected")).or_default() += 1;
                *rejected
                    .entry((delivery.table, rejection.kind.as_str()))
                    .or_default() += 1;
            }
        }
    }
    for ((table, outcome), count) in messages {
        let table = tables[table].layout.table.clone();
        metrics::counter!("cruscotto_mqtt_messages_total", "schema" => schema.to_string(), "table" => table, "outcome" => outcome).increment(count);
    }
    for ((table, reason), count) in rejected {
        let table = tables[table].layout.table.clone();
        metrics::counter!("cruscotto_mqtt_rejected_total", "schema" => schema.to_string(), "table" => table, "reason" => reason)
            .increment(count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::QoS;

    #[test]
    fn an_excerpt_is_bounded_whatever_the_payload() {
        for size in [0, 10, MAX_RAW_RECORD, MAX_RAW_RECORD + 1, 2 << 20, 50 << 20] {
            let payload: Vec<u8> = (0..size).map(|i| b"{\"v\":1}"[i % 7]).collect();
            let text = excerpt(&payload);
            assert!(text.len() <= MAX_RAW_RECORD + '…'.len_utf8(), "{size}");
            assert!(
                payload.starts_with(text.trim_end_matches('…').as_bytes()),
                "{size}"
            );
            assert_eq!(text.ends_with('…'), size > MAX_RAW_RECORD, "{size}");
        }
        // A multi-byte character cut at the boundary is not split.
        let payload = "è".repeat(MAX_RAW_RECORD);
        assert!(
            excerpt(payload.as_bytes())
                .trim_end_matches('…')
                .chars()
                .all(|c| c == 'è')
        );
    }

    #[test]
    fn the_message_key_covers_topic_packet_id_and_payload() {
        let publish = |topic: &str, pkid: u16, payload: &[u8]| {
            let mut p = Publish::new(topic, QoS::AtLeastOnce, payload.to_vec());
            p.pkid = pkid;
            p
        };
        let base = message_key(&publish("a/b", 1, b"{}"));
        let mut redelivered = publish("a/b", 1, b"{}");
        redelivered.dup = true;
        assert_eq!(message_key(&redelivered), base);
        let mut keys = HashSet::new();
        for (topic, pkid, payload) in [
            ("a/b", 1, &b"{}"[..]),
            ("a/b", 2, b"{}"),
            ("a/bx", 1, b"{}"),
            ("a/b{", 1, b"}"),
            ("a/b", 1, b"{} "),
        ] {
            assert!(keys.insert(message_key(&publish(topic, pkid, payload))));
        }
    }
}
