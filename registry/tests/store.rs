//! The versioned registry store: round trips, no-op applies, concurrent applies, generations and
//! the plan a user reads.

use std::sync::{Arc, Barrier};

use quiver_registry::model::{Entity, FeatureService, FeatureView, Field, Registry, Source};
use quiver_registry::store::{Applied, LocalStore, RegistryStore, apply, prepare};
use quiver_registry::{Error, FeatureRef, Ttl, ValueType};

fn field(name: &str, t: &str) -> Field {
    Field {
        name: name.into(),
        value_type: t.parse::<ValueType>().unwrap(),
        description: String::new(),
    }
}

fn registry() -> Registry {
    let mut r = Registry {
        project: "demo".into(),
        ..Registry::default()
    };
    r.entities.insert(
        "driver".into(),
        Entity {
            name: "driver".into(),
            join_keys: vec![field("driver_id", "int64")],
            description: String::new(),
            tags: Default::default(),
        },
    );
    r.sources.insert(
        "src".into(),
        Source {
            name: "src".into(),
            path: "data/d.parquet".into(),
            timestamp_field: "ts".into(),
            created_timestamp_field: None,
            field_mapping: Default::default(),
            description: String::new(),
            tags: Default::default(),
            ..Default::default()
        },
    );
    r.feature_views.insert(
        "stats".into(),
        FeatureView {
            name: "stats".into(),
            entities: vec!["driver".into()],
            source: "src".into(),
            query: None,
            features: vec![field("conv_rate", "float32"), field("trips", "int64")],
            ttl: Ttl { seconds: 7200 },
            online: true,
            aggregations: None,
            generation: 1,
            description: String::new(),
            owner: String::new(),
            tags: Default::default(),
        },
    );
    r.feature_services.insert(
        "model".into(),
        FeatureService {
            name: "model".into(),
            features: vec![FeatureRef {
                view: "stats".into(),
                feature: "conv_rate".into(),
            }],
            description: String::new(),
            tags: Default::default(),
        },
    );
    r
}

fn commit(store: &dyn RegistryStore, r: Registry) -> Applied {
    let prepared = prepare(store, r).unwrap();
    apply(store, &prepared, "2026-11-27T00:00:00Z".into()).unwrap()
}

#[test]
fn versions_round_trip_and_unchanged_applies_are_no_ops() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path().join("registry"));
    assert_eq!(store.latest().unwrap(), None);
    let Applied::Committed(v1) = commit(&store, registry()) else {
        panic!("first apply commits")
    };
    assert_eq!(v1.version, 1);
    assert_eq!(v1.hash, v1.registry.content_hash());
    assert_eq!(store.latest().unwrap().unwrap(), *v1);
    assert_eq!(commit(&store, registry()), Applied::Unchanged(1));
    let mut changed = registry();
    changed.feature_views.get_mut("stats").unwrap().ttl = Ttl { seconds: 86_400 };
    let Applied::Committed(v2) = commit(&store, changed) else {
        panic!("a change commits")
    };
    assert_eq!(v2.version, 2);
    assert_ne!(v2.hash, v1.hash);
    assert_eq!(store.get(1).unwrap(), *v1, "old versions are immutable");
    let history: Vec<u64> = store.history().unwrap().iter().map(|h| h.version).collect();
    assert_eq!(history, [1, 2]);
    assert!(matches!(store.get(9), Err(Error::NotFound(_))));
}

