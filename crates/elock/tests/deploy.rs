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
    assert!(expr("ElockAcquisitionSuccessRateLow").contains("< 0.95"));
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
    api.delete(&format!("/api/v1/locks/{}", a["id"].as_str().unwrap()))
        .await;
    let scrape = server.metrics().await;
    for line in [
        "atlantis_enhanced_locking_acquisitions_total{result=\"granted\"} 1",
        "atlantis_enhanced_locking_acquisitions_total{result=\"locked\"} 1",
        "atlantis_enhanced_locking_acquisitions_success_total 1",
        "atlantis_enhanced_locking_acquisitions_failed_total 1",
        "atlantis_enhanced_locking_releases_total{reason=\"released\"} 1",
        "atlantis_enhanced_locking_errors_total{kind=\"locked\"} 1",
        "atlantis_enhanced_locking_active_locks 0",
        "atlantis_enhanced_locking_hold_duration_seconds_count 1",
        "atlantis_enhanced_locking_health_score 100",
    ] {
        assert!(scrape.contains(line), "missing {line:?} in\n{scrape}");
    }
}
