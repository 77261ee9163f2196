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
    /// Normalize had no backlog on the partition (it was at most a batch behind the
    /// high watermark) when it published this.
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
    ///
    /// Not once the partition itself has been silent that long, which would cut the
    /// wait behind a quiet source under load from `max_hold` to `idle`: tried on
    /// 2026-12-06, that rule released uses ahead of an Entra departure in
    /// `tests/kafka_pipeline.rs` (two processes in one group), every run. The likely
    /// cause: tansu 0.6 reports a partition's high watermark as its last batch's base
    /// offset, so normalize can report "caught up" before it has read that batch.
    idle: Duration,
    /// … or once the event waited this long (`[run] quiet_source_wait_ms`); a use of
    /// a credential the graph already knows does not wait for a quiet partition.
    quiet_wait: Duration,
    /// The longest an event waits for a partition normalize is behind on.
    max_hold: Duration,
}

impl Gate {
    pub(crate) fn new(
        partitions: Vec<(String, i32)>,
        idle: Duration,
        quiet_wait: Duration,
        max_hold: Duration,
    ) -> Self {
        Self {
            partitions,
            marks: HashMap::new(),
            last_progress: Instant::now(),
            idle,
            quiet_wait,
            max_hold,
        }
    }

    /// Takes in a watermark read from the identity topic.
    pub(crate) fn update(&mut self, w: SourceWatermark) {
        self.update_at(w, Instant::now());
    }

    /// [`Gate::update`] at `now`: a partition progresses when normalize's next offset
    /// or its caught-up state changes (a republished, unchanged watermark is no
    /// progress).
    fn update_at(&mut self, w: SourceWatermark, now: Instant) {
        let key = (w.topic.clone(), w.partition);
        match self.marks.get_mut(&key) {
            Some(m) => {
                if m.next_offset != w.next_offset || m.caught_up != w.caught_up {
                    self.last_progress = now;
                }
                // A restarted normalize may publish an older time: what an earlier
                // watermark promised stays true.
                m.time_us = m.time_us.max(w.time_us);
                m.next_offset = w.next_offset;
                m.caught_up = w.caught_up;
            }
            None => {
                self.last_progress = now;
                if !self.partitions.contains(&key) {
                    self.partitions.push(key.clone());
                }
                self.marks.insert(key, w);
            }
        }
    }

    /// True when an event at `time_us`, held since `since`, may be processed;
    /// `known`: the graph already knows the event's credential (or it has none).
    ///
    /// A partition normalize is behind on (a backlog) holds the event until it
    /// passes the event's time, at most `max_hold`: while catching up, order costs
    /// little. A partition that is caught up but behind in event time (a quiet
    /// source, or one that delivers late, as CloudTrail does by minutes) holds only
    /// the uses of credentials the graph does not know yet, for at most
    /// `quiet_wait` (or until nothing progresses for `idle`): everything else goes at
    /// once, and a fact that comes later is a late fact, re-evaluated then (see
    /// [`crate::AttributeStage::apply_identity_fact`]).
    pub(crate) fn releases(&self, time_us: i64, since: Instant, known: bool) -> bool {
        self.releases_at(time_us, since, known, Instant::now())
    }

    /// True when a partition normalize is behind on holds an event at `time_us`,
    /// held since `since` (then every later event waits too).
    pub(crate) fn backlog_holds(&self, time_us: i64, since: Instant) -> bool {
        Instant::now().saturating_duration_since(since) < self.max_hold
            && self.partitions.iter().any(|key| {
                self.marks
                    .get(key)
                    .is_some_and(|m| m.time_us < time_us && !m.caught_up)
            })
    }

