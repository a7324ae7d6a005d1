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
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
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
    })?;
    // One JSON value and nothing after it: trailing bytes are a client bug, not noise.
    de.end().map_err(|e| {
        ApiError::invalid(
            "body",
            format!("body: unexpected bytes after the JSON value ({e})"),
        )
    })?;
    Ok(value)
}

/// Parses a query string into `T` (values arrive as strings; `T`'s fields parse them).
pub fn query<T: DeserializeOwned>(raw: Option<&str>) -> Result<T, ApiError> {
    let map: serde_json::Map<String, serde_json::Value> = query_pairs(raw)?
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

/// The pairs of a query string, decoded strictly: a parameter given twice, or one whose
/// percent-encoding is not UTF-8, is an error naming it (never silently the last one, never
/// U+FFFD in a resource name).
pub fn query_pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for part in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let key = decode(k, "query")?;
        let value = decode(v, &key)?;
        if pairs.iter().any(|(seen, _)| *seen == key) {
            return Err(ApiError::invalid(
                key.clone(),
                format!("query parameter {key} is given more than once: give it once"),
            ));
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

fn decode(raw: &str, field: &str) -> Result<String, ApiError> {
    let plus_as_space = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            ApiError::invalid(
                field.to_string(),
                format!("query parameter {field}: {raw:?} does not decode to UTF-8 text"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Q {
        name: String,
    }

    fn field_of(e: ApiError) -> String {
        match e {
            ApiError::Engine(e) => e.field().unwrap_or_default().to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn query_strings_decode_strictly() {
        let q: Q = query(Some("name=a%2Fb+c")).unwrap();
        assert_eq!(q.name, "a/b c");
        assert_eq!(field_of(query::<Q>(Some("name=%FF")).unwrap_err()), "name");
        assert_eq!(
            field_of(query::<Q>(Some("name=a&name=b")).unwrap_err()),
            "name"
        );
    }

    #[test]
    fn json_bodies_are_one_value_and_nothing_more() {
        let ok: serde_json::Value = json(&Bytes::from_static(b"{\"a\": 1}\n")).unwrap();
        assert_eq!(ok["a"], 1);
        let e = json::<serde_json::Value>(&Bytes::from_static(b"{\"a\": 1} {}")).unwrap_err();
        assert_eq!(field_of(e), "body");
    }
}
