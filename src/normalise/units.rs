//! Units: the symbols each payload format writes, and converting values to a metric's canonical
//! unit.
//!
//! Symbols are matched exactly, case included: `mW` is a milliwatt and `MW` a megawatt, and in
//! SenML `C` is the coulomb. Each format has its own vocabulary ([`Vocabulary`]): SenML the IANA
//! SenML registry (RFC 8428 and the RFC 8798 secondary units), NGSI-LD the UN/CEFACT common codes
//! of `unitCode`, vendor JSON the symbols people write. A symbol no vocabulary of the format
//! knows is an error, never a guess.

use std::sync::LazyLock;

use foldhash::{HashMap, HashMapExt};

/// Physical dimension of a unit. Values convert only within a dimension (plus gas mixing
/// ratios to mass concentrations, and fractions to percentages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    /// Mass per volume, of air or water. Base µg/m³ (so 1 mg/L = 10⁶).
    MassConcentration,
    /// Base ppm.
    MixingRatio,
    /// Base °C (with offsets, handled apart).
    Temperature,
    /// Base %.
    Ratio,
    /// Base km/h.
    Speed,
    /// Base degree.
    Angle,
    /// Base hPa.
    Pressure,
    /// Base m.
    Length,
    /// Base m³/s.
    Flow,
    /// Base µS/cm.
    Conductivity,
    /// Base NTU.
    Turbidity,
    Ph,
    Count,
    /// Base s.
    Time,
    State,
    /// Base W.
    Power,
    /// Base kWh.
    Energy,
    /// Base V.
    Voltage,
    /// Base A.
    Current,
    /// Base lx.
    Illuminance,
    /// A bare number ("1").
    Dimensionless,
    /// SenML `lat`: a position, not a reading.
    Latitude,
    /// SenML `lon`: a position, not a reading.
    Longitude,
    /// A unit we know but no canonical metric is measured in (kg, Hz, C, dBm, …).
    Other,
}

/// How a value in a unit becomes a value in its dimension's base unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    Factor(f64),
    Fahrenheit,
    Kelvin,
}

/// A known unit symbol.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Unit {
    pub dim: Dim,
    pub scale: Scale,
    /// The SI prefix it was written with ("milli"), if it is not in a table as it is.
    pub prefix: &'static str,
    /// What it is, for messages ("watt").
    pub name: &'static str,
}

/// SI prefixes (case-sensitive: `m` milli, `M` mega), longest first.
const PREFIXES: &[(&str, &str, f64)] = &[
    ("da", "deca", 1e1),
    ("Y", "yotta", 1e24),
    ("Z", "zetta", 1e21),
    ("E", "exa", 1e18),
    ("P", "peta", 1e15),
    ("T", "tera", 1e12),
    ("G", "giga", 1e9),
    ("M", "mega", 1e6),
    ("k", "kilo", 1e3),
    ("h", "hecto", 1e2),
    ("d", "deci", 1e-1),
    ("c", "centi", 1e-2),
    ("m", "milli", 1e-3),
    ("u", "micro", 1e-6),
    ("µ", "micro", 1e-6),
    ("μ", "micro", 1e-6),
    ("n", "nano", 1e-9),
    ("p", "pico", 1e-12),
];

/// Units that take an SI prefix in front of them (`mW`, `MW`, `kV`, `µA`, `GWh`, `kPa`).
const PREFIXABLE: &[&str] = &["W", "V", "A", "Wh", "J", "Pa", "m", "s", "S", "l", "lx"];

/// The unit vocabulary of a payload format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vocabulary {
    /// SenML `u` / `bu`: the IANA SenML units and secondary units registries, and nothing
    /// else (RFC 8428 §12.1: `MW` is not a SenML unit, `C` is the coulomb, `%` a ratio of 1).
    SenMl,
    /// NGSI-LD `unitCode`: UN/CEFACT common codes (Recommendation 20).
    UnCefact,
    /// Symbols as vendors write them (`ug/m3`, `µg/m³`, `°C`, `C` for Celsius, `%`).
    Plain,
}

