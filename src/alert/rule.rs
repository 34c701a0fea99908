//! Alert rules and webhook receivers as configured, validated into `Rule`s.

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};

use crate::config::{ConfigProblem, Secret};
use crate::model::{City, Domain};
use crate::normalise::catalog;

/// How serious an alert is, as its rule says (`warning` when it does not). Ordered `Info` <
/// `Warning` < `Critical`, and spelt in lower case everywhere outside the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    /// The lower-case name (`info`, `warning`, `critical`): as configured, stored, filtered on
    /// in the API and sent in the webhook labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// `[alerts]`: rules, receivers and evaluation timing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    pub enabled: bool,
    /// How often time-driven rules (staleness, feed down, VN_AQI) are evaluated.
    #[serde(with = "humantime_serde")]
    pub evaluation_interval: Duration,
    pub rules: Vec<RuleConfig>,
    pub receivers: Vec<ReceiverConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            evaluation_interval: Duration::from_secs(10),
            rules: Vec::new(),
            receivers: Vec::new(),
        }
    }
}

/// One rule as written in the config. `kind` decides which fields apply.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    /// threshold | rate_of_change | staleness | aqi_category | flood_level | feed_down
    pub kind: String,
    #[serde(default = "default_severity")]
    pub severity: Severity,
    #[serde(default)]
    pub city: Option<City>,
    #[serde(default)]
    pub domain: Option<Domain>,
    #[serde(default)]
    pub device: Option<String>,
    #[serde(default)]
    pub metric: Option<String>,
    /// threshold: fire above this value …
    #[serde(default)]
    pub above: Option<f64>,
    /// … or below this value.
    #[serde(default)]
    pub below: Option<f64>,
    /// threshold: clear only once the value is back past this (hysteresis; default: the
    /// threshold itself).
    #[serde(default)]
    pub clear: Option<f64>,
    /// threshold: the condition must hold this long before the alert fires.
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub for_: Option<Duration>,
    /// rate_of_change: rise (positive) or fall (negative) within `window` that fires.
    #[serde(default)]
    pub change: Option<f64>,
    #[serde(default, with = "humantime_serde")]
    pub window: Option<Duration>,
    /// staleness / feed_down: silence that fires.
    #[serde(default, with = "humantime_serde")]
    pub after: Option<Duration>,
    /// aqi_category: hourly VN_AQI at or above this value (101 = Kém, 151 = Xấu, 201 = Rất xấu).
    #[serde(default)]
    pub aqi_at_least: Option<u32>,
    /// flood_level: alarm level 1, 2 or 3 (BĐ1–BĐ3 of the gauge in the device catalogue).
    #[serde(default)]
    pub level: Option<usize>,
    /// flood_level: metres below the level before it clears (default 0.1).
    #[serde(default)]
    pub clear_margin: Option<f64>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub summary: Option<String>,
}

fn default_severity() -> Severity {
    Severity::Warning
}

/// A webhook receiver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    pub name: String,
    pub url: String,
    /// Standard Webhooks secret (`whsec_<base64>`, or any string used as raw key bytes).
    pub secret: Secret,
    /// Only alerts of these cities / severities / rules (empty: all).
    #[serde(default)]
    pub cities: Vec<City>,
    #[serde(default)]
    pub severities: Vec<Severity>,
    #[serde(default)]
    pub rules: Vec<String>,
    /// Attempts before a notification goes to the dead-letter list.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Cap of the exponential backoff between attempts.
    #[serde(default = "default_backoff_max", with = "humantime_serde")]
    pub backoff_max: Duration,
}

fn default_max_attempts() -> u32 {
    10
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(300)
}

/// What a rule watches.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Threshold {
        above: Option<f64>,
        below: Option<f64>,
        clear: f64,
        hold: Duration,
    },
    RateOfChange {
        change: f64,
        window: Duration,
    },
    Staleness {
        after: Duration,
    },
    Aqi {
        at_least: u32,
    },
    FloodLevel {
        level: usize,
        clear_margin: f64,
    },
    FeedDown {
        after: Duration,
    },
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub severity: Severity,
    pub city: Option<City>,
    pub domain: Option<Domain>,
    pub device: Option<String>,
    pub metric: Option<&'static str>,
    pub condition: Condition,
    pub labels: BTreeMap<String, String>,
    pub summary: Option<String>,
}

impl Rule {
    /// Whether a reading's subject is in this rule's scope.
    pub fn scoped(&self, city: City, domain: Domain, device: &str) -> bool {
        self.city.is_none_or(|c| c == city)
            && self.domain.is_none_or(|d| d == domain)
            && self.device.as_deref().is_none_or(|d| d == device)
    }
}

