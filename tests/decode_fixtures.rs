//! Decoder cases as data (Telegraf style): every folder under `tests/fixtures/decode/` holds
//! `case.toml` (feed name and topic), `payload.json` or `payload.bin`, optionally a
//! `config.toml` (else `config/default.toml`), and `expected.json` — the readings the real
//! decoder + normaliser must produce with the reasons of the parts rejected beside them
//! (`"rejected": [{"reason": …}]`) and the fields ignored, or the reason the whole message must
//! be rejected (`"rejected": {"reason": …}`). Adding a case is adding a folder. Folders written
//! from a specification carry an `intent.md` saying what must come out and why.
//! `UPDATE_FIXTURES=1` writes `expected.json` for review.

use std::path::Path;

use ioc_aggregator::{config::Config, pipeline};
use jiff::Timestamp;
use serde_json::{Value, json};

/// Fixed clock: the message arrives at 2026-11-22T01:06:00Z (08:06 in Thái Nguyên).
const NOW: &str = "2026-11-22T01:06:00Z";

fn run_case(dir: &Path) -> Result<(), String> {
    let case: toml::Table =
        toml::from_str(&std::fs::read_to_string(dir.join("case.toml")).map_err(|e| e.to_string())?)
            .map_err(|e| format!("case.toml: {e}"))?;
    let feed_name = case["feed"].as_str().ok_or("case.toml: feed")?;
    let topic = case["topic"].as_str().ok_or("case.toml: topic")?;
    let config = match std::fs::read_to_string(dir.join("config.toml")) {
        Ok(text) => Config::from_toml_str(&text).map_err(|e| e.to_string())?,
        Err(_) => Config::from_toml_str(ioc_aggregator::config::DEFAULT_TOML)
            .map_err(|e| e.to_string())?,
    };
    let feed = config
        .feeds
        .iter()
        .find(|f| f.name == feed_name)
        .ok_or_else(|| format!("no feed {feed_name}"))?;
    let payload = std::fs::read(dir.join("payload.json"))
        .or_else(|_| std::fs::read(dir.join("payload.bin")))
        .map_err(|_| "no payload.json or payload.bin".to_owned())?;
    let now: Timestamp = NOW.parse().unwrap();
    let result = pipeline::process(
        &feed.decoder(),
        &config.normaliser(feed),
        &config.ingest,
        topic,
        &payload.into(),
        now,
        now,
    );
    let actual = match &result {
        Ok(n) => {
            let mut out = json!({ "readings": n.readings });
            if !n.rejected.is_empty() {
                let reasons: Vec<Value> = n
                    .rejected
                    .iter()
                    .map(|r| json!({ "reason": r.reason }))
                    .collect();
                out["rejected"] = Value::Array(reasons);
            }
            if !n.ignored.is_empty() {
                out["ignored"] = json!(n.ignored);
            }
            out
        }
        Err(rejection) => json!({ "rejected": { "reason": rejection.reason } }),
    };
    let expected_path = dir.join("expected.json");
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        let mut text = serde_json::to_string_pretty(&actual).unwrap();
        text.push('\n');
        std::fs::write(&expected_path, text).map_err(|e| e.to_string())?;
        return Ok(());
    }
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(&expected_path).map_err(|_| "no expected.json".to_owned())?,
    )
    .map_err(|e| format!("expected.json: {e}"))?;
    if actual != expected {
        let detail = match result {
            Err(r) => format!("\n  rejection detail: {}", r.detail),
            Ok(n) => n
                .rejected
                .iter()
                .map(|r| format!("\n  part rejected: {}: {}", r.reason, r.detail))
                .collect(),
        };
        return Err(format!(
            "expected {}\n  got {}{detail}",
            serde_json::to_string(&expected).unwrap(),
            serde_json::to_string(&actual).unwrap()
        ));
    }
    Ok(())
}

#[test]
fn every_decoder_fixture_produces_its_expected_readings_or_rejection() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/decode");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .expect("tests/fixtures/decode exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 30,
        "only {} fixture cases found",
        cases.len()
    );
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|dir| {
            run_case(dir)
                .err()
                .map(|e| format!("{}: {e}", dir.file_name().unwrap().to_string_lossy()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
