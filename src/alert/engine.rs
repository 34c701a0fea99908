//! The alert state machine. Pure: readings and the time come in, transitions go out; no I/O.
//!
//! An alert is a (rule, subject) pair — the subject is a device, or a city for `feed_down`.
//! pending → firing → resolved. A pending alert whose condition clears is dropped without a
//! notification; only firing and resolved transitions are notified.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    time::Duration,
};

use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

use super::rule::{Condition, Rule, Severity};
use crate::model::{City, Domain, Reading};

/// A change worth notifying.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub fingerprint: String,
    pub rule: String,
    pub subject: String,
    pub city: City,
    pub severity: Severity,
    /// true: the alert starts firing; false: it resolved.
    pub firing: bool,
    pub at: Timestamp,
    pub started_at: Timestamp,
    pub value: Option<f64>,
    pub labels: BTreeMap<String, String>,
    pub summary: String,
    pub description: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Pending,
    Firing,
}

#[derive(Debug, Clone)]
struct Tracked {
    phase: Phase,
    since: Timestamp,
    city: City,
    value: Option<f64>,
}

/// What the engine needs to know of a device for staleness.
#[derive(Debug, Clone)]
pub struct DeviceSeen {
    pub device: String,
    pub city: City,
    pub domain: Domain,
    pub last_seen: Option<Timestamp>,
}

/// What the engine needs to know of a city's feeds for `feed_down`.
#[derive(Debug, Clone)]
pub struct CityFeeds {
    pub city: City,
    pub last_message: Option<Timestamp>,
}

/// The alert state machine over the configured rules: it tracks each (rule, subject) pair
/// through pending → firing → resolved and returns a [`Transition`] for each firing and each
/// resolution, and nothing else. It does no I/O: the caller records and notifies transitions,
/// and after a restart hands back the alerts still firing ([`AlertEngine::restore`]).
#[derive(Debug)]
pub struct AlertEngine {
    rules: Vec<Rule>,
    flood_levels: HashMap<String, Vec<f64>>,
    tracked: HashMap<(usize, String), Tracked>,
    history: HashMap<(usize, String), VecDeque<(Timestamp, f64)>>,
    /// Reference for subjects never heard from.
    started: Timestamp,
}

/// The identity of an alert, its (rule, subject) pair, as 16 hex digits: the first 8 bytes of
/// the SHA-256 of `rule`, a NUL and `subject`. It must stay the same across restarts and
/// releases: the store finds an alert's firing incident by it.
pub fn fingerprint(rule: &str, subject: &str) -> String {
    let digest = Sha256::digest(format!("{rule}\0{subject}").as_bytes());
    hex::encode(&digest[..8])
}

impl AlertEngine {
    /// An engine for `rules` with no alert tracked. `flood_levels` holds each river gauge's
    /// alarm levels (BĐ1–BĐ3, metres) by device id, for `flood_level` rules. `now` stands in for
    /// the last message of a device or city never heard from, so its staleness or feed-down
    /// alert fires only once the rule's `after` has passed since `now`.
    pub fn new(rules: Vec<Rule>, flood_levels: HashMap<String, Vec<f64>>, now: Timestamp) -> Self {
        AlertEngine {
            rules,
            flood_levels,
            tracked: HashMap::new(),
            history: HashMap::new(),
            started: now,
        }
    }

    /// The rules the engine evaluates, validated, in the order of the configuration.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Alerts that were firing before a restart: they keep firing without a new notification.
    pub fn restore(&mut self, rule: &str, subject: &str, city: City, since: Timestamp) {
        if let Some(i) = self.rules.iter().position(|r| r.name == rule) {
            self.tracked.insert(
                (i, subject.to_owned()),
                Tracked {
                    phase: Phase::Firing,
                    since,
                    city,
                    value: None,
                },
            );
        }
    }

