//! The `/metrics` exporter: the library records through the `metrics` facade; the server
//! installs a Prometheus recorder as the process-global one and renders it.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sealed_sessions::metrics::{VALIDATION, VALIDATION_BUCKETS};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-global Prometheus recorder (once) and describes the library's series.
/// `None` when another recorder was installed first (then `/metrics` renders nothing).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(VALIDATION.to_owned()),
                    &VALIDATION_BUCKETS,
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            sealed_sessions::metrics::describe();
            // Histogram samples are buffered until drained; drain on a timer so memory stays
            // bounded even when nobody scrapes.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .ok()?;
            Some(handle)
        })
        .as_ref()
}
