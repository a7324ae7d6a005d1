//! Time as the lock table sees it: milliseconds since the Unix epoch, passed in by the caller.
//!
//! On the wire, instants are RFC 3339 UTC and durations are text (`30s`, `10m`, `2h`).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// An instant: milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The last instant RFC 3339 can write (9999-12-31T23:59:59.999Z). Every timestamp the
    /// engine makes stays at or below it, so writing one can never fail.
    pub const MAX: Timestamp = Timestamp(253_402_300_799_999);

    pub const fn from_millis(ms: u64) -> Self {
        Self(ms)
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    pub fn from_system(t: SystemTime) -> Self {
        Self(
            t.duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis().min(Self::MAX.0 as u128) as u64)
                .unwrap_or(0),
        )
    }

    pub fn to_system(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }

    /// `self + d`, saturating at [`Timestamp::MAX`].
    pub fn plus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(d.as_millis().min(u64::MAX as u128) as u64)
                .min(Self::MAX.0.max(self.0)),
        )
    }

    /// How long from `earlier` to `self` (zero if `earlier` is later).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    pub fn parse_rfc3339(s: &str) -> Result<Self, Error> {
        humantime::parse_rfc3339_weak(s)
            .map(Self::from_system)
            .map_err(|e| Error::invalid("time", format!("{s:?} is not an RFC 3339 time: {e}")))
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 cannot write years past 9999 (and humantime panics on them); a timestamp beyond
    /// [`Timestamp::MAX`], which only a hand-built value can be, is written as `MAX`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = (*self).min(Self::MAX).to_system();
        fmt::Display::fmt(&humantime::format_rfc3339_millis(t), f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

/// Parses a duration written as text: `30s`, `10m`, `2h`, `1h30m`, `250ms`.
pub fn parse_duration(field: &'static str, s: &str) -> Result<Duration, Error> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        Error::invalid(
            field,
            format!("{field} {s:?} is not a duration ({e}): expected text like 30s, 10m or 2h"),
        )
    })
}

/// Writes a duration compactly (`1h30m`, `250ms`), in a form [`parse_duration`] reads back.
pub fn format_duration(d: Duration) -> String {
    let d = Duration::from_millis(d.as_millis() as u64);
    if d.is_zero() {
        return "0s".to_string();
    }
    humantime::format_duration(d).to_string().replace(' ', "")
}

/// Serde helpers for `Duration` and `Option<Duration>` as text.
pub mod duration_text {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse_duration("duration", &s).map_err(serde::de::Error::custom)
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_str(&format_duration(*d)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            let s = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
            s.map(|s| parse_duration("duration", &s).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = Timestamp::from_millis(1_700_000_000_123);
        let s = t.to_string();
        assert_eq!(s, "2023-11-14T22:13:20.123Z");
        assert_eq!(Timestamp::parse_rfc3339(&s).unwrap(), t);
        assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{s}\""));
    }

    #[test]
    fn timestamps_past_year_9999_never_panic_and_saturate() {
        assert_eq!(Timestamp::MAX.to_string(), "9999-12-31T23:59:59.999Z");
        assert_eq!(
            Timestamp::from_millis(u64::MAX).to_string(),
            Timestamp::MAX.to_string()
        );
        let late = Timestamp::parse_rfc3339("9999-12-31T23:00:00Z").unwrap();
        assert_eq!(
            late.plus(Duration::from_secs(100_000_000 * 3600)),
            Timestamp::MAX
        );
        assert_eq!(
            Timestamp::from_millis(5).plus(Duration::MAX),
            Timestamp::MAX
        );
        assert!(Timestamp::parse_rfc3339("10000-01-01T00:00:00Z").is_err());
    }

    #[test]
    fn durations_are_text_both_ways() {
        for (text, d) in [
            ("30s", Duration::from_secs(30)),
            ("10m", Duration::from_secs(600)),
            ("2h", Duration::from_secs(7200)),
            ("1h30m", Duration::from_secs(5400)),
            ("250ms", Duration::from_millis(250)),
        ] {
            assert_eq!(parse_duration("ttl", text).unwrap(), d, "{text}");
            assert_eq!(format_duration(d), text);
        }
        let e = parse_duration("ttl", "soon").unwrap_err();
        assert_eq!(e.field(), Some("ttl"));
        assert!(e.to_string().contains("\"soon\""));
    }
}
