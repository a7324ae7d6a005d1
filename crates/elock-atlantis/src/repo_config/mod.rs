//! atlantis.yaml (Atlantis's repo config, version 3) and elock's `repo_locks` settings in it.
//!
//! ```yaml
//! version: 3
//! repo_locks:                 # for every project (Atlantis: mode only)
//!   mode: on_plan             # disabled | on_plan | on_apply
//!   priority: normal          # elock: low | normal | high | critical
//!   timeout: 2h               # elock: the lease's ttl
//!   queue_timeout: 10m        # elock: how long a plan waits in line
//!   retry_policy: {max_attempts: 3, base_delay: 1s, max_delay: 30s}
//!   deadlock_detection: true
//! projects:
//! - name: app
//!   dir: envs/prod
//!   workspace: default
//!   execution_order_group: 2
//!   depends_on: [network]
//!   repo_locks: {priority: high}   # overrides the top level, key by key
//! ```
//!
//! [`validate`] reports every problem with its line; [`lock_requests`] says what each project
//! would ask elock for.

mod yaml;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use yaml::{Kind, Node};

/// One thing wrong with the file, at a line.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

const REPO_LOCK_KEYS: [&str; 6] = [
    "mode",
    "priority",
    "timeout",
    "queue_timeout",
    "retry_policy",
    "deadlock_detection",
];
const MODES: [&str; 3] = ["disabled", "on_plan", "on_apply"];
const PRIORITIES: [&str; 4] = ["low", "normal", "high", "critical"];
const RETRY_KEYS: [&str; 3] = ["max_attempts", "base_delay", "max_delay"];

/// The lock settings of one project, after the top level and the project's own are merged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepoLocks {
    pub mode: Option<String>,
    pub priority: Option<String>,
    pub timeout: Option<Duration>,
    pub queue_timeout: Option<Duration>,
    pub deadlock_detection: Option<bool>,
}

/// A project of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectConfig {
    pub line: usize,
    pub name: String,
    pub dir: String,
    pub workspace: String,
    pub execution_order_group: i64,
    pub depends_on: Vec<(String, usize)>,
    pub locks: RepoLocks,
}

struct Checker {
    max_timeout: Duration,
    problems: Vec<Problem>,
}

impl Checker {
    fn problem(&mut self, line: usize, message: impl Into<String>) {
        self.problems.push(Problem {
            line,
            message: message.into(),
        });
    }

    fn duration(&mut self, where_: &str, key: &str, node: &Node, capped: bool) -> Option<Duration> {
        let Some(text) = node.scalar() else {
            self.problem(
                node.line,
                format!("{where_}.{key}: expected a duration such as 30m"),
            );
            return None;
        };
        let Ok(d) = humantime::parse_duration(text) else {
            self.problem(
                node.line,
                format!("{where_}.{key}: {text:?} is not a duration (expected e.g. 90s, 30m, 2h)"),
            );
            return None;
        };
        if capped && d > self.max_timeout {
            self.problem(
                node.line,
                format!(
                    "{where_}.{key}: {text} is above max-timeout {}",
                    humantime::format_duration(self.max_timeout)
                ),
            );
        }
        Some(d)
    }

    fn repo_locks(&mut self, where_: &str, node: &Node, into: &mut RepoLocks) {
        let Kind::Map(entries) = &node.kind else {
            self.problem(node.line, format!("{where_}: expected a mapping"));
            return;
        };
        for (key, key_line, value) in entries {
            let text = value.scalar().unwrap_or_default();
            match key.as_str() {
                "mode" if MODES.contains(&text) => into.mode = Some(text.into()),
                "mode" => self.problem(
                    value.line,
                    format!("{where_}.mode: {text:?} is not one of {}", MODES.join(", ")),
                ),
                "priority" if PRIORITIES.contains(&text) => into.priority = Some(text.into()),
                "priority" => self.problem(
                    value.line,
                    format!(
                        "{where_}.priority: {text:?} is not a priority (expected {})",
                        PRIORITIES.join(", ")
                    ),
                ),
                "timeout" => into.timeout = self.duration(where_, key, value, true),
                "queue_timeout" => into.queue_timeout = self.duration(where_, key, value, true),
                "deadlock_detection" => match text {
                    "true" => into.deadlock_detection = Some(true),
                    "false" => into.deadlock_detection = Some(false),
                    _ => self.problem(
                        value.line,
                        format!("{where_}.deadlock_detection: {text:?} is not true or false"),
                    ),
                },
                "retry_policy" => self.retry_policy(where_, value),
                other => self.problem(
                    *key_line,
                    format!(
                        "{where_}: unknown key {other:?} (expected one of {})",
                        REPO_LOCK_KEYS.join(", ")
                    ),
                ),
            }
        }
    }

