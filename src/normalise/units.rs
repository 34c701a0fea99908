//! Units: parsing vendor unit strings (plain, SenML, UN/CEFACT codes) and converting values to
//! a metric's canonical unit.

use super::catalog::MetricSpec;

/// Physical dimension of a unit. Values convert only within a dimension (plus gas mixing
/// ratios to mass concentrations, and fractions to percentages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    /// Base µg/m³.
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
    /// Base mg/L.
    MassPerVolume,
    /// Base µS/cm.
    Conductivity,
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
    Illuminance,
    /// A bare number ("1").
    Dimensionless,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Scale {
    Factor(f64),
    Fahrenheit,
    Kelvin,
}

/// Molar volume of an ideal gas at 25 °C and 1 atm, L/mol.
const MOLAR_VOLUME: f64 = 24.45;

fn parse(unit: &str) -> Option<(Dim, Scale)> {
    use Dim::*;
    use Scale::Factor as F;
    let u: String = unit
        .trim()
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '^')
        .map(|c| match c {
            'µ' | 'μ' => 'u',
            '³' => '3',
            '²' => '2',
            other => other.to_ascii_lowercase(),
        })
        .collect();
    Some(match u.as_str() {
        "ug/m3" | "ugm-3" | "gq" => (MassConcentration, F(1.0)),
        "mg/m3" | "mgm-3" | "gp" => (MassConcentration, F(1000.0)),
        "ng/m3" => (MassConcentration, F(0.001)),
        "ppm" | "59" => (MixingRatio, F(1.0)),
        "ppb" | "61" => (MixingRatio, F(0.001)),
        "c" | "°c" | "degc" | "cel" | "celsius" | "℃" => (Temperature, F(1.0)),
        "f" | "°f" | "degf" | "fah" | "fahrenheit" => (Temperature, Scale::Fahrenheit),
        "k" | "kel" | "kelvin" => (Temperature, Scale::Kelvin),
        "%" | "%rh" | "p1" | "percent" | "pct" => (Ratio, F(1.0)),
        "/" | "fraction" | "ratio" => (Ratio, F(100.0)),
        "km/h" | "kmh" | "kph" | "km/hr" => (Speed, F(1.0)),
        "m/s" | "mts" | "mps" => (Speed, F(3.6)),
        "mph" | "hm" => (Speed, F(1.609_344)),
        "°" | "deg" | "dd" | "degree" | "degrees" | "rad" => {
            if u == "rad" {
                (Angle, F(180.0 / std::f64::consts::PI))
            } else {
                (Angle, F(1.0))
            }
        }
        "hpa" | "mbar" | "a97" => (Pressure, F(1.0)),
        "pa" | "pal" => (Pressure, F(0.01)),
        "kpa" | "kpt" => (Pressure, F(10.0)),
        "bar" | "bar_" => (Pressure, F(1000.0)),
        "m" | "mtr" => (Length, F(1.0)),
        "cm" | "cmt" => (Length, F(0.01)),
        "mm" | "mmt" => (Length, F(0.001)),
        "km" | "kmt" => (Length, F(1000.0)),
        "ft" | "ftr" => (Length, F(0.3048)),
        "m3/s" | "mqs" | "cumec" => (Flow, F(1.0)),
        "m3/h" | "mqh" => (Flow, F(1.0 / 3600.0)),
        "l/s" | "l/sec" => (Flow, F(0.001)),
        "mg/l" | "m1" => (MassPerVolume, F(1.0)),
        "g/l" => (MassPerVolume, F(1000.0)),
        "us/cm" => (Conductivity, F(1.0)),
        "ms/cm" => (Conductivity, F(1000.0)),
        "s/m" => (Conductivity, F(10_000.0)),
        "ntu" | "fnu" => (Turbidity, F(1.0)),
        "ph" => (Ph, F(1.0)),
        "vehicles" | "vehicle" | "veh" | "count" | "xe" | "#" | "{vehicle}" => (Count, F(1.0)),
        "s" | "sec" | "sec_" => (Time, F(1.0)),
        "ms" => (Time, F(0.001)),
        "min" => (Time, F(60.0)),
        "state" | "on/off" | "bool" | "boolean" => (State, F(1.0)),
        "w" | "wtt" => (Power, F(1.0)),
        "kw" | "kwt" => (Power, F(1000.0)),
        "mw" | "maw" => (Power, F(1_000_000.0)),
        "kwh" | "kwh_" => (Energy, F(1.0)),
        "wh" | "whr" => (Energy, F(0.001)),
        "mwh" => (Energy, F(1000.0)),
        "j" => (Energy, F(1.0 / 3_600_000.0)),
        "v" | "vlt" => (Voltage, F(1.0)),
        "kv" | "kvt" => (Voltage, F(1000.0)),
        "a" | "amp" => (Current, F(1.0)),
        "ma" | "4k" => (Current, F(0.001)),
        "lx" | "lux" | "lux_" => (Illuminance, F(1.0)),
        "1" | "c62" | "" => (Dimensionless, F(1.0)),
        _ => return None,
    })
}