    /// The metrics the reading-driven rules look at: readings of other metrics need not reach
    /// [`AlertEngine::observe`].
    pub fn observed_metrics(&self) -> Vec<&'static str> {
        let mut metrics: Vec<&'static str> = self
            .rules
            .iter()
            .filter_map(|rule| match rule.condition {
                Condition::Threshold { .. } | Condition::RateOfChange { .. } => rule.metric,
                Condition::FloodLevel { .. } => Some("water_level"),
                _ => None,
            })
            .collect();
        metrics.sort_unstable();
        metrics.dedup();
        metrics
    }

    /// Evaluate the reading-driven rules (threshold, rate of change, flood level).
    pub fn observe(&mut self, r: &Reading) -> Vec<Transition> {
        let mut out = Vec::new();
        for i in 0..self.rules.len() {
            if !self.rules[i].scoped(r.city, r.domain, &r.device_id) {
                continue;
            }
            let Some(signal) = self.signal(i, r) else {
                continue;
            };
            self.step((i, r.device_id.clone()), r.city, signal, &mut out);
        }
        out
    }

    /// What reading `r` says for rule `i`: `None` when the rule does not look at it.
    fn signal(&mut self, i: usize, r: &Reading) -> Option<Signal> {
        let rule = &self.rules[i];
        let value = r.value;
        let (active, cleared, hold) = match rule.condition {
            Condition::Threshold {
                above,
                below,
                clear,
                hold,
            } if rule.metric == Some(r.metric) => {
                let (active, cleared) = threshold(above, below, clear, value);
                (active, cleared, hold)
            }
            Condition::RateOfChange { change, window } if rule.metric == Some(r.metric) => {
                let delta = self.change_within(i, r, window);
                let active = if change > 0.0 {
                    delta >= change
                } else {
                    delta <= change
                };
                (active, delta.abs() < change.abs() / 2.0, Duration::ZERO)
            }
            Condition::FloodLevel {
                level,
                clear_margin,
            } if r.metric == "water_level" => {
                let threshold = *self.flood_levels.get(&r.device_id)?.get(level - 1)?;
                (
                    value >= threshold,
                    value < threshold - clear_margin,
                    Duration::ZERO,
                )
            }
            _ => return None,
        };
        Some(Signal {
            active,
            cleared,
            hold,
            at: r.observed_at,
            value: Some(value),
        })
    }

    /// How much `r`'s series changed within `window` up to `r`, from the readings rule `i` has
    /// seen of it (kept for the window only).
    fn change_within(&mut self, i: usize, r: &Reading, window: Duration) -> f64 {
        let h = self.history.entry((i, r.device_id.clone())).or_default();
        h.push_back((r.observed_at, r.value));
        let from = r.observed_at - SignedDuration::try_from(window).unwrap_or_default();
        while h.front().is_some_and(|(t, _)| *t < from) {
            h.pop_front();
        }
        r.value - h.front().map_or(r.value, |(_, v)| *v)
    }

    /// An hourly VN_AQI of a station (for `aqi_category` rules).
    pub fn observe_aqi(
        &mut self,
        device: &str,
        city: City,
        aqi: u32,
        at: Timestamp,
    ) -> Vec<Transition> {
        let mut out = Vec::new();
        for i in 0..self.rules.len() {
            let rule = &self.rules[i];
            let Condition::Aqi { at_least } = rule.condition else {
                continue;
            };
            if !rule.scoped(city, Domain::AirQuality, device) {
                continue;
            }
            let signal = Signal::now(aqi >= at_least, at, Some(f64::from(aqi)));
            self.step((i, device.to_owned()), city, signal, &mut out);
        }
        out
    }

    /// Evaluate the time-driven rules: feed down per city, then staleness per device — except
    /// in cities whose feed is down, where one feed-down alert replaces the per-device storm.
    pub fn tick(
        &mut self,
        now: Timestamp,
        devices: &[DeviceSeen],
        cities: &[CityFeeds],
    ) -> Vec<Transition> {
        let mut out = Vec::new();
        let down_cities = self.tick_feeds(now, cities, &mut out);
        self.tick_devices(now, devices, &down_cities, &mut out);
        out
    }

    /// The `feed_down` rules; returns the cities found down.
    fn tick_feeds(
        &mut self,
        now: Timestamp,
        cities: &[CityFeeds],
        out: &mut Vec<Transition>,
    ) -> Vec<City> {
        let mut down_cities = Vec::new();
        for i in 0..self.rules.len() {
            let Condition::FeedDown { after } = self.rules[i].condition else {
                continue;
            };
            for c in cities {
                if self.rules[i].city.is_some_and(|rc| rc != c.city) {
                    continue;
                }
                let down = self.silent_longer(now, c.last_message, after);
                let key = (i, c.city.as_str().to_owned());
                self.step(key, c.city, Signal::now(down, now, None), out);
                if down {
                    down_cities.push(c.city);
                }
            }
        }
        down_cities
    }

    /// The `staleness` rules, but for devices of `down_cities` not already alerting.
    fn tick_devices(
        &mut self,
        now: Timestamp,
        devices: &[DeviceSeen],
        down_cities: &[City],
        out: &mut Vec<Transition>,
    ) {
        for i in 0..self.rules.len() {
            let Condition::Staleness { after } = self.rules[i].condition else {
                continue;
            };
            for d in devices {
                if !self.rules[i].scoped(d.city, d.domain, &d.device) {
                    continue;
                }
                let key = (i, d.device.clone());
                let stale = self.silent_longer(now, d.last_seen, after);
                if stale && down_cities.contains(&d.city) && !self.tracked.contains_key(&key) {
                    continue; // suppressed by the city's feed-down alert
                }
                self.step(key, d.city, Signal::now(stale, now, None), out);
            }
        }
    }

    /// Whether a subject last heard from at `last` (never: since the engine started) has been
    /// silent for longer than `after` at `now`.
    fn silent_longer(&self, now: Timestamp, last: Option<Timestamp>, after: Duration) -> bool {
        let silent = now.duration_since(last.unwrap_or(self.started));
        silent > SignedDuration::try_from(after).unwrap_or_default()
    }

    /// Move the alert `key` of `city` on by what `signal` says: start pending (and fire at once
    /// without a hold), fire once the hold has passed, resolve when cleared.
    fn step(
        &mut self,
        key: (usize, String),
        city: City,
        signal: Signal,
        out: &mut Vec<Transition>,
    ) {
        let Signal {
            active,
            cleared,
            hold,
            at,
            value,
        } = signal;
        let hold = SignedDuration::try_from(hold).unwrap_or_default();
        match self.tracked.get_mut(&key) {
            None if active => {
                let tracked = Tracked {
                    phase: Phase::Pending,
                    since: at,
                    city,
                    value,
                };
                self.tracked.insert(key.clone(), tracked);
                if hold.is_zero() {
                    self.fire(&key, at, out);
                }
            }
            None => {}
            Some(t) if cleared => {
                let was_firing = t.phase == Phase::Firing;
                let since = t.since;
                self.tracked.remove(&key);
                if was_firing {
                    out.push(self.transition(&key, city, false, at, since, value));
                }
            }
            Some(t) => {
                t.value = value.or(t.value);
                if t.phase == Phase::Pending && at.duration_since(t.since) >= hold {
                    self.fire(&key, at, out);
                }
            }
        }
    }

    fn fire(&mut self, key: &(usize, String), at: Timestamp, out: &mut Vec<Transition>) {
        let Some(t) = self.tracked.get_mut(key) else {
            return;
        };
        t.phase = Phase::Firing;
        let (city, since, value) = (t.city, t.since, t.value);
        out.push(self.transition(key, city, true, at, since, value));
    }

    fn transition(
        &self,
        key: &(usize, String),
        city: City,
        firing: bool,
        at: Timestamp,
        since: Timestamp,
        value: Option<f64>,
    ) -> Transition {
        let rule = &self.rules[key.0];
        let subject = &key.1;
        let what = describe(rule);
        let value_text = value.map(|v| format!(" (value {v})")).unwrap_or_default();
        Transition {
            fingerprint: fingerprint(&rule.name, subject),
            rule: rule.name.clone(),
            subject: subject.clone(),
            city,
            severity: rule.severity,
            firing,
            at,
            started_at: since,
            value,
            labels: labels(rule, city, subject),
            summary: (rule.summary.clone()).unwrap_or_else(|| format!("{}: {what}", rule.name)),
            description: format!("{subject} ({}): {what}{value_text}", city.display_name()),
        }
    }
}

