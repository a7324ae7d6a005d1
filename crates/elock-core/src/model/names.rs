//! Resource and owner names: validated once at the edge, then shared cheaply (`Arc<str>`).

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// Longest resource name, in bytes.
pub const MAX_RESOURCE_BYTES: usize = 1024;
/// Longest owner, in bytes.
pub const MAX_OWNER_BYTES: usize = 256;

fn validate(field: &'static str, value: &str, max: usize) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::invalid(field, format!("{field} must not be empty")));
    }
    if value.len() > max {
        let shown: String = value.chars().take(40).collect();
        return Err(Error::invalid(
            field,
            format!(
                "{field} {shown:?}... is {} bytes long; at most {max} bytes are allowed",
                value.len()
            ),
        ));
    }
    if let Some((at, c)) = value.char_indices().find(|(_, c)| c.is_control()) {
        return Err(Error::invalid(
            field,
            format!(
                "{field} {value:?} contains the control character U+{:04X} at byte {at}",
                c as u32
            ),
        ));
    }
    Ok(())
}

macro_rules! name_type {
    ($name:ident, $field:literal, $max:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates `value`: the error names the field and shows the value.
            pub fn new(value: &str) -> Result<Self, Error> {
                validate($field, value, $max)?;
                Ok(Self(Arc::from(value)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<&str> for $name {
            type Error = Error;
            fn try_from(value: &str) -> Result<Self, Error> {
                Self::new(value)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::new(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    ResourceName,
    "resource",
    MAX_RESOURCE_BYTES,
    "What is locked: UTF-8, 1..=1024 bytes, no control characters, case-sensitive."
);
name_type!(
    Owner,
    "owner",
    MAX_OWNER_BYTES,
    "Who holds or waits: UTF-8, 1..=256 bytes, no control characters (e.g. `acme/infra#42`)."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_are_kept_exactly() {
        let r = ResourceName::new("acme/infra/envs/prod/default/").unwrap();
        assert_eq!(r.as_str(), "acme/infra/envs/prod/default/");
        assert_ne!(
            ResourceName::new("A").unwrap(),
            ResourceName::new("a").unwrap()
        );
        ResourceName::new(&"x".repeat(MAX_RESOURCE_BYTES)).unwrap();
        Owner::new(&"o".repeat(MAX_OWNER_BYTES)).unwrap();
        Owner::new("acme/infra#42 héllo ✓").unwrap();
    }

    #[test]
    fn empty_long_and_control_names_are_refused_with_field_and_value() {
        let e = ResourceName::new("").unwrap_err();
        assert_eq!(e.field(), Some("resource"));
        let e = ResourceName::new(&"x".repeat(MAX_RESOURCE_BYTES + 1)).unwrap_err();
        assert!(e.to_string().contains("1025 bytes"), "{e}");
        let e = Owner::new(&"o".repeat(MAX_OWNER_BYTES + 1)).unwrap_err();
        assert_eq!(e.field(), Some("owner"));
        let e = ResourceName::new("bad\u{7}name").unwrap_err();
        assert!(e.to_string().contains("U+0007"), "{e}");
        assert!(e.to_string().contains("bad\\u{7}name"), "{e}");
        let e = Owner::new("line\nbreak").unwrap_err();
        assert_eq!(e.field(), Some("owner"));
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<Owner>("\"\"").is_err());
        assert_eq!(
            serde_json::from_str::<ResourceName>("\"r\"")
                .unwrap()
                .as_str(),
            "r"
        );
    }
}
