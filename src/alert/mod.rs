//! Alerts: rules from config evaluated on the committed stream and on a timer by a pure state
//! machine (`engine`), every change recorded with its webhook notifications in one store
//! transaction (the outbox, `evaluator`), and one delivery task per receiver (`notify`).
//!
//! ```text
//!  commit thread ─AlertHandOff─▶ evaluator (engine + timer) ─record─▶ store: alert + outbox
//!                                                                        │ wake
//!                                                                        ▼
//!                                                      notify::deliver, one task per receiver
//! ```

pub mod engine;
mod evaluator;
pub mod notify;
pub mod rule;

use std::{collections::HashMap, sync::Arc};

use jiff::Timestamp;
use metrics::gauge;
use tokio::sync::{Notify, mpsc};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::info;

use crate::{
    model::{City, Reading},
    stats::FeedStats,
    store::{AlertFilter, Content, Envelope, Outcome, Store},
};
use engine::AlertEngine;
use evaluator::Evaluator;
pub use rule::{AlertsConfig, ReceiverConfig, Severity};

/// Wakes a receiver's delivery task when its queue gets work.
pub type Wakes = Arc<HashMap<String, Arc<Notify>>>;

/// What the rules watch besides readings: each feed's city and statistics (`feed_down`), and
/// each river gauge's alarm levels BĐ1–BĐ3 in metres, by device id (`flood_level`).
#[derive(Debug, Clone, Default)]
pub struct Watched {
    pub feeds: Vec<(City, Arc<FeedStats>)>,
    pub flood_levels: HashMap<String, Vec<f64>>,
}

/// The running alert system.
#[derive(Debug)]
pub struct Alerts {
    /// Where the commit thread hands committed readings over.
    pub hand_off: AlertHandOff,
    /// The receivers' delivery tasks, by receiver name (the API wakes one after a replay).
    pub wakes: Wakes,
}

/// The hand-off from the commit thread to the evaluator: after each commit, the readings it
/// stored of the metrics the rules look at. Bounded: a slow evaluator slows commits rather than
/// losing input.
#[derive(Debug, Clone)]
pub struct AlertHandOff {
    readings: mpsc::Sender<Vec<Reading>>,
    metrics: Arc<[&'static str]>,
}

impl AlertHandOff {
    /// Hand over what a commit stored: `envelopes` with their `outcomes` beside them.
    /// Duplicates, rejects and values a conflict did not keep carry no readings. Blocks while
    /// the evaluator is behind, so call it on the commit thread, never on the runtime.
    pub fn committed(&self, envelopes: Vec<Envelope>, outcomes: &[Outcome]) {
        let readings: Vec<Reading> = envelopes
            .into_iter()
            .zip(outcomes)
            .filter(|(_, o)| matches!(o, Outcome::Stored { .. }))
            .filter_map(|(e, _)| match e.content {
                Content::Readings(r) => Some(r),
                Content::Rejected { .. } => None,
            })
            .flatten()
            .filter(|r| self.metrics.contains(&r.metric))
            .collect();
        if !readings.is_empty() {
            // Err only once the evaluator has stopped, at shutdown.
            let _ = self.readings.blocking_send(readings);
        }
    }
}

/// Start the alert system on the current Tokio runtime: restore the incidents the store has
/// firing (they keep firing without a second notification), and spawn on `tasks` a webhook
/// delivery task per receiver and the evaluator. The evaluator takes committed readings from
/// [`Alerts::hand_off`] and runs the time-driven rules every `config.evaluation_interval`;
/// `external_url` is the base of the links in notifications. Every task stops at `cancel`.
/// Fails if the store cannot list the firing incidents or the HTTP client cannot be built.
pub async fn start(
    config: &AlertsConfig,
    watched: Watched,
    store: Store,
    external_url: String,
    tasks: &TaskTracker,
    cancel: CancellationToken,
) -> anyhow::Result<Alerts> {
    let mut engine = AlertEngine::new(
        config.rules().to_vec(),
        watched.flood_levels.clone(),
        Timestamp::now(),
    );
    restore_firing(&mut engine, &store).await?;
    let wakes = start_receivers(config, &store, tasks, &cancel)?;
    let metrics = engine.observed_metrics().into();
    let (readings, rx) = mpsc::channel(256);
    let evaluator = Evaluator {
        engine,
        config: config.clone(),
        store,
        feeds: watched.feeds,
        wakes: Arc::clone(&wakes),
        external_url,
    };
    tasks.spawn(evaluator.run(rx, cancel));
    Ok(Alerts {
        hand_off: AlertHandOff { readings, metrics },
        wakes,
    })
}

/// Give the engine the incidents the store has firing, so they resolve when they clear and
/// are not notified again.
async fn restore_firing(engine: &mut AlertEngine, store: &Store) -> anyhow::Result<()> {
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
    Ok(())
}

/// Spawn one delivery task per receiver; returns how to wake each.
fn start_receivers(
    config: &AlertsConfig,
    store: &Store,
    tasks: &TaskTracker,
    cancel: &CancellationToken,
) -> anyhow::Result<Wakes> {
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .build()?;
    let mut wakes = HashMap::new();
    for receiver in &config.receivers {
        let wake = Arc::new(Notify::new());
        wakes.insert(receiver.name.clone(), Arc::clone(&wake));
        tasks.spawn(notify::deliver(
            receiver.clone(),
            store.clone(),
            client.clone(),
            wake,
            cancel.clone(),
        ));
    }
    Ok(Arc::new(wakes))
}
