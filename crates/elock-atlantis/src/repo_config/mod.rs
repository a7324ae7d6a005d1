//! atlantis.yaml (Atlantis's repo config, version 3) read the way Atlantis reads it.
//!
//! Atlantis decodes the file strictly: a key its types do not have makes it refuse the whole
//! file, and every plan of the repository fails. [`read`] checks the file against Atlantis's raw
//! types (`schema.rs`) and the value checks Atlantis makes, plus what Atlantis checks only when
//! it runs (`depends_on` cycles and order). elock's lock settings (priority, timeout, queue
//! timeout...) do not belong in atlantis.yaml: Atlantis's `repo_locks` has `mode` only. Where
//! the file has them, the report says that Atlantis will refuse it and gives the equivalent rule
//! of elock's own configuration (`enhanced-locking.policies`) as a [`Suggestion`].

mod schema;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::yaml::{self, Kind, Node};

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

const MODES: [&str; 3] = ["disabled", "on_plan", "on_apply"];
const REQUIREMENTS: [&str; 3] = ["approved", "mergeable", "undiverged"];
const DISTRIBUTIONS: [&str; 2] = ["terraform", "opentofu"];

/// elock settings people put in `repo_locks`, and where each belongs in elock's configuration:
/// a key of a policy rule, or a server-wide section.
const ELOCK_KEYS: [(&str, Home); 5] = [
    ("priority", Home::Rule("priority")),
    ("timeout", Home::Rule("ttl")),
    ("queue_timeout", Home::Rule("wait")),
    ("retry_policy", Home::Section("retry")),
    ("deadlock_detection", Home::Section("deadlock-detection")),
];

#[derive(Clone, Copy)]
enum Home {
    Rule(&'static str),
    Section(&'static str),
}

/// A project of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectConfig {
    pub line: usize,
    pub name: String,
    pub dir: String,
    pub workspace: String,
    /// Atlantis's `repo_locks.mode` (the project's, else the file's).
    pub mode: Option<String>,
    pub execution_order_group: i64,
    pub depends_on: Vec<(String, usize)>,
}

/// Where elock settings found in atlantis.yaml belong in elock's configuration.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Suggestion {
    /// The `repo_locks` they were found in.
    pub line: usize,
    /// The resources the rule covers: the project's lock key, or the repository's.
    #[serde(rename = "match")]
    pub pattern: String,
    /// The rule's keys and values (`priority`, `ttl`, `wait`), in that order.
    pub rule: Vec<(String, String)>,
    /// Server-wide settings it had, which no rule holds (`retry`, `deadlock-detection`).
    pub server_wide: Vec<String>,
}

impl Suggestion {
    /// The rule as an item of `enhanced-locking.policies`.
    pub fn to_yaml(&self, indent: &str) -> String {
        let mut out = format!("{indent}- match: {:?}\n", self.pattern);
        for (k, v) in &self.rule {
            out.push_str(&format!("{indent}  {k}: {v}\n"));
        }
        out
    }
}

/// What reading the file found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub projects: Vec<ProjectConfig>,
    pub problems: Vec<Problem>,
    pub suggestions: Vec<Suggestion>,
}

pub(crate) struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn problem(&mut self, line: usize, message: impl Into<String>) {
        self.problems.push(Problem {
            line,
            message: message.into(),
        });
    }

    fn unknown_field(&mut self, line: usize, key: &str, go_type: &str) {
        self.problem(line, format!("field {key} not found in type raw.{go_type}"));
    }

    /// Atlantis's `repo_locks`: `mode` only. elock's settings found there are refused as
    /// Atlantis refuses them, saying where they belong.
    fn repo_locks(&mut self, node: &Node) {
        let Kind::Map(entries) = &node.kind else {
            self.problem(node.line, "cannot unmarshal into raw.RepoLocks");
            return;
        };
        for (key, key_line, value) in entries {
            if key == "mode" {
                let m = value.scalar().unwrap_or_default();
                if !MODES.contains(&m) {
                    self.problem(
                        value.line,
                        format!(
                            "repo_locks: mode: {m:?} is not a valid value: use one of {}.",
                            MODES.join(", ")
                        ),
                    );
                }
            } else if ELOCK_KEYS.iter().any(|(k, _)| k == key) {
                self.problem(
                    *key_line,
                    format!(
                        "field {key} not found in type raw.RepoLocks: Atlantis refuses this file \
                         (every plan of the repository fails); {key} is an elock setting and \
                         belongs in elock's configuration (see below)"
                    ),
                );
            } else {
                self.unknown_field(*key_line, key, "RepoLocks");
            }
        }
    }

    /// The elock settings of one `repo_locks` node as a policy rule for `pattern`.
    fn suggestion(&mut self, node: &Node, pattern: String) -> Option<Suggestion> {
        let Kind::Map(entries) = &node.kind else {
            return None;
        };
        let line = node.line;
        let mut s = Suggestion {
            line,
            pattern,
            rule: Vec::new(),
            server_wide: Vec::new(),
        };
        // In the order of ELOCK_KEYS, whatever the file's order.
        for (key, home) in ELOCK_KEYS {
            let Some((_, _, value)) = entries.iter().find(|(k, _, _)| k == key) else {
                continue;
            };
            match (home, value.scalar()) {
                (Home::Rule(name), Some(v)) => s.rule.push((name.to_string(), v.to_string())),
                (Home::Section(section), _) => s.server_wide.push(section.to_string()),
                (Home::Rule(_), None) => {}
            }
        }
        (!s.rule.is_empty() || !s.server_wide.is_empty()).then_some(s)
    }
}

