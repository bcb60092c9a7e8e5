//! A source's location options: object-store URLs and their `storage:` map, Hive partition
//! columns, and which of them hold time.

use std::collections::BTreeMap;

use super::{Validator, at};
use crate::config::check_name;
use crate::definitions::{Loc, SourceDef, TimePartitionDef};
use crate::model::{PartitionColumn, TimePartition};
use crate::source_schema::{is_url, url_scheme};
use crate::value_type::{ScalarType, ValueType};

/// URL schemes a source, an entity table or an output may use.
pub const SCHEMES: &str = "s3://, gs://, az:// (abfs://, abfss://), http(s)://";

/// Whether a `storage:` key names a credential: its value must be a `${VAR}` reference.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["secret", "token", "password", "key", "sas", "credential"]
        .iter()
        .any(|s| k.contains(s))
}

/// A source's checked `storage`, partition columns and time partition.
pub(super) type Location = (
    BTreeMap<String, String>,
    Vec<PartitionColumn>,
    Option<TimePartition>,
);

impl Validator {
    /// The checked `storage`, partition columns and time partition of `def` (`None`: errors
    /// were reported).
    pub(super) fn source_location(&mut self, file: &str, def: &SourceDef) -> Option<Location> {
        let name = &def.name.value;
        let mut ok = true;
        let path = &def.path.value;
        if let Some(problem) = url_problem(path) {
            self.error(
                file,
                at(&def.path),
                format!("source `{name}`: {problem}"),
                Some("credentials come from the environment (AWS_*, GOOGLE_*, AZURE_*) or the source's `storage:` map, as `${VAR}` references".into()),
            );
            ok = false;
        } else if is_url(path) && url_scheme(path).is_none() {
            self.error(
                file,
                at(&def.path),
                format!(
                    "source `{name}`: `{}` is not a URL Quiver can read",
                    redact(path)
                ),
                Some(format!("use a local path or one of {SCHEMES}")),
            );
            ok = false;
        }
        let storage = def
            .storage
            .as_ref()
            .map(|s| s.value.clone())
            .unwrap_or_default();
        if let Some(loc) = &def.storage {
            if !is_url(path) && !loc.value.is_empty() {
                self.error(file, at(loc), format!("source `{name}`: `storage` applies to object-store URLs, and `{path}` is a local path"),
                    Some("remove `storage`, or give the source's URL".into()));
                ok = false;
            }
            for (key, value) in &loc.value {
                if is_secret_key(key) && !is_reference(value) {
                    self.error(file, at(loc), format!("source `{name}`: `storage.{key}` is (or looks like) a credential, and is not exactly one `${{VAR}}` reference: it would be kept in clear"),
                        Some(format!("write it as `{key}: ${{{}}}` (no default, nothing around it); it is read where the store is opened and never kept in the registry", key.to_ascii_uppercase())));
                    ok = false;
                } else if value.contains('@') && value.contains("://") {
                    self.error(file, at(loc), format!("source `{name}`: `storage.{key}` is a URL with a user or password in it, which would be kept in clear"),
                        Some("give credentials as their own `${VAR}` keys (`access_key_id`, `secret_access_key`, …)".into()));
                    ok = false;
                }
            }
        }
        let mut columns: Vec<PartitionColumn> = Vec::new();
        for f in &def.partition_columns {
            let t = f.value_type.value.parse::<ValueType>();
            if let Err((message, hint)) = check_name("partition column", &f.name.value) {
                self.error(
                    file,
                    at(&f.name),
                    format!("source `{name}`: {message}"),
                    Some(hint),
                );
                ok = false;
                continue;
            }
            match t {
                Ok(
                    t @ ValueType::Scalar(
                        ScalarType::String | ScalarType::Int32 | ScalarType::Int64,
                    ),
                ) => {
                    if columns.iter().any(|c| c.name == f.name.value) {
                        self.error(
                            file,
                            at(&f.name),
                            format!(
                                "source `{name}`: partition column `{}` is declared twice",
                                f.name.value
                            ),
                            None,
                        );
                        ok = false;
                    }
                    columns.push(PartitionColumn {
                        name: f.name.value.clone(),
                        value_type: t,
                    });
                }
                _ => {
                    self.error(file, at(&f.value_type), format!("source `{name}`: partition column `{}` has type `{}`; a partition column is `string`, `int32` or `int64`", f.name.value, f.value_type.value), None);
                    ok = false;
                }
            }
        }
        let time = match &def.time_partition {
            None => None,
            Some(tp) => match self.time_partition(file, name, tp, &columns) {
                Some(t) => Some(t),
                None => {
                    ok = false;
                    None
                }
            },
        };
        ok.then_some((storage, columns, time))
    }