/// Whether `value` is past the threshold (`above` or `below`), and whether it is back past
/// `clear` (the hysteresis).
fn threshold(above: Option<f64>, below: Option<f64>, clear: f64, value: f64) -> (bool, bool) {
    let active = above.is_some_and(|a| value > a) || below.is_some_and(|b| value < b);
    let cleared = if above.is_some() {
        value <= clear
    } else {
        value >= clear
    };
    (active, cleared)
}

/// What one evaluation says of an alert's subject.
#[derive(Debug, Clone, Copy)]
struct Signal {
    /// The condition holds.
    active: bool,
    /// The condition is over, past any hysteresis (not always `!active`).
    cleared: bool,
    /// How long the condition must hold before the alert fires.
    hold: Duration,
    /// When this was observed.
    at: Timestamp,
    value: Option<f64>,
}

impl Signal {
    /// A condition without hysteresis or hold.
    fn now(active: bool, at: Timestamp, value: Option<f64>) -> Signal {
        Signal {
            active,
            cleared: !active,
            hold: Duration::ZERO,
            at,
            value,
        }
    }
}

/// The labels of an alert of `rule` about `subject`: the rule's own, then `alertname`,
/// `severity`, `city`, `metric` and the subject (`device`, or `feed_city` for feed-down).
fn labels(rule: &Rule, city: City, subject: &str) -> BTreeMap<String, String> {
    let mut labels = rule.labels.clone();
    labels.insert("alertname".into(), rule.name.clone());
    labels.insert("severity".into(), rule.severity.as_str().into());
    labels.insert("city".into(), city.as_str().into());
    if let Some(m) = rule.metric {
        labels.insert("metric".into(), m.into());
    }
    let subject_label = if matches!(rule.condition, Condition::FeedDown { .. }) {
        "feed_city"
    } else {
        "device"
    };
    labels.insert(subject_label.into(), subject.to_owned());
    labels
}

