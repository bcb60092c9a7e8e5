//! Sources: a path, timestamp columns and a field mapping each.

use std::collections::HashMap;

use super::{Detail, Kind, Validator, at};
use crate::config::check_name;
use crate::definitions::DefinitionFile;
use crate::model::Source;

impl Validator {
    pub(super) fn sources(&mut self, file: &str, defs: &DefinitionFile) {
        for def in &defs.sources {
            let declared = self.declare(Kind::Source, file, &def.name);
            let mut ok = true;
            if def.path.value.trim().is_empty() {
                self.error(file, at(&def.path), format!("source `{}` has an empty path", def.name.value),
                    Some("give a Parquet file, a directory or a glob, relative to the repository root".into()));
                ok = false;
            }
            for field in
                std::iter::once(&def.timestamp_field).chain(def.created_timestamp_field.as_ref())
            {
                if field.value.trim().is_empty() {
                    self.error(
                        file,
                        at(field),
                        "timestamp field name is empty".into(),
                        Some("name the column holding each row's event (or created) time".into()),
                    );
                    ok = false;
                }
            }
            if let Some(created) = &def.created_timestamp_field
                && created.value == def.timestamp_field.value
                && !created.value.trim().is_empty()
            {
                self.error(
                    file,
                    at(created),
                    format!(
                        "source `{}`: `created_timestamp_field` is the same column as `timestamp_field` (`{}`)",
                        def.name.value, created.value
                    ),
                    Some("remove `created_timestamp_field`, or name the column holding when each row was written".into()),
                );
                ok = false;
            }
            let mut targets: HashMap<&str, &str> = HashMap::new();
            for (from, to) in &def.field_mapping {
                if let Err((message, hint)) = check_name("mapped column", to) {
                    self.error(
                        file,
                        at(&def.name),
                        format!(
                            "field_mapping of source `{}` maps `{from}` to an {message}",
                            def.name.value
                        ),
                        Some(hint),
                    );
                    ok = false;
                } else if let Some(other) = targets.insert(to, from) {
                    self.error(file, at(&def.name), format!("field_mapping of source `{}` maps both `{other}` and `{from}` to `{to}`", def.name.value), None);
                    ok = false;
                }
            }
            let location = self.source_location(file, def);
            if declared
                && ok
                && let Some((storage, partition_columns, time_partition)) = location
            {
                if let Some(place) = self.places.get_mut(&(Kind::Source, def.name.value.clone())) {
                    place.detail.insert(Detail::Path, at(&def.path));
                }
                self.registry.sources.insert(
                    def.name.value.clone(),
                    Source {
                        name: def.name.value.clone(),
                        path: def.path.value.clone(),
                        timestamp_field: def.timestamp_field.value.clone(),
                        created_timestamp_field: def
                            .created_timestamp_field
                            .as_ref()
                            .map(|f| f.value.clone()),
                        field_mapping: def.field_mapping.clone(),
                        storage,
                        partition_columns,
                        time_partition,
                        description: def.description.clone(),
                        tags: def.tags.clone(),
                    },
                );
            }
        }
    }
}
