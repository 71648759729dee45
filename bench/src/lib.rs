//! Measurement crate for sealed-sessions: peer comparisons (`benches/peers.rs`), the load
//! harness (`loadtest/`, `examples/load_*.rs`) and measurement examples (`cold_start`,
//! `propagation`, `validate_ratio`, `validate_profile`, `throttle_memory`). See
//! `benches/README.md` at the repository root. Nothing here is published; the library's own `cargo test` does not build it.
