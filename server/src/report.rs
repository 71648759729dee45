//! Errors in log lines with their causes: [`chain`].
//!
//! An error's `Display` is its own message only; what caused it (the I/O error under a Redis
//! failure, the socket error under a hyper one) is in [`std::error::Error::source`]. Logged with
//! `error = %e`, the causes are lost; `error = %report::chain(&e)` keeps them. (`anyhow::Error`
//! prints its chain itself with `{:#}`.)

use std::error::Error;
use std::fmt;

/// `Display`s an error followed by each of its causes, separated by `": "`.
#[derive(Clone, Copy)]
pub struct Chain<'a>(&'a (dyn Error + 'static));

/// The error and its causes, for a log line: `a: b: c`.
pub fn chain<'a>(error: &'a (dyn Error + 'static)) -> Chain<'a> {
    Chain(error)
}

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("connecting to Redis")]
    struct Connect(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("revocation write failed")]
    struct Write(#[source] Connect);

    #[test]
    fn an_error_is_shown_with_every_cause_in_order() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = Write(Connect(io));
        assert_eq!(
            chain(&e).to_string(),
            "revocation write failed: connecting to Redis: refused"
        );
        // Without causes: the message alone.
        let alone = std::io::Error::other("disk full");
        assert_eq!(chain(&alone).to_string(), "disk full");
    }
}
