//! Log capture: the test binary's one global `tracing` subscriber writes into a buffer the tests
//! read. Tests run in parallel in one binary, so each looks for its own lines (its own users,
//! its own session ids).
#![allow(dead_code, clippy::unwrap_used)]

use std::io::Write;
use std::sync::{Mutex, Once};

/// Everything logged in this test binary since [`install`].
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Installs the capturing subscriber (DEBUG and up, no colours) as the global default, once per
/// test binary; later calls do nothing.
pub(crate) fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(|| Capture)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
}

/// Everything captured so far, as text (installing the subscriber first if no test had).
pub(crate) fn captured() -> String {
    install();
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

/// The subscriber's writer: appends to [`LOGS`].
struct Capture;

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
