//! What the Smart Data Models we accept name: the entity types, the entity-level times, the
//! attributes read for what they say of the entity, those ignored, and the units the models
//! define for attributes sent without one.

use std::sync::LazyLock;

/// The entity types decoded.
pub(super) const SUPPORTED: &[&str] = &[
    "AirQualityObserved",
    "WaterObserved",
    "FloodMonitoring",
    "WaterQualityObserved",
    "TrafficFlowObserved",
    "Streetlight",
    "WeatherObserved",
];

/// Entity-level times, in order of preference.
pub(super) const TIME_KEYS: &[&str] = &[
    "dateObserved",
    "dateObservedTo",
    "observationDateTime",
    "dateLastReported",
];

/// Attributes the decoder reads for what they say of the entity, not as readings.
pub(super) const USED: &[&str] = &[
    "id",
    "type",
    "location",
    "status",
    "dateObserved",
    "dateObservedFrom",
    "dateObservedTo",
    "observationDateTime",
    "dateLastReported",
];

/// Attributes of the Smart Data Models we accept that are not measurements: identity,
/// metadata, thresholds, qualitative levels, descriptive text. Ignored and counted; any other
/// attribute that is not a metric is rejected as `unknown_metric`.
const IGNORED: &[&str] = &[
    "address",
    "name",
    "description",
    "alternateName",
    "dataProvider",
    "source",
    "seeAlso",
    "owner",
    "refDevice",
    "refPointOfInterest",
    "refStreetlightGroup",
    "refStreetlightModel",
    "refStreetlightControlCabinet",
    "refWeatherObserved",
    "refRoadSegment",
    "areaServed",
    "dateCreated",
    "dateModified",
    "dateLastLampChange",
    "dateLastSwitchingOn",
    "dateLastSwitchingOff",
    "dateServiceStarted",
    "typeOfLocation",
    "typeofLocation",
    "airQualityLevel",
    "airQualityIndex",
    "reliability",
    "coLevel",
    "no2Level",
    "so2Level",
    "o3Level",
    "pm10Level",
    "pm25Level",
    "laneId",
    "laneDirection",
    "reversedLane",
    "vehicleType",
    "vehicleSubType",
    "congested",
    "alertLevel",
    "dangerLevel",
    "referenceLevel",
    "floodLevelStatus",
    "measuredDistance",
    "stationID",
    "stationName",
    "circuit",
    "feederID",
    "lanternHeight",
    "controllingMethod",
    "powerRating",
    "workingMode",
    "lampTechnology",
    "measurand",
    "sensorType",
    "category",
    "annotations",
    "weatherType",
    "pressureTendency",
    "dataQuality",
];

/// The Smart Data Models' units for attributes sent without a `unitCode`, where the model
/// defines one (UN/CEFACT codes). An attribute not listed needs its `unitCode`.
const DEFAULT_UNITS: &[(&str, &str)] = &[
    // AirQualityObserved: pollutants in micrograms per cubic metre; WeatherObserved.
    ("pm25", "GQ"),
    ("pm10", "GQ"),
    ("pm1", "GQ"),
    ("no2", "GQ"),
    ("so2", "GQ"),
    ("co", "GQ"),
    ("o3", "GQ"),
    ("no", "GQ"),
    ("nox", "GQ"),
    ("PM25", "GQ"),
    ("PM10", "GQ"),
    ("PM1", "GQ"),
    ("NO2", "GQ"),
    ("SO2", "GQ"),
    ("CO", "GQ"),
    ("O3", "GQ"),
    ("NO", "GQ"),
    ("NOx", "GQ"),
    ("co2", "59"),
    ("CO2", "59"),
    ("temperature", "CEL"),
    ("relativeHumidity", "C62"),
    ("windSpeed", "MTS"),
    ("windDirection", "DD"),
    ("atmosphericPressure", "A97"),
    ("precipitation", "MMT"),
    // FloodMonitoring.
    ("currentLevel", "MTR"),
    // TrafficFlowObserved.
    ("occupancy", "C62"),
    ("averageVehicleSpeed", "KMH"),
    ("averageHeadwayTime", "SEC"),
    ("averageVehicleLength", "MTR"),
    // Streetlight.
    ("illuminanceLevel", "C62"),
];

/// `IGNORED` by name length: a lookup compares only the few names of the key's length
/// (cheaper than hashing every attribute name with SipHash, which showed in the profile).
static IGNORED_BY_LEN: LazyLock<Vec<Vec<&'static str>>> = LazyLock::new(|| {
    let mut by_len = vec![Vec::new(); IGNORED.iter().map(|s| s.len()).max().unwrap_or(0) + 1];
    for s in IGNORED {
        by_len[s.len()].push(*s);
    }
    by_len
});

/// The catalogue's name of an ignored attribute.
pub(super) fn ignored(key: &str) -> Option<&'static str> {
    IGNORED_BY_LEN
        .get(key.len())
        .and_then(|names| names.iter().find(|n| **n == key).copied())
}

/// The data model's unit of an attribute sent without a `unitCode`.
pub(super) fn default_unit(key: &str) -> Option<&'static str> {
    DEFAULT_UNITS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, u)| *u)
}

/// The attribute name as the metric catalogue knows it: in a water entity, `temperature` is
/// the water's.
pub(super) fn measured_name<'k>(kind: &str, key: &'k str) -> &'k str {
    match (kind, key) {
        ("WaterQualityObserved" | "WaterObserved", "temperature") => "waterTemperature",
        _ => key,
    }
}