fn text_of(node: Option<&Node>) -> Option<String> {
    node.and_then(Node::scalar).map(str::to_string)
}

/// Reads the file as Atlantis would: the projects, every problem, and where the elock settings
/// found in it belong. `repo` (the repository's full name) makes the suggested rules' globs
/// exact; without it they match any repository.
pub fn read(text: &str, repo: Option<&str>) -> Report {
    let mut c = Checker {
        problems: Vec::new(),
    };
    let mut report = Report::default();
    let root = match yaml::parse(text) {
        Ok(r) => r,
        Err((line, message)) => {
            c.problem(line, message);
            report.problems = c.problems;
            return report;
        }
    };
    if !matches!(root.kind, Kind::Map(_)) {
        c.problem(
            root.line,
            "cannot unmarshal into raw.RepoCfg: expected a mapping",
        );
        report.problems = c.problems;
        return report;
    }
    let repo_glob = repo.unwrap_or("*/*");
    // Strict decoding first: the whole file's keys and types; repo_locks as it goes.
    c.fields(&root, "RepoCfg", schema::REPO_CFG);
    let top_suggestion = root
        .get("repo_locks")
        .and_then(|n| c.suggestion(n, format!("{repo_glob}/**")));
    match root.get("version") {
        None => c.problem(
            root.line,
            "version: is required. If you've just upgraded Atlantis you need to rewrite your atlantis.yaml for version 3.",
        ),
        Some(v) if !matches!(v.scalar(), Some("2" | "3")) => {
            c.problem(v.line, "version: only versions 2 and 3 are supported.")
        }
        Some(_) => {}
    }
    let default_mode = root.get("repo_locks").and_then(|n| text_of(n.get("mode")));
    let mut project_suggestions = Vec::new();
    if let Some(Node {
        kind: Kind::Seq(items),
        ..
    }) = root.get("projects")
    {
        for (i, p) in items.iter().enumerate() {
            if !matches!(p.kind, Kind::Map(_)) {
                continue;
            }
            let project = project_of(&mut c, i, p, default_mode.clone());
            if let Some(n) = p.get("repo_locks") {
                // The rule for exactly this project's lock key.
                let key = format!(
                    "{repo_glob}/{}/{}/{}",
                    project.dir, project.workspace, project.name
                );
                project_suggestions.extend(c.suggestion(n, key));
            }
            report.projects.push(project);
        }
    }
    check_names(&report.projects, &mut c);
    check_dependencies(&report.projects, &mut c);
    c.problems.sort();
    c.problems.dedup();
    report.problems = c.problems;
    // A project's own rule must come before the file's (the first matching rule applies).
    report.suggestions = project_suggestions;
    report.suggestions.extend(top_suggestion);
    report
}

