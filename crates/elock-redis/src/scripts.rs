//! The Lua code, kept as .lua files: a shared library (`scripts/lib.lua`, the lock table on Redis
//! data) and one entry file per transition or view.
//!
//! On Redis 7 and later the library and the entries are loaded once as a Function library
//! (`FUNCTION LOAD`) and each entry is called with `FCALL`: the library's sixty-odd functions are
//! defined once, not again on every call (about 7 µs of a 36 µs script, docs/benchmarks.md). The
//! library is named after a hash of its code (`elock_<hash>`, each entry `elock_<hash>_<entry>`),
//! so elock versions sharing one Redis during a rolling upgrade each call their own code. A Redis
//! that lost it (restarted without persistence, `FUNCTION FLUSH`, a new Cluster master) answers
//! "Function not found", and the library is loaded again before the one retry.
//!
//! Where Functions are not available (Redis 6, or `FUNCTION` renamed or denied by an ACL), each
//! entry runs as a script, the library followed by the entry, by SHA (`EVALSHA`, loaded on a
//! NOSCRIPT answer). Both forms run the same text; `begin` sets the per-call state either way.

use redis::Script;

const LIB: &str = include_str!("../scripts/lib.lua");

/// One transition or view: its function name in the library, and the same code as a script.
pub struct Entry {
    pub function: String,
    pub script: Script,
}

pub struct Scripts {
    pub acquire: Entry,
    pub release: Entry,
    pub renew: Entry,
    pub cancel: Entry,
    pub force_release: Entry,
    pub expire_due: Entry,
    pub resolve_deadlocks: Entry,
    pub import: Entry,
    pub views: Entry,
    pub recover: Entry,
    pub legacy: Entry,
    pub heartbeat: Entry,
    /// The Function library: `#!lua name=...`, the library, every entry registered.
    pub library: String,
}

const ENTRIES: [(&str, &str); 12] = [
    ("acquire", include_str!("../scripts/acquire.lua")),
    ("release", include_str!("../scripts/release.lua")),
    ("renew", include_str!("../scripts/renew.lua")),
    ("cancel", include_str!("../scripts/cancel.lua")),
    (
        "force_release",
        include_str!("../scripts/force_release.lua"),
    ),
    ("expire_due", include_str!("../scripts/expire_due.lua")),
    (
        "resolve_deadlocks",
        include_str!("../scripts/resolve_deadlocks.lua"),
    ),
    ("import", include_str!("../scripts/import.lua")),
    ("views", include_str!("../scripts/views.lua")),
    ("recover", include_str!("../scripts/recover.lua")),
    ("legacy", include_str!("../scripts/legacy.lua")),
    ("heartbeat", include_str!("../scripts/heartbeat.lua")),
];

impl Default for Scripts {
    fn default() -> Self {
        let code: String = std::iter::once(LIB)
            .chain(ENTRIES.iter().map(|(_, text)| *text))
            .collect();
        let name = format!("elock_{}", &Script::new(&code).get_hash()[..12]);
        let mut library = format!("#!lua name={name}\n{LIB}\n");
        let mut entries = Vec::with_capacity(ENTRIES.len());
        for (entry, text) in ENTRIES {
            let function = format!("{name}_{entry}");
            library.push_str(&format!(
                "redis.register_function('{function}', function(KEYS, ARGV)\nbegin(KEYS, ARGV)\n{text}\nend)\n"
            ));
            entries.push(Entry {
                function,
                script: Script::new(&format!("{LIB}\nbegin(KEYS, ARGV)\n{text}")),
            });
        }
        let mut entries = entries.into_iter();
        let mut next = || entries.next().expect("one entry per field");
        Scripts {
            acquire: next(),
            release: next(),
            renew: next(),
            cancel: next(),
            force_release: next(),
            expire_due: next(),
            resolve_deadlocks: next(),
            import: next(),
            views: next(),
            recover: next(),
            legacy: next(),
            heartbeat: next(),
            library,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_is_registered_under_the_library_name() {
        let s = Scripts::default();
        let name = s
            .library
            .lines()
            .next()
            .unwrap()
            .strip_prefix("#!lua name=")
            .unwrap();
        assert!(name.starts_with("elock_") && name.len() == 18, "{name}");
        for (entry, _) in ENTRIES {
            let f = format!("{name}_{entry}");
            assert!(
                s.library
                    .contains(&format!("redis.register_function('{f}'")),
                "{f}"
            );
        }
        assert_eq!(s.acquire.function, format!("{name}_acquire"));
        assert_eq!(s.legacy.function, format!("{name}_legacy"));
    }
}