impl Vocabulary {
    /// The unit `symbol` stands for in this vocabulary. Surrounding blanks are not part of it.
    pub fn lookup(self, symbol: &str) -> Option<Unit> {
        let symbol = symbol.trim();
        let table = match self {
            Vocabulary::SenMl => &SENML,
            Vocabulary::UnCefact => &UN_CEFACT,
            Vocabulary::Plain => &PLAIN,
        };
        if let Some(unit) = table.get(symbol) {
            return Some(*unit);
        }
        // UN/CEFACT codes are names, not symbols: nothing to take apart.
        if self == Vocabulary::UnCefact {
            return None;
        }
        PREFIXES.iter().find_map(|&(p, name, factor)| {
            let base = symbol.strip_prefix(p)?;
            let unit = table.get(base).filter(|_| PREFIXABLE.contains(&base))?;
            match unit.scale {
                Scale::Factor(f) => Some(Unit {
                    scale: Scale::Factor(f * factor),
                    prefix: name,
                    ..*unit
                }),
                _ => None,
            }
        })
    }
}

use Dim::*;
use Scale::Factor as F;

type Entry = (&'static str, Dim, Scale, &'static str);

/// The IANA SenML units registry (RFC 8428 §12.1, RFC 8798 §3 additions) and secondary units
/// registry (RFC 8798 §4 and later registrations). Note RFC 8428 note 1: `%` is a ratio of 1
/// like `/` (0.5 = half on), not a percentage; `/100` is the percent.
const SENML_UNITS: &[Entry] = &[
    ("m", Length, F(1.0), "metre"),
    ("kg", Other, F(1.0), "kilogram"),
    ("g", Other, F(1.0), "gram"),
    ("s", Time, F(1.0), "second"),
    ("A", Current, F(1.0), "ampere"),
    ("K", Temperature, Scale::Kelvin, "kelvin"),
    ("cd", Other, F(1.0), "candela"),
    ("mol", Other, F(1.0), "mole"),
    ("Hz", Other, F(1.0), "hertz"),
    ("rad", Angle, F(180.0 / std::f64::consts::PI), "radian"),
    ("sr", Other, F(1.0), "steradian"),
    ("N", Other, F(1.0), "newton"),
    ("Pa", Pressure, F(0.01), "pascal"),
    ("J", Energy, F(1.0 / 3_600_000.0), "joule"),
    ("W", Power, F(1.0), "watt"),
    ("C", Other, F(1.0), "coulomb"),
    ("V", Voltage, F(1.0), "volt"),
    ("F", Other, F(1.0), "farad"),
    ("Ohm", Other, F(1.0), "ohm"),
    ("S", Other, F(1.0), "siemens"),
    ("Wb", Other, F(1.0), "weber"),
    ("T", Other, F(1.0), "tesla"),
    ("H", Other, F(1.0), "henry"),
    ("Cel", Temperature, F(1.0), "degree Celsius"),
    ("lm", Other, F(1.0), "lumen"),
    ("lx", Illuminance, F(1.0), "lux"),
    ("Bq", Other, F(1.0), "becquerel"),
    ("Gy", Other, F(1.0), "gray"),
    ("Sv", Other, F(1.0), "sievert"),
    ("kat", Other, F(1.0), "katal"),
    ("m2", Other, F(1.0), "square metre"),
    ("m3", Other, F(1.0), "cubic metre"),
    ("l", Other, F(1.0), "litre"),
    ("m/s", Speed, F(3.6), "metre per second"),
    ("m/s2", Other, F(1.0), "metre per second squared"),
    ("m3/s", Flow, F(1.0), "cubic metre per second"),
    ("l/s", Flow, F(0.001), "litre per second"),
    ("W/m2", Other, F(1.0), "watt per square metre"),
    ("cd/m2", Other, F(1.0), "candela per square metre"),
    ("bit", Other, F(1.0), "bit"),
    ("bit/s", Other, F(1.0), "bit per second"),
    ("lat", Latitude, F(1.0), "degree of latitude"),
    ("lon", Longitude, F(1.0), "degree of longitude"),
    ("pH", Ph, F(1.0), "pH"),
    ("dB", Other, F(1.0), "decibel"),
    ("dBW", Other, F(1.0), "decibel relative to 1 W"),
    ("Bspl", Other, F(1.0), "bel (sound pressure level)"),
    ("count", Count, F(1.0), "count"),
    ("/", Ratio, F(100.0), "ratio"),
    ("%", Ratio, F(100.0), "ratio (SenML %, not a percentage)"),
    ("%RH", Ratio, F(1.0), "percent relative humidity"),
    ("%EL", Ratio, F(1.0), "percent remaining battery level"),
    ("EL", Time, F(1.0), "seconds of remaining battery"),
    ("1/s", Other, F(1.0), "events per second"),
    ("1/min", Other, F(1.0), "events per minute"),
    ("beat/min", Other, F(1.0), "beats per minute"),
    ("beats", Count, F(1.0), "beats"),
    ("S/m", Conductivity, F(10_000.0), "siemens per metre"),
    ("B", Other, F(1.0), "byte"),
    ("VA", Other, F(1.0), "volt-ampere"),
    ("VAs", Other, F(1.0), "volt-ampere second"),
    ("var", Other, F(1.0), "volt-ampere reactive"),
    ("vars", Other, F(1.0), "volt-ampere reactive second"),
    ("J/m", Other, F(1.0), "joule per metre"),
    (
        "kg/m3",
        MassConcentration,
        F(1e9),
        "kilogram per cubic metre",
    ),
    ("deg", Angle, F(1.0), "degree"),
    ("NTU", Turbidity, F(1.0), "nephelometric turbidity unit"),
    // Secondary units (RFC 8798 §4 and later).
    ("ms", Time, F(0.001), "millisecond"),
    ("min", Time, F(60.0), "minute"),
    ("h", Time, F(3600.0), "hour"),
    ("MHz", Other, F(1.0), "megahertz"),
    ("kW", Power, F(1000.0), "kilowatt"),
    ("kVA", Other, F(1.0), "kilovolt-ampere"),
    ("kvar", Other, F(1.0), "kilovar"),
    ("Ah", Other, F(1.0), "ampere-hour"),
    ("Wh", Energy, F(0.001), "watt-hour"),
    ("kWh", Energy, F(1.0), "kilowatt-hour"),
    ("varh", Other, F(1.0), "var-hour"),
    ("kvarh", Other, F(1.0), "kilovar-hour"),
    ("kVAh", Other, F(1.0), "kilovolt-ampere-hour"),
    ("VAh", Other, F(1.0), "volt-ampere-hour"),
    ("Wh/km", Other, F(1.0), "watt-hour per kilometre"),
    ("KiB", Other, F(1.0), "kibibyte"),
    ("GB", Other, F(1.0), "gigabyte"),
    ("Mbit/s", Other, F(1.0), "megabit per second"),
    ("B/s", Other, F(1.0), "byte per second"),
    ("MB/s", Other, F(1.0), "megabyte per second"),
    ("mV", Voltage, F(0.001), "millivolt"),
    ("mA", Current, F(0.001), "milliampere"),
    ("dBm", Other, F(1.0), "decibel relative to 1 mW"),
    (
        "ug/m3",
        MassConcentration,
        F(1.0),
        "microgram per cubic metre",
    ),
    ("mm/h", Other, F(1.0), "millimetre per hour"),
    ("m/h", Speed, F(0.001), "metre per hour"),
    ("ppm", MixingRatio, F(1.0), "part per million"),
    ("/100", Ratio, F(1.0), "percent"),
    ("/1000", Ratio, F(0.1), "permille"),
    ("hPa", Pressure, F(1.0), "hectopascal"),
    ("mm", Length, F(0.001), "millimetre"),
    ("cm", Length, F(0.01), "centimetre"),
    ("km", Length, F(1000.0), "kilometre"),
    ("km/h", Speed, F(1.0), "kilometre per hour"),
    ("ppb", MixingRatio, F(0.001), "part per billion"),
    ("ppt", MixingRatio, F(0.000_001), "part per trillion"),
    ("mg/l", MassConcentration, F(1e6), "milligram per litre"),
    ("ug/l", MassConcentration, F(1e3), "microgram per litre"),
    ("g/l", MassConcentration, F(1e9), "gram per litre"),
];

