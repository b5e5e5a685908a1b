//! The keys of the messages a log table recorded lately: enough to recognise any message a
//! broker can deliver again.

use std::collections::{HashMap, VecDeque};

/// Message keys remembered per table: more than a broker can have in flight to one client
/// (MQTT packet ids are 16 bits), so every message that can be redelivered is in it.
pub const MESSAGE_WINDOW: usize = 32_768;

/// The keys of the last `MESSAGE_WINDOW` messages recorded, oldest first.
#[derive(Default)]
pub(super) struct MessageWindow {
    order: VecDeque<u64>,
    counts: HashMap<u64, u32>,
}

impl MessageWindow {
    pub(super) fn push(&mut self, key: u64) {
        self.order.push_back(key);
        *self.counts.entry(key).or_default() += 1;
        while self.order.len() > MESSAGE_WINDOW {
            let old = self.order.pop_front().expect("not empty");
            if let Some(count) = self.counts.get_mut(&old) {
                *count -= 1;
                if *count == 0 {
                    self.counts.remove(&old);
                }
            }
        }
    }

    pub(super) fn contains(&self, key: u64) -> bool {
        self.counts.contains_key(&key)
    }

    pub(super) fn to_bytes(&self) -> Vec<u8> {
        self.order.iter().flat_map(|k| k.to_le_bytes()).collect()
    }

    pub(super) fn extend_from_bytes(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks_exact(8) {
            self.push(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
    }
}
