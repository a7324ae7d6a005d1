//! atlantis.yaml's shape as Atlantis reads it: its raw types (`RepoCfg`, `Project`, `Autoplan`,
//! `RepoLocks`, `Workflow`, `Stage`, steps, `PolicySets`, `AutoDiscover`), each a mapping whose
//! unknown keys Atlantis refuses (it decodes strictly), then the value checks Atlantis makes.
//! Problems are worded as Atlantis words them, so that what `elock atlantis validate` says is
//! what an Atlantis plan would fail with.

use super::Checker;
use crate::yaml::{Kind, Node};

/// What a key holds.
#[derive(Clone, Copy)]
pub(super) enum Field {
    Str,
    Int,
    Bool,
    StrList,
    /// A mapping checked by the function.
    Map(fn(&mut Checker, &Node)),
    /// A list whose every item is checked by the function.
    List(fn(&mut Checker, &Node)),
    /// A mapping of names to values checked by the function.
    Named(fn(&mut Checker, &Node)),
    /// A string or a mapping (a `run` step's command).
    StrOrMap(fn(&mut Checker, &Node)),
}

pub(super) const REPO_CFG: &[(&str, Field)] = &[
    ("version", Field::Int),
    ("projects", Field::List(project)),
    ("workflows", Field::Named(workflow)),
    ("policies", Field::Map(policy_sets)),
    ("automerge", Field::Bool),
    ("autodiscover", Field::Map(autodiscover)),
    ("parallel_apply", Field::Bool),
    ("parallel_plan", Field::Bool),
    ("delete_source_branch_on_merge", Field::Bool),
    ("emoji_reaction", Field::Str),
    ("allowed_regexp_prefixes", Field::StrList),
    ("abort_on_execution_order_fail", Field::Bool),
    ("repo_locks", Field::Map(repo_locks)),
    ("silence_pr_comments", Field::StrList),
];

const PROJECT: &[(&str, Field)] = &[
    ("name", Field::Str),
    ("branch", Field::Str),
    ("dir", Field::Str),
    ("workspace", Field::Str),
    ("workflow", Field::Str),
    ("plan_requirements", Field::StrList),
    ("apply_requirements", Field::StrList),
    ("import_requirements", Field::StrList),
    ("terraform_version", Field::Str),
    ("terraform_distribution", Field::Str),
    ("autoplan", Field::Map(autoplan)),
    ("delete_source_branch_on_merge", Field::Bool),
    ("repo_locking", Field::Bool),
    ("repo_locks", Field::Map(repo_locks)),
    ("execution_order_group", Field::Int),
    ("policy_check", Field::Bool),
    ("custom_policy_check", Field::Bool),
    ("silence_pr_comments", Field::StrList),
    ("depends_on", Field::StrList),
];

const AUTOPLAN: &[(&str, Field)] = &[("when_modified", Field::StrList), ("enabled", Field::Bool)];
const WORKFLOW: &[(&str, Field)] = &[
    ("plan", Field::Map(stage)),
    ("apply", Field::Map(stage)),
    ("import", Field::Map(stage)),
    ("state_rm", Field::Map(stage)),
    ("policy_check", Field::Map(stage)),
];
const STAGE: &[(&str, Field)] = &[("steps", Field::List(step))];
const POLICY_SETS: &[(&str, Field)] = &[
    ("conftest_version", Field::Str),
    ("owners", Field::Map(policy_owners)),
    ("policy_sets", Field::List(policy_set)),
];
const POLICY_OWNERS: &[(&str, Field)] = &[("users", Field::StrList), ("teams", Field::StrList)];
const POLICY_SET: &[(&str, Field)] = &[
    ("name", Field::Str),
    ("path", Field::Str),
    ("source", Field::Str),
    ("owners", Field::Map(policy_owners)),
    ("prevent_self_approve", Field::Bool),
];
const AUTODISCOVER: &[(&str, Field)] = &[("mode", Field::Str), ("ignore_paths", Field::StrList)];
const RUN_STEP: &[(&str, Field)] = &[
    ("command", Field::Str),
    ("output", Field::Str),
    ("shell", Field::Str),
    ("shell_args", Field::StrList),
];
const ENV_STEP: &[(&str, Field)] = &[
    ("name", Field::Str),
    ("command", Field::Str),
    ("value", Field::Str),
    ("shell", Field::Str),
    ("shell_args", Field::StrList),
];
const MULTIENV_STEP: &[(&str, Field)] = &[
    ("command", Field::Str),
    ("output", Field::Str),
    ("shell", Field::Str),
    ("shell_args", Field::StrList),
];
const EXTRA_ARGS: &[(&str, Field)] = &[("extra_args", Field::StrList)];

/// The steps Atlantis runs by name.
const BUILT_IN_STEPS: [&str; 8] = [
    "init",
    "plan",
    "apply",
    "policy_check",
    "version",
    "import",
    "state_rm",
    "show",
];

impl Checker {
    /// A mapping of Atlantis type `go_type` with `fields`; unknown keys refused as Atlantis does.
    pub(super) fn fields(&mut self, node: &Node, go_type: &str, fields: &[(&str, Field)]) {
        let Kind::Map(entries) = &node.kind else {
            self.cannot_unmarshal(node, &format!("raw.{go_type}"));
            return;
        };
        for (key, key_line, value) in entries {
            match fields.iter().find(|(k, _)| k == key) {
                None => self.unknown_field(*key_line, key, go_type),
                Some((_, field)) => self.field(value, *field),
            }
        }
    }

