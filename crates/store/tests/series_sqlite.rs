//! Both series stores (SQLite and Tributary's engine) against the same
//! expectations: writes, last-write-wins, queries, aggregates, latest, scoping.

use tributary_model::{Batch, DeviceId, Point, TenantId, Value};
use tributary_store::{
    AggQuery, Aggregate, Engine, EngineConfig, Order, RawQuery, SeriesStore, SqliteSeries,
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

async fn sqlite(dir: &std::path::Path) -> SqliteSeries {
    SqliteSeries::open(&dir.join("s.db")).await.unwrap()
}

async fn engine(dir: &std::path::Path) -> Engine {
    // A tiny head, so queries cross sealed blocks, the frozen head and the live head.
    let config = EngineConfig {
        max_head_points: 3,
        ..EngineConfig::default()
    };
    Engine::open(&dir.join("tsdb"), config).await.unwrap()
}

#[tokio::test]
async fn writes_queries_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    writes_queries_and_checkpoint_on(sqlite(dir.path()).await, true).await;
    let dir = tempfile::tempdir().unwrap();
    writes_queries_and_checkpoint_on(engine(dir.path()).await, false).await;
}

#[tokio::test]
async fn aggregates_keep_integer_results_integer() {
    let dir = tempfile::tempdir().unwrap();
    aggregates_on(sqlite(dir.path()).await).await;
    let dir = tempfile::tempdir().unwrap();
    aggregates_on(engine(dir.path()).await).await;
}

async fn writes_queries_and_checkpoint_on(store: impl SeriesStore, durable_on_apply: bool) {
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

async fn aggregates_on(store: impl SeriesStore) {
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
    store.apply(&[(1, &b)]).await.unwrap();
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
