//! Measurement crate for sealed-sessions: peer comparisons (`benches/peers.rs`), the load
//! harness (`loadtest/`, `examples/load_*.rs`) and measurement examples (`cold_start`,
//! `propagation`, `validate_ratio`, `validate_profile`, `throttle_memory`, `hand_paths`). See
//! `benches/README.md` at the repository root. Nothing here is published; the library's own `cargo test` does not build it.

/// The application data of the "typical" session the peer comparisons and the alternating
/// examples use: a role, a number and a theme.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TypicalData {
    /// The user's role.
    pub role: String,
    /// A tenant number.
    pub tenant: u32,
    /// A UI preference.
    pub theme: String,
}

impl TypicalData {
    /// `admin`, 42, `dark`.
    pub fn sample() -> TypicalData {
        TypicalData {
            role: "admin".into(),
            tenant: 42,
            theme: "dark".into(),
        }
    }
}

/// The minimum and the median of per-slice timings (sorts `v`).
///
/// # Panics
/// If `v` is empty.
pub fn min_median(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2])
}
