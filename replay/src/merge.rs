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
use std::collections::{BinaryHeap, HashMap, VecDeque};
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
    records: VecDeque<(Key, Normalized)>,
}

/// Parses `inputs` on `pool` (`parse(i)` for input `i`), merges their records in
/// event-time order and hands them to `emit`; `on_file` receives each parsed file
/// (with its records taken out) in merge order, for counts and dead letters.
pub(crate) fn merge<E>(
    inputs: &[MergeInput],
    pool: &rayon::ThreadPool,
    lookahead: usize,
    parse: impl Fn(usize) -> ParsedFile + Sync,
    mut on_file: impl FnMut(usize, ParsedFile) -> Result<(), E>,
    mut emit: impl FnMut(Normalized) -> Result<(), E>,
) -> Result<MergeStats, E> {
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by_key(|&i| (inputs[i].lower_bound, inputs[i].rank));
    let lookahead = lookahead.max(1);
    let mut stats = MergeStats::default();
    let parse = &parse;
    pool.in_place_scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, ParsedFile, Vec<(Key, Normalized)>)>();
        let mut dispatched = 0usize;
        let mut arrived: HashMap<usize, (ParsedFile, Vec<(Key, Normalized)>)> = HashMap::new();
        let mut streams: Vec<Stream> = Vec::new();
        let mut heap: BinaryHeap<Reverse<(Key, usize)>> = BinaryHeap::new();
        let mut buffered_records = 0u64;
        let mut released_up_to = i64::MIN;
        let mut result = Ok(());
        for (step, &input) in order.iter().enumerate() {
            while dispatched < order.len() && dispatched < step + lookahead {
                let i = order[dispatched];
                let rank = inputs[i].rank;
                let tx = tx.clone();
                scope.spawn(move |_| {
                    let mut file = parse(i);
                    let mut keyed: Vec<(Key, Normalized)> = file
                        .records
                        .drain(..)
                        .enumerate()
                        .map(|(n, r)| {
                            let key = (
                                r.use_.time.timestamp_micros(),
                                u8::from(r.facts.is_empty()),
                                rank,
                                n as u32,
                            );
                            (key, r)
                        })
                        .collect();
                    keyed.sort_unstable_by_key(|(k, _)| *k);
                    // The merge may have stopped on an error; nothing to deliver to then.
                    let _ = tx.send((i, file, keyed));
                });
                dispatched += 1;
            }
            let in_flight = (dispatched - step) as u64;
            let (file, keyed) = loop {
                if let Some(done) = arrived.remove(&input) {
                    break done;
                }
                let (i, file, keyed) = rx.recv().expect("a parse worker always reports");
                arrived.insert(i, (file, keyed));
            };
            if result.is_err() {
                continue;
            }
            stats.late_records += keyed.iter().filter(|(k, _)| k.0 < released_up_to).count() as u64;
            if let Err(e) = on_file(input, file) {
                result = Err(e);
                continue;
            }
            buffered_records += keyed.len() as u64;
            let mut records: VecDeque<_> = keyed.into();
            if let Some(first) = records.pop_front() {
                let slot = streams.len();
                heap.push(Reverse((first.0, slot)));
                records.push_front(first);
                streams.push(Stream { records });
            }
            let open = streams.iter().filter(|s| !s.records.is_empty()).count() as u64;
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
                let (_, record) = stream.records.pop_front().expect("heap entry has a record");
                if let Some((next, _)) = stream.records.front() {
                    heap.push(Reverse((*next, slot)));
                } else {
                    // Release the emptied stream's buffer now, not at the end.
                    stream.records = VecDeque::new();
                }
                buffered_records -= 1;
                released_up_to = released_up_to.max(key.0);
                if let Err(e) = emit(record) {
                    result = Err(e);
                    heap.clear();
                    break;
                }
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
            |r| {
                out.push(r.use_.time.timestamp());
                Ok(())
            },
        )
        .unwrap();
        (out, stats, seen)
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
