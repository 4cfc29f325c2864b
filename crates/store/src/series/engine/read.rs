//! The query side: what a query reads for a series (blocks, the frozen
//! head, the live head), merged so the newest write of a timestamp wins,
//! and the engine's [`SeriesReader`].

use super::*;

impl Engine {
    /// Sources of one series for a query: sealed chunks, frozen and head points.
    pub(super) fn sources(s: &Series, from: i64, to: i64) -> Sources {
        if from > to {
            return Sources::empty(from, to);
        }
        Sources {
            from,
            to,
            chunks: s
                .chunks
                .iter()
                .filter(|(b, i)| {
                    b.index
                        .get(*i)
                        .is_some_and(|e| e.max_ts >= from && e.min_ts <= to)
                })
                .cloned()
                .collect(),
            frozen: s.frozen.clone(),
            head: s.head.range(from, to),
        }
    }

    /// Snapshots the sources of the wanted keys (all keys when empty), for
    /// the part of [from, to] that has not expired.
    pub(super) fn snapshot(
        &self,
        tenant: TenantId,
        device: DeviceId,
        keys: &[String],
        from: i64,
        to: i64,
    ) -> Vec<(String, Sources)> {
        let st = self.read();
        let Some(series) = st.devices.get(&(tenant, device)) else {
            return Vec::new();
        };
        let from = from.max(st.manifest.cutoff(tenant));
        if keys.is_empty() {
            series
                .iter()
                .map(|(k, s)| (k.clone(), Self::sources(s, from, to)))
                .collect()
        } else {
            keys.iter()
                .filter_map(|k| {
                    series
                        .get(k)
                        .map(|s| (k.clone(), Self::sources(s, from, to)))
                })
                .collect()
        }
    }

    /// Merged points per key in [from, to], oldest first, newest write winning.
    pub(super) async fn merged(
        &self,
        tenant: TenantId,
        device: DeviceId,
        keys: &[String],
        from: i64,
        to: i64,
    ) -> Result<Vec<(String, Vec<Entry>)>, StoreError> {
        let snap = self.snapshot(tenant, device, keys, from, to);
        tokio::task::spawn_blocking(move || {
            snap.into_iter()
                .map(|(key, src)| (key, src.merge()))
                .filter(|(_, p)| !p.is_empty())
                .collect()
        })
        .await
        .map_err(io)
    }
}

/// What a query reads for one series, and the range it reads.
pub(super) struct Sources {
    from: i64,
    to: i64,
    chunks: Vec<(Arc<Block>, usize)>,
    frozen: Option<Arc<Vec<Entry>>>,
    head: Vec<Entry>,
}

impl Sources {
    fn empty(from: i64, to: i64) -> Self {
        Sources {
            from,
            to,
            chunks: Vec::new(),
            frozen: None,
            head: Vec::new(),
        }
    }

    /// Points in the range by timestamp; for equal timestamps the write with
    /// the highest LSN wins, whichever source holds it.
    fn merge(self) -> Vec<Entry> {
        let in_range = |p: &Entry| p.0 >= self.from && p.0 <= self.to;
        let mut runs = Vec::with_capacity(self.chunks.len() + 2);
        for (block, i) in &self.chunks {
            match block.read(*i) {
                Ok(mut points) => {
                    points.retain(in_range);
                    runs.push(points);
                }
                Err(e) => {
                    tracing::error!(error = %e, "time-series chunk unreadable; left out of the answer")
                }
            }
        }
        if let Some(f) = &self.frozen {
            runs.push(f.iter().filter(|p| in_range(p)).cloned().collect());
        }
        runs.push(self.head);
        merge::merge_runs(runs)
    }
}

/// The newest sample of each key (of `keys`, or all) not older than `cutoff`.
pub(super) fn latest_of(
    series: &BTreeMap<String, Series>,
    keys: &[String],
    cutoff: i64,
) -> BTreeMap<String, Sample> {
    let sample = |(k, s): (&String, &Series)| {
        let (ts, v) = s.latest.as_ref().filter(|(ts, _)| *ts >= cutoff)?;
        Some((
            k.clone(),
            Sample {
                ts: *ts,
                value: v.clone(),
                saturated: false,
            },
        ))
    };
    if keys.is_empty() {
        series.iter().filter_map(sample).collect()
    } else {
        keys.iter()
            .filter_map(|k| series.get_key_value(k))
            .filter_map(sample)
            .collect()
    }
}

pub(super) fn ordered(mut samples: Vec<Sample>, order: Order, limit: u32) -> Vec<Sample> {
    if order == Order::Desc {
        samples.reverse();
    }
    samples.truncate(limit as usize);
    samples
}

