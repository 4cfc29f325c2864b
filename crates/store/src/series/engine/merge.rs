//! Merging runs of points, each sorted by timestamp, into one: for equal
//! timestamps the write with the highest LSN wins (for equal LSNs, the
//! later run). Queries, aggregates and compaction all merge this way.

use super::chunk::Entry;

/// The points of `runs` (each sorted by timestamp) as one sorted run.
pub fn merge_runs(mut runs: Vec<Vec<Entry>>) -> Vec<Entry> {
    runs.retain(|r| !r.is_empty());
    if runs.len() <= 1 {
        return runs.pop().unwrap_or_default();
    }
    let total = runs.iter().map(Vec::len).sum();
    let mut all = Vec::with_capacity(total);
    // Disjoint runs in time order (blocks sealed one after another) just follow each other.
    let disjoint = runs
        .windows(2)
        .all(|w| w[0].last().map(|p| p.0) < w[1].first().map(|p| p.0));
    for r in runs {
        all.extend(r);
    }
    if disjoint {
        return all;
    }
    // A stable sort keeps the run order among equal (timestamp, LSN) pairs,
    // and finds the sorted runs it is given.
    all.sort_by_key(|p| (p.0, p.2));
    let mut out: Vec<Entry> = Vec::with_capacity(all.len());
    for p in all {
        match out.last_mut() {
            Some(last) if last.0 == p.0 => *last = p,
            _ => out.push(p),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_model::Value;

    fn run(points: &[(i64, i64, u64)]) -> Vec<Entry> {
        points
            .iter()
            .map(|&(ts, v, lsn)| (ts, Value::Int(v), lsn))
            .collect()
    }

    #[test]
    fn disjoint_runs_follow_each_other() {
        let out = merge_runs(vec![
            run(&[(1, 1, 1), (2, 2, 1)]),
            vec![],
            run(&[(3, 3, 2)]),
        ]);
        assert_eq!(out, run(&[(1, 1, 1), (2, 2, 1), (3, 3, 2)]));
        assert!(merge_runs(vec![]).is_empty());
    }

    #[test]
    fn overlapping_runs_keep_the_newest_write() {
        let out = merge_runs(vec![
            run(&[(1, 10, 5), (3, 30, 1), (5, 50, 1)]),
            run(&[(1, 11, 4), (2, 20, 2), (3, 31, 2)]),
            run(&[(5, 51, 1), (6, 60, 3)]),
        ]);
        // ts 1: LSN 5 beats 4; ts 3: LSN 2 beats 1; ts 5: equal LSNs, the later run.
        assert_eq!(
            out,
            run(&[(1, 10, 5), (2, 20, 2), (3, 31, 2), (5, 51, 1), (6, 60, 3)])
        );
    }
}
