//! The canonical metric catalogue: snake_case names, canonical units, default domain, and the
//! vendor aliases each is known by.

use std::{collections::HashMap, sync::LazyLock};

use super::units::{Dim, MOLAR_VOLUME, Scale, UnitError, Vocabulary};
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
    /// What values it takes.
    pub kind: Kind,
    /// The physically possible values, in the canonical unit, both ends included: a value
    /// outside is impossible, not merely unusual, and is rejected (a gauge's own band can be
    /// narrower: `[[devices]] ranges`).
    pub range: (f64, f64),
}

/// What values a metric takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// A measured quantity: a number, in a unit of its dimension.
    Number,
    /// An enumeration: one of these words (compared after `vocabulary::fold`), each stored as
    /// its number; `true`/`false` are `on`/`off`, and the numbers themselves are accepted.
    Enumeration(&'static [(&'static str, f64)]),
}

/// Smart Data Models' Streetlight `powerState` (on, off, low, bootingUp), plus the words
/// vendors write for on and off.
pub const POWER_STATES: &[(&str, f64)] = &[
    ("off", 0.0),
    ("on", 1.0),
    ("low", 2.0),
    ("bootingup", 3.0),
    ("tat", 0.0),
    ("bat", 1.0),
    ("false", 0.0),
    ("true", 1.0),
];

impl MetricSpec {
    /// Convert `value`, given in `unit` of `vocabulary`, to this metric's canonical unit. `unit` is
    /// the payload's unit, or the data model's default where the format has one; `None` means the
    /// value is a bare number, which only metrics without a unit take (see `MetricSpec::unitless`).
    pub fn convert(
        &self,
        value: f64,
        unit: &str,
        vocabulary: Vocabulary,
    ) -> Result<f64, UnitError> {
        let spec = self;
        let Some(u) = vocabulary.lookup(unit) else {
            return Err(UnitError::Unknown {
                unit: unit.to_owned(),
                metric: spec.name,
                canonical: spec.unit,
            });
        };
        let mismatch = || UnitError::Mismatch {
            unit: unit.to_owned(),
            prefix: u.prefix,
            name: u.name,
            metric: spec.name,
            canonical: spec.unit,
        };
        let factor = match u.scale {
            Scale::Factor(f) => f,
            Scale::Fahrenheit if spec.dim == Temperature => return Ok((value - 32.0) * 5.0 / 9.0),
            Scale::Kelvin if spec.dim == Temperature => return Ok(value - 273.15),
            _ => return Err(mismatch()),
        };
        spec.scaled(value, factor, u.dim).ok_or_else(mismatch)
    }

    /// `value` times `factor` (the size of its unit in dimension `dim`'s base unit) in this
    /// metric's canonical unit; `None` when `dim` does not convert to the metric's dimension.
    fn scaled(&self, value: f64, factor: f64, dim: Dim) -> Option<f64> {
        match (self.dim, dim) {
            (Other | Latitude | Longitude, _) | (_, Other | Latitude | Longitude) => None,
            (a, b) if a == b => Some(value * factor / self.factor),
            (MassConcentration, MixingRatio) => self
                .molar_mass
                .map(|mm| value * factor * mm / MOLAR_VOLUME * 1000.0),
            // "1" (UN/CEFACT C62) for a percentage: a 0–1 fraction (Smart Data Models convention).
            (Ratio, Dimensionless) => Some(value * factor * 100.0),
            (Count | State | Ph | Dimensionless, Dimensionless) => Some(value * factor),
            _ => None,
        }
    }

    /// Whether a bare number is already in the canonical unit: counts, states, pH and ratios
    /// of one. Every other metric needs a unit.
    pub fn unitless(&self) -> bool {
        matches!(self.dim, Count | State | Ph | Dimensionless)
    }

    const fn range(self, min: f64, max: f64) -> MetricSpec {
        MetricSpec {
            range: (min, max),
            ..self
        }
    }
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
        kind: Kind::Number,
        range: (f64::MIN, f64::MAX),
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
        kind: Kind::Number,
        // Up to 0.1 % of the air by mass: beyond any ambient or stack measurement.
        range: (0.0, 1_000_000.0),
    }
}

use Dim::*;
use Domain::{AirQuality, Lighting, Traffic, Water, Weather};

