//! Times on the command line: RFC 3339, or naive date/date-time read as UTC.

use anyhow::Result;
use chrono::{DateTime, NaiveDate, NaiveDateTime};

use crate::exit::UserError;

/// Nanoseconds since the epoch.
pub fn parse_time(text: &str) -> Result<i64> {
    let parsed = DateTime::parse_from_rfc3339(text)
        .map(|t| t.to_utc())
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S").map(|t| t.and_utc()))
        .or_else(|_| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc())
        });
    let t = parsed.map_err(|_| {
        UserError(format!("invalid time `{text}`: write RFC 3339 (2026-01-01T00:00:00Z) or a date (2026-01-01); naive times are UTC"))
    })?;
    Ok(t.timestamp_nanos_opt()
        .ok_or_else(|| UserError(format!("time `{text}` is out of range (years 1677–2262)")))?)
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn accepts_rfc3339_and_naive_utc() {
        let t = 1_767_225_600_000_000_000;
        assert_eq!(parse_time("2026-01-01T00:00:00Z").unwrap(), t);
        assert_eq!(parse_time("2026-01-01T01:00:00+01:00").unwrap(), t);
        assert_eq!(parse_time("2026-01-01T00:00:00").unwrap(), t);
        assert_eq!(parse_time("2026-01-01").unwrap(), t);
        assert!(parse_time("yesterday").is_err());
    }
}
