//! The tiles format's test vector, its one-pass reader, corruption.
use super::*;
use quiver_registry::{Aggregate, Function, Ttl};

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

#[test]
fn format_vector() {
    let view = vector_view();
    let t0 = 1_767_225_600_000_000_000i64;
    let mut tiles = Tiles::new(t0);
    tiles.seq = 1;
    let s = 1_000_000_000;
    let ev = |x: i64, text: &str, f: f64| {
        vec![
            None,
            Some(Value::Int64(x)),
            Some(Value::String(text.into())),
            Some(Value::Float64(f)),
        ]
    };
    tiles.add(&view, t0 + s, None, &ev(3, "a", 0.5));
    tiles.add(&view, t0 + 2 * s, None, &ev(4, "b", 0.25));
    let blob = tiles.encode(&view);
    let shown: Vec<String> = blob.iter().map(|b| format!("{b:02x}")).collect();
    let expected = hex(
        "03  98 86 72 51 ed fa 00 00  00 00 00 00 00 00 00 01  04 00 00 00  01 00 00 00
         c0 e2 59 00 00 00 00 00  00 94 2f 65 52 72 86 18  00
         02 00 00 00 00 00 00 00
         02 00 00 00 00 00 00 00  07 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
         01 01 00 00 00 62
         01 00 94 2f 65 52 72 86 18 00 01 00 00 00 00 00 00 d0 3f  01 41 c2 81
",
    );
    assert_eq!(blob, expected, "{}", shown.join(" "));
    assert_eq!(Tiles::decode(&blob, &view).unwrap(), tiles);
    // The window at the cutoff + 3 s: 2 trips, sum 7, max "b", last 0.25.
    let w = tiles.window(&view, t0 + 3 * s);
    assert_eq!(
        w.values,
        vec![
            Some(Value::Int64(2)),
            Some(Value::Int64(7)),
            Some(Value::String("b".into())),
            Some(Value::Float64(0.25)),
        ]
    );
    // In the next tile the 5-minute `s_max` has emptied (null); the 10-minute ones hold on.
    let w = tiles.window(&view, t0 + 300 * s);
    assert_eq!(w.values[0], Some(Value::Int64(2)));
    assert_eq!(w.values[2], None);
    // Two tiles on, every window has emptied.
    let w = tiles.window(&view, t0 + 600 * s);
    assert_eq!(w.values, vec![Some(Value::Int64(0)), None, None, None]);
    // The one-pass reader answers the same at every time around the tile.
    for dt in [-1, 0, 1, 3, 299, 300, 301, 599, 600, 601, 900] {
        let t = t0 + dt * s;
        assert_eq!(
            window_of(&blob, &view, t).unwrap(),
            tiles.window(&view, t),
            "at +{dt}s"
        );
    }
    // Any flipped bit is refused.
    for i in 0..blob.len() * 8 {
        let mut bad = blob.clone();
        bad[i / 8] ^= 1 << (i % 8);
        assert!(Tiles::decode(&bad, &view).is_err(), "bit {i}");
        assert!(window_of(&bad, &view, t0).is_err(), "bit {i}");
    }
}

proptest::proptest! {
    /// The one-pass reader (serving) and decode-then-window (verify) agree on any tiles
    /// at any time.
    #[test]
    fn one_pass_equals_decode_then_window(
        events in proptest::collection::vec(
            (-4_000i64..4_000, proptest::option::of(0i64..3), -50i64..50, "[ab]{0,2}", -1.0e3f64..1.0e3),
            0..60),
        at in -5_000i64..5_000,
    ) {
        let view = vector_view();
        let s = 1_000_000_000i64;
        let mut tiles = Tiles::new(0);
        for (t, created, x, text, f) in &events {
            let values = vec![None, Some(Value::Int64(*x)), Some(Value::String(text.clone())), Some(Value::Float64(*f))];
            tiles.add(&view, t * s, created.map(|c| c * s), &values);
        }
        let blob = tiles.encode(&view);
        proptest::prop_assert_eq!(window_of(&blob, &view, at * s).unwrap(), tiles.window(&view, at * s));
    }
}
