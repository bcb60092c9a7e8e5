//! Time-to-live durations as users write them: `0`, `90s`, `30m`, `2h`, `7d`, `1w`, `1d12h`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A whole number of seconds. `0` means unbounded when used as a ttl.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ttl {
    pub seconds: u64,
}

const UNITS: [(char, u64); 5] = [
    ('w', 604_800),
    ('d', 86_400),
    ('h', 3_600),
    ('m', 60),
    ('s', 1),
];

impl Ttl {
    pub fn is_unbounded(self) -> bool {
        self.seconds == 0
    }

    /// In nanoseconds, saturating at `i64::MAX` (about 292 years: past any timestamp's reach);
    /// `0` stays `0` (unbounded). The one conversion every user of a ttl goes through.
    pub fn nanos(self) -> i64 {
        self.scaled(1_000_000_000)
    }

    /// In milliseconds, saturating like [`Ttl::nanos`].
    pub fn millis(self) -> i64 {
        self.scaled(1_000)
    }

    fn scaled(self, per_second: i64) -> i64 {
        i64::try_from(self.seconds)
            .ok()
            .and_then(|s| s.checked_mul(per_second))
            .unwrap_or(i64::MAX)
    }
}

impl FromStr for Ttl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let bad = || {
            format!(
                "invalid duration `{s}`: write a number with a unit, e.g. `90s`, `30m`, `2h`, `7d`, `1w`, `1d12h`, or `0` for unbounded"
            )
        };
        if text == "0" {
            return Ok(Ttl { seconds: 0 });
        }
        if text.is_empty() {
            return Err(bad());
        }
        let mut seconds: u64 = 0;
        let mut digits = String::new();
        for c in text.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit = UNITS.iter().find(|(u, _)| *u == c).ok_or_else(bad)?.1;
            let n: u64 = digits.parse().map_err(|_| bad())?;
            seconds = n
                .checked_mul(unit)
                .and_then(|v| seconds.checked_add(v))
                .ok_or_else(|| format!("duration `{s}` is too large"))?;
            digits.clear();
        }
        if !digits.is_empty() {
            return Err(bad());
        }
        Ok(Ttl { seconds })
    }
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.seconds == 0 {
            return f.write_str("0");
        }
        let mut rest = self.seconds;
        for (unit, size) in UNITS {
            if rest >= size {
                write!(f, "{}{unit}", rest / size)?;
                rest %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for Ttl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ttl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One conversion for every user: exact while it fits, saturating beyond, 0 kept.
    #[test]
    fn conversions_saturate_instead_of_overflowing() {
        let t = |seconds| Ttl { seconds };
        assert_eq!(t(0).nanos(), 0);
        assert_eq!(t(7200).nanos(), 7_200_000_000_000);
        assert_eq!(t(7200).millis(), 7_200_000);
        assert_eq!(t(9_223_372_036).nanos(), 9_223_372_036_000_000_000);
        assert_eq!(t(9_223_372_037).nanos(), i64::MAX);
        assert_eq!(t(u64::MAX).nanos(), i64::MAX);
        assert_eq!(t(u64::MAX).millis(), i64::MAX);
    }

    #[test]
    fn parses_the_documented_forms() {
        let secs = |s: &str| s.parse::<Ttl>().map(|t| t.seconds);
        assert_eq!(secs("0"), Ok(0));
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs("30m"), Ok(1800));
        assert_eq!(secs("2h"), Ok(7200));
        assert_eq!(secs("7d"), Ok(604_800));
        assert_eq!(secs("1w"), Ok(604_800));
        assert_eq!(secs("1d12h"), Ok(129_600));
        for bad in [
            "",
            "2",
            "h",
            "2x",
            "-1h",
            "1.5h",
            "2h3",
            "99999999999999999999w",
        ] {
            assert!(secs(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    proptest! {
        #[test]
        fn display_parses_back_to_the_same_duration(seconds in 0u64..10_000_000_000) {
            let ttl = Ttl { seconds };
            prop_assert_eq!(ttl.to_string().parse::<Ttl>(), Ok(ttl));
        }
    }
}
