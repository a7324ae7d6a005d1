use super::*;

const GOOD: &str = "\
version: 3
automerge: true
parallel_plan: true
repo_locks:
  mode: on_plan
projects:
- name: network
  dir: envs/prod/network
  execution_order_group: 1
  autoplan:
    when_modified: [\"*.tf\", \"../modules/**/*.tf\"]
    enabled: true
  apply_requirements: [approved, mergeable]
- name: app
  dir: ./envs/prod/app/
  workspace: prod
  workflow: locked
  execution_order_group: 2
  depends_on: [network]
  repo_locks:
    mode: on_apply
workflows:
  locked:
    plan:
      steps:
      - init
      - run: elock atlantis run -- terraform plan -out $PLANFILE
      - env:
          name: TF_IN_AUTOMATION
          value: \"1\"
    apply:
      steps:
      - run:
          command: elock atlantis run -- terraform apply $PLANFILE
          output: show
      - plan:
          extra_args: [\"-lock=false\"]
";

#[test]
fn a_file_atlantis_accepts_has_no_problems() {
    let r = read(GOOD, Some("acme/infra"));
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
    assert!(r.suggestions.is_empty());
    assert_eq!(
        r.projects[1].dir, "envs/prod/app",
        "cleaned as Atlantis does"
    );
    assert_eq!(r.projects[1].mode.as_deref(), Some("on_apply"));
    assert_eq!(
        r.projects[0].mode.as_deref(),
        Some("on_plan"),
        "from the top"
    );
    let plans = lock_requests(&r.projects, "acme/infra", 42);
    assert_eq!(plans[1].resource, "acme/infra/envs/prod/app/prod/app");
    assert_eq!(plans[1].owner, "acme/infra#42");
    assert_eq!(
        plans[0].resource,
        "acme/infra/envs/prod/network/default/network"
    );
}

#[test]
fn unknown_keys_are_refused_in_atlantis_words_at_every_level() {
    let text = "\
version: 3
colour: blue
projects:
- dir: a
  autoplan: {when_modifed: [x]}
  workspce: prod
workflows:
  w:
    plan:
      steps:
      - run: {command: x, colour: red}
      - teraform
      - {init: {extra_args: [a]}, plan: {}}
";
    let problems: Vec<String> = validate(text).iter().map(|p| p.to_string()).collect();
    for e in [
        "line 2: field colour not found in type raw.RepoCfg",
        "line 5: field when_modifed not found in type raw.Autoplan",
        "line 6: field workspce not found in type raw.Project",
        "line 11: field colour not found in type raw.RunStep",
        "line 12: steps: \"teraform\" is not a valid step type",
        "line 13: steps: each step should have only one key",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(e)),
            "missing {e:?} in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), 6, "{problems:#?}");
}

#[test]
fn elock_settings_in_repo_locks_are_refused_with_the_equivalent_policy_rule() {
    let text = "\
version: 3
repo_locks:
  mode: on_plan
  priority: high
  timeout: 1h
  deadlock_detection: true
projects:
- name: app
  dir: envs/prod
  repo_locks:
    queue_timeout: 10m
    priority: critical
";
    let r = read(text, Some("acme/infra"));
    let problems: Vec<String> = r.problems.iter().map(|p| p.to_string()).collect();
    for e in [
        "line 4: field priority not found in type raw.RepoLocks: Atlantis refuses this file",
        "line 5: field timeout not found in type raw.RepoLocks",
        "line 6: field deadlock_detection not found in type raw.RepoLocks",
        "line 11: field queue_timeout not found in type raw.RepoLocks",
        "line 12: field priority not found in type raw.RepoLocks",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(e)),
            "missing {e:?} in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), 5, "{problems:#?}");
    // The project's rule first (the first matching rule applies), then the file's.
    assert_eq!(r.suggestions.len(), 2);
    assert_eq!(r.suggestions[0].pattern, "acme/infra/envs/prod/default/app");
    assert_eq!(
        r.suggestions[0].to_yaml(""),
        "- match: \"acme/infra/envs/prod/default/app\"\n  priority: critical\n  wait: 10m\n"
    );
    assert_eq!(r.suggestions[1].pattern, "acme/infra/**");
    assert_eq!(
        r.suggestions[1].rule,
        vec![
            ("priority".to_string(), "high".to_string()),
            ("ttl".to_string(), "1h".to_string())
        ]
    );
    assert_eq!(r.suggestions[1].server_wide, vec!["deadlock-detection"]);
    // Without a repository the rules match any.
    assert_eq!(read(text, None).suggestions[1].pattern, "*/*/**");
}

#[test]
fn atlantis_value_checks_and_run_time_checks() {
    let text = "\
projects:
- name: a
  dir: ../outside
  execution_order_group: 1
  depends_on: [b]
  repo_locks: {mode: sometimes}
- name: b
  dir: b
  execution_order_group: 2
  depends_on: [c]
  apply_requirements: [approved, reviewed]
- name: c
  depends_on: [a, ghost]
  terraform_distribution: tofu
- name: d
  dir: x
- name: d
  dir: y
  execution_order_group: lots
";
    let problems: Vec<String> = validate(text).iter().map(|p| p.to_string()).collect();
    for e in [
        "line 1: version: is required",
        "line 2: depends_on cycle: a -> b -> c -> a",
        "line 3: project \"a\": dir: cannot contain '..'",
        "line 5: project \"a\" (execution_order_group 1) depends on \"b\" (execution_order_group 2), which runs after it",
        "line 6: repo_locks: mode: \"sometimes\" is not a valid value",
        "line 11: project \"b\": apply_requirements: \"reviewed\" is not a valid requirement",
        "line 12: project \"c\": dir: cannot be blank.",
        "line 13: project \"c\" (execution_order_group 0) depends on \"a\" (execution_order_group 1), which runs after it",
        "line 13: project \"c\" depends on \"ghost\", which is not a project of this file",
        "line 14: project \"c\": terraform_distribution: \"tofu\" is not a valid distribution",
        "line 17: found two or more projects with name \"d\"",
        "line 19: cannot unmarshal !!str `lots` into int",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(e)),
            "missing {e:?} in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), 12, "{problems:#?}");
}

#[test]
fn broken_yaml_is_one_problem_at_its_line() {
    let problems = validate("version: 3\nprojects:\n- name: [a\n");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].message.contains("not valid YAML"),
        "{problems:?}"
    );
    assert!(problems[0].line >= 3, "{problems:?}");
}
