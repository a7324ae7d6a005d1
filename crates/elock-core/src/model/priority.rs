//! Priorities: `low` (0), `normal` (1, the default), `high` (2), `critical` (3).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Priority {
    Low = 0,
    #[default]
    Normal = 1,
    High = 2,
    Critical = 3,
}

impl Priority {
    pub const ALL: [Priority; 4] = [
        Priority::Low,
        Priority::Normal,
        Priority::High,
        Priority::Critical,
    ];

    pub const fn level(self) -> u8 {
        self as u8
    }

    /// The priority of level `n`; levels above 3 are clamped to `critical`
    /// (effective priorities are computed and capped, never invented).
    pub const fn from_level_saturating(n: u8) -> Priority {
        match n {
            0 => Priority::Low,
            1 => Priority::Normal,
            2 => Priority::High,
            _ => Priority::Critical,
        }
    }

    pub fn from_level(n: u64) -> Result<Priority, Error> {
        if n > 3 {
            return Err(Error::invalid(
                "priority",
                format!(
                    "priority {n} is out of range: expected 0..=3 or low, normal, high, critical"
                ),
            ));
        }
        Ok(Self::from_level_saturating(n as u8))
    }

    pub const fn name(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Critical => "critical",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Priority {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "low" | "0" => Ok(Priority::Low),
            "normal" | "1" => Ok(Priority::Normal),
            "high" | "2" => Ok(Priority::High),
            "critical" | "3" => Ok(Priority::Critical),
            _ => Err(Error::invalid(
                "priority",
                format!("priority {s:?} is not one of low, normal, high, critical or 0..=3"),
            )),
        }
    }
}

impl Serialize for Priority {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw<'a> {
            Level(u64),
            Name(std::borrow::Cow<'a, str>),
        }
        match Raw::deserialize(d)? {
            Raw::Level(n) => Priority::from_level(n),
            Raw::Name(s) => s.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_levels_parse() {
        assert_eq!("critical".parse::<Priority>().unwrap(), Priority::Critical);
        assert_eq!("HIGH".parse::<Priority>().unwrap(), Priority::High);
        assert_eq!("0".parse::<Priority>().unwrap(), Priority::Low);
        assert_eq!(
            serde_json::from_str::<Priority>("2").unwrap(),
            Priority::High
        );
        assert_eq!(
            serde_json::from_str::<Priority>("\"low\"").unwrap(),
            Priority::Low
        );
        assert_eq!(
            serde_json::to_string(&Priority::Normal).unwrap(),
            "\"normal\""
        );
        assert_eq!(Priority::default(), Priority::Normal);
    }

    #[test]
    fn bad_priorities_name_the_field_and_value() {
        let e = "urgent".parse::<Priority>().unwrap_err();
        assert_eq!(e.field(), Some("priority"));
        assert!(e.to_string().contains("\"urgent\""));
        let e = serde_json::from_str::<Priority>("5").unwrap_err();
        assert!(e.to_string().contains("priority 5 is out of range"), "{e}");
    }
}