/// UN/CEFACT common codes (Recommendation 20) that the Smart Data Models' `unitCode` uses for
/// the quantities we measure, and a few neighbours of theirs.
const UN_CEFACT_CODES: &[Entry] = &[
    ("GQ", MassConcentration, F(1.0), "microgram per cubic metre"),
    (
        "GP",
        MassConcentration,
        F(1000.0),
        "milligram per cubic metre",
    ),
    ("M1", MassConcentration, F(1e6), "milligram per litre"),
    ("GL", MassConcentration, F(1e9), "gram per litre"),
    ("H29", MassConcentration, F(1e3), "microgram per litre"),
    ("59", MixingRatio, F(1.0), "part per million"),
    ("61", MixingRatio, F(0.001), "part per billion"),
    ("CEL", Temperature, F(1.0), "degree Celsius"),
    ("FAH", Temperature, Scale::Fahrenheit, "degree Fahrenheit"),
    ("KEL", Temperature, Scale::Kelvin, "kelvin"),
    ("P1", Ratio, F(1.0), "percent"),
    ("C62", Dimensionless, F(1.0), "one"),
    ("KMH", Speed, F(1.0), "kilometre per hour"),
    ("MTS", Speed, F(3.6), "metre per second"),
    ("HM", Speed, F(1.609_344), "mile per hour"),
    ("KNT", Speed, F(1.852), "knot"),
    ("DD", Angle, F(1.0), "degree"),
    ("C81", Angle, F(180.0 / std::f64::consts::PI), "radian"),
    ("A97", Pressure, F(1.0), "hectopascal"),
    ("MBR", Pressure, F(1.0), "millibar"),
    ("PAL", Pressure, F(0.01), "pascal"),
    ("KPA", Pressure, F(10.0), "kilopascal"),
    ("BAR", Pressure, F(1000.0), "bar"),
    ("MTR", Length, F(1.0), "metre"),
    ("CMT", Length, F(0.01), "centimetre"),
    ("MMT", Length, F(0.001), "millimetre"),
    ("KMT", Length, F(1000.0), "kilometre"),
    ("FOT", Length, F(0.3048), "foot"),
    ("MQS", Flow, F(1.0), "cubic metre per second"),
    ("MQH", Flow, F(1.0 / 3600.0), "cubic metre per hour"),
    ("G51", Flow, F(0.001), "litre per second"),
    ("G42", Conductivity, F(1.0), "microsiemens per centimetre"),
    (
        "H61",
        Conductivity,
        F(1000.0),
        "millisiemens per centimetre",
    ),
    ("D10", Conductivity, F(10_000.0), "siemens per metre"),
    ("SEC", Time, F(1.0), "second"),
    ("C26", Time, F(0.001), "millisecond"),
    ("MIN", Time, F(60.0), "minute"),
    ("HUR", Time, F(3600.0), "hour"),
    ("WTT", Power, F(1.0), "watt"),
    ("KWT", Power, F(1000.0), "kilowatt"),
    ("MAW", Power, F(1_000_000.0), "megawatt"),
    ("C31", Power, F(0.001), "milliwatt"),
    ("KWH", Energy, F(1.0), "kilowatt-hour"),
    ("WHR", Energy, F(0.001), "watt-hour"),
    ("MWH", Energy, F(1000.0), "megawatt-hour"),
    ("JOU", Energy, F(1.0 / 3_600_000.0), "joule"),
    ("VLT", Voltage, F(1.0), "volt"),
    ("KVT", Voltage, F(1000.0), "kilovolt"),
    ("2Z", Voltage, F(0.001), "millivolt"),
    ("AMP", Current, F(1.0), "ampere"),
    ("4K", Current, F(0.001), "milliampere"),
    ("LUX", Illuminance, F(1.0), "lux"),
];