    fn retry_policy(&mut self, where_: &str, node: &Node) {
        let where_ = format!("{where_}.retry_policy");
        let Kind::Map(entries) = &node.kind else {
            self.problem(node.line, format!("{where_}: expected a mapping"));
            return;
        };
        for (key, key_line, value) in entries {
            match key.as_str() {
                "max_attempts" => {
                    let text = value.scalar().unwrap_or_default();
                    if !text.parse::<u32>().is_ok_and(|n| n >= 1) {
                        self.problem(
                            value.line,
                            format!("{where_}.max_attempts: {text:?} is not a whole number of at least 1"),
                        );
                    }
                }
                "base_delay" | "max_delay" => {
                    self.duration(&where_, key, value, false);
                }
                other => self.problem(
                    *key_line,
                    format!(
                        "{where_}: unknown key {other:?} (expected one of {})",
                        RETRY_KEYS.join(", ")
                    ),
                ),
            }
        }
    }
}

fn text_of(node: Option<&Node>) -> Option<String> {
    node.and_then(Node::scalar).map(str::to_string)
}

/// Reads the file: the projects (with merged lock settings) and every problem found.
pub fn read(text: &str, max_timeout: Duration) -> (Vec<ProjectConfig>, Vec<Problem>) {
    let mut c = Checker {
        max_timeout,
        problems: Vec::new(),
    };
    let root = match yaml::parse(text) {
        Ok(r) => r,
        Err((line, message)) => {
            c.problem(line, message);
            return (Vec::new(), c.problems);
        }
    };
    let mut defaults = RepoLocks::default();
    if let Some(node) = root.get("repo_locks") {
        c.repo_locks("repo_locks", node, &mut defaults);
    }
    let mut projects = Vec::new();
    if let Some(node) = root.get("projects") {
        let Kind::Seq(items) = &node.kind else {
            c.problem(node.line, "projects: expected a list");
            return (projects, c.problems);
        };
        for (i, p) in items.iter().enumerate() {
            let dir = text_of(p.get("dir")).unwrap_or_else(|| ".".into());
            let workspace = text_of(p.get("workspace")).unwrap_or_else(|| "default".into());
            let name = text_of(p.get("name")).unwrap_or_default();
            let label = if name.is_empty() {
                format!("projects[{i}]")
            } else {
                format!("project {name:?}")
            };
            let mut locks = defaults.clone();
            if let Some(node) = p.get("repo_locks") {
                c.repo_locks(&format!("{label}.repo_locks"), node, &mut locks);
            }
            let execution_order_group = match p.get("execution_order_group") {
                None => 0,
                Some(n) => match n.scalar().and_then(|s| s.parse::<i64>().ok()) {
                    Some(g) => g,
                    None => {
                        c.problem(
                            n.line,
                            format!("{label}.execution_order_group: expected a whole number"),
                        );
                        0
                    }
                },
            };
            let depends_on = match p.get("depends_on") {
                None => Vec::new(),
                Some(Node {
                    kind: Kind::Seq(deps),
                    ..
                }) => deps
                    .iter()
                    .filter_map(|d| d.scalar().map(|s| (s.to_string(), d.line)))
                    .collect(),
                Some(n) => {
                    c.problem(
                        n.line,
                        format!("{label}.depends_on: expected a list of project names"),
                    );
                    Vec::new()
                }
            };
            projects.push(ProjectConfig {
                line: p.line,
                name,
                dir: dir.trim_end_matches('/').to_string(),
                workspace,
                execution_order_group,
                depends_on,
                locks,
            });
        }
    }
    check_dependencies(&projects, &mut c);
    c.problems.sort();
    (projects, c.problems)
}

