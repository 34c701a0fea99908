//! The operations-centre page, rendered by a real headless Chromium against the running app.

use std::time::Duration;

use serde_json::json;

use crate::common::{TestApp, publish_all, require_binary, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ops_page_shows_each_city_live_in_a_browser() {
    let Some(chromium) = require_binary("chromium", "chromium") else {
        return;
    };
    let app = TestApp::spawn().await;
    let at = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60);
    let local = crate::common::tn_local(at);
    let tn = json!({"station":"TN-WL-GIABAY","ts": local,"d":[{"tag":"MUCNUOC","value":25.4,"unit":"m"}]});
    publish_all(
        app.broker_port,
        vec![(
            "tn/ioc/water/TN-WL-GIABAY".into(),
            tn.to_string().into_bytes(),
        )],
    )
    .await;
    wait_for("the reading stored", Duration::from_secs(20), || async {
        app.get("/api/v1/cities/thai-nguyen").await["readings_last_hour"] == 1
    })
    .await;

    let dom = dump_dom(&chromium, &format!("{}/", app.base)).await;
    for city in ["thai-nguyen", "song-cong", "pho-yen"] {
        assert!(
            dom.contains(&format!("data-city=\"{city}\"")),
            "no card for {city} in:\n{dom}"
        );
    }
    assert!(
        dom.contains("Sông Công") && dom.contains("Phổ Yên"),
        "{dom}"
    );
    // Gia Bảy at 25.40 m is past BĐ1 (25.00 m): the page shows the alarm level.
    assert!(
        dom.contains("25.40 m · BĐ1"),
        "flood alarm not shown:\n{dom}"
    );
    assert!(dom.contains("data-role=\"readings\">1<"), "{dom}");
    let error = dom
        .split("id=\"error\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap_or_default();
    assert!(error.is_empty(), "the page reported an error: {error}");
    app.stop().await;
}

/// The DOM of `url` after Chromium ran its scripts for 3 s, in a fresh profile.
async fn dump_dom(chromium: &std::path::Path, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // Less than the page's 5 s refresh period: the dump sees the first load, not a fetch
            // cut off when the budget ends.
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .await
        .expect("running chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_anonymous_read_the_page_asks_for_a_token_and_shows_only_its_cities() {
    let Some(chromium) = require_binary("chromium", "chromium") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = crate::common::free_port();
    let mut config = crate::common::test_config(dir.path(), port, true);
    config.api.anonymous = Some(ioc_aggregator::api::Anonymous::None);
    let app = TestApp::start(config, port, Some(dir)).await;

    let dom = dump_dom(&chromium, &format!("{}/", app.base)).await;
    assert!(!dom.contains("data-city="), "{dom}");
    assert!(
        dom.contains("<form id=\"login\">"),
        "the token form is not shown:\n{dom}"
    );

    let token = app.token("wall-song-cong", "song-cong", "read").await;
    let dom = dump_dom(&chromium, &format!("{}/#token={token}", app.base)).await;
    assert!(dom.contains("data-city=\"song-cong\""), "{dom}");
    assert!(!dom.contains("data-city=\"thai-nguyen\""), "{dom}");
    assert!(dom.contains("<form id=\"login\" hidden"), "{dom}");
    app.stop().await;
}
