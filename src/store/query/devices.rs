//! Devices: the catalogue as committed (read once per change), with latest values and
//! presence from the live state.

use super::*;
use crate::store::live::State;

/// Which devices [`Store::devices`] lists: exact matches on city, domain (the device's own) and
/// device id, `None` matching any. The default lists every device.
#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    pub city: Option<City>,
    pub domain: Option<Domain>,
    pub device_id: Option<String>,
}

/// A series' latest stored reading, from the writer's live state: its metric, value in `unit`
/// (the canonical unit), observation time and instrument status. It can be seconds newer than
/// the `series` row, which is written from memory every few seconds.
#[derive(Debug, Clone, Serialize)]
pub struct LatestValue {
    pub metric: Arc<str>,
    pub value: f64,
    pub unit: Arc<str>,
    pub observed_at: Timestamp,
    pub status: Status,
}

/// A device as listed: its catalogue row (city, domain, name, position, flood alarm levels in
/// metres, …) with what changes per message from the writer's live state — when it was last
/// seen (received) and last observed, its last status, its learned interval and the latest
/// value of each series. `catalogued` is false for a device only heard from, not configured.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceRow {
    pub device_id: String,
    pub city: City,
    pub feed: Option<String>,
    pub domain: Domain,
    pub name: Option<String>,
    pub location: Option<Location>,
    pub position_source: Option<String>,
    pub catalogued: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flood_levels: Vec<f64>,
    /// Configured interval, else the learned one.
    pub expected_interval_ms: Option<i64>,
    pub first_seen: Option<Timestamp>,
    pub last_seen: Option<Timestamp>,
    pub last_observed_at: Option<Timestamp>,
    pub last_status: Option<&'static str>,
    pub latest: Vec<LatestValue>,
}

/// What the device listing reads from the tables: each device's row (without what changes per
/// message) and series, in the listing's order. It changes only when the writer adds a device,
/// a series or a device's first position and feed, so it is kept until then: the overview, the
/// alert tick and the device API each read every device, the overview every second, and at
/// 15,000 stations reading them from the tables took about a tenth of a core from ingest
/// (BENCHMARKS.md, finding 19).
pub(in crate::store) struct Catalogue {
    /// The writer's count of changes this was read at.
    generation: u64,
    rows: Vec<DeviceRow>,
    /// By device and metric.
    series: Vec<CatalogueSeries>,
}

/// A series of the catalogue: (index in `rows`, series id, metric, unit).
type CatalogueSeries = (usize, i64, Arc<str>, Arc<str>);

/// The last catalogue read, and the writer's count of changes to it.
#[derive(Default)]
pub(in crate::store) struct CatalogueCache {
    /// Bumped by the writer after each commit that changed what a catalogue holds.
    pub(in crate::store) generation: Arc<AtomicU64>,
    last: Mutex<Option<Arc<Catalogue>>>,
}

impl CatalogueCache {
    /// The catalogue as committed now: the last one read, unless the writer changed it since.
    pub(in crate::store) fn get(&self, conn: &Connection) -> Result<Arc<Catalogue>, StoreError> {
        // Read the count before the tables: a change committed meanwhile makes the next call
        // read them again.
        let generation = self.generation.load(Ordering::Acquire);
        if let Some(c) = self.last.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
            && c.generation == generation
        {
            return Ok(Arc::clone(c));
        }
        let catalogue = Arc::new(read_catalogue(conn, generation)?);
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&catalogue));
        Ok(catalogue)
    }
}

/// Every device's row, without what changes per message, in the listing's order.
const SELECT_DEVICES: &str =
    "SELECT device_id, city, feed, domain, name, lat, lon, ward, position_source, flood_levels,
                configured_interval_ms, first_seen, catalogued
         FROM devices ORDER BY city, domain, device_id";

/// Every series, by device and metric.
const SELECT_SERIES: &str =
    "SELECT device_id, id, metric, unit FROM series ORDER BY device_id, metric";

/// Read the catalogue from the tables, as of the writer's count of changes `generation`.
fn read_catalogue(conn: &Connection, generation: u64) -> Result<Catalogue, StoreError> {
    let mut stmt = conn.prepare_cached(SELECT_DEVICES)?;
    let rows: Vec<DeviceRow> = stmt.query_map([], device_row)?.collect::<Result<_, _>>()?;
    let series = read_series(conn, &rows)?;
    Ok(Catalogue {
        generation,
        rows,
        series,
    })
}

/// A device's row as `SELECT_DEVICES` reads it; what changes per message is left empty.
fn device_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRow> {
    let lat: Option<f64> = row.get(5)?;
    let lon: Option<f64> = row.get(6)?;
    let levels: Option<String> = row.get(9)?;
    Ok(DeviceRow {
        device_id: row.get(0)?,
        city: row.get::<_, String>(1)?.parse().unwrap_or(City::ThaiNguyen),
        feed: row.get(2)?,
        domain: row
            .get::<_, String>(3)?
            .parse()
            .unwrap_or(Domain::AirQuality),
        name: row.get(4)?,
        location: lat.zip(lon).map(|(lat, lon)| Location {
            lat,
            lon,
            ward: row.get(7).ok().flatten(),
        }),
        position_source: row.get(8)?,
        flood_levels: levels
            .and_then(|l| serde_json::from_str(&l).ok())
            .unwrap_or_default(),
        expected_interval_ms: row.get(10)?,
        first_seen: row.get::<_, Option<i64>>(11)?.map(ts),
        last_seen: None,
        last_observed_at: None,
        last_status: None,
        catalogued: row.get(12)?,
        latest: Vec::new(),
    })
}

