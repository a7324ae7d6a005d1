//! Lease metadata: a JSON object of at most 16 KiB, chosen by the client (who, what, why).

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::Error;

/// Largest metadata object, serialized, in bytes.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// A validated JSON object, shared cheaply between a lease, its events and its copies.
#[derive(Clone, Debug, PartialEq)]
pub struct Metadata(Arc<Map<String, Value>>);

impl Metadata {
    pub fn new(value: Value) -> Result<Self, Error> {
        let Value::Object(map) = value else {
            return Err(Error::invalid(
                "metadata",
                format!("metadata must be a JSON object, got {}", kind(&value)),
            ));
        };
        let size = serialized_len(&map);
        if size > MAX_METADATA_BYTES {
            return Err(Error::invalid(
                "metadata",
                format!("metadata is {size} bytes; at most {MAX_METADATA_BYTES} bytes are allowed"),
            ));
        }
        Ok(Self(Arc::new(map)))
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }
}

/// The length of `map` as JSON, counted without building the text.
fn serialized_len(map: &Map<String, Value>) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    match serde_json::to_writer(&mut c, map) {
        Ok(()) => c.0,
        Err(_) => usize::MAX,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Metadata serializes as the client gave it: serialization is pure. Whatever must not be
/// shown (credentials an import kept) is taken out at the server's edges, by one filter over
/// every output.
impl Serialize for Metadata {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Metadata::new(Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_up_to_16_kib_are_accepted() {
        let m = Metadata::new(json!({"pr": 42, "by": "alice"})).unwrap();
        assert_eq!(m.get("pr"), Some(&json!(42)));
        let big = "x".repeat(MAX_METADATA_BYTES - 20);
        Metadata::new(json!({ "k": big })).unwrap();
    }

    #[test]
    fn the_limit_counts_the_compact_json_exactly() {
        // `{"k":"` and `"}` are 8 bytes: this object is exactly 16,384 bytes of JSON.
        let exact = json!({ "k": "x".repeat(MAX_METADATA_BYTES - 8) });
        assert_eq!(
            serde_json::to_vec(&exact).unwrap().len(),
            MAX_METADATA_BYTES
        );
        Metadata::new(exact).unwrap();
        let over = json!({ "k": "x".repeat(MAX_METADATA_BYTES - 7) });
        let e = Metadata::new(over).unwrap_err();
        assert!(e.to_string().contains("metadata is 16385 bytes"), "{e}");
    }

    #[test]
    fn non_objects_and_oversized_objects_are_refused() {
        let e = Metadata::new(json!([1, 2])).unwrap_err();
        assert_eq!(e.field(), Some("metadata"));
        assert!(e.to_string().contains("an array"));
        let e = Metadata::new(json!({ "k": "x".repeat(MAX_METADATA_BYTES) })).unwrap_err();
        assert!(e.to_string().contains("at most 16384 bytes"), "{e}");
    }
}
