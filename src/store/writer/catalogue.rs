//! The device and series catalogue as the writer keeps it: series ids, device rows, and
//! each device's learned cadence.

use super::*;

/// The writer's state of a device: to learn its cadence message by message, and to know
/// whether its row needs more than the periodic flush of `live`.
#[derive(Debug, Clone, Default)]
pub(super) struct DeviceState {
    pub(super) last_observed: Option<i64>,
    pub(super) learned_interval: Option<f64>,
    /// Its row was upserted by this writer (it exists, with feed and first sighting).
    pub(super) row_written: bool,
    /// The row has a position.
    pub(super) located: bool,
}

/// device → metric → series.
pub(super) type SeriesCache = HashMap<String, HashMap<&'static str, SeriesKey>>;

pub(super) struct DeviceTouch<'a> {
    pub(super) reading: &'a Reading,
    pub(super) received_at: i64,
    pub(super) observed_at: i64,
}

/// A series' id and its device's key (`series.device_key`), which keys the device's log rows.
#[derive(Debug, Clone, Copy)]
pub(super) struct SeriesKey {
    pub(super) id: i64,
    pub(super) device_key: i64,
}

/// The series of reading `r`'s device and metric: from the cache, else its row, written
/// (and `written` set) if new.
pub(super) fn series_key(
    tx: &rusqlite::Transaction<'_>,
    cache: &mut SeriesCache,
    r: &Reading,
    written: &mut bool,
) -> Result<SeriesKey, StoreError> {
    if let Some(key) = cache
        .get(r.device_id.as_str())
        .and_then(|m| m.get(r.metric))
    {
        return Ok(*key);
    }
    *written = true;
    let key = insert_series(tx, r)?;
    cache
        .entry(r.device_id.clone())
        .or_default()
        .insert(r.metric, key);
    Ok(key)
}

/// Add the series of a device and metric (or, should it exist, set its unit), returning its id
/// and its device's key: that of the device's other series, 0 for its first.
const INSERT_SERIES: &str =
    "INSERT INTO series (device_id, metric, city, feed, domain, unit, device_key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6,
                     COALESCE((SELECT device_key FROM series WHERE device_id = ?1 LIMIT 1), 0))
             ON CONFLICT (device_id, metric) DO UPDATE SET unit = excluded.unit
             RETURNING id, device_key";

/// Write the series row of reading `r`'s device and metric, and say its key.
fn insert_series(tx: &rusqlite::Transaction<'_>, r: &Reading) -> Result<SeriesKey, StoreError> {
    // A device's first series gives the device its key (its own id); later ones share it.
    let (id, device_key): (i64, i64) = tx.prepare_cached(INSERT_SERIES)?.query_row(
        params![
            r.device_id,
            r.metric,
            r.city.as_str(),
            r.feed.as_str(),
            r.domain.as_str(),
            r.unit
        ],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    let device_key = if device_key == 0 {
        tx.prepare_cached("UPDATE series SET device_key = id WHERE id = ?1")?
            .execute([id])?;
        id
    } else {
        device_key
    };
    Ok(SeriesKey { id, device_key })
}

/// The writer's state of a device, loaded from the live state on first sight.
#[inline]
pub(super) fn device_state<'a>(
    devices: &'a mut HashMap<String, DeviceState>,
    live: &Live,
    device_id: &str,
) -> &'a mut DeviceState {
    if !devices.contains_key(device_id) {
        let state = live
            .read()
            .devices
            .get(device_id)
            .map(|d| DeviceState {
                last_observed: d.last_observed_at,
                learned_interval: d.learned_interval_ms,
                ..DeviceState::default()
            })
            .unwrap_or_default();
        devices.insert(device_id.to_owned(), state);
    }
    devices.get_mut(device_id).expect("inserted above")
}

impl DeviceState {
    /// Learn the device's reporting interval as an EWMA of the gaps between successive
    /// observations.
    #[inline]
    pub(super) fn learn(&mut self, observed: i64) {
        match self.last_observed {
            Some(last) if observed > last => {
                let gap = (observed - last) as f64;
                self.learned_interval = Some(match self.learned_interval {
                    Some(avg) => 0.8 * avg + 0.2 * gap,
                    None => gap,
                });
                self.last_observed = Some(observed);
            }
            Some(_) => {}
            None => self.last_observed = Some(observed),
        }
    }
}

