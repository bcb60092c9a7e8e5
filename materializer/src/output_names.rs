//! How a feature's output column is named, the same in training tables and online answers, and
//! the check that no two output columns share a name.

use std::collections::HashSet;

/// A requested feature's output column: `view__feature` with full feature names, else
/// `feature`.
pub fn output_name(view: &str, feature: &str, full_feature_names: bool) -> String {
    if full_feature_names {
        format!("{view}__{feature}")
    } else {
        feature.to_string()
    }
}

/// What an output name collided with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collision {
    /// One of the columns the output starts with (the entity table's, the echoed join keys).
    Column,
    /// An output name added before it.
    Output,
}

/// The output columns' names so far: the columns the output starts with, then each feature's
/// name as it is added, refused when it is taken.
#[derive(Debug, Default)]
pub struct OutputNames {
    columns: HashSet<String>,
    outputs: HashSet<String>,
}

impl OutputNames {
    /// Names starting with `columns` (which may repeat among themselves).
    pub fn new<S: Into<String>>(columns: impl IntoIterator<Item = S>) -> Self {
        OutputNames {
            columns: columns.into_iter().map(Into::into).collect(),
            outputs: HashSet::new(),
        }
    }

    /// Adds `name`, or says what already has it (a starting column first).
    pub fn add(&mut self, name: &str) -> Result<(), Collision> {
        if self.columns.contains(name) {
            return Err(Collision::Column);
        }
        if !self.outputs.insert(name.to_string()) {
            return Err(Collision::Output);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_collisions() {
        assert_eq!(output_name("a", "x", true), "a__x");
        assert_eq!(output_name("a", "x", false), "x");
        let mut names = OutputNames::new(["id", "event_timestamp"]);
        assert_eq!(names.add("x"), Ok(()));
        assert_eq!(names.add("id"), Err(Collision::Column));
        assert_eq!(names.add("x"), Err(Collision::Output));
        assert_eq!(names.add("a__x"), Ok(()));
    }
}
