//! The Lua scripts, kept as .lua files: a shared library (`scripts/lib.lua`, the lock table on
//! Redis data) followed by one entry file per transition or view. `redis::Script` runs each by
//! its SHA and loads it on a NOSCRIPT answer, so a restarted or failed-over Redis is handled.

use redis::Script;

const LIB: &str = include_str!("../scripts/lib.lua");

pub struct Scripts {
    pub acquire: Script,
    pub release: Script,
    pub renew: Script,
    pub cancel: Script,
    pub force_release: Script,
    pub expire_due: Script,
    pub resolve_deadlocks: Script,
    pub import: Script,
    pub views: Script,
    pub recover: Script,
    pub legacy: Script,
}

fn with_lib(entry: &str) -> Script {
    Script::new(&format!("{LIB}\n{entry}"))
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts {
            acquire: with_lib(include_str!("../scripts/acquire.lua")),
            release: with_lib(include_str!("../scripts/release.lua")),
            renew: with_lib(include_str!("../scripts/renew.lua")),
            cancel: with_lib(include_str!("../scripts/cancel.lua")),
            force_release: with_lib(include_str!("../scripts/force_release.lua")),
            expire_due: with_lib(include_str!("../scripts/expire_due.lua")),
            resolve_deadlocks: with_lib(include_str!("../scripts/resolve_deadlocks.lua")),
            import: with_lib(include_str!("../scripts/import.lua")),
            views: with_lib(include_str!("../scripts/views.lua")),
            recover: with_lib(include_str!("../scripts/recover.lua")),
            legacy: with_lib(include_str!("../scripts/legacy.lua")),
        }
    }
}
