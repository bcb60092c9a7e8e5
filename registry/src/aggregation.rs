//! Time-window aggregations: what a view of windowed aggregates declares, and the one window
//! rule both retrieval and serving follow (DESIGN, "Time-window aggregations").
//!
//! At time `t`, with tiles `k = floor(event_ts / hop)` and `K = floor(t / hop)`, an aggregate of
//! window `w` holds the events of tiles `K - w/hop + 1 ..= K` with `event_ts <= t`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::duration::Ttl;
use crate::value_type::{ScalarType, ValueType};

/// The tile width when a view declares none.
pub const DEFAULT_HOP: Ttl = Ttl { seconds: 300 };

/// A view's aggregations: the tile width and each aggregate, in declaration order (the view's
/// features are their outputs, in the same order).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Aggregations {
    pub hop: Ttl,
    pub items: Vec<Aggregate>,
}

/// One aggregate: `function` over `column` (or over events, for `count` without a column) in
/// the last `window`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    pub name: String,
    pub function: Function,
    /// The input column; `None` only for `count` (every event counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The input column's type (`None` with `column`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<ScalarType>,
    pub window: Ttl,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Function {
    Count,
    Sum,
    Mean,
    Min,
    Max,
    /// Sample standard deviation (n − 1); null below two values.
    Stddev,
    /// The value of the event with the greatest `(event_ts, created_ts)`.
    Last,
}

pub const FUNCTIONS: [(&str, Function); 7] = [
    ("count", Function::Count),
    ("sum", Function::Sum),
    ("mean", Function::Mean),
    ("min", Function::Min),
    ("max", Function::Max),
    ("stddev", Function::Stddev),
    ("last", Function::Last),
];

impl Function {
    pub fn name(self) -> &'static str {
        FUNCTIONS
            .iter()
            .find(|(_, f)| *f == self)
            .map(|(n, _)| *n)
            .expect("every function has a name")
    }

    /// Whether the function needs an input column.
    pub fn needs_column(self) -> bool {
        self != Function::Count
    }

    /// The output type over an input column of type `input` (`None`: no column), or why that
    /// input cannot be aggregated so. `count` is int64; `sum` of integers int64, of floats
    /// float64; `mean` and `stddev` float64; `min`, `max` and `last` the input's type.
    pub fn output(self, input: Option<ScalarType>) -> Result<ScalarType, String> {
        use ScalarType as S;
        let numeric = |t: S| matches!(t, S::Int32 | S::Int64 | S::Float32 | S::Float64);
        match (self, input) {
            (Function::Count, _) => Ok(S::Int64),
            (_, None) => Err(format!("`{}` needs a `column`", self.name())),
            (Function::Sum, Some(t)) if numeric(t) => {
                Ok(if is_integer(t) { S::Int64 } else { S::Float64 })
            }
            (Function::Mean | Function::Stddev, Some(t)) if numeric(t) => Ok(S::Float64),
            (Function::Sum | Function::Mean | Function::Stddev, Some(t)) => Err(format!(
                "`{}` needs a numeric column (int32, int64, float32, float64), not {}",
                self.name(),
                t.name()
            )),
            (Function::Min | Function::Max, Some(t))
                if numeric(t) || matches!(t, S::Timestamp | S::String) =>
            {
                Ok(t)
            }
            (Function::Min | Function::Max, Some(t)) => Err(format!(
                "`{}` needs an orderable column (a number, string or timestamp), not {}",
                self.name(),
                t.name()
            )),
            (Function::Last, Some(t)) => Ok(t),
        }
    }
}

pub fn is_integer(t: ScalarType) -> bool {
    matches!(t, ScalarType::Int32 | ScalarType::Int64)
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Function {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        FUNCTIONS
            .iter()
            .find(|(n, _)| *n == t)
            .map(|(_, f)| *f)
            .ok_or_else(|| format!("unknown aggregation function `{s}`"))
    }
}

impl Aggregate {
    /// The output's type (validated: the input suits the function).
    pub fn output_type(&self) -> ValueType {
        ValueType::Scalar(
            self.function
                .output(self.input)
                .expect("a validated aggregate has a valid input"),
        )
    }

    /// How many tiles of `hop_ns` the window spans (at least 1).
    pub fn tiles(&self, hop_ns: i64) -> i64 {
        (self.window.nanos() / hop_ns.max(1)).max(1)
    }
}

impl Aggregations {
    pub fn hop_ns(&self) -> i64 {
        self.hop.nanos().max(1)
    }

    /// The columns the aggregates read, each once, in order of first use, with their types.
    pub fn input_columns(&self) -> Vec<(String, ScalarType)> {
        let mut columns: Vec<(String, ScalarType)> = Vec::new();
        for a in &self.items {
            if let (Some(c), Some(t)) = (&a.column, a.input)
                && !columns.iter().any(|(n, _)| n == c)
            {
                columns.push((c.clone(), t));
            }
        }
        columns
    }

    /// [`Aggregations::input_columns`] as typed fields.
    pub fn input_fields(&self) -> Vec<crate::model::Field> {
        self.input_columns()
            .into_iter()
            .map(|(name, t)| crate::model::Field {
                name,
                value_type: ValueType::Scalar(t),
                description: String::new(),
            })
            .collect()
    }

    /// How far before a time `t` its longest window can reach: events at or after
    /// `t - lookback_ns(t)` can count at `t`.
    pub fn lookback_ns(&self, t_ns: i64) -> i64 {
        let start = first_tile(t_ns, self.hop_ns(), self.max_tiles()).saturating_mul(self.hop_ns());
        t_ns.saturating_sub(start)
    }

    /// Tiles the longest window spans: how many tiles an entity's online value keeps.
    pub fn max_tiles(&self) -> i64 {
        let hop = self.hop_ns();
        self.items.iter().map(|a| a.tiles(hop)).max().unwrap_or(1)
    }
}

/// The tile of time `ns` (floor division: times before 1970 have negative tiles).
pub fn tile_of(ns: i64, hop_ns: i64) -> i64 {
    ns.div_euclid(hop_ns)
}

/// The first tile of a window of `tiles` tiles at time `t` (inclusive).
pub fn first_tile(t_ns: i64, hop_ns: i64, tiles: i64) -> i64 {
    tile_of(t_ns, hop_ns).saturating_sub(tiles - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_types_follow_the_documented_table() {
        use ScalarType as S;
        assert_eq!(Function::Count.output(None), Ok(S::Int64));
        assert_eq!(Function::Sum.output(Some(S::Int32)), Ok(S::Int64));
        assert_eq!(Function::Sum.output(Some(S::Float32)), Ok(S::Float64));
        assert_eq!(Function::Mean.output(Some(S::Int64)), Ok(S::Float64));
        assert_eq!(Function::Stddev.output(Some(S::Float32)), Ok(S::Float64));
        assert_eq!(Function::Min.output(Some(S::String)), Ok(S::String));
        assert_eq!(Function::Max.output(Some(S::Timestamp)), Ok(S::Timestamp));
        assert_eq!(Function::Last.output(Some(S::Bool)), Ok(S::Bool));
        assert!(Function::Sum.output(Some(S::String)).is_err());
        assert!(Function::Max.output(Some(S::Bool)).is_err());
        assert!(Function::Mean.output(None).is_err());
    }

    #[test]
    fn tiles_floor_before_the_epoch() {
        assert_eq!(tile_of(-1, 300), -1);
        assert_eq!(tile_of(0, 300), 0);
        assert_eq!(tile_of(299, 300), 0);
        assert_eq!(tile_of(300, 300), 1);
        assert_eq!(first_tile(3_600, 300, 12), 1);
    }
}
