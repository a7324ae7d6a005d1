//! The Lua code, kept as .lua files: a shared library (`scripts/lib.lua`, the lock table on Redis
//! data) and one entry file per transition or view, each named by a [`Script`].
//!
//! On Redis 7 and later the library and the entries are loaded once as a Function library
//! (`FUNCTION LOAD`) and each entry is called with `FCALL`: the library's sixty-odd functions are
//! defined once, not again on every call (docs/benchmarks.md). The library is named after a hash
//! of its code (`elock_<hash>`, each entry `elock_<hash>_<script>`), so elock versions sharing one
//! Redis during a rolling upgrade each call their own code. A Redis that lost it (restarted
//! without persistence, `FUNCTION FLUSH`, a new Cluster master) answers "Function not found",
//! and the library is loaded again before the one retry.
//!
//! Where Functions are not available (Redis 6, or `FUNCTION` renamed or denied by an ACL), each
//! entry runs as a script, the library followed by the entry, by SHA (`EVALSHA`, loaded on a
//! NOSCRIPT answer). Both forms run the same text; `begin` sets the per-call state either way.

const LIB: &str = include_str!("../scripts/lib.lua");

/// Every entry of the library, by name: the file `scripts/<name>.lua` and the function
/// `elock_<hash>_<name>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Script {
    Acquire,
    Release,
    Renew,
    Cancel,
    ForceRelease,
    ExpireDue,
    ResolveDeadlocks,
    Import,
    /// The read-only views (a lease, a ticket, pages of listings, the time).
    Views,
    /// Rebuilds what is derived from the records, when a server opens the store.
    Recover,
    /// Atlantis's own keys beside elock's: adoption and the watch's checks.
    AtlantisKeys,
    /// A server's heartbeat, and the reaping of servers that stopped beating.
    Heartbeat,
}

impl Script {
    pub const ALL: [Script; 12] = [
        Script::Acquire,
        Script::Release,
        Script::Renew,
        Script::Cancel,
        Script::ForceRelease,
        Script::ExpireDue,
        Script::ResolveDeadlocks,
        Script::Import,
        Script::Views,
        Script::Recover,
        Script::AtlantisKeys,
        Script::Heartbeat,
    ];

    /// The entry's name: its file's stem and its function's suffix.
    pub const fn name(self) -> &'static str {
        match self {
            Script::Acquire => "acquire",
            Script::Release => "release",
            Script::Renew => "renew",
            Script::Cancel => "cancel",
            Script::ForceRelease => "force_release",
            Script::ExpireDue => "expire_due",
            Script::ResolveDeadlocks => "resolve_deadlocks",
            Script::Import => "import",
            Script::Views => "views",
            Script::Recover => "recover",
            Script::AtlantisKeys => "atlantis_keys",
            Script::Heartbeat => "heartbeat",
        }
    }

    /// The entry's code, `scripts/<name>.lua`.
    const fn source(self) -> &'static str {
        match self {
            Script::Acquire => include_str!("../scripts/acquire.lua"),
            Script::Release => include_str!("../scripts/release.lua"),
            Script::Renew => include_str!("../scripts/renew.lua"),
            Script::Cancel => include_str!("../scripts/cancel.lua"),
            Script::ForceRelease => include_str!("../scripts/force_release.lua"),
            Script::ExpireDue => include_str!("../scripts/expire_due.lua"),
            Script::ResolveDeadlocks => include_str!("../scripts/resolve_deadlocks.lua"),
            Script::Import => include_str!("../scripts/import.lua"),
            Script::Views => include_str!("../scripts/views.lua"),
            Script::Recover => include_str!("../scripts/recover.lua"),
            Script::AtlantisKeys => include_str!("../scripts/atlantis_keys.lua"),
            Script::Heartbeat => include_str!("../scripts/heartbeat.lua"),
        }
    }
}

/// One entry, both ways it can be called: its function in the library, and the same code as
/// a script.
pub struct Entry {
    pub function: String,
    pub script: redis::Script,
}

pub struct Scripts {
    /// In the order of [`Script::ALL`].
    entries: Vec<Entry>,
    /// The Function library: `#!lua name=...`, the library, every entry registered.
    pub library: String,
}

impl Scripts {
    pub fn entry(&self, script: Script) -> &Entry {
        &self.entries[script as usize]
    }
}

impl Default for Scripts {
    fn default() -> Self {
        let code: String = std::iter::once(LIB)
            .chain(Script::ALL.iter().map(|s| s.source()))
            .collect();
        let name = format!("elock_{}", &redis::Script::new(&code).get_hash()[..12]);
        let mut library = format!("#!lua name={name}\n{LIB}\n");
        let mut entries = Vec::with_capacity(Script::ALL.len());
        for s in Script::ALL {
            let function = format!("{name}_{}", s.name());
            library.push_str(&format!(
                "redis.register_function('{function}', function(KEYS, ARGV)\nbegin(KEYS, ARGV)\n{}\nend)\n",
                s.source()
            ));
            entries.push(Entry {
                function,
                script: redis::Script::new(&format!("{LIB}\nbegin(KEYS, ARGV)\n{}", s.source())),
            });
        }
        Scripts { entries, library }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The library's name, from its first line.
    fn library_name(s: &Scripts) -> &str {
        s.library
            .lines()
            .next()
            .unwrap()
            .strip_prefix("#!lua name=")
            .unwrap()
    }

    #[test]
    fn every_script_is_registered_under_its_own_name_with_its_own_code() {
        let s = Scripts::default();
        let name = library_name(&s);
        assert!(name.starts_with("elock_") && name.len() == 18, "{name}");
        for script in Script::ALL {
            let entry = s.entry(script);
            let f = format!("{name}_{}", script.name());
            assert_eq!(entry.function, f);
            assert!(
                s.library.contains(&format!(
                    "redis.register_function('{f}', function(KEYS, ARGV)\nbegin(KEYS, ARGV)\n{}\nend)",
                    script.source()
                )),
                "{f} is registered with scripts/{}.lua",
                script.name()
            );
            assert!(entry.script.get_hash().len() == 40);
        }
    }

    #[test]
    fn the_names_are_distinct_and_name_their_files() {
        let mut names: Vec<_> = Script::ALL.iter().map(|s| s.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Script::ALL.len());
        // ALL is in declaration order, so that `entry` can index by discriminant.
        for (i, s) in Script::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i, "{s:?}");
        }
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f != "lib.lua")
            .collect();
        files.sort();
        let mut expected: Vec<String> = names.iter().map(|n| format!("{n}.lua")).collect();
        expected.sort();
        assert_eq!(
            files, expected,
            "every file in scripts/ is an entry, and back"
        );
    }
}
