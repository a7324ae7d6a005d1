use super::*;

const MAX: Duration = Duration::from_secs(2 * 3600);

const GOOD: &str = "\
version: 3
repo_locks:
  mode: on_plan
  priority: normal
  timeout: 1h
projects:
- name: network
  dir: envs/prod/network
  execution_order_group: 1
- name: app
  dir: envs/prod/app/
  workspace: prod
  execution_order_group: 2
  depends_on: [network]
  repo_locks:
    priority: high
    queue_timeout: 10m
    retry_policy: {max_attempts: 3, base_delay: 1s, max_delay: 30s}
    deadlock_detection: true
";

#[test]
fn a_good_file_has_no_problems_and_merges_settings() {
    let (projects, problems) = read(GOOD, MAX);
    assert!(problems.is_empty(), "{problems:?}");
    let app = &projects[1];
    assert_eq!(app.locks.priority.as_deref(), Some("high"));
    assert_eq!(
        app.locks.timeout,
        Some(Duration::from_secs(3600)),
        "from the top level"
    );
    assert_eq!(app.locks.queue_timeout, Some(Duration::from_secs(600)));
    let plans = lock_requests(&projects, "acme/infra", 42);
    assert_eq!(plans[1].resource, "acme/infra/envs/prod/app/prod/app");
    assert_eq!(plans[1].owner, "acme/infra#42");
    assert_eq!(
        plans[0].resource,
        "acme/infra/envs/prod/network/default/network"
    );
    assert_eq!(plans[0].priority, "normal");
    assert_eq!(plans[1].ttl.as_deref(), Some("1h"));
}

#[test]
fn every_problem_is_reported_with_its_line() {
    let text = "\
version: 3
repo_locks:
  priority: 5
  colour: blue
projects:
- name: a
  execution_order_group: 1
  depends_on: [b]
  repo_locks:
    priority: urgent
    timeout: 3h
- name: b
  execution_order_group: 2
  depends_on: [c]
- name: c
  depends_on: [a, ghost]
  repo_locks:
    mode: sometimes
    retry_policy: {max_attempts: 0, jitter: 1s}
";
    let problems: Vec<String> = validate(text, MAX).iter().map(|p| p.to_string()).collect();
    let expect = [
        "line 3: repo_locks.priority: \"5\" is not a priority (expected low, normal, high, critical)",
        "line 4: repo_locks: unknown key \"colour\"",
        "line 6: depends_on cycle: a -> b -> c -> a",
        "line 8: project \"a\" (execution_order_group 1) depends on \"b\" (execution_order_group 2), which runs after it",
        "line 10: project \"a\".repo_locks.priority: \"urgent\" is not a priority",
        "line 11: project \"a\".repo_locks.timeout: 3h is above max-timeout 2h",
        "line 16: project \"c\" (execution_order_group 0) depends on \"a\" (execution_order_group 1), which runs after it",
        "line 16: project \"c\" depends on \"ghost\", which is not a project of this file",
        "line 18: project \"c\".repo_locks.mode: \"sometimes\" is not one of disabled, on_plan, on_apply",
        "line 19: project \"c\".repo_locks.retry_policy.max_attempts: \"0\" is not a whole number of at least 1",
        "line 19: project \"c\".repo_locks.retry_policy: unknown key \"jitter\"",
    ];
    for e in expect {
        assert!(
            problems.iter().any(|p| p.starts_with(e)),
            "missing {e:?} in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), expect.len(), "{problems:#?}");
}

#[test]
fn broken_yaml_is_one_problem_at_its_line() {
    let problems = validate("version: 3\nprojects:\n- name: [a\n", MAX);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].message.contains("not valid YAML"),
        "{problems:?}"
    );
    assert!(problems[0].line >= 3, "{problems:?}");
}
