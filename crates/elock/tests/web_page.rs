//! The web page at `/` in a real headless Chromium (Debian's chromium and chromium-driver),
//! driven through WebDriver: a lock taken with the CLI appears within a second without a
//! reload, a release makes it disappear, a queue shows its positions, force-release works with
//! an admin token and is refused, with the server's message, with a read token. The test saves
//! a screenshot (target/web-page.png).

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use support::Server;

const ADMIN: &str = "admin-secret-0123456789";
const READER: &str = "read-secret-0123456789";

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// chromedriver on a free loopback port, and a WebDriver session of a headless Chromium.
async fn browser() -> (Driver, Client) {
    let port = support::free_port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run chromedriver ({e}): run scripts/test, which installs Debian's chromium-driver")
        });
    let driver = Driver(driver);
    let profile = tempfile::tempdir().unwrap().keep();
    let caps: serde_json::Map<String, serde_json::Value> =
        serde_json::from_value(serde_json::json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-quic", "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                         format!("--user-data-dir={}", profile.display())]
            }
        }))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => return (driver, c),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no WebDriver session: {e}"),
        }
    }
}

/// Polls `check` every 50 ms for at most `within`.
async fn within(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

/// The text of the first element `css` finds ("" when there is none).
async fn text(c: &Client, locator: Locator<'_>) -> String {
    match c.find(locator).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Clicks the element `css` finds, or types into it; the page draws its lists again after every
/// event, so an element found a moment ago may be gone: find it again, a few times.
async fn on(c: &Client, css: &str, keys: Option<&str>) {
    for attempt in 0.. {
        let done = match c.find(Locator::Css(css)).await {
            Ok(e) => match keys {
                Some(k) => e.send_keys(k).await.is_ok(),
                None => e.click().await.is_ok(),
            },
            Err(_) => false,
        };
        if done {
            return;
        }
        assert!(attempt < 40, "{css}: never found");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The texts of every element `css` finds, read again if the page redrew them meanwhile.
async fn texts(c: &Client, css: &str) -> Vec<String> {
    for _ in 0..40 {
        if let Ok(found) = c.find_all(Locator::Css(css)).await {
            let mut out = Vec::new();
            for e in found {
                match e.text().await {
                    Ok(t) => out.push(t),
                    Err(_) => break,
                }
            }
            if out.len() == rows(c, css).await {
                return out;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{css}: the page kept redrawing it");
}

async fn rows(c: &Client, css: &str) -> usize {
    c.find_all(Locator::Css(css)).await.map_or(0, |v| v.len())
}

fn cli(server: &Server, token: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_elock"))
        .args(args)
        .env("ELOCK_SERVER", &server.url)
        .env("ELOCK_TOKEN", token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn use_token(c: &Client, token: &str) {
    let input = c.find(Locator::Id("token")).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(token).await.unwrap();
    c.find(Locator::Id("use-token"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test]
async fn the_page_follows_locks_and_queues_live_and_acts_with_the_tokens_role() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("elock.yaml");
    std::fs::write(
        &config,
        "auth:\n  tokens:\n    - {name: ops, role: admin, token-env: PAGE_ADMIN}\n    - {name: viewer, role: read, token-env: PAGE_READER}\n",
    )
    .unwrap();
    let server = Server::start_with_env(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
        &[("PAGE_ADMIN", ADMIN), ("PAGE_READER", READER)],
    );
    let (_driver, c) = browser().await;
    c.goto(&format!("{}/", server.url)).await.unwrap();
    use_token(&c, ADMIN).await;
    within("the page is live", Duration::from_secs(10), async || {
        c.find(Locator::Id("live"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            == "live"
    })
    .await;

    // A lock taken with the CLI appears within a second, without a reload.
    let started = Instant::now();
    let lease = cli(
        &server,
        ADMIN,
        &[
            "--output",
            "json",
            "lock",
            "acme/infra/envs/prod/default/",
            "--owner",
            "acme/infra#42",
            "--metadata",
            "job=deploy",
        ],
    );
    let lease: serde_json::Value = serde_json::from_str(&lease).unwrap();
    within("the lock appears", Duration::from_secs(1), async || {
        rows(
            &c,
            "#locks tr[data-resource='acme/infra/envs/prod/default/']",
        )
        .await
            == 1
    })
    .await;
    let shown = started.elapsed();
    let row = text(
        &c,
        Locator::Css("#locks tr[data-resource='acme/infra/envs/prod/default/']"),
    )
    .await;
    assert!(
        row.contains("acme/infra#42") && row.contains("job"),
        "{row}"
    );

    // The release makes it disappear.
    cli(&server, ADMIN, &["unlock", lease["id"].as_str().unwrap()]);
    within(
        "the released lock disappears",
        Duration::from_secs(1),
        async || {
            rows(
                &c,
                "#locks tr[data-resource='acme/infra/envs/prod/default/']",
            )
            .await
                == 0
        },
    )
    .await;

    // A queue shows its tickets in order.
    cli(&server, ADMIN, &["lock", "db", "--owner", "holder"]);
    cli(
        &server,
        ADMIN,
        &["lock", "db", "--owner", "first", "--detach"],
    );
    cli(
        &server,
        ADMIN,
        &["lock", "db", "--owner", "second", "--detach"],
    );
    within(
        "the queue shows two tickets",
        Duration::from_secs(2),
        async || rows(&c, "#queues tr[data-resource='db']").await == 2,
    )
    .await;
    let positions = texts(&c, "#queues tr[data-resource='db'] td.position").await;
    assert_eq!(positions, ["1", "2"]);
    within(
        "the queue lists first before second",
        Duration::from_secs(2),
        async || {
            let queue = text(&c, Locator::Id("queues")).await;
            matches!((queue.find("first"), queue.find("second")), (Some(a), Some(b)) if a < b)
        },
    )
    .await;

    // With a read token the force-release is refused, with the server's message.
    use_token(&c, READER).await;
    let force = "#locks tr[data-resource='db'] button.force";
    within(
        "the row is there for the reader",
        Duration::from_secs(2),
        async || rows(&c, force).await == 1,
    )
    .await;
    on(&c, force, None).await;
    within("the refusal is shown", Duration::from_secs(2), async || {
        let m = text(&c, Locator::Id("message")).await;
        m.contains("403") && m.contains("forbidden")
    })
    .await;
    assert_eq!(
        rows(&c, "#locks tr[data-resource='db']").await,
        1,
        "still held"
    );

    // With the admin token it works: the holder goes, the first in line gets the lock.
    use_token(&c, ADMIN).await;
    within(
        "the row is there for the admin",
        Duration::from_secs(2),
        async || rows(&c, force).await == 1,
    )
    .await;
    on(
        &c,
        "#locks tr[data-resource='db'] input.reason",
        Some("stuck job"),
    )
    .await;
    on(&c, force, None).await;
    within(
        "the first in line holds db",
        Duration::from_secs(2),
        async || {
            text(&c, Locator::Css("#locks tr[data-resource='db']"))
                .await
                .contains("first")
        },
    )
    .await;
    let (status, body) = server.client().get("/api/v1/resource?name=db").await;
    assert_eq!(status, 401, "auth is on: {body}");
    let events = text(&c, Locator::Id("events")).await;
    assert!(
        events.contains("lock.force_released") && events.contains("stuck job (by ops)"),
        "{events}"
    );
    assert_eq!(
        events.matches("lock.force_released").count(),
        1,
        "each event once: {events}"
    );

    // A deadlock between two clients (prevented, so it is history) is on the page.
    cli(&server, ADMIN, &["lock", "x", "--owner", "alice"]);
    cli(&server, ADMIN, &["lock", "y", "--owner", "bob"]);
    cli(
        &server,
        ADMIN,
        &["lock", "y", "--owner", "alice", "--detach"],
    );
    let refused = Command::new(env!("CARGO_BIN_EXE_elock"))
        .args(["lock", "x", "--owner", "bob", "--detach"])
        .env("ELOCK_SERVER", &server.url)
        .env("ELOCK_TOKEN", ADMIN)
        .output()
        .unwrap();
    assert_eq!(
        refused.status.code(),
        Some(3),
        "the cycle is refused as a deadlock"
    );
    within(
        "the deadlock is shown",
        Duration::from_secs(2),
        async || {
            let d = text(&c, Locator::Id("deadlocks")).await;
            d.contains("bob waits for alice (x)") && d.contains("alice waits for bob (y)")
        },
    )
    .await;

    // An Atlantis lock links its pull request; the filters narrow the lists.
    let adapter = reqwest::Client::new()
        .post(format!("{}/api/atlantis/v1/try-lock", server.url))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({
            "Project": {"RepoFullName": "acme/web", "Path": "envs/prod"},
            "Pull": {"Num": 7, "URL": "https://github.com/acme/web/pull/7"},
            "Workspace": "default"
        }))
        .send()
        .await
        .unwrap();
    assert!(adapter.status().is_success());
    within(
        "the pull link appears",
        Duration::from_secs(2),
        async || match c
            .find(Locator::Css(
                "#locks tr[data-resource='acme/web/envs/prod/default/'] a.pull",
            ))
            .await
        {
            Ok(a) => a.text().await.is_ok_and(|t| t == "pull #7"),
            Err(_) => false,
        },
    )
    .await;
    c.find(Locator::Id("prefix"))
        .await
        .unwrap()
        .send_keys("acme/")
        .await
        .unwrap();
    within("the filter hides db", Duration::from_secs(2), async || {
        rows(&c, "#locks tr[data-resource='db']").await == 0
            && rows(&c, "#queues tr[data-resource='db']").await == 0
            && rows(&c, "#locks tr[data-resource='acme/web/envs/prod/default/']").await == 1
    })
    .await;

    let png = c.screenshot().await.unwrap();
    let shot = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/web-page.png");
    std::fs::write(&shot, png).unwrap();
    eprintln!(
        "the lock appeared after {shown:?}; screenshot: {}",
        shot.display()
    );
    c.close().await.unwrap();
}
