//! Lease and ticket ids: 128 random bits, written as 22 characters of URL-safe base64.
//!
//! A lease id is a capability (knowing it lets you release the lease), so ids are random, not
//! sequential. The lock table never makes ids itself: callers pass them in, which keeps the table
//! deterministic and makes a retried request idempotent.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

macro_rules! random_id {
    ($name:ident, $field:literal) => {
        #[doc = concat!("A ", $field, ": 128 random bits, shown as URL-safe base64 without padding.")]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 16]);

        impl $name {
            /// A new id from the thread-local cryptographically secure generator.
            pub fn random() -> Self {
                Self(rand::random())
            }

            /// The id with exactly these bytes (tests, decoding).
            pub const fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(bytes)
            }

            /// A deterministic id for tests and benchmarks: `n` in the low bytes.
            pub const fn from_u128(n: u128) -> Self {
                Self(n.to_be_bytes())
            }

            pub const fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut buf = [0u8; 22];
                let n = URL_SAFE_NO_PAD
                    .encode_slice(self.0, &mut buf)
                    .expect("16 bytes always encode to 22 characters");
                f.write_str(std::str::from_utf8(&buf[..n]).expect("base64 is ASCII"))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self, Error> {
                let bad = || {
                    Error::invalid(
                        $field,
                        format!(
                            "{:?} is not a {}: expected 22 characters of URL-safe base64",
                            s, $field
                        ),
                    )
                };
                if s.len() != 22 {
                    return Err(bad());
                }
                let mut out = [0u8; 16];
                match URL_SAFE_NO_PAD.decode_slice(s, &mut out) {
                    Ok(16) => Ok(Self(out)),
                    _ => Err(bad()),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

random_id!(LeaseId, "lease id");
random_id!(TicketId, "ticket id");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_as_22_url_safe_characters() {
        for _ in 0..100 {
            let id = LeaseId::random();
            let text = id.to_string();
            assert_eq!(text.len(), 22);
            assert!(text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
            assert_eq!(text.parse::<LeaseId>().unwrap(), id);
        }
    }

    #[test]
    fn random_ids_differ() {
        assert_ne!(TicketId::random(), TicketId::random());
    }

    #[test]
    fn malformed_ids_are_refused_naming_the_field_and_value() {
        let err = "short".parse::<LeaseId>().unwrap_err();
        assert!(err.to_string().contains("lease id"), "{err}");
        assert!(err.to_string().contains("\"short\""), "{err}");
        assert!("!!!!!!!!!!!!!!!!!!!!!!".parse::<TicketId>().is_err());
    }

    #[test]
    fn ids_serialize_as_json_strings() {
        let id = LeaseId::from_u128(7);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<LeaseId>(&json).unwrap(), id);
    }
}
