//! The canonical metric catalogue: snake_case names, canonical units, default domain, and the
//! vendor aliases each is known by.

use std::{collections::HashMap, sync::LazyLock};

use super::units::Dim;
use crate::model::Domain;

/// A canonical metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricSpec {
    pub name: &'static str,
    /// Canonical unit, as shown by the API.
    pub unit: &'static str,
    pub domain: Domain,
    pub dim: Dim,
    /// The canonical unit's size in its dimension's base unit (e.g. mm = 0.001 m).
    pub factor: f64,
    /// Molar mass (g/mol) of a gas, to convert ppm/ppb to µg/m³ at 25 °C and 1 atm.
    pub molar_mass: Option<f64>,
    /// Vendor names, compared after `key()`.
    aliases: &'static [&'static str],
}

const fn m(
    name: &'static str,
    unit: &'static str,
    domain: Domain,
    dim: Dim,
    factor: f64,
    aliases: &'static [&'static str],
) -> MetricSpec {
    MetricSpec {
        name,
        unit,
        domain,
        dim,
        factor,
        molar_mass: None,
        aliases,
    }
}

const fn gas(name: &'static str, molar_mass: f64, aliases: &'static [&'static str]) -> MetricSpec {
    MetricSpec {
        name,
        unit: "µg/m³",
        domain: Domain::AirQuality,
        dim: Dim::MassConcentration,
        factor: 1.0,
        molar_mass: Some(molar_mass),
        aliases,
    }
}

use Dim::*;
use Domain::{AirQuality, Lighting, Traffic, Water, Weather};

pub static METRICS: &[MetricSpec] = &[
    // Air quality: µg/m³ for every pollutant (VN_AQI uses µg/m³ for CO too).
    m(
        "pm25",
        "µg/m³",
        AirQuality,
        MassConcentration,
        1.0,
        &["pm2.5", "pm25", "pm2,5", "bui25", "fine_particles"],
    ),
    m(
        "pm10",
        "µg/m³",
        AirQuality,
        MassConcentration,
        1.0,
        &["pm10", "bui10"],
    ),
    m(
        "pm1",
        "µg/m³",
        AirQuality,
        MassConcentration,
        1.0,
        &["pm1", "pm1.0"],
    ),
    m(
        "tsp",
        "µg/m³",
        AirQuality,
        MassConcentration,
        1.0,
        &["tsp", "totalsuspendedparticulate"],
    ),
    gas("no2", 46.0055, &["no2", "nitrogendioxide"]),
    gas("so2", 64.066, &["so2", "sulfurdioxide", "sulphurdioxide"]),
    gas("co", 28.010, &["co", "carbonmonoxide"]),
    gas("o3", 47.998, &["o3", "ozone"]),
    gas("no", 30.006, &["no", "nitrogenmonoxide", "nitricoxide"]),
    gas("nox", 46.0055, &["nox", "nitrogenoxides"]),
    m(
        "co2",
        "ppm",
        AirQuality,
        MixingRatio,
        1.0,
        &["co2", "carbondioxide"],
    ),
    // Weather.
    m(
        "temperature",
        "°C",
        Weather,
        Temperature,
        1.0,
        &[
            "temperature",
            "temp",
            "t",
            "airtemperature",
            "nhietdo",
            "nhietdokhongkhi",
        ],
    ),
    m(
        "relative_humidity",
        "%",
        Weather,
        Ratio,
        1.0,
        &["relativehumidity", "humidity", "rh", "hum", "doam"],
    ),
    m(
        "wind_speed",
        "km/h",
        Weather,
        Speed,
        1.0,
        &["windspeed", "ws", "tocdogio"],
    ),
    m(
        "wind_direction",
        "°",
        Weather,
        Angle,
        1.0,
        &["winddirection", "wd", "huonggio"],
    ),
    m(
        "pressure",
        "hPa",
        Weather,
        Pressure,
        1.0,
        &["pressure", "atmosphericpressure", "apsuat"],
    ),
    m(
        "rainfall",
        "mm",
        Weather,
        Length,
        0.001,
        &["rainfall", "rain", "precipitation", "luongmua", "mua"],
    ),
    // Water: hydrology and quality.
    m(
        "water_level",
        "m",
        Water,
        Length,
        1.0,
        &[
            "waterlevel",
            "level",
            "mucnuoc",
            "height",
            "currentlevel",
            "wl",
            "riverlevel",
        ],
    ),
    m(
        "flow",
        "m³/s",
        Water,
        Flow,
        1.0,
        &[
            "flow",
            "waterdischarge",
            "discharge",
            "luuluong",
            "waterflow",
        ],
    ),
    m("ph", "pH", Water, Ph, 1.0, &["ph"]),
    m(
        "dissolved_oxygen",
        "mg/L",
        Water,
        MassPerVolume,
        1.0,
        &["dissolvedoxygen", "do", "o2"],
    ),
    m(
        "conductivity",
        "µS/cm",
        Water,
        Conductivity,
        1.0,
        &["conductivity", "ec", "cond", "doduan"],
    ),
    m(
        "turbidity",
        "NTU",
        Water,
        Turbidity,
        1.0,
        &["turbidity", "tur", "turb", "doduc"],
    ),
    m(
        "water_temperature",
        "°C",
        Water,
        Temperature,
        1.0,
        &["watertemperature", "nhietdonuoc", "wtemp"],
    ),
    m("cod", "mg/L", Water, MassPerVolume, 1.0, &["cod"]),
    m(
        "nh4",
        "mg/L",
        Water,
        MassPerVolume,
        1.0,
        &["nh4", "ammonium", "nh4+"],
    ),
    // Traffic.
    m(
        "vehicle_count",
        "vehicles",
        Traffic,
        Count,
        1.0,
        &[
            "vehiclecount",
            "intensity",
            "vehicles",
            "count",
            "luuluongxe",
            "soxe",
        ],
    ),
    m(
        "average_speed",
        "km/h",
        Traffic,
        Speed,
        1.0,
        &["averagespeed", "averagevehiclespeed", "speed", "tocdo"],
    ),
    m("occupancy", "%", Traffic, Ratio, 1.0, &["occupancy"]),
    m(
        "headway",
        "s",
        Traffic,
        Time,
        1.0,
        &["headway", "averageheadwaytime"],
    ),
    m(
        "vehicle_length",
        "m",
        Traffic,
        Length,
        1.0,
        &["vehiclelength", "averagevehiclelength"],
    ),
    // Lighting and energy.
    m(
        "power_state",
        "state",
        Lighting,
        State,
        1.0,
        &["powerstate", "state", "onoff", "trangthai"],
    ),
    m(
        "dimming_level",
        "%",
        Lighting,
        Ratio,
        1.0,
        &["dimminglevel", "dimming", "illuminancelevel", "brightness"],
    ),
    m(
        "illuminance",
        "lx",
        Lighting,
        Illuminance,
        1.0,
        &["illuminance", "lux"],
    ),
    m(
        "power",
        "W",
        Domain::Energy,
        Power,
        1.0,
        &["power", "powerconsumption", "activepower", "congsuat"],
    ),
    m(
        "energy",
        "kWh",
        Domain::Energy,
        Dim::Energy,
        1.0,
        &["energy", "energyconsumed", "totalenergy", "dienang"],
    ),
    m(
        "voltage",
        "V",
        Domain::Energy,
        Voltage,
        1.0,
        &["voltage", "dienap"],
    ),
    m(
        "current",
        "A",
        Domain::Energy,
        Current,
        1.0,
        &["current", "dongdien"],
    ),
    m(
        "power_factor",
        "1",
        Domain::Energy,
        Dimensionless,
        1.0,
        &["powerfactor", "pf"],
    ),
];

/// Vendor names compare case-insensitively and ignore `_`, `-` and spaces (`PM2_5` = `pm2.5`
/// is not implied: the dot is kept so `PM1.0` and `PM10` stay apart).
fn key(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '_' | '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Every spelling we know, to its metric: canonical names, aliases, their `key()` forms and
/// upper-case forms (vendor tags like `PM25`, `TEMP`), so most lookups need no allocation.
static INDEX: LazyLock<HashMap<String, &'static MetricSpec>> = LazyLock::new(|| {
    let mut index = HashMap::new();
    for spec in METRICS {
        for name in std::iter::once(&spec.name).chain(spec.aliases) {
            for form in [name.to_string(), key(name), name.to_uppercase()] {
                index.entry(form).or_insert(spec);
            }
        }
    }
    index
});

