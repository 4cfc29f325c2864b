//! The contract every series store meets: call [`run`] on a fresh store. Each
//! check uses fresh tenant and device ids, and LSNs above the last check's,
//! so one store takes them all in the order [`run`] gives.

use tributary_model::{Batch, DeviceId, Point, TenantId, Value};

use tributary_store::{
    AggQuery, Aggregate, Order, RawQuery, SeriesReader, SeriesStore, SeriesWriter,
};

fn p(key: &str, ts: i64, value: Value) -> Point {
    Point {
        key: key.into(),
        ts,
        value,
    }
}

fn all(keys: &[&str]) -> RawQuery {
    RawQuery {
        keys: keys.iter().map(|k| k.to_string()).collect(),
        from: 0,
        to: i64::MAX,
        limit: 1000,
        order: Order::Asc,
    }
}

/// Every check of the contract, in turn.
pub async fn run(store: &dyn SeriesStore, durable_on_apply: bool) {
    writes_queries_and_checkpoint(store, durable_on_apply).await;
    aggregates(store).await;
    changes_fleet_latest_and_tenant_deletion(store).await;
    reader_and_writer_sides(store, store, store).await;
}

/// Writes of every value type, last write wins, ranges, order and limits,
/// latest values, tenant scoping, deleting a device and writing it again.
/// `durable_on_apply`: the store's `apply` is durable at once (its applied
/// LSN moves with it).
pub async fn writes_queries_and_checkpoint(store: &dyn SeriesStore, durable_on_apply: bool) {
    let (t, d) = (TenantId::new(), DeviceId::new());
    let b1 = Batch {
        tenant: t,
        device: d,
        points: vec![
            p("f", 10, Value::Float(1.5)),
            p("i", 10, Value::Int(-3)),
            p("b", 10, Value::Bool(true)),
            p("s", 10, Value::Str("on".into())),
            p("f", 20, Value::Float(2.5)),
        ],
    };
    let b2 = Batch {
        tenant: t,
        device: d,
        points: vec![p("f", 20, Value::Float(9.0)), p("f", 5, Value::Float(0.5))],
    };
    store.apply(&[(6, &b1), (7, &b2)]).await.unwrap();
    if durable_on_apply {
        assert_eq!(store.applied_lsn().await.unwrap(), 7);
    }

    let r = store.query(t, d, &all(&[])).await.unwrap();
    assert_eq!(
        r.keys().cloned().collect::<Vec<_>>(),
        vec!["b", "f", "i", "s"]
    );
    let f: Vec<_> = r["f"].iter().map(|s| (s.ts, s.value.clone())).collect();
    assert_eq!(
        f,
        vec![
            (5, Value::Float(0.5)),
            (10, Value::Float(1.5)),
            (20, Value::Float(9.0))
        ],
        "out of order ok, last write wins"
    );
    assert_eq!(r["i"][0].value, Value::Int(-3));
    assert_eq!(r["b"][0].value, Value::Bool(true));
    assert_eq!(r["s"][0].value, Value::Str("on".into()));

    let mut q = all(&["f"]);
    q.order = Order::Desc;
    q.limit = 2;
    q.from = 6;
    let r = store.query(t, d, &q).await.unwrap();
    assert_eq!(
        r["f"].iter().map(|s| s.ts).collect::<Vec<_>>(),
        vec![20, 10]
    );

    // Another tenant sees nothing of it, even with the same device id.
    assert!(store
        .query(TenantId::new(), d, &all(&[]))
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .latest(TenantId::new(), d, &[])
        .await
        .unwrap()
        .is_empty());

    let latest = store.latest(t, d, &[]).await.unwrap();
    assert_eq!(latest["f"].ts, 20);
    assert_eq!(latest["f"].value, Value::Float(9.0));
    let only = store.latest(t, d, &["i".to_string()]).await.unwrap();
    assert_eq!(only.len(), 1);

    assert_eq!(store.delete_device(t, d).await.unwrap(), 4);
    assert!(store.query(t, d, &all(&[])).await.unwrap().is_empty());
    // Writing again after a delete works (the series id cache was dropped).
    store.apply(&[(8, &b2)]).await.unwrap();
    assert_eq!(store.query(t, d, &all(&["f"])).await.unwrap()["f"].len(), 2);
}

