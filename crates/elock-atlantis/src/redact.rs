//! Credentials out of Atlantis's `CloneURL` (`https://user:token@host/...`): the same form as
//! Atlantis's own `SanitizedCloneURL`, `https://user:<redacted>@host/...`.

use crate::model::ProjectLock;

/// What stands in for a secret.
pub const REDACTED: &str = "<redacted>";

/// `url` without the password (or the lone token) of its user information.
pub fn clone_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    let kept = match userinfo.split_once(':') {
        Some((user, _secret)) => format!("{user}:{REDACTED}"),
        None => REDACTED.to_string(),
    };
    format!("{}{kept}{}", &url[..scheme_end + 3], &rest[at..])
}

impl ProjectLock {
    /// The lock with the credentials of its clone URL removed.
    pub fn redacted(&self) -> ProjectLock {
        let mut l = self.clone();
        l.pull.base_repo.clone_url = clone_url(&l.pull.base_repo.clone_url);
        l
    }
}

/// Whether some `CloneURL` string anywhere in `v` carries credentials (no copy made).
pub fn has_clone_url_secret(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Object(map) => map.iter().any(|(k, item)| match item {
            Value::String(url) if k == "CloneURL" => url.contains('@') && clone_url(url) != *url,
            other => has_clone_url_secret(other),
        }),
        Value::Array(items) => items.iter().any(has_clone_url_secret),
        _ => false,
    }
}

/// Redacts every `CloneURL` string anywhere in `v` (Atlantis's JSON, or metadata holding it);
/// true if anything changed.
pub fn clone_urls_in(v: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    let mut changed = false;
    match v {
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                match item {
                    Value::String(url) if k == "CloneURL" => {
                        let shown = clone_url(url);
                        if shown != *url {
                            *url = shown;
                            changed = true;
                        }
                    }
                    other => changed |= clone_urls_in(other),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                changed |= clone_urls_in(item);
            }
        }
        _ => {}
    }
    changed
}

/// Serialized JSON with every credential-bearing `CloneURL` redacted: `None` when there is
/// nothing to redact (the common case costs one scan of the bytes for `"CloneURL"`). The one
/// filter every output of the server goes through (answers, events, webhooks, pages).
pub fn json_bytes(bytes: &[u8]) -> Option<Vec<u8>> {
    // Most answers carry no clone URL at all: one SIMD scan, then nothing.
    memchr::memmem::find(bytes, b"\"CloneURL\"")?;
    let mut v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if !clone_urls_in(&mut v) {
        return None;
    }
    serde_json::to_vec(&v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialized_answers_lose_their_credentials_and_others_pass_untouched() {
        let plain = br#"{"locks":[{"owner":"a","metadata":{"pr":1}}]}"#;
        assert_eq!(json_bytes(plain), None);
        let secret = br#"{"metadata":{"atlantis":{"Pull":{"BaseRepo":{"CloneURL":"https://bot:tok@h/r"}}}}}"#;
        let shown = String::from_utf8(json_bytes(secret).unwrap()).unwrap();
        assert!(shown.contains("https://bot:<redacted>@h/r"), "{shown}");
        let clean = br#"{"CloneURL":"https://h/r"}"#;
        assert_eq!(
            json_bytes(clean),
            None,
            "nothing to redact: the bytes stay as they are"
        );
    }

    #[test]
    fn clone_urls_are_found_at_any_depth() {
        let mut v = serde_json::json!({"atlantis": {"Pull": {"BaseRepo": {
            "CloneURL": "https://bot:tok@github.com/a/b.git", "Name": "b"}}},
            "list": [{"CloneURL": "https://x:y@h/r"}], "CloneURL": 3});
        assert!(clone_urls_in(&mut v));
        assert_eq!(
            v["atlantis"]["Pull"]["BaseRepo"]["CloneURL"],
            "https://bot:<redacted>@github.com/a/b.git"
        );
        assert_eq!(v["list"][0]["CloneURL"], "https://x:<redacted>@h/r");
        assert!(!clone_urls_in(&mut v), "nothing left to redact");
        assert!(!has_clone_url_secret(&v));
        v["list"][0]["CloneURL"] = "https://x:y@h/r".into();
        assert!(has_clone_url_secret(&v));
    }

    #[test]
    fn removes_passwords_and_tokens_only() {
        assert_eq!(
            clone_url("https://atlantis-bot:ghp_SECRETTOKEN123@github.com/acme/infra.git"),
            "https://atlantis-bot:<redacted>@github.com/acme/infra.git"
        );
        assert_eq!(
            clone_url("https://glpat-abc@gitlab.com/group/sub/repo.git"),
            "https://<redacted>@gitlab.com/group/sub/repo.git"
        );
        for plain in [
            "https://github.com/acme/infra.git",
            "git@github.com:acme/infra.git",
            "https://github.com/acme/in@fra.git",
            "",
        ] {
            assert_eq!(clone_url(plain), plain);
        }
    }
}
