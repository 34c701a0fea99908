//! Alert rules and webhook receivers as configured, validated into `Rule`s.

use std::{
    collections::{BTreeMap, HashSet},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::model::{City, Domain};
use crate::normalise::catalog;
use crate::settings::{Problems, Secret};

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
    /// The rules as written (`[[alerts.rules]]`).
    #[serde(rename = "rules")]
    pub written: Vec<RuleConfig>,
    pub receivers: Vec<ReceiverConfig>,
    /// The rules parsed from `written` by `validate`.
    #[serde(skip)]
    rules: Vec<Rule>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            evaluation_interval: Duration::from_secs(10),
            written: Vec::new(),
            receivers: Vec::new(),
            rules: Vec::new(),
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
    /// The validated rules (parsed by [`AlertsConfig::validate`], which loading the config
    /// runs once).
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Parse every rule and check every receiver, recording problems with their key paths;
    /// the rules that parse are kept for [`AlertsConfig::rules`].
    pub fn validate(&mut self, problems: &mut Problems) {
        let mut names = HashSet::new();
        self.rules = (self.written.iter().enumerate())
            .filter_map(|(i, r)| {
                let at = format!("alerts.rules[{i}]");
                problems.check(
                    names.insert(r.name.clone()),
                    format!("{at}.name"),
                    format!("duplicate rule name {:?}", r.name),
                );
                r.parse(&at, problems)
            })
            .collect();
        let mut receivers = HashSet::new();
        for (i, rc) in self.receivers.iter().enumerate() {
            let at = format!("alerts.receivers[{i}]");
            problems.check(
                receivers.insert(rc.name.clone()),
                format!("{at}.name"),
                format!("duplicate receiver {:?}", rc.name),
            );
            rc.validate(&at, &self.written, problems);
        }
    }
}

impl RuleConfig {
    /// The rule this entry (at key path `at`) describes, or `None` when its kind is unknown;
    /// every problem is recorded.
    fn parse(&self, at: &str, problems: &mut Problems) -> Option<Rule> {
        let metric = self.metric.as_ref().and_then(|m| {
            let spec = catalog::lookup(m);
            problems.check(
                spec.is_some(),
                format!("{at}.metric"),
                format!("unknown metric {m:?}"),
            );
            spec.map(|s| s.name)
        });
        let condition = self.condition(at, problems)?;
        Some(Rule {
            name: self.name.clone(),
            severity: self.severity,
            city: self.city,
            domain: self.domain,
            device: self.device.clone(),
            metric,
            condition,
            labels: self.labels.clone(),
            summary: self.summary.clone(),
        })
    }

    /// The condition of this rule's kind, recording each field the kind needs and lacks and
    /// each value it cannot take.
    fn condition(&self, at: &str, problems: &mut Problems) -> Option<Condition> {
        let Some(condition) = self.kind_condition() else {
            problems.add(
                format!("{at}.kind"),
                format!(
                    "unknown kind {:?} (threshold, rate_of_change, staleness, aqi_category, flood_level, feed_down)",
                    self.kind
                ),
            );
            return None;
        };
        for (key, present) in self.required() {
            problems.check(
                present,
                format!("{at}.{key}"),
                format!("required for kind = {:?}", self.kind),
            );
        }
        match condition {
            Condition::Threshold { .. } => self.check_clear(at, problems),
            Condition::FloodLevel { .. } => problems.check(
                matches!(self.level, Some(1..=3)),
                format!("{at}.level"),
                "must be 1, 2 or 3 (BĐ1–BĐ3)",
            ),
            _ => {}
        }
        Some(condition)
    }

    /// The condition of this rule's kind with its defaults filled in; `None` for an unknown
    /// kind.
    fn kind_condition(&self) -> Option<Condition> {
        Some(match self.kind.as_str() {
            "threshold" => Condition::Threshold {
                above: self.above,
                below: self.below,
                clear: self.clear.or(self.above).or(self.below).unwrap_or_default(),
                hold: self.for_.unwrap_or_default(),
            },
            "rate_of_change" => Condition::RateOfChange {
                change: self.change.unwrap_or(1.0),
                window: self.window.unwrap_or(Duration::from_secs(3600)),
            },
            "staleness" => Condition::Staleness {
                after: self.after.unwrap_or_default(),
            },
            "aqi_category" => Condition::Aqi {
                at_least: self.aqi_at_least.unwrap_or(151),
            },
            "flood_level" => Condition::FloodLevel {
                level: self.level.unwrap_or(1),
                clear_margin: self.clear_margin.unwrap_or(0.1),
            },
            "feed_down" => Condition::FeedDown {
                after: self.after.unwrap_or_default(),
            },
            _ => return None,
        })
    }

    /// The fields this rule's kind needs, each with whether it is given (and usable).
    fn required(&self) -> Vec<(&'static str, bool)> {
        let nonzero = |d: Option<Duration>| d.is_some_and(|d| !d.is_zero());
        match self.kind.as_str() {
            "threshold" => vec![
                ("metric", self.metric.is_some()),
                ("above", self.above.is_some() || self.below.is_some()),
            ],
            "rate_of_change" => vec![
                ("metric", self.metric.is_some()),
                ("change", self.change.is_some_and(|c| c != 0.0)),
                ("window", nonzero(self.window)),
            ],
            "staleness" | "feed_down" => vec![("after", nonzero(self.after))],
            "aqi_category" => vec![("aqi_at_least", self.aqi_at_least.is_some())],
            _ => Vec::new(),
        }
    }

    /// A threshold's hysteresis: the clear level must not lie past the threshold.
    fn check_clear(&self, at: &str, problems: &mut Problems) {
        if let (Some(a), Some(c)) = (self.above, self.clear) {
            problems.check(
                c <= a,
                format!("{at}.clear"),
                format!("must not be above `above` ({a}) for a rising threshold"),
            );
        }
        if let (Some(b), Some(c)) = (self.below, self.clear) {
            problems.check(
                c >= b,
                format!("{at}.clear"),
                format!("must not be below `below` ({b}) for a falling threshold"),
            );
        }
    }
}

impl ReceiverConfig {
    /// Record every problem of this receiver (at key path `at`); `rules` are the rules as
    /// written, which its rule filter must name.
    fn validate(&self, at: &str, rules: &[RuleConfig], problems: &mut Problems) {
        problems.check(
            url::Url::parse(&self.url).is_ok_and(|u| matches!(u.scheme(), "http" | "https")),
            format!("{at}.url"),
            format!("{:?} is not an http(s) URL", self.url),
        );
        problems.at_least_one(self.max_attempts as usize, &format!("{at}.max_attempts"));
        for rule in &self.rules {
            problems.check(
                rules.iter().any(|r| &r.name == rule),
                format!("{at}.rules"),
                format!("no rule named {rule:?}"),
            );
        }
    }
}
