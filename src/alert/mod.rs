//! Alerts: rules from config evaluated on the committed stream and on a timer by a pure state
//! machine (`engine`), every change recorded with its webhook notifications in one store
//! transaction (the outbox), and one delivery task per receiver (`notify`).

pub mod engine;
pub mod notify;
pub mod rule;

use std::{collections::HashMap, sync::Arc};

use jiff::Timestamp;
use metrics::gauge;
use tokio::{
    sync::{Notify, mpsc},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    config::Config,
    model::{City, Domain, Reading},
    stats::FeedStats,
    store::{AlertFilter, DeviceFilter, NewAlert, Store},
};
use engine::{AlertEngine, CityFeeds, DeviceSeen, Transition};
pub use rule::{AlertsConfig, ReceiverConfig, Severity};

/// Wakes a receiver's delivery task when its queue gets work.
pub type Wakes = Arc<HashMap<String, Arc<Notify>>>;

/// Handles of the running alert system.
#[derive(Debug)]
pub struct Alerts {
    /// Committed readings go here (bounded: a slow evaluator slows commits, never loses input)
    /// …
    pub readings: mpsc::Sender<Vec<Reading>>,
    /// … those of these metrics, the only ones the rules look at.
    pub metrics: Arc<[&'static str]>,
    pub wakes: Wakes,
    pub tasks: Vec<JoinHandle<()>>,
}

/// Start the alert system on the current Tokio runtime: validate the rules, restore the
/// incidents the store has firing (they keep firing without a second notification), and spawn a
/// webhook delivery task per receiver and the evaluator. The evaluator takes committed readings
/// from [`Alerts::readings`] and runs the time-driven rules every `alerts.evaluation_interval`;
/// `feeds` are the feeds' statistics in the order of `config.feeds`, and `external_url` the
/// base of the links in notifications. Every task stops at `cancel`. Fails on invalid rules, if
/// the store cannot list the firing incidents, or if the HTTP client cannot be built.
pub async fn start(
    config: Arc<Config>,
    store: Store,
    feeds: Vec<Arc<FeedStats>>,
    external_url: String,
    cancel: CancellationToken,
) -> anyhow::Result<Alerts> {
    let mut problems = Vec::new();
    let rules = config.alerts.rules(&mut problems);
    anyhow::ensure!(problems.is_empty(), "alert rules: {problems:?}");
    let flood_levels = config
        .devices
        .iter()
        .filter(|d| !d.flood_levels.is_empty())
        .map(|d| (d.id.clone(), d.flood_levels.clone()))
        .collect();
    let mut engine = AlertEngine::new(rules, flood_levels, Timestamp::now());
    let firing = store
        .alerts(&AlertFilter {
            state: Some("firing".into()),
            limit: 100_000,
            ..Default::default()
        })
        .await?;
    for a in &firing {
        if let Ok(city) = a.city.parse::<City>() {
            engine.restore(&a.rule, &a.subject, city, a.starts_at);
            gauge!("ioc_alerts_firing", "city" => a.city.clone(), "severity" => a.severity.clone())
                .increment(1.0);
        }
    }
    if !firing.is_empty() {
        info!(
            alerts = firing.len(),
            "Restored firing alerts; they will not be notified again."
        );
    }
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .build()?;
    let mut tasks = Vec::new();
    let mut wakes = HashMap::new();
    for receiver in &config.alerts.receivers {
        let wake = Arc::new(Notify::new());
        wakes.insert(receiver.name.clone(), Arc::clone(&wake));
        tasks.push(tokio::spawn(notify::deliver(
            receiver.clone(),
            store.clone(),
            client.clone(),
            wake,
            cancel.clone(),
        )));
    }
    let wakes: Wakes = Arc::new(wakes);
    let metrics = engine.observed_metrics().into();
    let (tx, rx) = mpsc::channel(256);
    let evaluator = Evaluator {
        engine,
        config: Arc::clone(&config),
        store,
        feeds,
        wakes: Arc::clone(&wakes),
        external_url,
    };
    tasks.push(tokio::spawn(evaluator.run(rx, cancel)));
    Ok(Alerts {
        readings: tx,
        metrics,
        wakes,
        tasks,
    })
}

struct Evaluator {
    engine: AlertEngine,
    config: Arc<Config>,
    store: Store,
    feeds: Vec<Arc<FeedStats>>,
    wakes: Wakes,
    external_url: String,
}

impl Evaluator {
    async fn run(mut self, mut readings: mpsc::Receiver<Vec<Reading>>, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.alerts.evaluation_interval);
        loop {
            let transitions = tokio::select! {
                batch = readings.recv() => match batch {
                    Some(batch) => batch.iter().flat_map(|r| self.engine.observe(r)).collect(),
                    None => break,
                },
                _ = tick.tick() => self.tick().await,
                _ = cancel.cancelled() => break,
            };
            for t in transitions {
                self.record(t).await;
            }
        }
    }