/// Every problem of the file, by line.
pub fn validate(text: &str, max_timeout: Duration) -> Vec<Problem> {
    read(text, max_timeout).1
}

fn check_dependencies(projects: &[ProjectConfig], c: &mut Checker) {
    let by_name: HashMap<&str, &ProjectConfig> = projects
        .iter()
        .filter(|p| !p.name.is_empty())
        .map(|p| (p.name.as_str(), p))
        .collect();
    for p in projects {
        for (dep, line) in &p.depends_on {
            match by_name.get(dep.as_str()) {
                None => c.problem(
                    *line,
                    format!("project {:?} depends on {dep:?}, which is not a project of this file", p.name),
                ),
                Some(d) if d.execution_order_group > p.execution_order_group => c.problem(
                    *line,
                    format!(
                        "project {:?} (execution_order_group {}) depends on {dep:?} (execution_order_group {}), which runs after it",
                        p.name, p.execution_order_group, d.execution_order_group
                    ),
                ),
                Some(_) => {}
            }
        }
    }
    // Cycles: a depth-first search; each cycle reported once, at its first project's line.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new(); // 1 on the path, 2 done
    let mut reported: Vec<Vec<String>> = Vec::new();
    fn visit<'a>(
        name: &'a str,
        by_name: &HashMap<&str, &'a ProjectConfig>,
        state: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
        found: &mut Vec<Vec<String>>,
    ) {
        state.insert(name, 1);
        path.push(name);
        for (dep, _) in &by_name[name].depends_on {
            let Some(d) = by_name.get(dep.as_str()) else {
                continue;
            };
            match state.get(d.name.as_str()) {
                Some(1) => {
                    let from = path.iter().position(|p| *p == d.name).expect("on the path");
                    let mut cycle: Vec<String> =
                        path[from..].iter().map(|s| s.to_string()).collect();
                    cycle.push(d.name.clone());
                    found.push(cycle);
                }
                Some(_) => {}
                None => visit(d.name.as_str(), by_name, state, path, found),
            }
        }
        path.pop();
        state.insert(name, 2);
    }
    for p in projects.iter().filter(|p| !p.name.is_empty()) {
        if !state.contains_key(p.name.as_str()) {
            visit(
                p.name.as_str(),
                &by_name,
                &mut state,
                &mut Vec::new(),
                &mut reported,
            );
        }
    }
    for cycle in reported {
        let line = by_name[cycle[0].as_str()].line;
        c.problem(line, format!("depends_on cycle: {}", cycle.join(" -> ")));
    }
}

/// What a project would ask elock for.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LockPlan {
    pub project: String,
    pub resource: String,
    pub owner: String,
    pub mode: String,
    pub priority: String,
    /// The lease's ttl (`None`: the server's default-timeout).
    pub ttl: Option<String>,
    /// How long the plan waits in line (`None`: the server's queue-timeout).
    pub queue_timeout: Option<String>,
}

/// The lock request of every project of the file for pull request `pull` of `repo`.
pub fn lock_requests(projects: &[ProjectConfig], repo: &str, pull: i64) -> Vec<LockPlan> {
    projects
        .iter()
        .map(|p| LockPlan {
            project: p.name.clone(),
            resource: format!("{repo}/{}/{}/{}", p.dir, p.workspace, p.name),
            owner: format!("{repo}#{pull}"),
            mode: p.locks.mode.clone().unwrap_or_else(|| "on_plan".into()),
            priority: p.locks.priority.clone().unwrap_or_else(|| "normal".into()),
            ttl: p
                .locks
                .timeout
                .map(|d| humantime::format_duration(d).to_string()),
            queue_timeout: p
                .locks
                .queue_timeout
                .map(|d| humantime::format_duration(d).to_string()),
        })
        .collect()
}

#[cfg(test)]
mod tests;
