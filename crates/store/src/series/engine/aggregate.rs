//! Aggregate queries over one series' sources: sealed chunks (through
//! their rollups where nothing else overlaps them) and loose points.

use std::collections::BTreeMap;

use tributary_model::Value;

use super::block::Block;
use super::chunk::Entry;
use super::merge::merge_runs;
use super::rollup::Acc;

/// For each (min, max) range, whether another range overlaps it; sorted by
/// start, a range meets an earlier one when the largest earlier end reaches
/// it, and a later one when the next start does.
fn overlapping(ranges: &[(i64, i64)]) -> Vec<bool> {
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&k| ranges[k]);
    let mut out = vec![false; ranges.len()];
    let mut reach = i64::MIN;
    for (n, &k) in order.iter().enumerate() {
        let (lo, hi) = ranges[k];
        let before = n > 0 && reach >= lo;
        let after = order.get(n + 1).is_some_and(|&j| ranges[j].0 <= hi);
        out[k] = before || after;
        reach = reach.max(hi);
    }
    out
}

/// One series' sources for an aggregate: sealed chunks, frozen and head points.
pub struct AggSources {
    /// Sealed chunks.
    pub chunks: Vec<(std::sync::Arc<Block>, usize)>,
    /// Points not in blocks (frozen, then head), each run sorted by time.
    pub loose: Vec<Vec<Entry>>,
}

/// Aggregates one series over [from, to] into `interval` buckets. A chunk
/// whose time range no other source overlaps (so no point in it was
/// overwritten elsewhere) and that lies inside the range is read through its
/// rollup when `interval` is a multiple of one; everything else from points,
/// merged so the newest write of a timestamp counts once.
pub fn aggregate(src: AggSources, from: i64, to: i64, interval: i64) -> BTreeMap<i64, Acc> {
    let ranges: Vec<(i64, i64)> = src
        .chunks
        .iter()
        .map(|(b, i)| {
            b.index
                .get(*i)
                .map_or((i64::MAX, i64::MIN), |e| (e.min_ts, e.max_ts))
        })
        .collect();
    let (loose_min, loose_max) = src
        .loose
        .iter()
        .flatten()
        .fold((i64::MAX, i64::MIN), |(lo, hi), (ts, _, _)| {
            (lo.min(*ts), hi.max(*ts))
        });
    let shared = overlapping(&ranges);
    let overlaps = |k: usize| {
        let (lo, hi) = ranges[k];
        (loose_min <= hi && loose_max >= lo) || shared[k]
    };
    let mut out: BTreeMap<i64, Acc> = BTreeMap::new();
    let mut add = |ts: i64, v: &Value| {
        out.entry(ts.div_euclid(interval))
            .or_insert_with(Acc::empty)
            .add(ts, v);
    };
    // Points of overlapping chunks and the loose ones, merged like a query's.
    let mut runs: Vec<Vec<Entry>> = Vec::new();
    let mut rolled: Vec<(i64, Acc)> = Vec::new();
    for (k, (block, i)) in src.chunks.iter().enumerate() {
        let (lo, hi) = ranges[k];
        if hi < from || lo > to {
            continue;
        }
        let clean = !overlaps(k);
        let usable = clean && lo >= from && hi <= to;
        if let (true, Some(r)) = (usable, block.rollup_for(*i, interval)) {
            match block.read_rollup(*i, r) {
                Ok(buckets) => {
                    rolled.extend(
                        buckets
                            .into_iter()
                            .map(|(b, acc)| ((b * r).div_euclid(interval), acc)),
                    );
                    continue;
                }
                Err(e) => tracing::error!(error = %e, "rollup unreadable; reading the points"),
            }
        }
        match block.read(*i) {
            Ok(mut points) => {
                points.retain(|p| p.0 >= from && p.0 <= to);
                if clean {
                    for (ts, v, _) in &points {
                        add(*ts, v);
                    }
                } else {
                    runs.push(points);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "time-series chunk unreadable; left out of the answer")
            }
        }
    }
    for mut run in src.loose {
        run.retain(|p| p.0 >= from && p.0 <= to);
        runs.push(run);
    }
    for (ts, v, _) in merge_runs(runs) {
        add(ts, &v);
    }
    for (b, acc) in rolled {
        out.entry(b).or_insert_with(Acc::empty).merge(&acc);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_ranges_are_found_in_any_order() {
        let ranges = [
            (10, 20),
            (0, 5),
            (21, 30),
            (25, 26),
            (40, 50),
            (6, 9),
            (50, 60),
        ];
        assert_eq!(
            overlapping(&ranges),
            vec![false, false, true, true, true, false, true]
        );
        assert_eq!(overlapping(&[(1, 1), (1, 1)]), vec![true, true]);
        assert_eq!(overlapping(&[]), Vec::<bool>::new());
    }
}
