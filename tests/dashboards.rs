//! Every Grafana dashboard in `dashboards/` queries only what the forwarder writes: its
//! measurements, fields and tags, from the bucket and datasource docker-compose provisions.

use std::path::Path;

use ioc_aggregator::{influx, model::Domain, normalise::catalog};
use serde_json::Value;

/// Every string `needle"X"` in `text`, returning the Xs.
fn quoted_after<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.match_indices(needle)
        .filter_map(|(i, _)| {
            let rest = &text[i + needle.len()..];
            let rest = rest.strip_prefix('"')?;
            rest.split('"').next()
        })
        .collect()
}

/// Tag names a query filters on (`r.city == "…"`) or groups by.
fn tags_used(query: &str) -> Vec<String> {
    let mut tags: Vec<String> = query
        .match_indices("r.")
        .filter_map(|(i, _)| {
            let rest = &query[i + 2..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest[name.len()..]
                .trim_start()
                .starts_with("==")
                .then_some(name)
        })
        .filter(|n| !n.starts_with('_'))
        .collect();
    for group in query.split("group(columns: [").skip(1) {
        let list = group.split(']').next().unwrap_or_default();
        tags.extend(
            list.split(',')
                .map(|c| c.trim().trim_matches('"').to_owned())
                .filter(|c| !c.is_empty()),
        );
    }
    tags
}

#[test]
fn every_dashboard_query_names_what_the_forwarder_writes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let provisioning =
        std::fs::read_to_string(root.join("dashboards/provisioning/datasources/influxdb.yaml"))
            .unwrap();
    let docker: toml::Table =
        toml::from_str(&std::fs::read_to_string(root.join("config/docker.toml")).unwrap()).unwrap();
    let bucket = docker["influx"]["bucket"].as_str().unwrap();
    let domains: Vec<&str> = Domain::ALL.iter().map(|d| d.as_str()).collect();
    let metrics: Vec<&str> = catalog::METRICS.iter().map(|m| m.name).collect();

    let mut dashboards = 0;
    let mut queries = 0;
    for entry in std::fs::read_dir(root.join("dashboards")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        dashboards += 1;
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            dash["uid"].is_string() && dash["title"].is_string(),
            "{name}: uid and title"
        );
        for panel in dash["panels"].as_array().unwrap() {
            let title = panel["title"].as_str().unwrap_or("?");
            let uid = panel["datasource"]["uid"].as_str().unwrap();
            assert!(
                provisioning.contains(&format!("uid: {uid}")),
                "{name} / {title}: datasource {uid} is not provisioned"
            );
            for target in panel["targets"].as_array().unwrap() {
                let query = target["query"].as_str().unwrap();
                queries += 1;
                let at = format!("{name} / {title}");
                assert_eq!(
                    quoted_after(query, "from(bucket: "),
                    vec![bucket],
                    "{at}: bucket"
                );
                let measurements = quoted_after(query, "r._measurement == ");
                assert_eq!(measurements.len(), 1, "{at}: one measurement per query");
                let m = measurements[0];
                let pipeline = m == influx::PIPELINE_MEASUREMENT;
                assert!(
                    pipeline || domains.contains(&m),
                    "{at}: measurement {m} is never written"
                );
                for field in quoted_after(query, "r._field == ") {
                    let known = if pipeline {
                        influx::PIPELINE_FIELDS.contains(&field)
                    } else {
                        metrics.contains(&field)
                    };
                    assert!(known, "{at}: field {field} is never written to {m}");
                }
                for tag in tags_used(query) {
                    let known = if pipeline {
                        tag == "feed"
                    } else {
                        influx::line::TAGS.contains(&tag.as_str())
                    };
                    assert!(known, "{at}: tag {tag} is not written to {m}");
                }
            }
        }
    }
    assert!(dashboards >= 6, "{dashboards} dashboards");
    assert!(queries >= 30, "{queries} queries");
}