#[test]
fn of_two_concurrent_applies_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(dir.path().join("registry")));
    commit(store.as_ref(), registry());
    for round in 0..20u64 {
        let barrier = Arc::new(Barrier::new(2));
        let outcomes: Vec<_> = (0..2u64)
            .map(|i| {
                let (store, barrier) = (store.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let mut r = registry();
                    r.feature_views.get_mut("stats").unwrap().ttl = Ttl {
                        seconds: 1 + round * 2 + i,
                    };
                    let prepared = prepare(store.as_ref(), r).unwrap();
                    barrier.wait();
                    apply(store.as_ref(), &prepared, String::new())
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        let wins = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {outcomes:?}");
        let loser = outcomes.iter().find_map(|o| o.as_ref().err()).unwrap();
        assert!(matches!(loser, Error::Conflict { .. }), "{loser}");
        assert!(loser.to_string().contains("run `quiver plan` again"));
        assert_eq!(store.latest_version().unwrap(), Some(round + 2));
    }
    assert!(
        std::fs::read_dir(dir.path().join("registry"))
            .unwrap()
            .all(|e| { !e.unwrap().file_name().to_string_lossy().starts_with(".tmp") }),
        "no temporary files are left behind"
    );
}

fn generation(store: &dyn RegistryStore, r: Registry) -> u64 {
    prepare(store, r).unwrap().next.feature_views["stats"].generation
}

/// Every change that can alter what a view stores gives it a new generation and a plan line
/// saying to materialize; nothing else does; and the same definition has the same generation in
/// any registry (reset, moved, migrated), so an identity never names two meanings.
#[test]
fn generations_follow_what_decides_stored_values() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path().join("registry"));
    let base = generation(&store, registry());
    commit(&store, registry());
    type Edit = fn(&mut Registry);
    let changes: &[(&str, Edit)] = &[
        ("append a feature", |r| {
            r.feature_views
                .get_mut("stats")
                .unwrap()
                .features
                .push(field("rating", "float64"))
        }),
        ("retype a feature", |r| {
            r.feature_views.get_mut("stats").unwrap().features[0] = field("conv_rate", "float64")
        }),
        ("reorder features", |r| {
            r.feature_views.get_mut("stats").unwrap().features.reverse()
        }),
        ("change the query", |r| {
            r.feature_views.get_mut("stats").unwrap().query =
                Some("SELECT * FROM source WHERE trips > 0".into())
        }),
        ("retype the join key", |r| {
            r.entities.get_mut("driver").unwrap().join_keys[0] = field("driver_id", "string")
        }),
        ("rename the join key", |r| {
            r.entities.get_mut("driver").unwrap().join_keys[0] = field("id", "int64")
        }),
        ("map a field", |r| {
            r.sources
                .get_mut("src")
                .unwrap()
                .field_mapping
                .insert("rate".into(), "conv_rate".into());
        }),
        ("move the source", |r| {
            r.sources.get_mut("src").unwrap().path = "data/other.parquet".into()
        }),
        ("change the timestamp field", |r| {
            r.sources.get_mut("src").unwrap().timestamp_field = "at".into()
        }),
        ("add a created field", |r| {
            r.sources.get_mut("src").unwrap().created_timestamp_field = Some("created".into())
        }),
    ];
    let mut seen = vec![base];
    for (what, edit) in changes {
        let mut next = registry();
        edit(&mut next);
        let prepared = prepare(&store, next).unwrap();
        let g = prepared.next.feature_views["stats"].generation;
        assert!(!seen.contains(&g), "{what}: generation {g} repeats");
        seen.push(g);
        let text = prepared.plan.render();
        assert!(
            text.contains("~ feature_view stats") && text.contains("run `quiver materialize`"),
            "{what}: {text}"
        );
    }
    let kept: &[(&str, Edit)] = &[
        ("ttl", |r| {
            r.feature_views.get_mut("stats").unwrap().ttl = Ttl { seconds: 60 }
        }),
        ("description and owner", |r| {
            let v = r.feature_views.get_mut("stats").unwrap();
            v.description = "d".into();
            v.owner = "o".into();
        }),
        ("offline only", |r| {
            r.feature_views.get_mut("stats").unwrap().online = false
        }),
    ];
    for (what, edit) in kept {
        let mut next = registry();
        edit(&mut next);
        let prepared = prepare(&store, next).unwrap();
        assert_eq!(
            prepared.next.feature_views["stats"].generation, base,
            "{what}"
        );
        assert!(!prepared.plan.render().contains("materialize"), "{what}");
    }

    // Removed and added back: the same definition, the same identity.
    let mut removed = registry();
    removed.feature_views.remove("stats");
    removed.feature_services.clear();
    commit(&store, removed);
    assert_eq!(generation(&store, registry()), base);

    // A reset or moved registry gives the same definition the same generation, never "1 again".
    let fresh = LocalStore::new(dir.path().join("elsewhere"));
    assert_eq!(generation(&fresh, registry()), base);
    assert!(base > 1 << 20, "{base}");
}

#[test]
fn plan_output_is_stable() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path().join("registry"));
    let first = prepare(&store, registry()).unwrap().plan.render();
    assert_eq!(
        first,
        "Project `demo`: no registry version yet

  + entity driver
  + source src
  + feature_view stats
  + feature_service model

Plan: 4 to add, 0 to change, 0 to remove. `quiver apply` will write version 1.
"
    );
    commit(&store, registry());
    let mut next = registry();
    {
        let view = next.feature_views.get_mut("stats").unwrap();
        view.ttl = Ttl { seconds: 86_400 };
        view.features[1] = field("trips", "int32");
        view.features.push(field("rating", "float64"));
        view.description = "hourly driver stats".into();
    }
    next.feature_services
        .get_mut("model")
        .unwrap()
        .features
        .push(FeatureRef {
            view: "stats".into(),
            feature: "rating".into(),
        });
    next.sources.remove("src");
    next.sources.insert(
        "src2".into(),
        Source {
            name: "src2".into(),
            ..registry().sources["src"].clone()
        },
    );
    next.feature_views.get_mut("stats").unwrap().source = "src2".into();
    let plan = prepare(&store, next).unwrap().plan;
    assert_eq!(
        plan.render(),
        "Project `demo`: registry version 1

  - source src
  + source src2
  ~ feature_view stats
      description: (none) → hourly driver stats
      ~ feature trips: int64 → int32
      + feature rating (float64)
      source: src → src2
      ttl: 2h → 1d
      ! new generation 193349285395733 (was 150187695571525): stored values no longer match the definition; run `quiver materialize` for this view
  ~ feature_service model
      features: [stats:conv_rate] → [stats:conv_rate, stats:rating]

Plan: 1 to add, 2 to change, 1 to remove. `quiver apply` will write version 2.
"
    );
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(json["changes"][2]["action"], "change");
    assert_eq!(json["current_version"], 1);
}
