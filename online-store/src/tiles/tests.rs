//! The tiles format's test vector, its one-pass reader, corruption.
use super::*;
/// docs/online-format.md, "Aggregation tiles (format byte 4)": the test vector.
const VECTOR: &str = "
04  98 86 72 51 ed fa 00 00  00 00 00 00 00 00 00 03  04 00 00 00  62 00 00 00  6e 00 00 00
01 00 00 00  39 00 00 00  bf e2 59 00 00 00 00 00  bf e2 59 00 00 00 00 00
01 00 30 0c 5d 23 72 86 18  00 00 00 00 00 00 00 00 00
00 15  01  01 02  01 01 63  05 80 a0 b7 87 e9 05 00 00 00 00 00 00 f0 3f
21 bf a1 bf
00 00 00 00 00 00 00 80
01 00 00 00  38 00 00 00  c0 e2 59 00 00 00 00 00  c0 e2 59 00 00 00 00 00
01 00 94 2f 65 52 72 86 18  00 00 00 00 00 00 00 00 00
00 14  02  02 0e  01 01 62  05 80 d0 ac f3 0e 00 00 00 00 00 00 d0 3f
01 00 00 00
82 8b cf 05  80 a8 d6 b9 07  00
01  01 0a  01 01 64  05 80 a8 d6 b9 07 00 00 00 00 00 00 00 40
89 d1 db 29
";
use quiver_registry::{Aggregate, Function, ScalarType, Ttl};

/// The view of the test vector in docs/online-format.md.
pub(crate) fn vector_view() -> Aggregations {
    let a = |name: &str, function, column: Option<(&str, ScalarType)>, minutes: u64| Aggregate {
        name: name.into(),
        function,
        column: column.map(|c| c.0.to_string()),
        input: column.map(|c| c.1),
        window: Ttl {
            seconds: minutes * 60,
        },
    };
    Aggregations {
        hop: Ttl { seconds: 300 },
        items: vec![
            a("trips", Function::Count, None, 10),
            a("x_sum", Function::Sum, Some(("x", ScalarType::Int64)), 10),
            a("s_max", Function::Max, Some(("s", ScalarType::String)), 5),
            a(
                "f_last",
                Function::Last,
                Some(("f", ScalarType::Float64)),
                10,
            ),
        ],
    }
}

