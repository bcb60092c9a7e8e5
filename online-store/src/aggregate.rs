//! Windowed aggregates: the partial state of one aggregate over a set of events, how partials
//! merge, and what a window of them answers. Retrieval (offline) and serving (online) both go
//! through these functions, so the two compute the same thing; the tiles an online value keeps
//! are encoded by [`crate::tiles`].
//!
//! Exactness: `count`, `min`, `max`, `last` and the `sum`/`mean` of integer columns are exact
//! whatever order partials merge in (integer sums are kept in i128). The `sum` and `mean` of
//! float columns and every `stddev` are computed in f64, whose addition is not associative:
//! two computations that merge the same events in a different order may differ in the last
//! bits (see docs/online-format.md, "Aggregates: exactness").

use std::cmp::Ordering;

use quiver_registry::aggregation::is_integer;
use quiver_registry::{Aggregate, Function, ScalarType};

use crate::value_codec::Value;

/// The latest event seen, for `last`: its times and its value (`None`: a null value).
#[derive(Debug, Clone, PartialEq)]
pub struct Latest {
    pub event_ns: i64,
    pub created_ns: Option<i64>,
    pub value: Option<Value>,
}

/// One aggregate's state over a set of events.
#[derive(Debug, Clone, PartialEq)]
pub enum Partial {
    /// Events (or, with a column, its non-null values).
    Count(i64),
    /// `sum` and `mean` of an integer column: exact.
    IntSum {
        n: i64,
        sum: i128,
    },
    /// `sum` and `mean` of a float column.
    FloatSum {
        n: i64,
        sum: f64,
    },
    /// `stddev`: count, mean and sum of squared deviations (Welford; merged by Chan et al.).
    Moments {
        n: i64,
        mean: f64,
        m2: f64,
    },
    Min(Option<Value>),
    Max(Option<Value>),
    Last(Option<Latest>),
}

impl Partial {
    /// The state of no events for `aggregate`.
    pub fn empty(aggregate: &Aggregate) -> Partial {
        let integer = aggregate.input.is_some_and(is_integer);
        match aggregate.function {
            Function::Count => Partial::Count(0),
            Function::Sum | Function::Mean if integer => Partial::IntSum { n: 0, sum: 0 },
            Function::Sum | Function::Mean => Partial::FloatSum { n: 0, sum: 0.0 },
            Function::Stddev => Partial::Moments {
                n: 0,
                mean: 0.0,
                m2: 0.0,
            },
            Function::Min => Partial::Min(None),
            Function::Max => Partial::Max(None),
            Function::Last => Partial::Last(None),
        }
    }

    /// Adds one event: its times and the aggregate's column value (`None`: null, or no column).
    pub fn add(
        &mut self,
        event_ns: i64,
        created_ns: Option<i64>,
        value: Option<&Value>,
        has_column: bool,
    ) {
        match self {
            Partial::Count(n) => {
                if !has_column || value.is_some() {
                    *n += 1;
                }
            }
            Partial::IntSum { n, sum } => {
                if let Some(v) = value.and_then(as_i128) {
                    *n += 1;
                    *sum += v;
                }
            }
            Partial::FloatSum { n, sum } => {
                if let Some(v) = value.and_then(as_f64) {
                    *n += 1;
                    *sum += v;
                }
            }
            Partial::Moments { n, mean, m2 } => {
                if let Some(x) = value.and_then(as_f64) {
                    *n += 1;
                    let delta = x - *mean;
                    *mean += delta / *n as f64;
                    *m2 += delta * (x - *mean);
                }
            }
            Partial::Min(m) => {
                if let Some(v) = value
                    && m.as_ref()
                        .is_none_or(|old| compare(v, old) == Ordering::Less)
                {
                    *m = Some(v.clone());
                }
            }
            Partial::Max(m) => {
                if let Some(v) = value
                    && m.as_ref()
                        .is_none_or(|old| compare(v, old) == Ordering::Greater)
                {
                    *m = Some(v.clone());
                }
            }
            Partial::Last(l) => {
                let new = Latest {
                    event_ns,
                    created_ns,
                    value: value.cloned(),
                };
                if l.as_ref().is_none_or(|old| later(&new, old)) {
                    *l = Some(new);
                }
            }
        }
    }