impl AlertsConfig {
    /// Validate every rule and receiver, recording problems with their key paths.
    pub fn rules(&self, problems: &mut Vec<ConfigProblem>) -> Vec<Rule> {
        let mut names = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            let mut problem = |key: &str, message: String| {
                problems.push(ConfigProblem {
                    path: format!("alerts.rules[{i}].{key}"),
                    message,
                })
            };
            if !names.insert(r.name.clone()) {
                problem("name", format!("duplicate rule name {:?}", r.name));
            }
            let metric = match &r.metric {
                Some(m) => match catalog::lookup(m) {
                    Some(spec) => Some(spec.name),
                    None => {
                        problem("metric", format!("unknown metric {m:?}"));
                        None
                    }
                },
                None => None,
            };
            let mut need = |key: &str, present: bool| {
                if !present {
                    problem(key, format!("required for kind = {:?}", r.kind));
                }
            };
            let condition = match r.kind.as_str() {
                "threshold" => {
                    need("metric", r.metric.is_some());
                    need("above", r.above.is_some() || r.below.is_some());
                    let clear = r.clear.or(r.above).or(r.below).unwrap_or_default();
                    if let (Some(a), Some(c)) = (r.above, r.clear)
                        && c > a
                    {
                        problem(
                            "clear",
                            format!("must not be above `above` ({a}) for a rising threshold"),
                        );
                    }
                    if let (Some(b), Some(c)) = (r.below, r.clear)
                        && c < b
                    {
                        problem(
                            "clear",
                            format!("must not be below `below` ({b}) for a falling threshold"),
                        );
                    }
                    Some(Condition::Threshold {
                        above: r.above,
                        below: r.below,
                        clear,
                        hold: r.for_.unwrap_or_default(),
                    })
                }
                "rate_of_change" => {
                    need("metric", r.metric.is_some());
                    need("change", r.change.is_some_and(|c| c != 0.0));
                    need("window", r.window.is_some_and(|w| !w.is_zero()));
                    Some(Condition::RateOfChange {
                        change: r.change.unwrap_or(1.0),
                        window: r.window.unwrap_or(Duration::from_secs(3600)),
                    })
                }
                "staleness" => {
                    need("after", r.after.is_some_and(|a| !a.is_zero()));
                    Some(Condition::Staleness {
                        after: r.after.unwrap_or_default(),
                    })
                }
                "aqi_category" => {
                    need("aqi_at_least", r.aqi_at_least.is_some());
                    Some(Condition::Aqi {
                        at_least: r.aqi_at_least.unwrap_or(151),
                    })
                }
                "flood_level" => {
                    if !matches!(r.level, Some(1..=3)) {
                        problem("level", "must be 1, 2 or 3 (BĐ1–BĐ3)".into());
                    }
                    Some(Condition::FloodLevel {
                        level: r.level.unwrap_or(1),
                        clear_margin: r.clear_margin.unwrap_or(0.1),
                    })
                }
                "feed_down" => {
                    need("after", r.after.is_some_and(|a| !a.is_zero()));
                    Some(Condition::FeedDown {
                        after: r.after.unwrap_or_default(),
                    })
                }
                other => {
                    problem(
                        "kind",
                        format!(
                            "unknown kind {other:?} (threshold, rate_of_change, staleness, aqi_category, flood_level, feed_down)"
                        ),
                    );
                    None
                }
            };
            if let Some(condition) = condition {
                out.push(Rule {
                    name: r.name.clone(),
                    severity: r.severity,
                    city: r.city,
                    domain: r.domain,
                    device: r.device.clone(),
                    metric,
                    condition,
                    labels: r.labels.clone(),
                    summary: r.summary.clone(),
                });
            }
        }
        let mut receivers = std::collections::HashSet::new();
        for (i, rc) in self.receivers.iter().enumerate() {
            let at = |k: &str| format!("alerts.receivers[{i}].{k}");
            if !receivers.insert(rc.name.clone()) {
                problems.push(ConfigProblem {
                    path: at("name"),
                    message: format!("duplicate receiver {:?}", rc.name),
                });
            }
            if !url::Url::parse(&rc.url).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
                problems.push(ConfigProblem {
                    path: at("url"),
                    message: format!("{:?} is not an http(s) URL", rc.url),
                });
            }
            if rc.max_attempts == 0 {
                problems.push(ConfigProblem {
                    path: at("max_attempts"),
                    message: "must be at least 1".into(),
                });
            }
            for rule in &rc.rules {
                if !self.rules.iter().any(|r| &r.name == rule) {
                    problems.push(ConfigProblem {
                        path: at("rules"),
                        message: format!("no rule named {rule:?}"),
                    });
                }
            }
        }
        out
    }
}