/// The series of the devices in `rows`, by device and metric.
fn read_series(conn: &Connection, rows: &[DeviceRow]) -> Result<Vec<CatalogueSeries>, StoreError> {
    // Every device's series in one pass over `series`, not a query per device.
    let index: HashMap<&str, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, d)| (d.device_id.as_str(), i))
        .collect();
    let mut names = SharedNames::default();
    let mut series = Vec::new();
    let mut stmt = conn.prepare_cached(SELECT_SERIES)?;
    let mut found = stmt.query([])?;
    while let Some(row) = found.next()? {
        if let Some(&i) = index.get(row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?) {
            let metric = names.get(row.get_ref(2)?.as_str().map_err(rusqlite::Error::from)?);
            let unit = names.get(row.get_ref(3)?.as_str().map_err(rusqlite::Error::from)?);
            series.push((i, row.get::<_, i64>(1)?, metric, unit));
        }
    }
    Ok(series)
}

/// Metric names and units repeat across devices: one shared string each.
#[derive(Default)]
struct SharedNames(HashMap<String, Arc<str>>);

impl SharedNames {
    /// The shared string equal to `s`.
    fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.0.get(s) {
            return Arc::clone(a);
        }
        let a: Arc<str> = s.into();
        self.0.insert(s.to_owned(), Arc::clone(&a));
        a
    }
}

/// The device rows `filter` selects, with what changes per message (last seen, latest values,
/// learned interval) from the writer's live state rather than the rows, which lag it by
/// seconds. (Series are selected by device only: a catalogued device's city or domain can
/// differ from what its readings carry.)
fn devices(catalogue: &Catalogue, live: &Live, filter: &DeviceFilter) -> Vec<DeviceRow> {
    let (mut rows, slot) = select(catalogue, filter);
    // Held for lookups only, as the writer waits for it.
    let live = live.read();
    for d in &mut rows {
        if let Some(l) = live.devices.get(&d.device_id) {
            d.last_seen = l.last_seen.map(ts);
            d.last_observed_at = l.last_observed_at.map(ts);
            d.last_status = l.last_status.map(|c| status_from_code(c).as_str());
            d.expected_interval_ms = d
                .expected_interval_ms
                .or(l.learned_interval_ms.map(|v| v.round() as i64));
        }
    }
    add_latest(&mut rows, &slot, catalogue, &live);
    rows
}

/// The catalogue rows `filter` selects, and where each catalogue row went in them
/// (`usize::MAX`: not selected).
fn select(catalogue: &Catalogue, filter: &DeviceFilter) -> (Vec<DeviceRow>, Vec<usize>) {
    let selected = |d: &DeviceRow| {
        filter.city.is_none_or(|c| d.city == c)
            && filter.domain.is_none_or(|c| d.domain == c)
            && filter
                .device_id
                .as_ref()
                .is_none_or(|id| *id == d.device_id)
    };
    let mut slot = vec![usize::MAX; catalogue.rows.len()];
    let mut rows = Vec::with_capacity(catalogue.rows.iter().filter(|d| selected(d)).count());
    for (i, d) in catalogue.rows.iter().enumerate() {
        if selected(d) {
            slot[i] = rows.len();
            rows.push(d.clone());
        }
    }
    (rows, slot)
}

/// Give each selected device the latest value of each of its series that has one.
fn add_latest(rows: &mut [DeviceRow], slot: &[usize], catalogue: &Catalogue, live: &State) {
    // Each device's values sized up front: grown one by one, 15,000 devices' vectors were
    // copied twice each and their new pages faulted in, every second for the overview.
    let mut values = vec![0; rows.len()];
    for (i, ..) in &catalogue.series {
        if let Some(n) = values.get_mut(slot[*i]) {
            *n += 1;
        }
    }
    for (d, n) in rows.iter_mut().zip(values) {
        d.latest.reserve_exact(n);
    }
    for (i, id, metric, unit) in &catalogue.series {
        let Some(d) = rows.get_mut(slot[*i]) else {
            continue;
        };
        if let Some(l) = live.series.get(id) {
            d.latest.push(LatestValue {
                metric: Arc::clone(metric),
                value: l.value,
                unit: Arc::clone(unit),
                observed_at: ts(l.observed_at),
                status: status_from_code(l.status),
            });
        }
    }
}

impl Store {
    /// The devices `filter` selects, by city, domain and id, each with its latest values. The
    /// catalogue part is kept in memory until the writer adds a device, a series or a first
    /// position, so listing every device, as the overview does every second, stays cheap.
    pub async fn devices(&self, filter: &DeviceFilter) -> Result<Vec<DeviceRow>, StoreError> {
        let filter = filter.clone();
        let inner = Arc::clone(&self.inner);
        self.read(move |conn| {
            let catalogue = inner.catalogue.get(conn)?;
            Ok(devices(&catalogue, &inner.live, &filter))
        })
        .await
    }
}