/// Symbols as vendors write them. Exact, case included; the micro sign, the Greek mu and
/// superscripts are spelled out rather than folded, so nothing matches by accident.
const PLAIN_UNITS: &[Entry] = &[
    (
        "ug/m3",
        MassConcentration,
        F(1.0),
        "microgram per cubic metre",
    ),
    (
        "µg/m3",
        MassConcentration,
        F(1.0),
        "microgram per cubic metre",
    ),
    (
        "μg/m3",
        MassConcentration,
        F(1.0),
        "microgram per cubic metre",
    ),
    (
        "µg/m³",
        MassConcentration,
        F(1.0),
        "microgram per cubic metre",
    ),
    (
        "μg/m³",
        MassConcentration,
        F(1.0),
        "microgram per cubic metre",
    ),
    (
        "ug/m³",
        MassConcentration,
        F(1.0),
        "microgram per cubic metre",
    ),
    (
        "mg/m3",
        MassConcentration,
        F(1000.0),
        "milligram per cubic metre",
    ),
    (
        "mg/m³",
        MassConcentration,
        F(1000.0),
        "milligram per cubic metre",
    ),
    (
        "ng/m3",
        MassConcentration,
        F(0.001),
        "nanogram per cubic metre",
    ),
    (
        "ng/m³",
        MassConcentration,
        F(0.001),
        "nanogram per cubic metre",
    ),
    ("mg/L", MassConcentration, F(1e6), "milligram per litre"),
    ("mg/l", MassConcentration, F(1e6), "milligram per litre"),
    ("g/L", MassConcentration, F(1e9), "gram per litre"),
    ("ug/L", MassConcentration, F(1e3), "microgram per litre"),
    ("µg/L", MassConcentration, F(1e3), "microgram per litre"),
    ("ppm", MixingRatio, F(1.0), "part per million"),
    ("ppb", MixingRatio, F(0.001), "part per billion"),
    ("C", Temperature, F(1.0), "degree Celsius"),
    ("°C", Temperature, F(1.0), "degree Celsius"),
    ("℃", Temperature, F(1.0), "degree Celsius"),
    ("degC", Temperature, F(1.0), "degree Celsius"),
    ("Cel", Temperature, F(1.0), "degree Celsius"),
    ("F", Temperature, Scale::Fahrenheit, "degree Fahrenheit"),
    ("°F", Temperature, Scale::Fahrenheit, "degree Fahrenheit"),
    ("degF", Temperature, Scale::Fahrenheit, "degree Fahrenheit"),
    ("K", Temperature, Scale::Kelvin, "kelvin"),
    ("%", Ratio, F(1.0), "percent"),
    ("%RH", Ratio, F(1.0), "percent relative humidity"),
    ("km/h", Speed, F(1.0), "kilometre per hour"),
    ("kmh", Speed, F(1.0), "kilometre per hour"),
    ("kph", Speed, F(1.0), "kilometre per hour"),
    ("m/s", Speed, F(3.6), "metre per second"),
    ("mph", Speed, F(1.609_344), "mile per hour"),
    ("°", Angle, F(1.0), "degree"),
    ("deg", Angle, F(1.0), "degree"),
    ("hPa", Pressure, F(1.0), "hectopascal"),
    ("mbar", Pressure, F(1.0), "millibar"),
    ("Pa", Pressure, F(0.01), "pascal"),
    ("kPa", Pressure, F(10.0), "kilopascal"),
    ("bar", Pressure, F(1000.0), "bar"),
    ("m", Length, F(1.0), "metre"),
    ("cm", Length, F(0.01), "centimetre"),
    ("mm", Length, F(0.001), "millimetre"),
    ("km", Length, F(1000.0), "kilometre"),
    ("ft", Length, F(0.3048), "foot"),
    ("m3/s", Flow, F(1.0), "cubic metre per second"),
    ("m³/s", Flow, F(1.0), "cubic metre per second"),
    ("m3/h", Flow, F(1.0 / 3600.0), "cubic metre per hour"),
    ("m³/h", Flow, F(1.0 / 3600.0), "cubic metre per hour"),
    ("l/s", Flow, F(0.001), "litre per second"),
    ("L/s", Flow, F(0.001), "litre per second"),
    ("uS/cm", Conductivity, F(1.0), "microsiemens per centimetre"),
    ("µS/cm", Conductivity, F(1.0), "microsiemens per centimetre"),
    ("μS/cm", Conductivity, F(1.0), "microsiemens per centimetre"),
    (
        "mS/cm",
        Conductivity,
        F(1000.0),
        "millisiemens per centimetre",
    ),
    ("S/m", Conductivity, F(10_000.0), "siemens per metre"),
    ("NTU", Turbidity, F(1.0), "nephelometric turbidity unit"),
    ("FNU", Turbidity, F(1.0), "formazin nephelometric unit"),
    ("pH", Ph, F(1.0), "pH"),
    ("vehicles", Count, F(1.0), "vehicles"),
    ("veh", Count, F(1.0), "vehicles"),
    ("count", Count, F(1.0), "count"),
    ("s", Time, F(1.0), "second"),
    ("ms", Time, F(0.001), "millisecond"),
    ("min", Time, F(60.0), "minute"),
    ("W", Power, F(1.0), "watt"),
    ("mW", Power, F(0.001), "milliwatt"),
    ("kW", Power, F(1000.0), "kilowatt"),
    ("MW", Power, F(1_000_000.0), "megawatt"),
    ("Wh", Energy, F(0.001), "watt-hour"),
    ("kWh", Energy, F(1.0), "kilowatt-hour"),
    ("MWh", Energy, F(1000.0), "megawatt-hour"),
    ("J", Energy, F(1.0 / 3_600_000.0), "joule"),
    ("V", Voltage, F(1.0), "volt"),
    ("mV", Voltage, F(0.001), "millivolt"),
    ("kV", Voltage, F(1000.0), "kilovolt"),
    ("A", Current, F(1.0), "ampere"),
    ("mA", Current, F(0.001), "milliampere"),
    ("lx", Illuminance, F(1.0), "lux"),
    ("lux", Illuminance, F(1.0), "lux"),
    ("1", Dimensionless, F(1.0), "one"),
];