/// What `rule` watches, in words: "pm25 above 80 for 10m".
fn describe(rule: &Rule) -> String {
    let metric = rule.metric.unwrap_or("value");
    let d = |d: &Duration| humantime::format_duration(*d);
    match &rule.condition {
        Condition::Threshold {
            above: Some(a),
            hold,
            ..
        } => format!("{metric} above {a} for {}", d(hold)),
        Condition::Threshold { below, hold, .. } => {
            format!(
                "{metric} below {} for {}",
                below.unwrap_or_default(),
                d(hold)
            )
        }
        Condition::RateOfChange { change, window } => {
            format!("{metric} changed by {change} within {}", d(window))
        }
        Condition::Staleness { after } => format!("no data for more than {}", d(after)),
        Condition::Aqi { at_least } => format!("hourly VN_AQI at or above {at_least}"),
        Condition::FloodLevel { level, .. } => format!("water level at or above BĐ{level}"),
        Condition::FeedDown { after } => format!(
            "no message from the city's feeds for more than {}",
            d(after)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, condition: Condition, metric: Option<&'static str>) -> Rule {
        Rule {
            name: name.into(),
            severity: Severity::Warning,
            city: None,
            domain: None,
            device: None,
            metric,
            condition,
            labels: BTreeMap::new(),
            summary: None,
        }
    }

    fn reading(device: &str, metric: &'static str, value: f64, minute: i64) -> Reading {
        let at = Timestamp::from_second(1_795_309_200 + minute * 60).unwrap();
        Reading::sample(device, metric, at, value)
    }

    fn engine(rules: Vec<Rule>) -> AlertEngine {
        AlertEngine::new(
            rules,
            HashMap::from([("GB".to_string(), vec![25.0, 26.0, 27.0])]),
            Timestamp::from_second(1_795_309_200).unwrap(),
        )
    }

    fn pm25_rule() -> Rule {
        rule(
            "pm25_high",
            Condition::Threshold {
                above: Some(80.0),
                below: None,
                clear: 60.0,
                hold: Duration::from_secs(15 * 60),
            },
            Some("pm25"),
        )
    }

    /// The commit thread hands the engine only the readings of `observed_metrics`: no rule
    /// may act on any other.
    #[test]
    fn only_the_observed_metrics_can_move_a_rule() {
        let rules = vec![
            pm25_rule(),
            rule(
                "rise",
                Condition::RateOfChange {
                    change: 0.5,
                    window: Duration::from_secs(3600),
                },
                Some("water_level"),
            ),
            rule(
                "bd1",
                Condition::FloodLevel {
                    level: 1,
                    clear_margin: 0.1,
                },
                None,
            ),
            rule(
                "stale",
                Condition::Staleness {
                    after: Duration::from_secs(60),
                },
                Some("no2"),
            ),
        ];
        let mut e = engine(rules);
        assert_eq!(e.observed_metrics(), vec!["pm25", "water_level"]);
        for metric in ["pm10", "no2", "co", "rainfall", "traffic_flow"] {
            for (minute, v) in [(0, 0.0), (30, 1e6), (60, -1e6), (90, 1e6)] {
                let mut r = reading("GB", metric, v, minute);
                r.domain = Domain::Water;
                assert!(e.observe(&r).is_empty(), "{metric}");
            }
        }
        assert!(
            !e.observe(&reading("GB", "water_level", 30.0, 100))
                .is_empty()
        );
    }

    #[test]
    fn a_spike_sustained_past_for_fires_once_and_resolves_once() {
        let mut e = engine(vec![pm25_rule()]);
        let mut events = Vec::new();
        for (minute, v) in [
            (0, 50.0),
            (5, 90.0),
            (10, 95.0),
            (15, 92.0),
            (20, 99.0),
            (25, 85.0),
            (30, 55.0),
            (35, 40.0),
        ] {
            events.extend(e.observe(&reading("A", "pm25", v, minute)));
        }
        assert_eq!(
            events.iter().map(|t| t.firing).collect::<Vec<_>>(),
            vec![true, false]
        );
        assert_eq!(
            events[0].at,
            reading("A", "pm25", 0.0, 20).observed_at,
            "fires once held 15 min"
        );
        assert_eq!(
            events[0].started_at,
            reading("A", "pm25", 0.0, 5).observed_at
        );
        assert_eq!(events[0].fingerprint, events[1].fingerprint);
        assert_eq!(events[0].labels["device"], "A");
    }

    #[test]
    fn values_bouncing_inside_the_hysteresis_band_do_not_flap() {
        let mut e = engine(vec![pm25_rule()]);
        let mut events = Vec::new();
        for (minute, v) in [
            (0, 85.0),
            (16, 90.0),
            (20, 75.0),
            (25, 82.0),
            (30, 65.0),
            (35, 81.0),
            (40, 70.0),
        ] {
            events.extend(e.observe(&reading("A", "pm25", v, minute)));
        }
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(events[0].firing);
    }

    #[test]
    fn a_short_spike_never_fires() {
        let mut e = engine(vec![pm25_rule()]);
        let events: Vec<_> = [(0, 90.0), (5, 95.0), (10, 50.0), (20, 50.0)]
            .into_iter()
            .flat_map(|(m, v)| e.observe(&reading("A", "pm25", v, m)))
            .collect();
        assert!(events.is_empty());
    }

    #[test]
    fn flood_levels_and_rate_of_change() {
        let mut e = engine(vec![
            rule(
                "bd3",
                Condition::FloodLevel {
                    level: 3,
                    clear_margin: 0.1,
                },
                None,
            ),
            rule(
                "rising",
                Condition::RateOfChange {
                    change: 0.5,
                    window: Duration::from_secs(3600),
                },
                Some("water_level"),
            ),
        ]);
        let mut events = Vec::new();
        for (m, v) in [
            (0, 26.0),
            (30, 26.6),
            (60, 27.05),
            (90, 26.95),
            (120, 26.85),
        ] {
            events.extend(e.observe(&reading("GB", "water_level", v, m)));
        }
        let names: Vec<_> = events.iter().map(|t| (t.rule.as_str(), t.firing)).collect();
        assert_eq!(
            names,
            vec![
                ("rising", true),
                ("bd3", true),
                ("bd3", false),
                ("rising", false)
            ]
        );
    }

    #[test]
    fn a_silent_city_raises_one_feed_down_alert_and_no_device_storm() {
        let mut e = engine(vec![
            rule(
                "feed_down",
                Condition::FeedDown {
                    after: Duration::from_secs(300),
                },
                None,
            ),
            rule(
                "stale",
                Condition::Staleness {
                    after: Duration::from_secs(600),
                },
                None,
            ),
        ]);
        let t0 = Timestamp::from_second(1_795_309_200).unwrap();
        let devices: Vec<DeviceSeen> = (0..5)
            .map(|i| DeviceSeen {
                device: format!("D{i}"),
                city: City::SongCong,
                domain: Domain::AirQuality,
                last_seen: Some(t0),
            })
            .collect();
        let cities = [CityFeeds {
            city: City::SongCong,
            last_message: Some(t0),
        }];
        let at = |min: i64| t0 + SignedDuration::from_mins(min);
        assert!(e.tick(at(4), &devices, &cities).is_empty());
        let down = e.tick(at(20), &devices, &cities);
        assert_eq!(down.len(), 1, "{down:?}");
        assert_eq!(
            (down[0].rule.as_str(), down[0].labels["feed_city"].as_str()),
            ("feed_down", "song-cong")
        );
        assert!(e.tick(at(30), &devices, &cities).is_empty());
        // The feed comes back: the feed-down alert resolves; devices report again.
        let back: Vec<_> = devices
            .iter()
            .map(|d| DeviceSeen {
                last_seen: Some(at(31)),
                ..d.clone()
            })
            .collect();
        let up = e.tick(
            at(31),
            &back,
            &[CityFeeds {
                city: City::SongCong,
                last_message: Some(at(31)),
            }],
        );
        assert_eq!(up.len(), 1);
        assert!(!up[0].firing);
    }
}
