//! The shipped Grafana dashboard and Prometheus alert rules use only metrics that `elock serve`
//! exports, and the alert rules carry the thresholds of the contract.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::json;
use support::Server;

fn deploy(path: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every `atlantis_enhanced_locking_*` name in `text`.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("atlantis_enhanced_locking_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// The series names a scrape can contain, from its `# TYPE` lines.
fn exported(scrape: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in scrape.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
        match kind {
            "counter" => {
                out.insert(format!("{name}_total"));
            }
            "histogram" => {
                for s in ["_bucket", "_sum", "_count"] {
                    out.insert(format!("{name}{s}"));
                }
            }
            _ => {
                out.insert(name.to_string());
            }
        }
    }
    out
}

#[tokio::test]
async fn every_metric_of_the_dashboard_and_the_alert_rules_is_exported() {
    let server = Server::start();
    let api = server.client();
    api.post("/api/v1/locks", json!({"resource": "r", "owner": "a"}))
        .await;
    let scrape = server.metrics().await;
    let exported = exported(&scrape);
    let alerts = deploy("prometheus/alerts.yaml");
    let dashboard = deploy("grafana/elock-dashboard.json");
    serde_json::from_str::<serde_json::Value>(&dashboard).expect("the dashboard is JSON");
    let rules: serde_json::Value =
        serde_yaml_ng::from_str(&alerts).expect("the alert rules are YAML");
    let used: BTreeSet<String> = names_in(&alerts)
        .into_iter()
        .chain(names_in(&dashboard))
        .collect();
    assert!(used.len() >= 10, "{used:?}");
    let missing: Vec<_> = used.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "used but not exported: {missing:?}\nexported: {exported:?}"
    );

    // The thresholds of the contract.
    let rules = rules["groups"][0]["rules"].as_array().unwrap().clone();
    let find = |alert: &str| {
        rules
            .iter()
            .find(|r| r["alert"] == alert)
            .unwrap_or_else(|| panic!("no {alert}"))
            .clone()
    };
    let expr = |alert: &str| find(alert)["expr"].as_str().unwrap().to_string();
    let severity = |alert: &str| {
        find(alert)["labels"]["severity"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // Contention (locked, wait_timeout, queue_full, deadlock) is never a failure.
    assert!(
        expr("ElockAcquisitionSuccessRateLow").contains("< 0.95")
            && expr("ElockAcquisitionSuccessRateLow").contains("acquisitions_contended_total")
    );
    assert_eq!(severity("ElockAcquisitionSuccessRateLow"), "critical");
    assert!(
        expr("ElockAcquisitionSlow").contains("histogram_quantile(0.95")
            && expr("ElockAcquisitionSlow").ends_with("> 1")
    );
    assert_eq!(severity("ElockAcquisitionSlow"), "warning");
    assert!(expr("ElockAcquisitionVerySlow").trim().ends_with("> 5"));
    assert_eq!(severity("ElockAcquisitionVerySlow"), "critical");
    assert!(
        expr("ElockQueueDeep").trim().ends_with("> 100") && severity("ElockQueueDeep") == "warning"
    );
    assert!(
        expr("ElockQueueVeryDeep").trim().ends_with("> 1000")
            && severity("ElockQueueVeryDeep") == "critical"
    );
    assert!(
        expr("ElockDeadlocks").contains("[1h]") && expr("ElockDeadlocks").trim().ends_with("> 10")
    );
    assert!(expr("ElockCircuitBreakerOpen").contains("circuit_breaker_state == 1"));
    assert_eq!(severity("ElockCircuitBreakerOpen"), "warning");
    assert!(expr("ElockBackendDown").contains("backend_health == 0"));
    assert_eq!(severity("ElockBackendDown"), "critical");
    for alert in ["ElockQueueGrowing", "ElockLeasesExpiring"] {
        assert_eq!(severity(alert), "warning");
    }
}

/// `promtool test rules`: a day of normal contention fires nothing; an outage fires the backend,
/// success-rate and breaker alerts; dying holders, growing queues and deadlocking clients fire
/// theirs (deploy/prometheus/alerts_test.yaml).
#[test]
fn the_alert_rules_fire_on_outages_and_not_on_contention() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus");
    let out = std::process::Command::new("promtool")
        .args(["test", "rules", "alerts_test.yaml"])
        .current_dir(&dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): run scripts/test, which installs Debian's prometheus"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("SUCCESS"), "{text}");
}

#[tokio::test]
async fn metrics_count_what_happened() {
    let server = Server::start();
    let api = server.client();
    let (_, a) = api
        .post("/api/v1/locks", json!({"resource": "r", "owner": "a"}))
        .await;
    api.post("/api/v1/locks", json!({"resource": "r", "owner": "b"}))
        .await;
    // A high-priority waiter granted after about a second in the queue.
    let waiter = {
        let api = api.clone();
        tokio::spawn(async move {
            api.post(
                "/api/v1/locks",
                json!({"resource": "r", "owner": "c", "wait": "10s", "priority": "high"}),
            )
            .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    api.delete(&format!("/api/v1/locks/{}", a["id"].as_str().unwrap()))
        .await;
    let (status, c) = waiter.await.unwrap();
    assert_eq!(status, 201, "{c}");
    api.delete(&format!("/api/v1/locks/{}", c["id"].as_str().unwrap()))
        .await;
    let scrape = server.metrics().await;
    for line in [
        "atlantis_enhanced_locking_acquisitions_total{result=\"granted\"} 2",
        "atlantis_enhanced_locking_acquisitions_total{result=\"locked\"} 1",
        "atlantis_enhanced_locking_acquisitions_success_total 2",
        // A refusal because someone holds the lock is contention, not a failure.
        "atlantis_enhanced_locking_acquisitions_contended_total 1",
        "atlantis_enhanced_locking_acquisitions_failed_total 0",
        "atlantis_enhanced_locking_releases_total{reason=\"released\"} 2",
        "atlantis_enhanced_locking_errors_total{kind=\"locked\"} 1",
        "atlantis_enhanced_locking_active_locks 0",
        "atlantis_enhanced_locking_hold_duration_seconds_count 2",
        "atlantis_enhanced_locking_queue_wait_duration_seconds_count{priority=\"high\"} 1",
        "atlantis_enhanced_locking_queue_wait_duration_seconds_count{priority=\"normal\"} 0",
        "atlantis_enhanced_locking_health_score 100",
    ] {
        assert!(scrape.contains(line), "missing {line:?} in\n{scrape}");
    }
    // The embedded store's own gauges: four changes (a's grant, c queued, a's release with the
    // handoff to c, c's release) in three commits, because queueing a connected waiter writes
    // nothing and the handoff shares the release's commit; the log holds them, no snapshot yet.
    let gauge = |name: &str| -> u64 {
        scrape
            .lines()
            .find_map(|l| l.strip_prefix(&format!("atlantis_enhanced_locking_{name} ")))
            .unwrap_or_else(|| panic!("missing {name} in\n{scrape}"))
            .parse()
            .unwrap()
    };
    let (commits, writes) = (gauge("store_commits"), gauge("store_writes"));
    assert_eq!((commits, writes), (3, 4));
    assert!(gauge("store_log_bytes") > 0);
    assert_eq!(gauge("store_snapshot_bytes"), 0);
    // The waiter's second in the queue is not in the acquisition time.
    let sum: f64 = scrape
        .lines()
        .find_map(|l| l.strip_prefix("atlantis_enhanced_locking_acquisition_duration_seconds_sum "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(sum < 0.5, "acquisition time {sum}s includes the queue");
}