    /// The time-driven rules: staleness, feed down, hourly VN_AQI.
    async fn tick(&mut self) -> Vec<Transition> {
        let now = Timestamp::now();
        let devices = match self.store.devices(&DeviceFilter::default()).await {
            Ok(d) => d,
            Err(e) => {
                warn!(error = %e, "Alert evaluation could not read devices.");
                return Vec::new();
            }
        };
        let seen: Vec<DeviceSeen> = devices
            .iter()
            .map(|d| DeviceSeen {
                device: d.device_id.clone(),
                city: d.city,
                domain: d.domain,
                last_seen: d.last_seen,
            })
            .collect();
        let cities: Vec<CityFeeds> = City::ALL
            .into_iter()
            .filter(|c| self.config.feeds.iter().any(|f| f.city == *c))
            .map(|city| CityFeeds {
                city,
                last_message: self
                    .config
                    .feeds
                    .iter()
                    .zip(&self.feeds)
                    .filter(|(f, _)| f.city == city)
                    .filter_map(|(_, s)| s.snapshot().last_message_at)
                    .max(),
            })
            .collect();
        let mut out = self.engine.tick(now, &seen, &cities);
        let wants_aqi = self
            .engine
            .rules()
            .iter()
            .any(|r| matches!(r.condition, rule::Condition::Aqi { .. }));
        if wants_aqi {
            for d in devices.iter().filter(|d| d.domain == Domain::AirQuality) {
                if let Ok(Some(aqi)) = self.store.latest_hourly_aqi(&d.device_id, now).await {
                    out.extend(self.engine.observe_aqi(
                        &d.device_id,
                        d.city,
                        aqi.aqi,
                        aqi.window_end,
                    ));
                }
            }
        }
        out
    }

    async fn record(&self, t: Transition) {
        let receivers: Vec<ReceiverConfig> = self
            .config
            .alerts
            .receivers
            .iter()
            .filter(|r| notify::wants(r, &t))
            .cloned()
            .collect();
        let names: Vec<String> = receivers.iter().map(|r| r.name.clone()).collect();
        let alert = NewAlert {
            fingerprint: t.fingerprint.clone(),
            rule: t.rule.clone(),
            subject: t.subject.clone(),
            city: t.city.as_str().to_owned(),
            severity: t.severity.as_str().to_owned(),
            firing: t.firing,
            labels: serde_json::to_value(&t.labels).unwrap_or_default(),
            summary: t.summary.clone(),
            description: t.description.clone(),
            value: t.value,
            started_at: t.started_at,
            at: t.at,
        };
        let url = self.external_url.clone();
        // A change must not be lost to a passing store error: recording it (with its
        // notifications) is retried with a doubling delay from 50 ms while the delay stays under
        // 30 s, about 50 s in all; after that the error is logged and the engine's state and the
        // store disagree until the alert's next change.
        let mut delay = std::time::Duration::from_millis(50);
        let result = loop {
            let transition = t.clone();
            let receivers = receivers.clone();
            let url = url.clone();
            let attempt = self
                .store
                .record_alert(alert.clone(), move |id| {
                    receivers
                        .iter()
                        .map(|r| {
                            (
                                r.name.clone(),
                                notify::webhook_id(id, transition.firing),
                                notify::body(&r.name, &transition, id, &url),
                            )
                        })
                        .collect()
                })
                .await;
            match attempt {
                Err(e) if delay < std::time::Duration::from_secs(30) => {
                    warn!(error = %e, rule = %t.rule, retry_in = ?delay, "Recording an alert change failed; retrying.");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                other => break other,
            }
        };
        match result {
            Ok(id) => {
                let g = gauge!("ioc_alerts_firing", "city" => t.city.as_str(), "severity" => t.severity.as_str());
                if t.firing {
                    g.increment(1.0)
                } else {
                    g.decrement(1.0)
                }
                info!(alert = id, rule = %t.rule, subject = %t.subject, firing = t.firing, "Alert {}.", if t.firing { "firing" } else { "resolved" });
                for name in names {
                    if let Some(w) = self.wakes.get(&name) {
                        w.notify_one();
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, rule = %t.rule, subject = %t.subject, "Recording an alert change failed for good; the alert state and the store disagree until the next change.")
            }
        }
    }
}