/// Every aggregate, per interval; integer results stay integers; strings only count.
pub async fn aggregates(store: &dyn SeriesStore) {
    let (t, d) = (TenantId::new(), DeviceId::new());
    let b = Batch {
        tenant: t,
        device: d,
        points: (0..10)
            .flat_map(|i| {
                [
                    p("i", i * 100, Value::Int(i)),
                    p("f", i * 100, Value::Float(i as f64 + 0.5)),
                    p("s", i * 100, Value::Str("x".into())),
                ]
            })
            .collect(),
    };
    store.apply(&[(11, &b)]).await.unwrap();
    let agg = |agg, key: &str| AggQuery {
        range: all(&[key]),
        agg,
        interval: 500,
    };
    let sum = store
        .aggregate(t, d, &agg(Aggregate::Sum, "i"))
        .await
        .unwrap();
    assert_eq!(
        sum["i"]
            .iter()
            .map(|s| (s.ts, s.value.clone()))
            .collect::<Vec<_>>(),
        vec![(0, Value::Int(10)), (500, Value::Int(35))]
    );
    let avg = store
        .aggregate(t, d, &agg(Aggregate::Avg, "i"))
        .await
        .unwrap();
    assert_eq!(avg["i"][0].value, Value::Float(2.0));
    let max = store
        .aggregate(t, d, &agg(Aggregate::Max, "f"))
        .await
        .unwrap();
    assert_eq!(max["f"][1].value, Value::Float(9.5));
    let min = store
        .aggregate(t, d, &agg(Aggregate::Min, "i"))
        .await
        .unwrap();
    assert_eq!(min["i"][1].value, Value::Int(5));
    let first = store
        .aggregate(t, d, &agg(Aggregate::First, "s"))
        .await
        .unwrap();
    assert_eq!(first["s"][1].ts, 500);
    assert_eq!(first["s"][1].value, Value::Str("x".into()));
    let last = store
        .aggregate(t, d, &agg(Aggregate::Last, "i"))
        .await
        .unwrap();
    assert_eq!(
        last["i"]
            .iter()
            .map(|s| s.value.clone())
            .collect::<Vec<_>>(),
        vec![Value::Int(4), Value::Int(9)]
    );
    // Strings only count.
    let count = store
        .aggregate(t, d, &agg(Aggregate::Count, "s"))
        .await
        .unwrap();
    assert_eq!(count["s"][0].value, Value::Int(5));
    assert!(store
        .aggregate(t, d, &agg(Aggregate::Avg, "s"))
        .await
        .unwrap()
        .is_empty());
}

/// What a live client that resumes reads (changes after an LSN, oldest
/// first, limited), the fleet's latest values (device id order, `only`,
/// paging), and deleting a whole tenant.
pub async fn changes_fleet_latest_and_tenant_deletion(store: &dyn SeriesStore) {
    let t = TenantId::new();
    let (mut a, mut b) = (DeviceId::new(), DeviceId::new());
    if b < a {
        std::mem::swap(&mut a, &mut b);
    }
    let batch = |device, ts: i64, v: i64| Batch {
        tenant: t,
        device,
        points: vec![p("v", ts, Value::Int(v))],
    };
    let (b1, b2, b3) = (batch(a, 1, 1), batch(b, 1, 2), batch(a, 2, 3));
    store
        .apply(&[(101, &b1), (102, &b2), (103, &b3)])
        .await
        .unwrap();

    let changes = store.changes_since(t, a, 101, 100).await.unwrap();
    let got: Vec<(u64, i64)> = changes.iter().map(|c| (c.lsn, c.sample.ts)).collect();
    assert_eq!(got, vec![(103, 2)], "only what came after the LSN");
    assert_eq!(
        store.changes_since(t, a, 0, 1).await.unwrap().len(),
        1,
        "limited"
    );
    assert!(store
        .changes_since(TenantId::new(), a, 0, 100)
        .await
        .unwrap()
        .is_empty());

    let fleet = store.latest_many(t, None, &[], None, 10).await.unwrap();
    let ids: Vec<DeviceId> = fleet.iter().map(|(d, _)| *d).collect();
    assert_eq!(ids, vec![a, b], "device id order");
    assert_eq!(fleet[0].1["v"].value, Value::Int(3));
    let only = store
        .latest_many(t, Some(&[b]), &[], None, 10)
        .await
        .unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].0, b);
    let page = store.latest_many(t, None, &[], Some(a), 10).await.unwrap();
    assert_eq!(page.iter().map(|(d, _)| *d).collect::<Vec<_>>(), vec![b]);
    assert!(store
        .latest_many(TenantId::new(), None, &[], None, 10)
        .await
        .unwrap()
        .is_empty());

    assert_eq!(store.delete_tenant(t).await.unwrap(), 2);
    assert!(store.query(t, a, &all(&[])).await.unwrap().is_empty());
    assert!(store
        .latest_many(t, None, &[], None, 10)
        .await
        .unwrap()
        .is_empty());
}

/// The two sides used apart, as a query node and an ingest node would:
/// what `writer` applies, `reader` answers (`whole` is the store they are
/// both sides of, for a single-node store all three are one).
pub async fn reader_and_writer_sides(
    whole: &dyn SeriesStore,
    writer: &dyn SeriesWriter,
    reader: &dyn SeriesReader,
) {
    let (t, d) = (TenantId::new(), DeviceId::new());
    let b = Batch {
        tenant: t,
        device: d,
        points: vec![p("x", 7, Value::Float(7.5))],
    };
    writer.apply(&[(201, &b)]).await.unwrap();
    let latest = reader.latest(t, d, &[]).await.unwrap();
    assert_eq!(latest["x"].value, Value::Float(7.5));
    writer.expire(t, 8).await.unwrap();
    assert!(
        reader.query(t, d, &all(&[])).await.unwrap().is_empty(),
        "expired points leave every answer"
    );
    assert!(whole.latest(t, d, &[]).await.unwrap().is_empty());
}
