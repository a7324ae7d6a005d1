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

#[cfg(test)]
mod tests {
    use super::*;

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
