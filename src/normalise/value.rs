//! An observation's value in its metric's canonical unit: a number converted from the unit
//! it was given in, or an enumeration's state as its number.

use super::catalog::{Kind, MetricSpec};
use super::units::Vocabulary;
use super::vocabulary;
use crate::model::{Observation, ObservedValue, RejectReason};

/// An observation's value in its metric's canonical unit, or the reason it has none.
pub(super) fn value(
    spec: &MetricSpec,
    o: &Observation,
    vocabulary: Vocabulary,
) -> Result<f64, (RejectReason, String)> {
    let v = match spec.kind {
        Kind::Number => number(&o.value)?,
        Kind::Enumeration(words) => return state(words, &o.value),
    };
    if !v.is_finite() {
        return Err(invalid(format!("value {v} is not a finite number")));
    }
    let converted = in_canonical_unit(spec, v, o.unit.as_deref(), vocabulary)?;
    if !converted.is_finite() {
        return Err(invalid(format!(
            "value {v} overflows after unit conversion"
        )));
    }
    Ok(converted)
}

/// An `invalid_value` reason saying `why`.
fn invalid(why: String) -> (RejectReason, String) {
    (RejectReason::InvalidValue, why)
}

/// The number a measured quantity was given as; booleans and text are not numbers.
fn number(value: &ObservedValue) -> Result<f64, (RejectReason, String)> {
    match value {
        ObservedValue::Number(v) => Ok(*v),
        ObservedValue::Bool(b) => Err(invalid(format!("is the boolean {b}; a number is required"))),
        ObservedValue::Text(t) => Err(invalid(format!("is the text {t:?}; a number is required"))),
    }
}

/// The number of an enumeration's state: a word of `words`, a boolean (on/off) or one of the
/// states' own numbers.
fn state(words: &[(&str, f64)], value: &ObservedValue) -> Result<f64, (RejectReason, String)> {
    match value {
        ObservedValue::Bool(b) => Ok(if *b { on(words) } else { off(words) }),
        ObservedValue::Text(t) => vocabulary::enumerated(words, t).ok_or_else(|| {
            let known: Vec<&str> = words.iter().map(|(w, _)| *w).collect();
            invalid(format!("is {t:?}, not one of {}", known.join(", ")))
        }),
        ObservedValue::Number(v) => {
            if words.iter().any(|(_, code)| code == v) {
                Ok(*v)
            } else {
                Err(invalid(format!("is {v}, not one of its states' numbers")))
            }
        }
    }
}

/// `v`, given in `unit` (blank means none), in the metric's canonical unit. Only unitless
/// metrics take a bare number.
fn in_canonical_unit(
    spec: &MetricSpec,
    v: f64,
    unit: Option<&str>,
    vocabulary: Vocabulary,
) -> Result<f64, (RejectReason, String)> {
    match unit.map(str::trim).filter(|u| !u.is_empty()) {
        Some(unit) => spec
            .convert(v, unit, vocabulary)
            .map_err(|e| (RejectReason::UnknownUnit, e.to_string())),
        None if spec.unitless() => Ok(v),
        None => Err((
            RejectReason::UnknownUnit,
            format!(
                "has no unit, and the format defines none for it (canonical {})",
                spec.unit
            ),
        )),
    }
}

fn on(words: &[(&str, f64)]) -> f64 {
    vocabulary::enumerated(words, "on").unwrap_or(1.0)
}

fn off(words: &[(&str, f64)]) -> f64 {
    vocabulary::enumerated(words, "off").unwrap_or(0.0)
}