#[async_trait]
impl SeriesReader for Engine {
    async fn query(
        &self,
        tenant: TenantId,
        device: DeviceId,
        q: &RawQuery,
    ) -> Result<SeriesMap, StoreError> {
        let merged = self.merged(tenant, device, &q.keys, q.from, q.to).await?;
        Ok(merged
            .into_iter()
            .map(|(key, points)| {
                let samples = points
                    .into_iter()
                    .map(|(ts, value, _)| Sample {
                        ts,
                        value,
                        saturated: false,
                    })
                    .collect();
                (key, ordered(samples, q.order, q.limit))
            })
            .collect())
    }

    async fn aggregate(
        &self,
        tenant: TenantId,
        device: DeviceId,
        q: &AggQuery,
    ) -> Result<SeriesMap, StoreError> {
        let r = q.range.clone();
        let (agg, interval) = (q.agg, q.interval);
        let snap = self.snapshot(tenant, device, &r.keys, r.from, r.to);
        tokio::task::spawn_blocking(move || {
            let mut out = SeriesMap::new();
            for (key, src) in snap {
                let (from, to) = (src.from, src.to);
                // Runs in the order of writing: chunks, the part being sealed, the head.
                let frozen = src.frozen.as_deref().cloned().unwrap_or_default();
                let buckets = aggregate::aggregate(
                    aggregate::AggSources {
                        chunks: src.chunks,
                        loose: vec![frozen, src.head],
                    },
                    from,
                    to,
                    interval,
                );
                let samples: Vec<Sample> = buckets
                    .into_iter()
                    .filter_map(|(b, acc)| {
                        acc.value(agg).map(|value| Sample {
                            ts: b * interval,
                            saturated: acc.overflows(agg),
                            value,
                        })
                    })
                    .collect();
                let samples = ordered(samples, r.order, r.limit);
                if !samples.is_empty() {
                    out.insert(key, samples);
                }
            }
            out
        })
        .await
        .map_err(io)
    }

    async fn latest(
        &self,
        tenant: TenantId,
        device: DeviceId,
        keys: &[String],
    ) -> Result<BTreeMap<String, Sample>, StoreError> {
        let st = self.read();
        Ok(st
            .devices
            .get(&(tenant, device))
            .map(|series| latest_of(series, keys, st.manifest.cutoff(tenant)))
            .unwrap_or_default())
    }

    async fn latest_many(
        &self,
        tenant: TenantId,
        only: Option<&[DeviceId]>,
        keys: &[String],
        after: Option<DeviceId>,
        limit: usize,
    ) -> Result<Vec<DeviceLatest>, StoreError> {
        let st = self.read();
        let cutoff = st.manifest.cutoff(tenant);
        let with_latest = |(d, series): (DeviceId, &BTreeMap<String, Series>)| {
            let latest = latest_of(series, keys, cutoff);
            (!latest.is_empty()).then_some((d, latest))
        };
        Ok(match only {
            Some(ids) => crate::series::page_of_ids(ids.to_vec(), after)
                .into_iter()
                .filter_map(|d| st.devices.get(&(tenant, d)).map(|s| (d, s)))
                .filter_map(with_latest)
                .take(limit)
                .collect(),
            None => {
                use std::ops::Bound;
                let from = match after {
                    Some(a) => Bound::Excluded((tenant, a)),
                    None => Bound::Included((tenant, DeviceId(uuid::Uuid::nil()))),
                };
                st.devices
                    .range((from, Bound::Unbounded))
                    .take_while(|((t, _), _)| *t == tenant)
                    .map(|((_, d), s)| (*d, s))
                    .filter_map(with_latest)
                    .take(limit)
                    .collect()
            }
        })
    }

    async fn changes_since(
        &self,
        tenant: TenantId,
        device: DeviceId,
        since: u64,
        limit: u32,
    ) -> Result<Vec<Change>, StoreError> {
        let merged = self.merged(tenant, device, &[], i64::MIN, i64::MAX).await?;
        let mut changes: Vec<Change> = merged
            .into_iter()
            .flat_map(|(key, points)| {
                points.into_iter().filter(|(_, _, lsn)| *lsn > since).map(
                    move |(ts, value, lsn)| Change {
                        lsn,
                        key: key.clone(),
                        sample: Sample {
                            ts,
                            value,
                            saturated: false,
                        },
                    },
                )
            })
            .collect();
        changes.sort_by_key(|c| (c.lsn, c.sample.ts));
        changes.truncate(limit as usize);
        Ok(changes)
    }
}
