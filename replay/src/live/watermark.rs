//! Cross-source event-time watermarks (see "Event-time order across sources" in
//! [`crate::live`]): normalize publishes, per raw partition, how far in event time
//! its facts are on `lineage.identity`; the graph stage holds each event until every
//! raw partition has passed the event's time (or is caught up and silent).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Header that marks a watermark record on the identity topic (value: `1`).
pub(crate) const WATERMARK_HEADER: &str = "lineage-watermark";

/// One normalize instance's progress on one raw partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SourceWatermark {
    /// The raw topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Every fact of this partition's records with an event time at or before this
    /// (µs since the epoch) is on the identity topic; `i64::MIN` before any record.
    pub time_us: i64,
    /// The next raw offset normalize will read.
    pub next_offset: i64,
    /// Normalize had read everything on the partition (and held nothing back) when it
    /// published this.
    pub caught_up: bool,
}

impl SourceWatermark {
    /// The record key (compaction keeps the latest per raw partition).
    pub(crate) fn key(&self) -> String {
        format!("watermark:{}:{}", self.topic, self.partition)
    }
}

/// What the graph stage knows about every raw partition's progress.
pub(crate) struct Gate {
    /// Every raw partition (from the topics' metadata).
    partitions: Vec<(String, i32)>,
    marks: HashMap<(String, i32), SourceWatermark>,
    last_progress: Instant,
    /// A caught-up partition counts as silent once no raw partition progressed for this long.
    idle: Duration,
    /// … or once the event waited this long.
    max_hold: Duration,
}

impl Gate {
    pub(crate) fn new(partitions: Vec<(String, i32)>, idle: Duration, max_hold: Duration) -> Self {
        Self {
            partitions,
            marks: HashMap::new(),
            last_progress: Instant::now(),
            idle,
            max_hold,
        }
    }

    /// Takes in a watermark read from the identity topic.
    pub(crate) fn update(&mut self, w: SourceWatermark) {
        let key = (w.topic.clone(), w.partition);
        match self.marks.get_mut(&key) {
            Some(m) => {
                if m.next_offset != w.next_offset || m.caught_up != w.caught_up {
                    self.last_progress = Instant::now();
                }
                // A restarted normalize may publish an older time: what an earlier
                // watermark promised stays true.
                m.time_us = m.time_us.max(w.time_us);
                m.next_offset = w.next_offset;
                m.caught_up = w.caught_up;
            }
            None => {
                self.last_progress = Instant::now();
                if !self.partitions.contains(&key) {
                    self.partitions.push(key.clone());
                }
                self.marks.insert(key, w);
            }
        }
    }

    /// True when an event at `time_us`, held since `since`, may be processed.
    pub(crate) fn releases(&self, time_us: i64, since: Instant) -> bool {
        let mut waits_on_silent = false;
        for key in &self.partitions {
            match self.marks.get(key) {
                Some(m) if m.time_us >= time_us => {}
                Some(m) if !m.caught_up => return false,
                // Caught up, or never reported (no normalize has owned it yet).
                _ => waits_on_silent = true,
            }
        }
        !waits_on_silent
            || self.last_progress.elapsed() >= self.idle
            || since.elapsed() >= self.max_hold
    }
}
