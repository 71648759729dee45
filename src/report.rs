//! Errors as log lines. The typed errors keep their cause in `source()` rather than in their
//! message, so a log line that shows only `Display` would drop it; [`Chain`] shows both.

use std::error::Error;
use std::fmt;

/// Displays an error's message followed by each of its sources': `a: b: c`.
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn chain_shows_every_cause_once_in_order() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = Outer(Middle(io));
        assert_eq!(e.to_string(), "outer");
        assert_eq!(Chain(&e).to_string(), "outer: middle: refused");
    }
}
