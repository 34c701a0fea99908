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
        .arg(format!("{}/", app.base))
        .output()
        .await
        .expect("running chromium");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
