//! Black-box test of `elock export` and `elock import` between two servers.

mod support;

use serde_json::{json, Value};
use support::Server;

#[tokio::test]
async fn an_export_imports_into_another_server_with_ids_tokens_and_queues() {
    let a = Server::start();
    let api = a.client();
    for _ in 0..2 {
        let (_, l) = api
            .post("/api/v1/locks", json!({"resource": "r", "owner": "x"}))
            .await;
        api.delete(&format!("/api/v1/locks/{}", l["id"].as_str().unwrap()))
            .await;
    }
    let (_, held) = api
        .post(
            "/api/v1/locks",
            json!({"resource": "r", "owner": "acme/infra#1", "metadata": {"pr": 1}}),
        )
        .await;
    let (_, ticket) = api
        .post(
            "/api/v1/locks",
            json!({"resource": "r", "owner": "acme/infra#2", "wait": "5m", "detach": true}),
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.json");
    let (code, _) = a.cli(&["export", file.to_str().unwrap()]);
    assert_eq!(code, 0);
    let exported: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(exported["format"], "elock-export/1");
    assert_eq!(exported["leases"][0]["id"], held["id"]);

    let b = Server::start();
    let (code, out) = b.cli(&["import", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("imported 1 lease(s), 1 ticket(s)"), "{out}");
    let api_b = b.client();
    let holder = api_b.holder("r").await;
    assert_eq!(
        (
            holder["id"].clone(),
            holder["resources"][0]["fencing_token"].clone()
        ),
        (held["id"].clone(), json!(3))
    );
    assert_eq!(holder["metadata"]["pr"], 1);
    let (_, info) = api_b.get("/api/v1/resource?name=r").await;
    assert_eq!(info["queue"][0]["id"], ticket["id"]);
    let (code, out) = b.cli(&["--output", "json", "import", file.to_str().unwrap()]);
    assert_eq!(code, 0);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (report["leases"].as_u64(), report["tickets"].as_u64()),
        (Some(0), Some(0)),
        "twice changes nothing"
    );
    assert_eq!(report["skipped"].as_array().unwrap().len(), 2);
    api_b
        .delete(&format!("/api/v1/locks/{}", held["id"].as_str().unwrap()))
        .await;
    let next = api_b.holder("r").await;
    assert_eq!(
        (
            next["owner"].as_str(),
            next["resources"][0]["fencing_token"].as_u64()
        ),
        (Some("acme/infra#2"), Some(4))
    );
}