fn hex(s: &str) -> Vec<u8> {
    let digits: String = s.split_whitespace().collect();
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

/// The test vector's value: one materialized event before the cutoff, two pushed events in the
/// cutoff's tile (sealed by a write in the next tile), one pushed event in the next tile.
pub(crate) fn vector_tiles(view: &Aggregations) -> Tiles {
    let (t0, s) = (T0, 1_000_000_000);
    let batch = tiles_of(view, &[(t0 - 200 * s, None, ev(1, "c", 1.0))]);
    let mut tiles = Tiles::of_batch(view, t0, &batch);
    tiles.add(view, t0 + s, None, &ev(3, "a", 0.5)).unwrap();
    tiles
        .add(view, t0 + 2 * s, None, &ev(4, "b", 0.25))
        .unwrap();
    tiles
        .add(view, t0 + 301 * s, None, &ev(5, "d", 2.0))
        .unwrap();
    tiles.seal(view, t0 + 301 * s).unwrap();
    tiles.seq = 3;
    tiles
}

/// An event: its time, created time and each aggregate's value.
type Event = (i64, Option<i64>, Vec<Option<Value>>);

const T0: i64 = 1_767_225_600_000_000_000;

fn ev(x: i64, text: &str, f: f64) -> Vec<Option<Value>> {
    vec![
        None,
        Some(Value::Int64(x)),
        Some(Value::String(text.into())),
        Some(Value::Float64(f)),
    ]
}

/// Events folded into tiles, in order.
fn tiles_of(view: &Aggregations, events: &[Event]) -> BTreeMap<i64, Tile> {
    let mut out = BTreeMap::new();
    for (at, created, values) in events {
        let tile = out
            .entry(tile_of(*at, view.hop_ns()))
            .or_insert_with(|| empty_tile(view));
        add_to_tile(tile, view, *at, *created, values);
    }
    out
}

#[test]
fn format_vector() {
    let view = vector_view();
    let s = 1_000_000_000;
    let tiles = vector_tiles(&view);
    let blob = tiles.encode(&view);
    let shown: Vec<String> = blob.iter().map(|b| format!("{b:02x}")).collect();
    let expected = hex(VECTOR);
    assert_eq!(blob, expected, "{}", shown.join(" "));
    let decoded = Tiles::decode(&blob, &view).unwrap();
    assert_eq!(decoded.encode(&view), blob);
    let values = |x: i64, text: &str, f: f64| {
        vec![
            Some(Value::Int64(x)),
            Some(Value::Int64(x)),
            Some(Value::String(text.into())),
            Some(Value::Float64(f)),
        ]
    };
    // At the cutoff − 1 ns (verify's default): the materialized event only.
    let w = window_of(&blob, &view, T0 - 1).unwrap();
    assert_eq!(w.values, values(1, "c", 1.0));
    assert_eq!(w.latest, Some((T0 - 200 * s, None)));
    // In the cutoff's tile: the materialized event and the two pushed (sealed) ones.
    let w = window_of(&blob, &view, T0 + 299 * s).unwrap();
    assert_eq!(
        w.values,
        vec![
            Some(Value::Int64(3)),
            Some(Value::Int64(8)),
            Some(Value::String("b".into())),
            Some(Value::Float64(0.25)),
        ]
    );
    // In the next tile: the 10-minute windows start at the cutoff; `s_max` sees the head only.
    let w = window_of(&blob, &view, T0 + 301 * s).unwrap();
    assert_eq!(
        w.values,
        vec![
            Some(Value::Int64(3)),
            Some(Value::Int64(12)),
            Some(Value::String("d".into())),
            Some(Value::Float64(2.0)),
        ]
    );
    assert_eq!(w.latest, Some((T0 + 301 * s, None)));
    // Three tiles on, every window has emptied.
    let w = window_of(&blob, &view, T0 + 900 * s).unwrap();
    assert_eq!(w.values, vec![Some(Value::Int64(0)), None, None, None]);
    assert_eq!(w.latest, None);
    // Any flipped bit is refused.
    for i in 0..blob.len() * 8 {
        let mut bad = blob.clone();
        bad[i / 8] ^= 1 << (i % 8);
        assert!(Tiles::decode(&bad, &view).is_err(), "bit {i}");
        assert!(window_of(&bad, &view, T0).is_err(), "bit {i}");
    }
}

#[test]
fn a_time_inside_merged_tiles_is_refused_and_older_formats_named() {
    let view = vector_view();
    let s = 1_000_000_000;
    let mut tiles = Tiles::new(T0);
    tiles.add(&view, T0 + s, None, &ev(1, "a", 1.0)).unwrap();
    tiles
        .add(&view, T0 + 601 * s, None, &ev(2, "b", 2.0))
        .unwrap();
    tiles.seal(&view, T0 + 901 * s).unwrap();
    let err = tiles.window(&view, T0 + 301 * s).unwrap_err();
    assert!(matches!(err, Error::Unanswerable(_)), "{err}");
    // Before the first sealed tile and after the last, it answers.
    assert_eq!(
        tiles.window(&view, T0 - 1).unwrap().values[0],
        Some(Value::Int64(0))
    );
    assert_eq!(
        tiles.window(&view, T0 + 601 * s).unwrap().values[0],
        Some(Value::Int64(1))
    );
    let mut old = tiles.encode(&view);
    old[0] = 3;
    let err = window_of(&old, &view, T0).unwrap_err().to_string();
    assert!(err.contains("materialize the view again"), "{err}");
}

/// One aggregate over the events in its window at `at`, literally (the oracle).
fn oracle(view: &Aggregations, events: &[Event], at: i64) -> WindowValues {
    let hop = view.hop_ns();
    let last = tile_of(at, hop);
    let values = view
        .items
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let first = first_tile(at, hop, a.tiles(hop));
            let mut p = Partial::empty(a);
            for (t, c, v) in events {
                if (first..=last).contains(&tile_of(*t, hop)) {
                    p.add(*t, *c, v[i].as_ref(), a.column.is_some());
                }
            }
            p.finish(a.function)
        })
        .collect();
    let first = first_tile(at, hop, view.max_tiles());
    let latest = events
        .iter()
        .filter(|(t, _, _)| (first..=last).contains(&tile_of(*t, hop)))
        .map(|(t, c, _)| (*t, *c))
        .max();
    WindowValues { values, latest }
}