    /// [`Gate::releases`] at `now`.
    fn releases_at(&self, time_us: i64, since: Instant, known: bool, now: Instant) -> bool {
        let waited = now.saturating_duration_since(since);
        let mut waits_on_quiet = false;
        for key in &self.partitions {
            match self.marks.get(key) {
                Some(m) if m.time_us >= time_us => {}
                Some(m) if !m.caught_up => return waited >= self.max_hold,
                // Caught up, or never reported (no normalize has owned it yet).
                _ => waits_on_quiet = true,
            }
        }
        !waits_on_quiet
            || known
            || now.saturating_duration_since(self.last_progress) >= self.idle
            || waited >= self.quiet_wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(2);
    const QUIET_WAIT: Duration = Duration::from_secs(30);
    const MAX_HOLD: Duration = Duration::from_secs(7200);

    fn mark(topic: &str, time_us: i64, next_offset: i64, caught_up: bool) -> SourceWatermark {
        SourceWatermark {
            topic: topic.to_owned(),
            partition: 0,
            time_us,
            next_offset,
            caught_up,
        }
    }

    fn gate(topics: &[&str]) -> Gate {
        let partitions = topics.iter().map(|t| (t.to_string(), 0)).collect();
        Gate::new(partitions, IDLE, QUIET_WAIT, MAX_HOLD)
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn an_event_waits_until_every_partition_has_passed_its_time() {
        let t0 = Instant::now();
        let mut g = gate(&["cloudtrail", "entra"]);
        g.update_at(mark("cloudtrail", 100, 10, false), t0);
        g.update_at(mark("entra", 50, 3, false), t0);
        // Entra is behind in time and normalize is behind on it: held however long.
        assert!(!g.releases_at(80, t0, false, t0 + secs(3600)));
        assert!(g.releases_at(50, t0, false, t0));
        g.update_at(mark("entra", 90, 4, false), t0 + secs(1));
        assert!(g.releases_at(80, t0, false, t0 + secs(1)));
        assert!(!g.releases_at(95, t0, false, t0 + secs(1)));
    }

    #[test]
    fn a_quiet_source_holds_events_while_another_progresses_until_max_hold() {
        let t0 = Instant::now();
        let mut g = gate(&["cloudtrail", "entra"]);
        g.update_at(mark("entra", 50, 3, true), t0);
        // CloudTrail progresses every 100 ms; Entra, caught up, says nothing new.
        for step in 0..=400 {
            let now = t0 + Duration::from_millis(100 * step);
            g.update_at(
                mark("cloudtrail", 1_000 + step as i64, 10 + step as i64, false),
                now,
            );
            assert_eq!(
                g.releases_at(1_000, t0, false, now),
                now >= t0 + QUIET_WAIT,
                "at {step}"
            );
        }
        // Once no partition has progressed for the idle time, it goes at once.
        let last = t0 + Duration::from_millis(40_000);
        assert!(!g.releases_at(1_200, last, false, last + Duration::from_millis(1_900)));
        assert!(g.releases_at(1_200, last, false, last + IDLE));
        // A republished, unchanged watermark is not progress.
        g.update_at(mark("entra", 50, 3, true), last + IDLE);
        assert!(g.releases_at(1_200, last, false, last + IDLE));
    }

    #[test]
    fn a_partition_that_never_reported_holds_events_until_nothing_progresses() {
        let t0 = Instant::now();
        let mut g = gate(&["cloudtrail", "vault"]);
        g.update_at(mark("cloudtrail", 100, 10, true), t0);
        g.update_at(mark("cloudtrail", 200, 11, true), t0 + secs(1));
        assert!(!g.releases_at(150, t0, false, t0 + secs(2)));
        assert!(g.releases_at(150, t0, false, t0 + secs(3)));
        // The quiet wait releases whatever is waiting on a silent partition.
        g.update_at(mark("cloudtrail", 300, 12, true), t0 + secs(40));
        assert!(g.releases_at(250, t0 + secs(10), false, t0 + secs(40)));
        assert!(!g.releases_at(250, t0 + secs(20), false, t0 + secs(40)));
    }

    /// A gate over `topics` after `updates` (topic, time, next offset, caught up,
    /// seconds after the returned start).
    fn gate_after(topics: &[&str], updates: &[(&str, i64, i64, bool, u64)]) -> (Gate, Instant) {
        let t0 = Instant::now();
        let mut g = gate(topics);
        for &(topic, time_us, next_offset, caught_up, at) in updates {
            g.update_at(mark(topic, time_us, next_offset, caught_up), t0 + secs(at));
        }
        (g, t0)
    }

    #[test]
    fn a_restarted_normalize_does_not_take_back_a_promised_time() {
        let (g, t0) = gate_after(
            &["cloudtrail"],
            &[
                ("cloudtrail", 500, 10, false, 0),
                ("cloudtrail", 200, 8, false, 1),
            ],
        );
        assert!(g.releases_at(400, t0 + secs(1), false, t0 + secs(1)));
        assert!(!g.releases_at(600, t0 + secs(1), false, t0 + secs(3600)));
    }

    #[test]
    fn a_watermark_of_an_unlisted_partition_is_waited_for() {
        let (g, t0) = gate_after(
            &["cloudtrail"],
            &[
                ("cloudtrail", 500, 10, false, 0),
                ("github", 100, 2, false, 0),
            ],
        );
        assert!(!g.releases_at(300, t0, false, t0 + secs(3600)));
    }

    #[test]
    fn a_quiet_partition_does_not_hold_a_use_of_a_known_credential() {
        let t0 = Instant::now();
        let mut g = gate(&["cloudtrail", "entra"]);
        g.update_at(mark("entra", 50, 3, true), t0);
        g.update_at(mark("cloudtrail", 1_000, 10, false), t0);
        // Entra is caught up but behind in time: a known credential's use goes at
        // once, an unknown one waits for Entra's facts (at most the quiet wait).
        assert!(g.releases_at(1_000, t0, true, t0));
        assert!(!g.releases_at(1_000, t0, false, t0 + secs(1)));
        // A backlog is waited for, known or not, at most max_hold.
        g.update_at(mark("entra", 50, 3, false), t0 + secs(1));
        assert!(!g.releases_at(1_000, t0, true, t0 + secs(1)));
        assert!(g.releases_at(1_000, t0, true, t0 + MAX_HOLD));
    }
}
