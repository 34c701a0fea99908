//! TEMPORARY STUB (replaced by the real simulator).
pub async fn run(
    _c: crate::config::SimulatorConfig,
    _d: Vec<crate::config::DeviceConfig>,
    c: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    c.cancelled().await;
    Ok(())
}
