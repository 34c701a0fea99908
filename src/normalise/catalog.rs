//! The canonical metric catalogue.

use crate::model::Domain;

/// A canonical metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricSpec {
    pub name: &'static str,
    pub unit: &'static str,
    pub domain: Domain,
}

/// Look up a canonical metric by canonical name or vendor alias.
pub fn lookup(_name: &str) -> Option<&'static MetricSpec> {
    None
}