    fn field(&mut self, node: &Node, field: Field) {
        match field {
            Field::Str => {
                if node.scalar().is_none() {
                    self.cannot_unmarshal(node, "string");
                }
            }
            Field::Int => match node.scalar() {
                Some(s) if s.parse::<i64>().is_ok() => {}
                _ => self.cannot_unmarshal(node, "int"),
            },
            Field::Bool => match node.scalar() {
                Some("true" | "false" | "yes" | "no" | "on" | "off") => {}
                _ => self.cannot_unmarshal(node, "bool"),
            },
            Field::StrList => match &node.kind {
                Kind::Seq(items) => {
                    for item in items {
                        self.field(item, Field::Str);
                    }
                }
                _ => self.cannot_unmarshal(node, "[]string"),
            },
            Field::Map(check) => check(self, node),
            Field::List(check) => match &node.kind {
                Kind::Seq(items) => {
                    for item in items {
                        check(self, item);
                    }
                }
                _ => self.cannot_unmarshal(node, "a list"),
            },
            Field::Named(check) => match &node.kind {
                Kind::Map(entries) => {
                    for (_, _, value) in entries {
                        check(self, value);
                    }
                }
                _ => self.cannot_unmarshal(node, "a mapping"),
            },
            Field::StrOrMap(check) => {
                if node.scalar().is_none() {
                    check(self, node);
                }
            }
        }
    }

    fn cannot_unmarshal(&mut self, node: &Node, into: &str) {
        let what = match &node.kind {
            Kind::Scalar(s) => format!("!!str `{s}`"),
            Kind::Seq(_) => "!!seq".into(),
            Kind::Map(_) => "!!map".into(),
            Kind::Other => "a value".into(),
        };
        self.problem(node.line, format!("cannot unmarshal {what} into {into}"));
    }
}

fn project(c: &mut Checker, n: &Node) {
    c.fields(n, "Project", PROJECT);
}

fn autoplan(c: &mut Checker, n: &Node) {
    c.fields(n, "Autoplan", AUTOPLAN);
}

fn repo_locks(c: &mut Checker, n: &Node) {
    c.repo_locks(n);
}

fn workflow(c: &mut Checker, n: &Node) {
    c.fields(n, "Workflow", WORKFLOW);
}

fn stage(c: &mut Checker, n: &Node) {
    c.fields(n, "Stage", STAGE);
}

fn policy_sets(c: &mut Checker, n: &Node) {
    c.fields(n, "PolicySets", POLICY_SETS);
}

fn policy_owners(c: &mut Checker, n: &Node) {
    c.fields(n, "PolicyOwners", POLICY_OWNERS);
}

fn policy_set(c: &mut Checker, n: &Node) {
    c.fields(n, "PolicySet", POLICY_SET);
    for key in ["name", "path"] {
        if n.get(key).and_then(Node::scalar).is_none_or(str::is_empty) {
            c.problem(n.line, format!("policy_sets: {key}: cannot be blank."));
        }
    }
}

fn autodiscover(c: &mut Checker, n: &Node) {
    c.fields(n, "AutoDiscover", AUTODISCOVER);
    if let Some(mode) = n.get("mode") {
        let m = mode.scalar().unwrap_or_default();
        if !["auto", "enabled", "disabled"].contains(&m) {
            c.problem(
                mode.line,
                format!("autodiscover: mode: {m:?} is not a valid value: use auto, enabled or disabled."),
            );
        }
    }
}

fn run_step(c: &mut Checker, n: &Node) {
    c.fields(n, "RunStep", RUN_STEP);
}

/// A step: a built-in name, or a mapping of one key (a built-in with `extra_args`, `run`, `env`
/// or `multienv`).
fn step(c: &mut Checker, n: &Node) {
    match &n.kind {
        Kind::Scalar(name) => {
            if !BUILT_IN_STEPS.contains(&name.as_str()) {
                c.problem(
                    n.line,
                    format!(
                        "steps: {name:?} is not a valid step type, maybe you omitted the 'run' key"
                    ),
                );
            }
        }
        Kind::Map(entries) if entries.len() == 1 => {
            let (key, key_line, value) = &entries[0];
            match key.as_str() {
                "run" => c.field(value, Field::StrOrMap(run_step)),
                "env" => {
                    c.fields(value, "EnvStep", ENV_STEP);
                    let has = |k| value.get(k).is_some();
                    if !has("name") {
                        c.problem(value.line, "steps: env: name: cannot be blank.");
                    }
                    if has("command") == has("value") {
                        c.problem(
                            value.line,
                            "steps: env: set exactly one of command or value",
                        );
                    }
                }
                "multienv" => c.field(
                    value,
                    Field::StrOrMap(|c, n| c.fields(n, "MultiEnvStep", MULTIENV_STEP)),
                ),
                k if BUILT_IN_STEPS.contains(&k) => c.fields(value, "StepConfig", EXTRA_ARGS),
                other => c.problem(
                    *key_line,
                    format!("steps: {other:?} is not a valid step type"),
                ),
            }
        }
        Kind::Map(_) => c.problem(
            n.line,
            "steps: each step should have only one key, found several",
        ),
        _ => c.problem(n.line, "steps: a step is a name or a mapping of one key"),
    }
}