pub static METRICS: &[MetricSpec] = &[
    // Air quality: µg/m³ for every pollutant (VN_AQI uses µg/m³ for CO too). No concentration
    // is negative; 100 mg/m³ of particles is beyond the worst dust storm.
    m(
        "pm25",
        "µg/m³",
        AirQuality,
        MassConcentration,
        1.0,
        &["pm2.5", "pm25", "pm2,5", "bui25", "fine_particles"],
    )
    .range(0.0, 100_000.0),
    m(
        "pm10",
        "µg/m³",
        AirQuality,
        MassConcentration,
        1.0,
        &["pm10", "bui10"],
    )
    .range(0.0, 100_000.0),
    m(
        "pm1",
        "µg/m³",
        AirQuality,
        MassConcentration,
        1.0,
        &["pm1", "pm1.0"],
    )
    .range(0.0, 100_000.0),
    m(
        "tsp",
        "µg/m³",
        AirQuality,
        MassConcentration,
        1.0,
        &["tsp", "totalsuspendedparticulate"],
    )
    .range(0.0, 100_000.0),
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
    )
    .range(0.0, 1_000_000.0),
    // Weather: the range of what the Earth's surface has recorded, with margin.
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
    )
    .range(-90.0, 70.0),
    m(
        "relative_humidity",
        "%",
        Weather,
        Ratio,
        1.0,
        &["relativehumidity", "humidity", "rh", "hum", "doam"],
    )
    .range(0.0, 100.0),
    m(
        "wind_speed",
        "km/h",
        Weather,
        Speed,
        1.0,
        &["windspeed", "ws", "tocdogio"],
    )
    .range(0.0, 500.0),
    // Smart Data Models write wind direction as -180…180, others 0…360.
    m(
        "wind_direction",
        "°",
        Weather,
        Angle,
        1.0,
        &["winddirection", "wd", "huonggio"],
    )
    .range(-180.0, 360.0),
    m(
        "pressure",
        "hPa",
        Weather,
        Pressure,
        1.0,
        &["pressure", "atmosphericpressure", "apsuat"],
    )
    .range(300.0, 1100.0),
    m(
        "rainfall",
        "mm",
        Weather,
        Length,
        0.001,
        &["rainfall", "rain", "precipitation", "luongmua", "mua"],
    )
    .range(0.0, 2000.0),
    // Water: hydrology and quality. A level is relative to the gauge's datum, so it may be
    // negative; give each gauge its own band with `[[devices]] ranges`.
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
    )
    .range(-1000.0, 10_000.0),
    // Negative: flow reversed (tides, backwater).
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
    )
    .range(-500_000.0, 500_000.0),
    m("ph", "pH", Water, Ph, 1.0, &["ph"]).range(0.0, 14.0),
    m(
        "dissolved_oxygen",
        "mg/L",
        Water,
        MassConcentration,
        1e6,
        &["dissolvedoxygen", "do", "o2"],
    )
    .range(0.0, 100.0),
    m(
        "conductivity",
        "µS/cm",
        Water,
        Conductivity,
        1.0,
        &["conductivity", "ec", "cond", "doduan"],
    )
    .range(0.0, 500_000.0),
    m(
        "turbidity",
        "NTU",
        Water,
        Turbidity,
        1.0,
        &["turbidity", "tur", "turb", "doduc"],
    )
    .range(0.0, 100_000.0),
    m(
        "water_temperature",
        "°C",
        Water,
        Temperature,
        1.0,
        &["watertemperature", "nhietdonuoc", "wtemp"],
    )
    .range(-5.0, 100.0),
    m("cod", "mg/L", Water, MassConcentration, 1e6, &["cod"]).range(0.0, 1_000_000.0),
    m(
        "nh4",
        "mg/L",
        Water,
        MassConcentration,
        1e6,
        &["nh4", "ammonium", "nh4+"],
    )
    .range(0.0, 1_000_000.0),
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
    )
    .range(0.0, 1_000_000.0),
    m(
        "average_speed",
        "km/h",
        Traffic,
        Speed,
        1.0,
        &["averagespeed", "averagevehiclespeed", "speed", "tocdo"],
    )
    .range(0.0, 500.0),
    m("occupancy", "%", Traffic, Ratio, 1.0, &["occupancy"]).range(0.0, 100.0),
    m(
        "headway",
        "s",
        Traffic,
        Time,
        1.0,
        &["headway", "averageheadwaytime"],
    )
    .range(0.0, 86_400.0),
    m(
        "vehicle_length",
        "m",
        Traffic,
        Length,
        1.0,
        &["vehiclelength", "averagevehiclelength"],
    )
    .range(0.0, 100.0),
    // Lighting and energy.
    MetricSpec {
        kind: Kind::Enumeration(POWER_STATES),
        ..m(
            "power_state",
            "state",
            Lighting,
            State,
            1.0,
            &["powerstate", "state", "onoff", "trangthai"],
        )
        .range(0.0, 3.0)
    },
    m(
        "dimming_level",
        "%",
        Lighting,
        Ratio,
        1.0,
        &["dimminglevel", "dimming", "illuminancelevel", "brightness"],
    )
    .range(0.0, 100.0),
    m(
        "illuminance",
        "lx",
        Lighting,
        Illuminance,
        1.0,
        &["illuminance", "lux"],
    )
    .range(0.0, 200_000.0),
    // Negative power and energy: a meter that also measures what is fed back.
    m(
        "power",
        "W",
        Domain::Energy,
        Power,
        1.0,
        &["power", "powerconsumption", "activepower", "congsuat"],
    )
    .range(-1e10, 1e10),
    m(
        "energy",
        "kWh",
        Domain::Energy,
        Dim::Energy,
        1.0,
        &["energy", "energyconsumed", "totalenergy", "dienang"],
    )
    .range(-1e12, 1e12),
    m(
        "voltage",
        "V",
        Domain::Energy,
        Voltage,
        1.0,
        &["voltage", "dienap"],
    )
    .range(-1e6, 1e6),
    m(
        "current",
        "A",
        Domain::Energy,
        Current,
        1.0,
        &["current", "dongdien"],
    )
    .range(-1e6, 1e6),
    m(
        "power_factor",
        "1",
        Domain::Energy,
        Dimensionless,
        1.0,
        &["powerfactor", "pf"],
    )
    .range(-1.0, 1.0),
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
