//! The event-time merge with bounded memory.
//!
//! Replay must hand records to the graph in event-time order (a session's
//! `AssumeRole` before its first use), across files and sources, without holding the
//! whole archive in memory. Archives are written roughly in time order and their
//! names say when: CloudTrail's `…_20240102T0305Z_….json.gz`, dated directories
//! (`…/2024/01/02/`), dated file names (`audit-2024-01-02.log`). So:
//!
//! 1. Every file gets a *lower bound*: its name's time minus the merge window
//!    (default one hour, to cover delivery delay); a file whose name gives no time
//!    gets −∞ and is read before anything is released.
//! 2. Files are parsed in parallel in lower-bound order, at most `lookahead` ahead of
//!    the merge; each worker sorts its file's records (a per-file sorted stream).
//! 3. A k-way merge (a binary heap over the streams' heads) releases a record once
//!    its time is below the lower bound of the next unread file: nothing not yet read
//!    can come before it.
//!
//! Memory is bounded by the files in the look-ahead plus the files whose records
//! reach past the next file's lower bound, not by the archive: `MergeStats` reports
//! the peak, and a test holds 100 shuffled files to it. A record older than its
//! file's lower bound, which the release point has already passed, is still
//! delivered, right away, and counted as late; the run's summary says so, with the
//! remedy (a wider `--merge-window`).
//!
//! Ties are broken as a full sort would: time, then lineage-changing records first,
//! then input order (files by name), then position in the file. Output is therefore
//! the same whether files come from disk or S3 and whatever order they are given in.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::sync::mpsc;

use lineage_ingest::Normalized;

use crate::ParsedFile;

/// Sort key of a record: (event time µs, 0 when it changes lineage else 1, file rank, index).
type Key = (i64, u8, u32, u32);

/// How the merge went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MergeStats {
    /// Most records held in the merge at once (parsed, not yet released).
    pub peak_buffered_records: u64,
    /// Most files held at once (parsed or being parsed, not fully released).
    pub peak_buffered_files: u64,
    /// Records older than what had already been released (delivered out of order).
    pub late_records: u64,
}

/// One input to merge: its rank in name order and its lower bound (µs, or `i64::MIN`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct MergeInput {
    pub(crate) rank: u32,
    pub(crate) lower_bound: i64,
}

struct Stream {
    /// Records the file had (including those a resume skipped).
    total: u64,
    /// The file's records in its own order; each is taken out once, when released.
    records: Vec<Option<Normalized>>,
    /// Keys of the records not yet released, in sort order (the last field of a key
    /// is the record's index in `records`).
    pending: VecDeque<Key>,
}

/// One parsed file's records with their keys sorted. Only the 24-byte keys are
/// sorted: sorting the records themselves (hundreds of bytes each) copied each of
/// them several times.
struct Sorted {
    records: Vec<Option<Normalized>>,
    keys: Vec<Key>,
}

impl Sorted {
    /// Keys the records of the file ranked `rank` (time, lineage-changing first,
    /// rank, index), sorts the keys and drops the first `skip` (released before a
    /// resume).
    fn new(records: Vec<Normalized>, rank: u32, skip: usize) -> Self {
        let mut keys: Vec<Key> = records
            .iter()
            .enumerate()
            .map(|(n, r)| {
                (
                    r.use_.time.timestamp_micros(),
                    u8::from(r.facts.is_empty()),
                    rank,
                    n as u32,
                )
            })
            .collect();
        keys.sort_unstable();
        keys.drain(..skip.min(keys.len()));
        Self {
            records: records.into_iter().map(Some).collect(),
            keys,
        }
    }
}

/// Where a merge stood after a step: the state a replay checkpoint records so a
/// resumed merge releases exactly the records the interrupted one had not.
///
/// After step `s` every file of the first `s` in lower-bound order has been taken in
/// (its counts and dead letters handed to `on_file`); of those, `finished` files are
/// fully released and `released` says how many of each other file's sorted records
/// were. The records still held all sort at or after the next file's lower bound,
/// so a resumed merge (which skips them) releases the rest in the same order.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MergeCursor {
    /// Files taken into the merge.
    pub steps: u64,
    /// Ranks (input order) of the taken files whose records were all released.
    pub finished: BTreeSet<u32>,
    /// Records released so far per taken, unfinished file rank.
    pub released: BTreeMap<u32, u64>,
    /// Latest record time released (µs), for counting late records.
    pub released_up_to: i64,
    /// The merge's statistics so far.
    pub stats: MergeStats,
}