/// Upsert the rows of devices this writer has not written yet (new devices, and each device's
/// first message since start: its feed, first sighting and position), and of devices whose
/// first position just arrived. What changes with every message goes through `live`. Whether
/// it wrote any.
pub(super) fn write_new_devices(
    tx: &rusqlite::Transaction<'_>,
    touched: &HashMap<&str, DeviceTouch<'_>>,
    states: &mut HashMap<String, DeviceState>,
) -> Result<bool, StoreError> {
    let mut wrote = false;
    let mut upsert = tx.prepare_cached(UPSERT_DEVICE)?;
    for (device, t) in touched {
        let r = t.reading;
        let Some(state) = states.get_mut(*device) else {
            continue;
        };
        if state.row_written && (state.located || r.location.is_none()) {
            continue;
        }
        state.row_written = true;
        state.located |= r.location.is_some();
        wrote = true;
        upsert_device(&mut upsert, device, t, state)?;
    }
    Ok(wrote)
}

/// A device's row as a message shows it: the first feed, position and sighting stick; the
/// last sighting and observation move forward only; the status is the latest observation's.
const UPSERT_DEVICE: &str = "INSERT INTO devices (device_id, city, feed, domain, lat, lon, first_seen, last_seen,
                              last_observed_at, last_status, learned_interval_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10)
         ON CONFLICT (device_id) DO UPDATE SET
           feed = COALESCE(devices.feed, excluded.feed),
           lat = COALESCE(devices.lat, excluded.lat),
           lon = CASE WHEN devices.lat IS NULL THEN excluded.lon ELSE devices.lon END,
           first_seen = COALESCE(devices.first_seen, excluded.first_seen),
           last_seen = MAX(COALESCE(devices.last_seen, 0), excluded.last_seen),
           last_status = CASE WHEN excluded.last_observed_at >= COALESCE(devices.last_observed_at, 0)
                              THEN excluded.last_status ELSE devices.last_status END,
           last_observed_at = MAX(COALESCE(devices.last_observed_at, 0), excluded.last_observed_at),
           learned_interval_ms = excluded.learned_interval_ms";

/// Upsert `device`'s row (`UPSERT_DEVICE`) from its newest reading of the commit and its state.
fn upsert_device(
    upsert: &mut rusqlite::CachedStatement<'_>,
    device: &str,
    t: &DeviceTouch<'_>,
    state: &DeviceState,
) -> Result<(), StoreError> {
    let r = t.reading;
    let (lat, lon) = r.location.as_ref().map(|l| (l.lat, l.lon)).unzip();
    let learned = state.learned_interval.map(|v| v.round() as i64);
    let last_observed = state.last_observed.unwrap_or(t.observed_at);
    upsert.execute(params![
        device,
        r.city.as_str(),
        r.feed.as_str(),
        r.domain.as_str(),
        lat,
        lon,
        t.received_at,
        last_observed,
        status_code(r.status),
        learned,
    ])?;
    Ok(())
}

/// Load (or refresh) the configured device catalogue.
pub(in crate::store) fn upsert_catalogue(
    conn: &Connection,
    devices: &[DeviceConfig],
) -> Result<(), StoreError> {
    let mut upsert = conn.prepare(
        "INSERT INTO devices (device_id, city, domain, name, lat, lon, ward, position_source,
                              flood_levels, configured_interval_ms, catalogued)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 1)
         ON CONFLICT (device_id) DO UPDATE SET
           city = excluded.city, domain = excluded.domain, name = excluded.name,
           lat = excluded.lat, lon = excluded.lon, ward = excluded.ward,
           position_source = excluded.position_source, flood_levels = excluded.flood_levels,
           configured_interval_ms = excluded.configured_interval_ms, catalogued = 1",
    )?;
    for d in devices {
        let levels = serde_json::to_string(&d.flood_levels).unwrap_or_else(|_| "[]".into());
        upsert.execute(params![
            d.id,
            d.city.as_str(),
            d.domain.as_str(),
            d.name,
            d.lat,
            d.lon,
            d.ward,
            d.position_source,
            levels,
            d.interval.map(|i| i.as_millis() as i64),
        ])?;
    }
    Ok(())
}