    /// Folds `other` (a disjoint set of events of the same aggregate) into this state.
    pub fn merge(&mut self, other: &Partial) {
        match (self, other) {
            (Partial::Count(a), Partial::Count(b)) => *a += b,
            (Partial::IntSum { n, sum }, Partial::IntSum { n: n2, sum: s2 }) => {
                *n += n2;
                *sum += s2;
            }
            (Partial::FloatSum { n, sum }, Partial::FloatSum { n: n2, sum: s2 }) => {
                if *n2 > 0 {
                    *sum = if *n == 0 { *s2 } else { *sum + s2 };
                    *n += n2;
                }
            }
            (
                Partial::Moments { n, mean, m2 },
                Partial::Moments {
                    n: nb,
                    mean: mb,
                    m2: m2b,
                },
            ) => {
                if *nb == 0 {
                    return;
                }
                if *n == 0 {
                    (*n, *mean, *m2) = (*nb, *mb, *m2b);
                    return;
                }
                let total = *n + nb;
                let delta = mb - *mean;
                let (na, nbf, t) = (*n as f64, *nb as f64, total as f64);
                *mean += delta * nbf / t;
                *m2 += m2b + delta * delta * na * nbf / t;
                *n = total;
            }
            (Partial::Min(a), Partial::Min(b)) => {
                if let Some(v) = b
                    && a.as_ref()
                        .is_none_or(|old| compare(v, old) == Ordering::Less)
                {
                    *a = Some(v.clone());
                }
            }
            (Partial::Max(a), Partial::Max(b)) => {
                if let Some(v) = b
                    && a.as_ref()
                        .is_none_or(|old| compare(v, old) == Ordering::Greater)
                {
                    *a = Some(v.clone());
                }
            }
            (Partial::Last(a), Partial::Last(b)) => {
                if let Some(new) = b
                    && a.as_ref().is_none_or(|old| later(new, old))
                {
                    *a = Some(new.clone());
                }
            }
            (a, b) => unreachable!("partials of different aggregates merged: {a:?} and {b:?}"),
        }
    }

    /// Whether it holds no event at all (a tile with nothing for this aggregate).
    pub fn is_empty(&self) -> bool {
        match self {
            Partial::Count(n) => *n == 0,
            Partial::IntSum { n, .. }
            | Partial::FloatSum { n, .. }
            | Partial::Moments { n, .. } => *n == 0,
            Partial::Min(v) | Partial::Max(v) => v.is_none(),
            Partial::Last(l) => l.is_none(),
        }
    }

    /// The aggregate's value: `count` is never null; the others are null without values (and
    /// `stddev` below two); an integer sum beyond int64 is null.
    pub fn finish(&self, function: Function) -> Option<Value> {
        match (self, function) {
            (Partial::Count(n), _) => Some(Value::Int64(*n)),
            (Partial::IntSum { n: 0, .. } | Partial::FloatSum { n: 0, .. }, _) => None,
            (Partial::IntSum { sum, .. }, Function::Sum) => {
                i64::try_from(*sum).ok().map(Value::Int64)
            }
            (Partial::IntSum { n, sum }, _) => Some(Value::Float64(*sum as f64 / *n as f64)),
            (Partial::FloatSum { sum, .. }, Function::Sum) => Some(Value::Float64(*sum)),
            (Partial::FloatSum { n, sum }, _) => Some(Value::Float64(*sum / *n as f64)),
            (Partial::Moments { n, m2, .. }, _) => (*n >= 2).then(|| {
                // Rounding can leave m2 a hair below 0; a NaN (from a NaN or an infinity in
                // the window) must stay NaN, as in the sum and the mean.
                let m2 = if *m2 < 0.0 { 0.0 } else { *m2 };
                Value::Float64((m2 / (*n - 1) as f64).sqrt())
            }),
            (Partial::Min(v) | Partial::Max(v), _) => v.clone(),
            (Partial::Last(l), _) => l.as_ref().and_then(|l| l.value.clone()),
        }
    }
}

/// `a` is a later event than `b`: a greater `(event_ns, created_ns)` (no created time orders
/// first); on a full tie, the greater value (nulls first), so the survivor never depends on
/// the order events arrive in.
pub fn later(a: &Latest, b: &Latest) -> bool {
    let times = (a.event_ns, a.created_ns).cmp(&(b.event_ns, b.created_ns));
    match times {
        Ordering::Equal => match (&a.value, &b.value) {
            (Some(x), Some(y)) => compare(x, y) == Ordering::Greater,
            (Some(_), None) => true,
            _ => false,
        },
        other => other == Ordering::Greater,
    }
}

/// The order of `min`, `max` and ties of `last`: numbers numerically (floats by IEEE total
/// order: -NaN < -inf < … < -0 < +0 < … < +inf < NaN), strings and bytes bytewise, booleans
/// false < true. Values of one column share a variant.
pub fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Int32(x), Value::Int32(y)) => x.cmp(y),
        (Value::Int64(x), Value::Int64(y)) => x.cmp(y),
        (Value::Timestamp(x), Value::Timestamp(y)) => x.cmp(y),
        (Value::Float32(x), Value::Float32(y)) => x.total_cmp(y),
        (Value::Float64(x), Value::Float64(y)) => x.total_cmp(y),
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Bytes(x), Value::Bytes(y)) => x.cmp(y),
        (x, y) => variant(x).cmp(&variant(y)),
    }
}