/// What the merge hands its consumer.
#[allow(clippy::large_enum_variant)] // boxing every record would cost an allocation per record
pub(crate) enum Merged<'a> {
    /// The next record in event-time order.
    Record(Normalized),
    /// A step is complete: a checkpoint may be taken here, its cursor computed on demand.
    Step(&'a dyn Fn() -> MergeCursor),
}

/// Parses `inputs` on `pool` (`parse(i)` for input `i`), merges their records in
/// event-time order and hands them to `emit`, with a [`Merged::Step`] after each
/// file taken in; `on_file` receives each parsed file (with its records taken out)
/// in merge order, for counts and dead letters. With `resume`, the merge continues
/// from that cursor: finished files are not read, the others' released records are
/// skipped, and `on_file` is not called again for files already taken in.
pub(crate) fn merge<E>(
    inputs: &[MergeInput],
    pool: &rayon::ThreadPool,
    lookahead: usize,
    resume: Option<&MergeCursor>,
    parse: impl Fn(usize) -> ParsedFile + Sync,
    mut on_file: impl FnMut(usize, ParsedFile) -> Result<(), E>,
    mut emit: impl FnMut(Merged<'_>) -> Result<(), E>,
) -> Result<MergeStats, E> {
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by_key(|&i| (inputs[i].lower_bound, inputs[i].rank));
    let lookahead = lookahead.max(1);
    let empty = MergeCursor::default();
    let resume = resume.unwrap_or(&empty);
    let mut stats = resume.stats;
    let parse = &parse;
    pool.in_place_scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, ParsedFile, Sorted)>();
        let mut dispatched = 0usize;
        let mut arrived: HashMap<usize, (ParsedFile, Sorted)> = HashMap::new();
        let mut streams: Vec<Stream> = Vec::new();
        let mut heap: BinaryHeap<Reverse<(Key, usize)>> = BinaryHeap::new();
        let mut buffered_records = 0u64;
        let mut released_up_to = if resume.steps > 0 {
            resume.released_up_to
        } else {
            i64::MIN
        };
        // The stream of each step's file (none when it had no records).
        let mut stream_of_step: Vec<Option<usize>> = Vec::with_capacity(order.len());
        let mut result = Ok(());
        for (step, &input) in order.iter().enumerate() {
            while dispatched < order.len() && dispatched < step + lookahead {
                let i = order[dispatched];
                let rank = inputs[i].rank;
                let tx = tx.clone();
                let finished = resume.finished.contains(&rank);
                let skip = resume.released.get(&rank).copied().unwrap_or(0) as usize;
                scope.spawn(move |_| {
                    if finished {
                        let empty = Sorted::new(Vec::new(), rank, 0);
                        let _ = tx.send((i, ParsedFile::default(), empty));
                        return;
                    }
                    let mut file = parse(i);
                    let sorted = Sorted::new(std::mem::take(&mut file.records), rank, skip);
                    // The merge may have stopped on an error; nothing to deliver to then.
                    let _ = tx.send((i, file, sorted));
                });
                dispatched += 1;
            }
            let in_flight = (dispatched - step) as u64;
            let (file, sorted) = loop {
                if let Some(done) = arrived.remove(&input) {
                    break done;
                }
                let (i, file, sorted) = rx.recv().expect("a parse worker always reports");
                arrived.insert(i, (file, sorted));
            };
            if result.is_err() {
                continue;
            }
            let taken_before = (step as u64) < resume.steps;
            if !taken_before {
                stats.late_records +=
                    sorted.keys.iter().filter(|k| k.0 < released_up_to).count() as u64;
                if let Err(e) = on_file(input, file) {
                    result = Err(e);
                    continue;
                }
            }
            buffered_records += sorted.keys.len() as u64;
            if let Some(&first) = sorted.keys.first() {
                let slot = streams.len();
                heap.push(Reverse((first, slot)));
                let skipped = resume
                    .released
                    .get(&inputs[input].rank)
                    .copied()
                    .unwrap_or(0);
                streams.push(Stream {
                    total: sorted.keys.len() as u64 + skipped,
                    records: sorted.records,
                    pending: sorted.keys.into(),
                });
                stream_of_step.push(Some(slot));
            } else {
                stream_of_step.push(None);
            }
            let open = streams.iter().filter(|s| !s.pending.is_empty()).count() as u64;
            stats.peak_buffered_records = stats.peak_buffered_records.max(buffered_records);
            stats.peak_buffered_files = stats.peak_buffered_files.max(open + in_flight - 1);
            let release_below = order
                .get(step + 1)
                .map_or(i64::MAX, |&next| inputs[next].lower_bound);
            while let Some(Reverse((key, slot))) = heap.peek().copied() {
                if key.0 >= release_below && release_below != i64::MAX {
                    break;
                }
                heap.pop();
                let stream = &mut streams[slot];
                stream.pending.pop_front();
                let record = stream.records[key.3 as usize]
                    .take()
                    .expect("each record is released once");
                if let Some(&next) = stream.pending.front() {
                    heap.push(Reverse((next, slot)));
                } else {
                    // Release the emptied stream's buffers now, not at the end.
                    stream.records = Vec::new();
                    stream.pending = VecDeque::new();
                }
                buffered_records -= 1;
                released_up_to = released_up_to.max(key.0);
                if let Err(e) = emit(Merged::Record(record)) {
                    result = Err(e);
                    heap.clear();
                    break;
                }
            }
            // Steps a resumed merge redoes are not checkpoints: the state they would
            // record is older than the cursor it resumed from.
            if result.is_err() || (step as u64) + 1 < resume.steps {
                continue;
            }
            let cursor = || {
                let mut c = MergeCursor {
                    steps: step as u64 + 1,
                    released_up_to,
                    stats,
                    ..MergeCursor::default()
                };
                for (j, slot) in stream_of_step.iter().enumerate() {
                    let rank = inputs[order[j]].rank;
                    match slot.map(|s| &streams[s]) {
                        Some(s) if !s.pending.is_empty() => {
                            c.released.insert(rank, s.total - s.pending.len() as u64);
                        }
                        _ => {
                            c.finished.insert(rank);
                        }
                    }
                }
                c
            };
            if let Err(e) = emit(Merged::Step(&cursor)) {
                result = Err(e);
                heap.clear();
            }
        }
        result
    })?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lineage_core::{Provenance, Source};

    fn record(t: i64, id: &str) -> Normalized {
        let time = chrono::DateTime::from_timestamp(t, 0).unwrap().to_rfc3339();
        let json = format!(
            r#"{{"eventVersion":"1.08","eventID":"{id}","eventTime":"{time}","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1","userIdentity":{{"type":"IAMUser","accessKeyId":"AKIAEXAMPLE","userName":"u"}}}}"#
        );
        lineage_ingest::parser_for(Source::CloudTrail)
            .unwrap()
            .parse_record(json.as_bytes(), Provenance::file("f", 0))
            .unwrap()
    }

    fn pool() -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap()
    }

    /// Files of `per_file` records each, file `f` covering [f*100, f*100+99] seconds
    /// in a shuffled order inside the file.
    fn files(n: usize, per_file: usize) -> Vec<Vec<i64>> {
        (0..n)
            .map(|f| {
                let mut times: Vec<i64> = (0..per_file)
                    .map(|j| (f * 100) as i64 + ((j * 37) % 100) as i64)
                    .collect();
                times.rotate_left(f % per_file.max(1));
                times
            })
            .collect()
    }

    fn run(
        times: &[Vec<i64>],
        bounds: &[i64],
        lookahead: usize,
    ) -> (Vec<i64>, MergeStats, Vec<usize>) {
        let inputs: Vec<MergeInput> = bounds
            .iter()
            .enumerate()
            .map(|(i, &b)| MergeInput {
                rank: i as u32,
                lower_bound: b,
            })
            .collect();
        let mut out = Vec::new();
        let mut seen = Vec::new();
        let stats = merge::<()>(
            &inputs,
            &pool(),
            lookahead,
            None,
            |i| ParsedFile {
                records: times[i]
                    .iter()
                    .map(|&t| record(t, &format!("{i}-{t}")))
                    .collect(),
                ..ParsedFile::default()
            },
            |i, _| {
                seen.push(i);
                Ok(())
            },
            |m| {
                if let Merged::Record(r) = m {
                    out.push(r.use_.time.timestamp());
                }
                Ok(())
            },
        )
        .unwrap();
        (out, stats, seen)
    }

    /// Merges from `resume`, returning the released times (with a `-1` marker after
    /// each step), the cursors after each step, and the files `on_file` saw.
    fn run_from(
        times: &[Vec<i64>],
        bounds: &[i64],
        resume: Option<&MergeCursor>,
    ) -> (Vec<i64>, Vec<MergeCursor>, Vec<usize>) {
        let inputs: Vec<MergeInput> = bounds
            .iter()
            .enumerate()
            .map(|(i, &b)| MergeInput {
                rank: i as u32,
                lower_bound: b,
            })
            .collect();
        let (mut out, mut cursors, mut seen) = (Vec::new(), Vec::new(), Vec::new());
        merge::<()>(
            &inputs,
            &pool(),
            2,
            resume,
            |i| ParsedFile {
                records: times[i]
                    .iter()
                    .map(|&t| record(t, &format!("{i}-{t}")))
                    .collect(),
                ..ParsedFile::default()
            },
            |i, _| {
                seen.push(i);
                Ok(())
            },
            |m| {
                match m {
                    Merged::Record(r) => out.push(r.use_.time.timestamp()),
                    Merged::Step(cursor) => {
                        out.push(-1);
                        cursors.push(cursor());
                    }
                }
                Ok(())
            },
        )
        .unwrap();
        (out, cursors, seen)
    }

    #[test]
    fn a_merge_resumed_from_any_step_releases_exactly_the_rest() {
        // Overlapping files (records reach past the next file's bound), one empty
        // file and one late record.
        let times = vec![
            vec![10, 150, 20],
            vec![],
            vec![120, 260, 110, 5],
            vec![210, 390, 220],
            vec![300, 330],
        ];
        let bounds = [0, 50, 100, 200, 300].map(|b: i64| b * 1_000_000);
        let (full, cursors, _) = run_from(&times, &bounds, None);
        let records = |v: &[i64]| v.iter().copied().filter(|&t| t >= 0).collect::<Vec<_>>();
        for (s, cursor) in cursors.iter().enumerate() {
            // What the interrupted run had released when it checkpointed after step s.
            let cut = full
                .iter()
                .enumerate()
                .filter(|(_, &t)| t == -1)
                .nth(s)
                .unwrap()
                .0;
            let (rest, _, seen) = run_from(&times, &bounds, Some(cursor));
            let mut joined = records(&full[..cut]);
            joined.extend(records(&rest));
            assert_eq!(joined, records(&full), "resumed after step {s}");
            assert_eq!(rest.iter().filter(|&&t| t == -1).count(), times.len() - s);
            assert!(
                seen.iter().all(|&i| i > s),
                "on_file called again for a file taken before the checkpoint: {seen:?}"
            );
            assert_eq!(seen.len(), times.len() - s - 1);
        }
        assert_eq!(cursors.last().unwrap().finished.len(), times.len());
        assert_eq!(cursors.last().unwrap().stats.late_records, 1);
    }

    #[test]
    fn merged_output_is_sorted_and_memory_stays_within_the_lookahead() {
        let times = files(100, 50);
        // Inputs given in a shuffled order; bounds from their "names".
        let mut shuffled: Vec<usize> = (0..100).collect();
        shuffled.sort_by_key(|i| (i * 7919) % 101);
        let given: Vec<Vec<i64>> = shuffled.iter().map(|&i| times[i].clone()).collect();
        let bounds: Vec<i64> = shuffled
            .iter()
            .map(|&i| (i * 100) as i64 * 1_000_000)
            .collect();
        let (out, stats, seen) = run(&given, &bounds, 4);
        assert_eq!(out.len(), 5000);
        assert!(out.windows(2).all(|w| w[0] <= w[1]), "not in time order");
        assert_eq!(stats.late_records, 0);
        // 100 files of 50 records: the merge never holds more than the look-ahead.
        assert!(stats.peak_buffered_files <= 4, "{stats:?}");
        assert!(stats.peak_buffered_records <= 4 * 50, "{stats:?}");
        // Files were visited in time order, not in the order given.
        let visited: Vec<usize> = seen.iter().map(|&i| shuffled[i]).collect();
        assert_eq!(visited, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn files_without_a_time_are_read_first_and_records_are_still_ordered() {
        let times = vec![vec![500, 10, 250], vec![20, 30], vec![400, 401]];
        let bounds = [i64::MIN, 0, 300 * 1_000_000];
        let (out, stats, _) = run(&times, &bounds, 1);
        assert_eq!(out, vec![10, 20, 30, 250, 400, 401, 500]);
        assert_eq!(stats.late_records, 0);
    }

    #[test]
    fn records_older_than_their_files_bound_are_delivered_and_counted_late() {
        // File 1 claims to start at 100 s but holds a record at 5 s.
        let times = vec![vec![10, 20], vec![5, 150], vec![300]];
        let bounds = [0, 100 * 1_000_000, 300 * 1_000_000];
        let (out, stats, _) = run(&times, &bounds, 1);
        assert_eq!(out.len(), 5);
        assert_eq!(stats.late_records, 1);
        assert_eq!(out, vec![10, 20, 5, 150, 300]);
    }
}