proptest::proptest! {
    /// Whatever the order events arrive in, the writes that seal tiles between them, and the
    /// encodings in between, a value answers at any time after its last write what the events
    /// in each window answer literally.
    #[test]
    fn windows_equal_the_events_in_them(
        batch in proptest::collection::vec(
            (-3_000i64..0, proptest::option::of(0i64..3), -50i64..50, "[ab]{0,2}", -8i64..8), 0..20),
        pushed in proptest::collection::vec(
            (0i64..3_000, proptest::option::of(0i64..3), -50i64..50, "[ab]{0,2}", -8i64..8, 0i64..400, proptest::bool::ANY), 0..40),
        after in 0i64..1_200,
    ) {
        let view = vector_view();
        let s = 1_000_000_000i64;
        let event = |t: i64, c: Option<i64>, x: i64, text: &String, f: i64| {
            (t * s, c.map(|c| c * s), vec![None, Some(Value::Int64(x)), Some(Value::String(text.clone())), Some(Value::Float64(f as f64 / 4.0))])
        };
        let batch: Vec<_> = batch.iter().map(|(t, c, x, text, f)| event(*t, *c, *x, text, *f)).collect();
        let mut tiles = Tiles::of_batch(&view, 0, &tiles_of(&view, &batch));
        let mut all = batch.clone();
        // Pushes arrive at `t + delay` (so out of order), each write sealing at its time.
        let mut arrivals: Vec<_> = pushed.iter().map(|p| (p.0 + p.5, p)).collect();
        arrivals.sort_by_key(|a| a.0);
        let mut now = 0;
        for (arrive, (t, c, x, text, f, _, reencode)) in arrivals {
            now = arrive * s;
            let e = event(*t, *c, *x, text, *f);
            tiles.add(&view, e.0, e.1, &e.2).unwrap();
            tiles.seal(&view, now).unwrap();
            all.push(e);
            if *reencode {
                tiles = Tiles::decode(&tiles.encode(&view), &view).unwrap();
            }
        }
        // As materialization and pushes trim: never past just before the cutoff (verify's time).
        tiles.trim(&view, now.min(-1)).unwrap();
        let at = now + after * s;
        let blob = tiles.encode(&view);
        proptest::prop_assert_eq!(window_of(&blob, &view, at).unwrap(), oracle(&view, &all, at));
        // Verify's time, just before the cutoff: the batch alone.
        proptest::prop_assert_eq!(window_of(&blob, &view, -1).unwrap(), oracle(&view, &batch, -1));
    }
}

/// The quickstart's shape: windows from 10 minutes to 7 days over 5-minute tiles, so entries
/// keep different aggregates.
fn long_view() -> Aggregations {
    let a = |name: &str, function, column: Option<(&str, ScalarType)>, minutes: u64| Aggregate {
        name: name.into(),
        function,
        column: column.map(|c| c.0.to_string()),
        input: column.map(|c| c.1),
        window: Ttl {
            seconds: minutes * 60,
        },
    };
    let f = Some(("f", ScalarType::Float64));
    Aggregations {
        hop: Ttl { seconds: 300 },
        items: vec![
            a("n_1h", Function::Count, None, 60),
            a("sum_1d", Function::Sum, f, 1440),
            a("mean_7d", Function::Mean, f, 10080),
            a("max_10m", Function::Max, f, 10),
            a("std_1d", Function::Stddev, f, 1440),
            a("last_1d", Function::Last, f, 1440),
        ],
    }
}