    fn time_partition(
        &mut self,
        file: &str,
        name: &str,
        tp: &Loc<TimePartitionDef>,
        columns: &[PartitionColumn],
    ) -> Option<TimePartition> {
        let def = &tp.value;
        let mut problems = Vec::new();
        match columns.iter().find(|c| c.name == def.column) {
            None => problems.push(format!(
                "`time_partition.column` `{}` is not one of the source's `partition_columns`",
                def.column
            )),
            Some(c) if c.value_type != ValueType::Scalar(ScalarType::String) => {
                problems.push(format!(
                    "`time_partition.column` `{}` must be a `string` partition column",
                    def.column
                ))
            }
            Some(_) => {}
        }
        if let Err(e) = check_time_format(&def.format) {
            problems.push(format!("`time_partition.format` `{}`: {e}", def.format));
        }
        if let Some(hour) = &def.hour_column {
            match columns.iter().find(|c| &c.name == hour) {
                None => problems.push(format!("`time_partition.hour_column` `{hour}` is not one of the source's `partition_columns`")),
                Some(c) if !matches!(c.value_type, ValueType::Scalar(ScalarType::Int32 | ScalarType::Int64)) => problems.push(format!("`time_partition.hour_column` `{hour}` must be an `int32` or `int64` partition column (`hour=07` and `hour=7` are both read as 7)")),
                Some(_) => {}
            }
            if def.format.contains("%H") {
                problems.push("`time_partition.format` has `%H` and an `hour_column` is declared too; use one of the two".into());
            }
        }
        let lateness_ms = match &def.lateness {
            None => 0,
            Some(l) => match l.parse::<crate::duration::Ttl>() {
                Ok(t) => t.millis(),
                Err(e) => {
                    problems.push(format!("`time_partition.lateness` `{l}`: {e}"));
                    0
                }
            },
        };
        if problems.is_empty() {
            return Some(TimePartition {
                column: def.column.clone(),
                format: def.format.clone(),
                hour_column: def.hour_column.clone(),
                lateness_ms,
            });
        }
        for p in problems {
            self.error(file, at(tp), format!("source `{name}`: {p}"), Some("e.g. `time_partition: {column: date, format: \"%Y-%m-%d\", hour_column: hour}` over `date=2026-11-30/hour=07/` directories".into()));
        }
        None
    }
}

/// Whether `value` is exactly one `${NAME}` reference, without a default.
fn is_reference(value: &str) -> bool {
    value
        .strip_prefix("${")
        .and_then(|v| v.strip_suffix('}'))
        .is_some_and(|name| {
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
        })
}

/// What is wrong with a URL that would carry a secret or a query (`None`: a local path, or a
/// URL without either).
pub fn url_problem(path: &str) -> Option<String> {
    let (_, rest) = path.split_once("://")?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Some(format!(
            "`{}` carries a user or password in its URL, which would be kept and shown in clear",
            redact(path)
        ));
    }
    if path.contains('?') || path.contains('#') {
        return Some(format!(
            "`{}` has a query or fragment (`?`, `#`); name the object or directory alone",
            redact(path)
        ));
    }
    // An escape would be decoded by one reader of the URL and kept by another: the listing at
    // `apply` found the objects and the scan then read none (found by using it on Azure).
    if rest.contains('%') {
        return Some(format!(
            "`{}` has a percent-escape (`%`): object URLs are taken literally, so names with `%`, `#` or `?` cannot be named; rename the objects (or the directory), or name a directory above them",
            redact(path)
        ));
    }
    None
}

/// A time partition format: `%Y`, `%m`, `%d` and optionally `%H`, in that order, with only
/// literal text between them — so that text order is time order and the partitions of a
/// range are a contiguous run of values.
pub fn check_time_format(format: &str) -> Result<(), String> {
    let mut found = Vec::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some(s @ ('Y' | 'm' | 'd' | 'H')) => found.push(s),
                Some(other) => {
                    return Err(format!(
                        "`%{other}` is not supported; use `%Y`, `%m`, `%d` and optionally `%H`"
                    ));
                }
                None => return Err("ends with a lone `%`".into()),
            }
        } else if c.is_ascii_digit() {
            return Err("digits between the fields would make dates ambiguous".into());
        }
    }
    if found != ['Y', 'm', 'd'] && found != ['Y', 'm', 'd', 'H'] {
        return Err(
            "must hold `%Y`, `%m`, `%d` (and optionally `%H`), once each, in that order".into(),
        );
    }
    Ok(())
}

/// A URL for messages: no user, password or query (signed URLs carry secrets there).
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let host = authority.rsplit('@').next().unwrap_or_default();
    let userinfo = if authority.contains('@') { "***@" } else { "" };
    format!("{scheme}://{userinfo}{host}{path}")
}
