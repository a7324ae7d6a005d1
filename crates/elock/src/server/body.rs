//! Request bodies and query strings, parsed so that every error names the field at fault
//! (`resources[2]`, `ttl`, `metadata`) and shows the value.

use axum::body::Bytes;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Parses a JSON body; an empty body parses as `{}`.
pub fn json<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    let de = &mut serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner().to_string();
        // serde reports a missing field at the parent's path; name the field itself.
        let missing = inner
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next());
        let field = match (missing, path.as_str()) {
            (Some(m), ".") => m.to_string(),
            (Some(m), p) => format!("{p}.{m}"),
            (None, ".") => "body".to_string(),
            (None, p) => p.to_string(),
        };
        ApiError::invalid(field.clone(), format!("{field}: {inner}"))
    })
}

/// Parses a query string into `T` (values arrive as strings; `T`'s fields parse them).
pub fn query<T: DeserializeOwned>(raw: Option<&str>) -> Result<T, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| ApiError::invalid("query", format!("the query string is not valid: {e}")))?;
    let map: serde_json::Map<String, serde_json::Value> = pairs
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    serde_path_to_error::deserialize(serde_json::Value::Object(map)).map_err(|e| {
        let field = e.path().to_string();
        ApiError::invalid(
            field.clone(),
            format!("query parameter {field}: {}", e.inner()),
        )
    })
}