/// Convert `value` given in `unit` (None: already canonical) to `spec`'s canonical unit.
pub fn convert(spec: &MetricSpec, value: f64, unit: Option<&str>) -> Result<f64, String> {
    let Some(unit) = unit.filter(|u| !u.trim().is_empty()) else {
        return Ok(value);
    };
    let Some((dim, scale)) = parse(unit) else {
        return Err(format!(
            "unknown unit {unit:?} for metric {} (canonical {})",
            spec.name, spec.unit
        ));
    };
    let factor = match scale {
        Scale::Factor(f) => f,
        Scale::Fahrenheit if spec.dim == Dim::Temperature => return Ok((value - 32.0) * 5.0 / 9.0),
        Scale::Kelvin if spec.dim == Dim::Temperature => return Ok(value - 273.15),
        _ => return Err(mismatch(spec, unit)),
    };
    match (spec.dim, dim) {
        (a, b) if a == b => Ok(value * factor / spec.factor),
        (Dim::MassConcentration, Dim::MixingRatio) => match spec.molar_mass {
            Some(mm) => Ok(value * factor * mm / MOLAR_VOLUME * 1000.0),
            None => Err(mismatch(spec, unit)),
        },
        // A bare number for a percentage is a 0–1 fraction (Smart Data Models convention).
        (Dim::Ratio, Dim::Dimensionless) => Ok(value * 100.0),
        (Dim::Count | Dim::State | Dim::Ph | Dim::Turbidity, Dim::Dimensionless) => Ok(value),
        _ => Err(mismatch(spec, unit)),
    }
}

fn mismatch(spec: &MetricSpec, unit: &str) -> String {
    format!(
        "unit {unit:?} cannot express metric {} (canonical unit {})",
        spec.name, spec.unit
    )
}

#[cfg(test)]
mod tests {
    use super::super::catalog::lookup;
    use super::*;

    fn conv(metric: &str, v: f64, unit: &str) -> Result<f64, String> {
        convert(lookup(metric).unwrap(), v, Some(unit))
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6 * b.abs().max(1.0)
    }

    #[test]
    fn conversions_to_canonical_units() {
        let cases = [
            ("pm25", 35.2, "ug/m3", 35.2),
            ("pm25", 35.2, "µg/m³", 35.2),
            ("pm25", 41.0, "GQ", 41.0),
            ("co", 2.15, "mg/m3", 2150.0),
            ("co", 1.0, "ppm", 1_145.603_272),
            ("co", 1000.0, "ppb", 1_145.603_272),
            ("no2", 1.0, "ppm", 1_881.615_542),
            ("so2", 1.0, "59", 2_620.286_299),
            ("o3", 100.0, "ppb", 196.310_838),
            ("water_level", 2134.0, "cm", 21.34),
            ("water_level", 21.34, "MTR", 21.34),
            ("water_level", 8000.0, "mm", 8.0),
            ("rainfall", 0.4, "mm", 0.4),
            ("rainfall", 1.2, "cm", 12.0),
            ("temperature", 77.0, "F", 25.0),
            ("temperature", 298.15, "K", 25.0),
            ("temperature", 24.5, "Cel", 24.5),
            ("temperature", 24.5, "C", 24.5),
            ("relative_humidity", 0.54, "1", 54.0),
            ("relative_humidity", 88.0, "%RH", 88.0),
            ("occupancy", 0.76, "/", 76.0),
            ("wind_speed", 10.0, "m/s", 36.0),
            ("power", 1.5, "kW", 1500.0),
            ("energy", 1500.0, "Wh", 1.5),
            ("average_speed", 52.6, "KMH", 52.6),
        ];
        for (metric, v, unit, expected) in cases {
            let got = conv(metric, v, unit).unwrap();
            assert!(
                close(got, expected),
                "{v} {unit} as {metric}: {got}, expected {expected}"
            );
        }
    }

    #[test]
    fn impossible_or_unknown_units_are_errors() {
        assert!(
            conv("pm25", 1.0, "furlongs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(
            conv("water_level", 1.0, "ug/m3")
                .unwrap_err()
                .contains("cannot express")
        );
        assert!(conv("temperature", 1.0, "m").is_err());
        assert!(conv("co2", 1.0, "ug/m3").is_err());
        assert_eq!(convert(lookup("pm25").unwrap(), 3.0, None), Ok(3.0));
    }
}
