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

/// Implements `Debug` as the message followed by its causes, for the errors an application's
/// startup returns with `?`. `fn main() -> Result<(), Box<dyn Error>>` prints an error's `Debug`;
/// a derived one would print `LoosePermissions { path: "keys/a.key", mode: 416 }` where the
/// message says `mode 0640 … run chmod 600 keys/a.key`.
macro_rules! debug_as_chain {
    ($t:ty) => {
        impl ::std::fmt::Debug for $t {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Display::fmt(&crate::report::Chain(self), f)
            }
        }
    };
}
pub(crate) use debug_as_chain;

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
