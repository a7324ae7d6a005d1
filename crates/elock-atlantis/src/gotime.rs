//! Go's `time.Time` in JSON: RFC 3339 with nanoseconds, trailing zeros of the fraction dropped
//! (`2025-03-04T10:15:30.1234Z`, `2025-03-04T10:15:30Z`), the zone as `Z` or `±hh:mm`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A Go time: the instant (seconds and nanoseconds since the Unix epoch) and the zone offset it
/// was written with (kept, as Go keeps it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoTime {
    pub unix_secs: i64,
    pub nanos: u32,
    /// Minutes east of UTC.
    pub offset_minutes: i32,
}

impl Default for GoTime {
    /// Go's zero time, `0001-01-01T00:00:00Z`.
    fn default() -> Self {
        GoTime {
            unix_secs: -62_135_596_800,
            nanos: 0,
            offset_minutes: 0,
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl GoTime {
    /// A UTC time from milliseconds since the epoch (what elock's leases carry).
    pub fn from_unix_millis(ms: u64) -> GoTime {
        GoTime {
            unix_secs: (ms / 1000) as i64,
            nanos: (ms % 1000) as u32 * 1_000_000,
            offset_minutes: 0,
        }
    }

    /// Milliseconds since the epoch (0 for times before it).
    pub fn unix_millis(&self) -> u64 {
        if self.unix_secs < 0 {
            return 0;
        }
        self.unix_secs as u64 * 1000 + u64::from(self.nanos / 1_000_000)
    }

    pub fn parse(s: &str) -> Result<GoTime, String> {
        let bad = |why: &str| format!("{s:?} is not an RFC 3339 time ({why})");
        let b = s.as_bytes();
        let digits = |r: std::ops::Range<usize>| -> Result<i64, String> {
            let part = b.get(r).ok_or_else(|| bad("cut short"))?;
            if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
                return Err(bad("expected digits"));
            }
            Ok(std::str::from_utf8(part)
                .expect("ASCII")
                .parse()
                .expect("digits"))
        };
        let sep = |i: usize, c: &[u8]| -> Result<(), String> {
            match b.get(i) {
                Some(x) if c.contains(x) => Ok(()),
                _ => Err(bad("misplaced separator")),
            }
        };
        let (y, mo, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
        sep(4, b"-")?;
        sep(7, b"-")?;
        sep(10, b"Tt")?;
        let (h, mi, se) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
        sep(13, b":")?;
        sep(16, b":")?;
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
            return Err(bad("a field out of range"));
        }
        let mut i = 19;
        let mut nanos = 0u32;
        if b.get(i) == Some(&b'.') {
            let start = i + 1;
            let mut end = start;
            while b.get(end).is_some_and(u8::is_ascii_digit) {
                end += 1;
            }
            if end == start || end - start > 9 {
                return Err(bad("a fraction of 1 to 9 digits"));
            }
            let frac = digits(start..end)? as u32;
            nanos = frac * 10u32.pow(9 - (end - start) as u32);
            i = end;
        }
        let offset_minutes = match b.get(i) {
            Some(b'Z') | Some(b'z') if i + 1 == b.len() => 0,
            Some(sign @ (b'+' | b'-')) if i + 6 == b.len() => {
                sep(i + 3, b":")?;
                let oh = digits(i + 1..i + 3)?;
                let om = digits(i + 4..i + 6)?;
                if oh > 23 || om > 59 {
                    return Err(bad("an offset out of range"));
                }
                let m = (oh * 60 + om) as i32;
                if *sign == b'-' {
                    -m
                } else {
                    m
                }
            }
            _ => return Err(bad("expected Z or ±hh:mm at the end")),
        };
        let local = days_from_civil(y, mo as u32, d as u32) * 86_400 + h * 3600 + mi * 60 + se;
        Ok(GoTime {
            unix_secs: local - i64::from(offset_minutes) * 60,
            nanos,
            offset_minutes,
        })
    }
}

impl fmt::Display for GoTime {
    /// Go's `time.RFC3339Nano`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let local = self.unix_secs + i64::from(self.offset_minutes) * 60;
        let (y, mo, d) = civil_from_days(local.div_euclid(86_400));
        let s = local.rem_euclid(86_400);
        write!(
            f,
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}",
            s / 3600,
            s % 3600 / 60,
            s % 60
        )?;
        if self.nanos > 0 {
            let frac = format!("{:09}", self.nanos);
            write!(f, ".{}", frac.trim_end_matches('0'))?;
        }
        if self.offset_minutes == 0 {
            f.write_str("Z")
        } else {
            let sign = if self.offset_minutes < 0 { '-' } else { '+' };
            let m = self.offset_minutes.unsigned_abs();
            write!(f, "{sign}{:02}:{:02}", m / 60, m % 60)
        }
    }
}

impl Serialize for GoTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GoTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        GoTime::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_go_rfc3339nano() {
        for s in [
            "2025-03-04T10:15:30.123456789Z",
            "2025-03-04T10:15:30Z",
            "2025-03-04T10:15:30.1Z",
            "2024-02-29T23:59:59.5+05:30",
            "1999-12-31T00:00:00-08:00",
            "0001-01-01T00:00:00Z",
        ] {
            assert_eq!(GoTime::parse(s).unwrap().to_string(), s);
        }
        // Trailing zeros go, as Go drops them.
        assert_eq!(
            GoTime::parse("2025-03-04T10:15:30.120000Z")
                .unwrap()
                .to_string(),
            "2025-03-04T10:15:30.12Z"
        );
        assert_eq!(GoTime::default().to_string(), "0001-01-01T00:00:00Z");
    }

    #[test]
    fn converts_to_and_from_milliseconds() {
        let t = GoTime::parse("2025-03-04T10:15:30.123456789Z").unwrap();
        assert_eq!(t.unix_millis(), 1_741_083_330_123);
        assert_eq!(
            GoTime::from_unix_millis(1_741_083_330_120).to_string(),
            "2025-03-04T10:15:30.12Z"
        );
        let east = GoTime::parse("2025-03-04T12:15:30+02:00").unwrap();
        assert_eq!(east.unix_millis(), 1_741_083_330_000);
    }

    #[test]
    fn refuses_what_is_not_rfc3339_saying_why() {
        for s in [
            "",
            "2025-03-04",
            "2025-13-04T10:15:30Z",
            "2025-03-04T10:15:30",
            "2025-03-04 10:15:30Z",
            "2025-03-04T10:15:30.Z",
            "2025-03-04T10:15:30+0200",
        ] {
            let e = GoTime::parse(s).unwrap_err();
            assert!(e.contains("RFC 3339"), "{e}");
        }
    }
}