fn table(entries: &[Entry]) -> HashMap<&'static str, Unit> {
    let mut map = HashMap::with_capacity(entries.len());
    for &(symbol, dim, scale, name) in entries {
        let unit = Unit {
            dim,
            scale,
            prefix: "",
            name,
        };
        let previous = map.insert(symbol, unit);
        debug_assert!(previous.is_none(), "{symbol} twice in one unit table");
    }
    map
}

static SENML: LazyLock<HashMap<&'static str, Unit>> = LazyLock::new(|| table(SENML_UNITS));
static UN_CEFACT: LazyLock<HashMap<&'static str, Unit>> = LazyLock::new(|| table(UN_CEFACT_CODES));
static PLAIN: LazyLock<HashMap<&'static str, Unit>> = LazyLock::new(|| table(PLAIN_UNITS));

/// Molar volume of an ideal gas at 25 °C and 1 atm, L/mol.
pub(super) const MOLAR_VOLUME: f64 = 24.45;

/// Why a value's unit cannot be taken.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UnitError {
    #[error("unknown unit {unit:?} for metric {metric} (canonical {canonical})")]
    Unknown {
        unit: String,
        metric: &'static str,
        canonical: &'static str,
    },
    #[error(
        "unit {unit:?} ({prefix}{name}) cannot express metric {metric} (canonical unit {canonical})"
    )]
    Mismatch {
        unit: String,
        prefix: &'static str,
        name: &'static str,
        metric: &'static str,
        canonical: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::super::catalog::lookup;
    use super::*;

    fn conv(metric: &str, v: f64, unit: &str, vocabulary: Vocabulary) -> Result<f64, UnitError> {
        lookup(metric).unwrap().convert(v, unit, vocabulary)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn conversions_to_canonical_units() {
        use Vocabulary::{Plain, SenMl, UnCefact};
        let cases = [
            ("pm25", 35.2, "ug/m3", Plain, 35.2),
            ("pm25", 35.2, "µg/m³", Plain, 35.2),
            ("pm25", 41.0, "GQ", UnCefact, 41.0),
            ("pm25", 41.0, "ug/m3", SenMl, 41.0),
            ("pm25", 0.041, "GP", UnCefact, 41.0),
            ("pm25", 4.1e-8, "kg/m3", SenMl, 41.0),
            ("co", 2.15, "mg/m3", Plain, 2150.0),
            ("co", 1.0, "ppm", Plain, 1_145.603_272_0),
            ("co", 1000.0, "ppb", SenMl, 1_145.603_272_0),
            ("no2", 1.0, "ppm", Plain, 1_881.615_541_9),
            ("so2", 1.0, "59", UnCefact, 2_620.286_298_6),
            ("o3", 100.0, "61", UnCefact, 196.310_838_4),
            ("water_level", 2134.0, "cm", Plain, 21.34),
            ("water_level", 21.34, "MTR", UnCefact, 21.34),
            ("water_level", 8000.0, "mm", SenMl, 8.0),
            ("rainfall", 0.4, "mm", SenMl, 0.4),
            ("rainfall", 1.2, "cm", Plain, 12.0),
            ("temperature", 77.0, "F", Plain, 25.0),
            ("temperature", 77.0, "FAH", UnCefact, 25.0),
            ("temperature", 298.15, "K", SenMl, 25.0),
            ("temperature", 24.5, "Cel", SenMl, 24.5),
            ("temperature", 24.5, "C", Plain, 24.5),
            ("relative_humidity", 0.54, "C62", UnCefact, 54.0),
            ("relative_humidity", 88.0, "%RH", SenMl, 88.0),
            ("relative_humidity", 88.0, "P1", UnCefact, 88.0),
            ("occupancy", 0.76, "/", SenMl, 76.0),
            ("occupancy", 0.76, "%", SenMl, 76.0),
            ("occupancy", 76.0, "/100", SenMl, 76.0),
            ("occupancy", 76.0, "%", Plain, 76.0),
            ("wind_speed", 10.0, "m/s", SenMl, 36.0),
            ("wind_speed", 10.0, "MTS", UnCefact, 36.0),
            ("power", 1.5, "kW", Plain, 1500.0),
            ("power", 1500.0, "mW", SenMl, 1.5),
            ("power", 1500.0, "mW", Plain, 1.5),
            ("power", 1.5, "MW", Plain, 1_500_000.0),
            ("energy", 1500.0, "Wh", SenMl, 1.5),
            ("energy", 3_600_000.0, "J", SenMl, 1.0),
            ("voltage", 3300.0, "mV", SenMl, 3.3),
            ("current", 250.0, "mA", SenMl, 0.25),
            ("conductivity", 310.0, "G42", UnCefact, 310.0),
            ("conductivity", 0.031, "S/m", SenMl, 310.0),
            ("dissolved_oxygen", 6.5, "mg/l", SenMl, 6.5),
            ("dissolved_oxygen", 6.5, "M1", UnCefact, 6.5),
            ("dissolved_oxygen", 6500.0, "ug/l", SenMl, 6.5),
            ("average_speed", 52.6, "KMH", UnCefact, 52.6),
            ("average_speed", 52.6, "km/h", SenMl, 52.6),
            ("headway", 1500.0, "ms", SenMl, 1.5),
            ("pressure", 101_325.0, "Pa", SenMl, 1013.25),
            ("flow", 36.0, "m3/h", Plain, 0.01),
        ];
        for (metric, v, unit, vocabulary, expected) in cases {
            let got = conv(metric, v, unit, vocabulary).unwrap();
            assert!(
                close(got, expected),
                "{v} {unit} ({vocabulary:?}) as {metric}: {got}, expected {expected}"
            );
        }
    }

    #[test]
    fn symbols_are_case_sensitive_and_unknown_ones_are_errors() {
        use Vocabulary::{Plain, SenMl, UnCefact};
        // Milli is never mega, and no case folding finds a unit.
        assert!(close(conv("power", 1.0, "mW", Plain).unwrap(), 0.001));
        assert!(close(conv("power", 1.0, "MW", Plain).unwrap(), 1e6));
        assert!(close(conv("power", 1.0, "MW", SenMl).unwrap(), 1e6));
        assert!(close(conv("power", 1500.0, "mW", SenMl).unwrap(), 1.5));
        assert!(close(conv("voltage", 2.0, "kV", SenMl).unwrap(), 2000.0));
        assert!(close(
            conv("current", 250.0, "µA", Plain).unwrap(),
            0.000_25
        ));
        assert!(close(conv("energy", 1.0, "GWh", SenMl).unwrap(), 1e6));
        for (unit, vocabulary) in [
            ("KW", SenMl),
            ("mCel", SenMl),
            ("kppm", Plain),
            ("mg/m3", SenMl),
            ("ug/m3", UnCefact),
            ("GQ", Plain),
            ("UG/M3", Plain),
            ("gq", UnCefact),
            ("cel", SenMl),
            ("KW", Plain),
            ("furlongs", Plain),
        ] {
            assert!(
                matches!(
                    conv("pm25", 1.0, unit, vocabulary),
                    Err(UnitError::Unknown { .. })
                ),
                "{unit}"
            );
        }
        // SenML's C is the coulomb; a vendor's C is Celsius.
        assert!(matches!(
            conv("temperature", 20.0, "C", SenMl),
            Err(UnitError::Mismatch {
                name: "coulomb",
                ..
            })
        ));
        assert!(matches!(
            conv("water_level", 1.0, "ug/m3", Plain),
            Err(UnitError::Mismatch { .. })
        ));
        assert!(conv("temperature", 1.0, "m", Plain).is_err());
        assert!(conv("co2", 1.0, "ug/m3", Plain).is_err());
        assert!(conv("temperature", 1.0, "lat", SenMl).is_err());
    }

    #[test]
    fn every_table_entry_is_reachable() {
        for (entries, vocabulary) in [
            (SENML_UNITS, Vocabulary::SenMl),
            (UN_CEFACT_CODES, Vocabulary::UnCefact),
            (PLAIN_UNITS, Vocabulary::Plain),
        ] {
            for &(symbol, dim, scale, name) in entries {
                assert_eq!(
                    vocabulary.lookup(symbol),
                    Some(Unit {
                        dim,
                        scale,
                        prefix: "",
                        name
                    }),
                    "{symbol} in {vocabulary:?}"
                );
            }
        }
    }
}
