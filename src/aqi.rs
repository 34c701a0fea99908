//! TEMPORARY STUB (replaced by the real VN_AQI module).
use serde::Serialize;
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pollutant {
    Pm25,
    Pm10,
    O3,
    No2,
    So2,
    Co,
}
impl Pollutant {
    pub const ALL: [Pollutant; 6] = [
        Pollutant::Pm25,
        Pollutant::Pm10,
        Pollutant::O3,
        Pollutant::No2,
        Pollutant::So2,
        Pollutant::Co,
    ];
    pub fn metric(self) -> &'static str {
        match self {
            Pollutant::Pm25 => "pm25",
            Pollutant::Pm10 => "pm10",
            Pollutant::O3 => "o3",
            Pollutant::No2 => "no2",
            Pollutant::So2 => "so2",
            Pollutant::Co => "co",
        }
    }
    pub fn from_metric(m: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.metric() == m)
    }
}
#[derive(Debug, Default)]
pub struct HourlyMeans;
impl HourlyMeans {
    pub fn new() -> Self {
        HourlyMeans
    }
    pub fn insert(&mut self, _p: Pollutant, _h: i64, _m: f64) {}
}
#[derive(Debug, Clone, Serialize)]
pub struct AqiResult {
    pub aqi: u32,
}
pub fn hourly(_m: &HourlyMeans, _h: i64) -> Option<AqiResult> {
    None
}
pub fn daily(_m: &HourlyMeans, _d: jiff::civil::Date) -> Option<AqiResult> {
    None
}
pub fn hourly_series(_m: &HourlyMeans, _d: jiff::civil::Date) -> Vec<AqiResult> {
    vec![]
}