fn variant(v: &Value) -> u8 {
    match v {
        Value::Bool(_) => 0,
        Value::Int32(_) => 1,
        Value::Int64(_) => 2,
        Value::Float32(_) => 3,
        Value::Float64(_) => 4,
        Value::String(_) => 5,
        Value::Bytes(_) => 6,
        Value::Timestamp(_) => 7,
        Value::List(_) => 8,
    }
}

fn as_i128(v: &Value) -> Option<i128> {
    match v {
        Value::Int32(x) => Some(i128::from(*x)),
        Value::Int64(x) => Some(i128::from(*x)),
        _ => None,
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Int32(x) => Some(f64::from(*x)),
        Value::Int64(x) => Some(*x as f64),
        Value::Float32(x) => Some(f64::from(*x)),
        Value::Float64(x) => Some(*x),
        _ => None,
    }
}

/// The input type an aggregate's values have (`None`: `count` without a column).
pub fn input_type(aggregate: &Aggregate) -> Option<ScalarType> {
    aggregate.column.as_ref().and(aggregate.input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_registry::Ttl;

    fn agg(function: Function, input: Option<ScalarType>) -> Aggregate {
        Aggregate {
            name: "a".into(),
            function,
            column: input.map(|_| "x".into()),
            input,
            window: Ttl { seconds: 3600 },
        }
    }

    #[test]
    fn empty_windows_count_zero_and_null_otherwise() {
        for f in [
            Function::Sum,
            Function::Mean,
            Function::Min,
            Function::Max,
            Function::Stddev,
            Function::Last,
        ] {
            let a = agg(f, Some(ScalarType::Float64));
            assert_eq!(Partial::empty(&a).finish(f), None, "{f}");
        }
        assert_eq!(
            Partial::empty(&agg(Function::Count, None)).finish(Function::Count),
            Some(Value::Int64(0))
        );
    }

    #[test]
    fn stddev_merges_like_one_pass() {
        let a = agg(Function::Stddev, Some(ScalarType::Float64));
        let xs = [1.0, 2.0, 4.0, 7.0, 11.0];
        let mut whole = Partial::empty(&a);
        for x in xs {
            whole.add(0, None, Some(&Value::Float64(x)), true);
        }
        let (mut left, mut right) = (Partial::empty(&a), Partial::empty(&a));
        for x in &xs[..2] {
            left.add(0, None, Some(&Value::Float64(*x)), true);
        }
        for x in &xs[2..] {
            right.add(0, None, Some(&Value::Float64(*x)), true);
        }
        left.merge(&right);
        let (Some(Value::Float64(w)), Some(Value::Float64(m))) = (
            whole.finish(Function::Stddev),
            left.finish(Function::Stddev),
        ) else {
            panic!()
        };
        // sample stddev of 1,2,4,7,11 = sqrt(62.5/4... ) computed directly
        let mean = xs.iter().sum::<f64>() / 5.0;
        let direct = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 4.0).sqrt();
        assert!(
            (w - direct).abs() < 1e-12 && (m - direct).abs() < 1e-12,
            "{w} {m} {direct}"
        );
    }

    #[test]
    fn stddev_of_a_nan_or_an_infinity_is_nan() {
        let a = agg(Function::Stddev, Some(ScalarType::Float64));
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut p = Partial::empty(&a);
            for x in [3.0, bad, 4.0] {
                p.add(0, None, Some(&Value::Float64(x)), true);
            }
            let Some(Value::Float64(v)) = p.finish(Function::Stddev) else {
                panic!()
            };
            assert!(v.is_nan(), "{bad}: {v}");
        }
    }

    #[test]
    fn last_ties_go_to_the_greater_value_whatever_the_order() {
        let a = agg(Function::Last, Some(ScalarType::Int64));
        let (mut x, mut y) = (Partial::empty(&a), Partial::empty(&a));
        x.add(5, Some(1), Some(&Value::Int64(3)), true);
        x.add(5, Some(1), Some(&Value::Int64(9)), true);
        y.add(5, Some(1), Some(&Value::Int64(9)), true);
        y.add(5, Some(1), Some(&Value::Int64(3)), true);
        assert_eq!(x, y);
        assert_eq!(x.finish(Function::Last), Some(Value::Int64(9)));
        // A later created time wins over a greater value.
        x.add(5, Some(2), Some(&Value::Int64(1)), true);
        assert_eq!(x.finish(Function::Last), Some(Value::Int64(1)));
    }
}
