//! The broker's two clocks, read only by the shells (never by the pure cores, which take time as input).

/// Wall-clock milliseconds since the Unix epoch: record timestamps, commit times, retention ages.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Milliseconds on a monotonic clock (since the first call): leases must not move with the wall clock.
pub fn monotonic_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed().as_millis() as u64
}