/// A canonical metric by canonical name or vendor alias.
pub fn lookup(name: &str) -> Option<&'static MetricSpec> {
    if let Some(spec) = INDEX.get(name) {
        return Some(spec);
    }
    let k = key(name);
    // `pm2_5` loses its underscore to "pm25", which is PM2.5's alias, not PM10's.
    INDEX.get(k.as_str()).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_names_find_their_canonical_metric() {
        let cases = [
            ("PM25", "pm25"),
            ("PM2.5", "pm25"),
            ("pm2_5", "pm25"),
            ("PM10", "pm10"),
            ("PM1.0", "pm1"),
            ("NO2", "no2"),
            ("CO", "co"),
            ("TEMP", "temperature"),
            ("relativeHumidity", "relative_humidity"),
            ("MUCNUOC", "water_level"),
            ("level", "water_level"),
            ("currentLevel", "water_level"),
            ("rain", "rainfall"),
            ("intensity", "vehicle_count"),
            ("averageVehicleSpeed", "average_speed"),
            ("powerState", "power_state"),
            ("powerConsumption", "power"),
            ("illuminanceLevel", "dimming_level"),
            ("water_level", "water_level"),
        ];
        for (vendor, canonical) in cases {
            assert_eq!(lookup(vendor).map(|s| s.name), Some(canonical), "{vendor}");
        }
        assert!(lookup("banana").is_none());
        assert!(lookup("").is_none());
    }

    #[test]
    fn canonical_names_are_unique_and_snake_case() {
        let mut names: Vec<_> = METRICS.iter().map(|s| s.name).collect();
        assert!(names.iter().all(|n| {
            n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        }));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), METRICS.len());
    }
}