/// A project's fields, with the value checks Atlantis makes on them.
fn project_of(c: &mut Checker, i: usize, p: &Node, default_mode: Option<String>) -> ProjectConfig {
    let name = text_of(p.get("name")).unwrap_or_default();
    let label = if name.is_empty() {
        format!("projects[{i}]")
    } else {
        format!("project {name:?}")
    };
    let dir = match p.get("dir") {
        None => {
            c.problem(p.line, format!("{label}: dir: cannot be blank."));
            ".".to_string()
        }
        Some(d) => {
            let text = d.scalar().unwrap_or_default().to_string();
            if text.is_empty() {
                c.problem(d.line, format!("{label}: dir: cannot be blank."));
            }
            if text.split('/').any(|part| part == "..") {
                c.problem(d.line, format!("{label}: dir: cannot contain '..'."));
            }
            if text.starts_with('/') {
                c.problem(
                    d.line,
                    format!("{label}: dir: must be relative to the repository root."),
                );
            }
            clean_dir(&text)
        }
    };
    if let Some(n) = p.get("name") {
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.~/".contains(ch));
        if !valid {
            c.problem(
                n.line,
                format!(
                    "{label}: name: {name:?} is not allowed: must contain only URL safe characters"
                ),
            );
        }
    }
    for (key, allowed) in [
        ("plan_requirements", &REQUIREMENTS[..]),
        ("apply_requirements", &REQUIREMENTS[..]),
        ("import_requirements", &REQUIREMENTS[..]),
    ] {
        if let Some(Node {
            kind: Kind::Seq(items),
            ..
        }) = p.get(key)
        {
            for item in items {
                let v = item.scalar().unwrap_or_default();
                if !allowed.contains(&v) {
                    c.problem(
                        item.line,
                        format!("{label}: {key}: {v:?} is not a valid requirement, only {} are supported", allowed.join(", ")),
                    );
                }
            }
        }
    }
    if let Some(d) = p.get("terraform_distribution") {
        let v = d.scalar().unwrap_or_default();
        if !DISTRIBUTIONS.contains(&v) {
            c.problem(
                d.line,
                format!("{label}: terraform_distribution: {v:?} is not a valid distribution, use terraform or opentofu"),
            );
        }
    }
    let execution_order_group = p
        .get("execution_order_group")
        .and_then(Node::scalar)
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(0);
    let depends_on = match p.get("depends_on") {
        Some(Node {
            kind: Kind::Seq(deps),
            ..
        }) => deps
            .iter()
            .filter_map(|d| d.scalar().map(|s| (s.to_string(), d.line)))
            .collect(),
        _ => Vec::new(),
    };
    let mode = p
        .get("repo_locks")
        .and_then(|n| text_of(n.get("mode")))
        .or(default_mode);
    ProjectConfig {
        line: p.line,
        name,
        dir,
        workspace: text_of(p.get("workspace")).unwrap_or_else(|| "default".into()),
        mode,
        execution_order_group,
        depends_on,
    }
}

/// A project's dir as Atlantis keeps it (`filepath.Clean`): no `./` parts, no trailing `/`,
/// `.` for the root.
fn clean_dir(dir: &str) -> String {
    let parts: Vec<&str> = dir
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

/// Names unique; two unnamed projects never share a dir and workspace (Atlantis could not tell
/// them apart in a comment).
fn check_names(projects: &[ProjectConfig], c: &mut Checker) {
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    let mut by_place: HashMap<(&str, &str), (usize, bool)> = HashMap::new();
    for p in projects {
        if !p.name.is_empty() && by_name.insert(p.name.as_str(), p.line).is_some() {
            c.problem(
                p.line,
                format!(
                    "found two or more projects with name {:?}; project names must be unique",
                    p.name
                ),
            );
        }
        let named = !p.name.is_empty();
        if let Some((_, other_named)) =
            by_place.insert((p.dir.as_str(), p.workspace.as_str()), (p.line, named))
        {
            if !named || !other_named {
                c.problem(
                    p.line,
                    format!(
                        "there are two or more projects with dir: {:?} workspace: {:?} that are not all named; they must have a 'name' key so they can be targeted for apply's separately",
                        p.dir, p.workspace
                    ),
                );
            }
        }
    }
}

/// Every problem of the file, by line.
pub fn validate(text: &str) -> Vec<Problem> {
    read(text, None).problems
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

/// The lock a project's plan takes for a pull request: Atlantis's key and owner, and Atlantis's
/// mode. Priority, ttl and wait come from elock's policy for the resource.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LockPlan {
    pub project: String,
    pub resource: String,
    pub owner: String,
    pub mode: String,
}

/// The lock of every project of the file for pull request `pull` of `repo`.
pub fn lock_requests(projects: &[ProjectConfig], repo: &str, pull: i64) -> Vec<LockPlan> {
    projects
        .iter()
        .map(|p| LockPlan {
            project: p.name.clone(),
            resource: format!("{repo}/{}/{}/{}", p.dir, p.workspace, p.name),
            owner: crate::owner_name(repo, pull),
            mode: p.mode.clone().unwrap_or_else(|| "on_plan".into()),
        })
        .collect()
}

#[cfg(test)]
mod tests;
