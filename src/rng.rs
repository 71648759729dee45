//! The operating system's random number generator, the one source of secret randomness (keys,
//! session ids, nonces), and its error.

use rand::TryRngCore as _;
use rand::rngs::OsRng;

/// The operating system's random number generator failed (no entropy source, a sandbox that
/// forbids it). Nothing is sealed or generated without it: there is no weaker fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct RandomError(rand::rand_core::OsError);

/// Fills `buf` from the OS generator.
pub(crate) fn fill(buf: &mut [u8]) -> Result<(), RandomError> {
    OsRng.try_fill_bytes(buf).map_err(RandomError)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fill_writes_different_bytes_each_time() {
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        fill(&mut a).unwrap();
        fill(&mut b).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, [0; 32]);
    }
}
