//! A schema-driven fuzz of the whole API: schemathesis generates requests from GET /openapi.json
//! (valid and invalid ones, then stateful sequences) against a real server, and checks that no
//! answer is a 5xx, and that every status, content type and body is one the document describes.
//!
//! Bounded and seeded for the test command (`ELOCK_FUZZ_SEED`, `ELOCK_FUZZ_EXAMPLES` change
//! it); schemathesis comes from PyPI (scripts/test installs it). The event stream is left out:
//! it never ends by design.

mod support;

use std::process::Command;

use support::Server;

#[test]
fn the_api_answers_every_generated_request_within_its_description() {
    // Generated waits are bounded by max-timeout: a short one keeps every request short (a
    // wait behind a lease can otherwise last as long as the generator asks, up to 2h).
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("elock.yaml");
    std::fs::write(
        &config,
        "enhanced-locking:\n  default-timeout: 2s\n  max-timeout: 3s\npriority-queue:\n  queue-timeout: 3s\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let server = Server::start_with(&data, &["--config", config.to_str().unwrap()]);
    let seed = std::env::var("ELOCK_FUZZ_SEED").unwrap_or_else(|_| "1".into());
    let examples = std::env::var("ELOCK_FUZZ_EXAMPLES").unwrap_or_else(|_| "30".into());
    let report = tempfile::tempdir().unwrap();
    let out = Command::new("schemathesis")
        .current_dir(report.path())
        .args(["run", &format!("{}/openapi.json", server.url)])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--max-examples",
            &examples,
            "--seed",
            &seed,
            "--exclude-path",
            "/api/v1/events",
            "--request-timeout",
            "10",
            "--no-color",
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run schemathesis ({e}): run scripts/test, which installs it from PyPI \
                 (pip install schemathesis)"
            )
        });
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("generated") || l.contains("passed") || l.contains("Seed"))
        .collect();
    eprintln!("schemathesis: {}", summary.join(" | "));
    assert!(
        out.status.success(),
        "schemathesis found answers outside the description (seed {seed}):\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(" passed"),
        "schemathesis ran no test case:\n{text}"
    );
}