proptest::proptest! {
    /// Materialized suffixes whose entries keep different aggregates answer each window as the
    /// events in it do (integers, and floats that add exactly).
    #[test]
    fn long_windows_equal_the_events_in_them(
        events in proptest::collection::vec((-700_000i64..0, -8i64..8), 0..80),
        after in -400i64..900_000,
    ) {
        let view = long_view();
        let s = 1_000_000_000i64;
        let all: Vec<Event> = events
            .iter()
            .map(|(t, f)| {
                let x = Some(Value::Float64(*f as f64));
                (t * s, None, vec![None, x.clone(), x.clone(), x.clone(), x.clone(), x])
            })
            .collect();
        let tiles = Tiles::of_batch(&view, 0, &tiles_of(&view, &all));
        let blob = tiles.encode(&view);
        let at = if after < 0 { -1 } else { after * s };
        let got = window_of(&blob, &view, at).unwrap();
        let want = oracle(&view, &all, at);
        proptest::prop_assert_eq!(&got.values[0], &want.values[0]);
        proptest::prop_assert_eq!(&got.values[3], &want.values[3]);
        proptest::prop_assert_eq!(&got.values[5], &want.values[5]);
        proptest::prop_assert_eq!(got.latest, want.latest);
        for i in [1, 2, 4] {
            match (&got.values[i], &want.values[i]) {
                (Some(Value::Float64(a)), Some(Value::Float64(b))) => proptest::prop_assert!((a - b).abs() <= 1e-9 * a.abs().max(b.abs()) + 1e-12, "{} {} {}", i, a, b),
                (a, b) => proptest::prop_assert_eq!(a, b),
            }
        }
    }
}

proptest::proptest! {
    /// A push written in place (header and live part, as `OnlineStore::swap_live` splices
    /// them) leaves the same bytes as the whole value encoded again, whatever the pushes, and
    /// answers as the events do.
    #[test]
    fn in_place_pushes_equal_whole_values(
        batch in proptest::collection::vec((-3_000i64..0, -50i64..50), 0..20),
        pushed in proptest::collection::vec((0i64..3_000, -50i64..50, 0i64..400), 0..30),
    ) {
        use crate::store::{LiveSwapEntry, live_part, splice_live};
        let view = vector_view();
        let s = 1_000_000_000i64;
        let event = |t: i64, x: i64| (t * s, None, vec![None, Some(Value::Int64(x)), Some(Value::String("a".into())), Some(Value::Float64(x as f64))]);
        let batch: Vec<Event> = batch.iter().map(|(t, x)| event(*t, *x)).collect();
        let mut blob = Tiles::of_batch(&view, 0, &tiles_of(&view, &batch)).encode(&view);
        let mut all = batch.clone();
        let mut arrivals: Vec<_> = pushed.iter().map(|p| (p.0 + p.2, p)).collect();
        arrivals.sort_by_key(|a| a.0);
        let mut now = 0;
        for (arrive, (t, x, _)) in arrivals {
            now = arrive * s;
            let e = event(*t, *x);
            all.push(e.clone());
            let read = Tiles::decode_live(&live_part(&blob), &view).unwrap();
            let mut tiles = read.tiles;
            tiles.seq += 1;
            tiles.add(&view, e.0, e.1, &e.2).unwrap();
            tiles.seal(&view, now).unwrap();
            let (header, live) = tiles.encode_live_update(&view, read.live_at);
            let mut whole = Tiles::decode(&blob, &view).unwrap();
            whole.seq += 1;
            whole.add(&view, e.0, e.1, &e.2).unwrap();
            whole.seal(&view, now).unwrap();
            let expected = whole.encode(&view);
            if live.len() >= read.live_len {
                let entry = LiveSwapEntry { key: String::new(), expected: blob[..17].to_vec(), header, live_at: read.live_at, live, expire_at_ms: None };
                blob = splice_live(&blob, &entry).unwrap();
                proptest::prop_assert_eq!(&blob, &expected);
            } else {
                blob = expected;
            }
        }
        proptest::prop_assert_eq!(window_of(&blob, &view, now).unwrap(), oracle(&view, &all, now));
    }
}
