//! The evaluator task: feeds the engine committed readings and the timer's ticks, and records
//! each change with its webhook notifications in one store transaction.

use std::{sync::Arc, time::Duration};

use jiff::Timestamp;
use metrics::gauge;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{
    AlertsConfig, ReceiverConfig, Wakes,
    engine::{AlertEngine, CityFeeds, DeviceSeen, Transition},
    notify,
    rule::Condition,
};
use crate::{
    model::{City, Domain, Reading},
    stats::FeedStats,
    store::{DeviceFilter, DeviceRow, NewAlert, Store, StoreError},
};

pub(super) struct Evaluator {
    pub engine: AlertEngine,
    pub config: AlertsConfig,
    pub store: Store,
    pub feeds: Vec<(City, Arc<FeedStats>)>,
    pub wakes: Wakes,
    pub external_url: String,
}

impl Evaluator {
    /// Until `cancel` or the hand-off closes: evaluate each batch of committed readings, and
    /// the time-driven rules every `evaluation_interval`.
    pub async fn run(
        mut self,
        mut readings: mpsc::Receiver<Vec<Reading>>,
        cancel: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(self.config.evaluation_interval);
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
        let mut out = self.engine.tick(now, &seen, &self.city_feeds());
        out.extend(self.hourly_aqi(&devices, now).await);
        out
    }

    /// Each city with a feed, and the last message any of its feeds received.
    fn city_feeds(&self) -> Vec<CityFeeds> {
        City::ALL
            .into_iter()
            .filter(|c| self.feeds.iter().any(|(city, _)| city == c))
            .map(|city| CityFeeds {
                city,
                last_message: (self.feeds.iter())
                    .filter(|(c, _)| *c == city)
                    .filter_map(|(_, s)| s.snapshot().last_message_at)
                    .max(),
            })
            .collect()
    }

    /// The VN_AQI rules on each air station's latest hourly index, when any rule wants it.
    async fn hourly_aqi(&mut self, devices: &[DeviceRow], now: Timestamp) -> Vec<Transition> {
        let wants_aqi =
            (self.engine.rules().iter()).any(|r| matches!(r.condition, Condition::Aqi { .. }));
        let mut out = Vec::new();
        if !wants_aqi {
            return out;
        }
        for d in devices.iter().filter(|d| d.domain == Domain::AirQuality) {
            if let Ok(Some(aqi)) = self.store.latest_hourly_aqi(&d.device_id, now).await {
                out.extend(
                    self.engine
                        .observe_aqi(&d.device_id, d.city, aqi.aqi, aqi.window_end),
                );
            }
        }
        out
    }

    /// Record one change with a notification for each receiver that wants it, then wake those
    /// receivers.
    async fn record(&self, t: Transition) {
        let receivers: Vec<ReceiverConfig> = (self.config.receivers.iter())
            .filter(|r| notify::wants(r, &t))
            .cloned()
            .collect();
        match self.record_with_retry(&t, &receivers).await {
            Ok(id) => {
                let g = gauge!("ioc_alerts_firing", "city" => t.city.as_str(), "severity" => t.severity.as_str());
                if t.firing {
                    g.increment(1.0)
                } else {
                    g.decrement(1.0)
                }
                info!(alert = id, rule = %t.rule, subject = %t.subject, firing = t.firing, "Alert {}.", if t.firing { "firing" } else { "resolved" });
                for r in &receivers {
                    if let Some(w) = self.wakes.get(&r.name) {
                        w.notify_one();
                    }
                }
            }
            Err(e) => {
                error!(error = %e, rule = %t.rule, subject = %t.subject, "Recording an alert change failed for good; the alert state and the store disagree until the next change.")
            }
        }
    }

    /// A change must not be lost to a passing store error: recording it (with its
    /// notifications) is retried with a doubling delay from 50 ms while the delay stays under
    /// 30 s, about 50 s in all; after that the error is returned.
    async fn record_with_retry(
        &self,
        t: &Transition,
        receivers: &[ReceiverConfig],
    ) -> Result<i64, StoreError> {
        let alert = new_alert(t);
        let mut delay = Duration::from_millis(50);
        loop {
            let (transition, url) = (t.clone(), self.external_url.clone());
            let receivers = receivers.to_vec();
            let attempt = self
                .store
                .record_alert(alert.clone(), move |id| {
                    (receivers.iter())
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
                Err(e) if delay < Duration::from_secs(30) => {
                    warn!(error = %e, rule = %t.rule, retry_in = ?delay, "Recording an alert change failed; retrying.");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                other => return other,
            }
        }
    }
}

/// The store's row for a change.
fn new_alert(t: &Transition) -> NewAlert {
    NewAlert {
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
    }
}
