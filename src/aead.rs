//! XChaCha20-Poly1305, built from HChaCha20 and ring's IETF ChaCha20-Poly1305.
//!
//! XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha) is defined as: derive a subkey with
//! `HChaCha20(key, nonce[0..16])`, then run IETF ChaCha20-Poly1305 under that subkey with the
//! 12-byte nonce `0x00000000 || nonce[16..24]`. We compute the subkey with the `chacha20` crate
//! and do the AEAD step with `ring`, whose ChaCha20-Poly1305 has hand-tuned assembly selected at
//! run time. The RustCrypto `chacha20poly1305` crate computes the same function but, in a default
//! release build, its Poly1305 SIMD code is not inlined and runs several times slower (see the
//! README's performance section). The draft's test vectors, and a cross-check against that crate,
//! pin that both paths are one cipher.

use chacha20::hchacha;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroize;

/// Length of an XChaCha20-Poly1305 nonce.
pub(crate) const NONCE_LEN: usize = 24;
/// Length of the Poly1305 tag.
pub(crate) const TAG_LEN: usize = 16;

/// The AEAD failed: wrong key, tampered data or wrong associated data. Deliberately opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AeadFailure;

/// The HChaCha20 subkey, zeroized on drop. It stays in the array `hchacha` returns: copying it
/// out right after the call made the copy wait on the stores still in flight.
struct Subkey<A: AsMut<[u8]>>(A);

impl<A: AsMut<[u8]>> Drop for Subkey<A> {
    fn drop(&mut self) {
        self.0.as_mut().zeroize();
    }
}

/// The IETF ChaCha20-Poly1305 key for `key` and `nonce` (the HChaCha20 subkey), and its 12-byte
/// nonce. The caller makes ring's key object itself: it is several hundred bytes (ring's key type
/// has room for AES-GCM), and building it where it is used saves copying it. Inlined, so the
/// subkey is written where it is used too.
#[inline(always)]
fn ietf_key_and_nonce(
    key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
) -> (Subkey<impl AsMut<[u8]> + AsRef<[u8]>>, Nonce) {
    let (hnonce, tail) = nonce.split_at(16);
    let hnonce: &[u8; 16] = match hnonce.try_into() {
        Ok(h) => h,
        Err(_) => unreachable!("a 24-byte nonce splits into 16 and 8 bytes"),
    };
    let subkey = Subkey(hchacha::<chacha20::R20>(key.into(), hnonce.into()));
    let mut ietf_nonce = [0u8; 12];
    ietf_nonce[4..].copy_from_slice(tail);
    (subkey, Nonce::assume_unique_for_key(ietf_nonce))
}

/// ring's key object for an IETF subkey.
#[inline(always)]
fn ring_key(subkey: &[u8]) -> LessSafeKey {
    // `UnboundKey::new` only fails on a wrong key length, and the subkey is always 32 bytes.
    match UnboundKey::new(&CHACHA20_POLY1305, subkey) {
        Ok(k) => LessSafeKey::new(k),
        Err(_) => unreachable!("ChaCha20-Poly1305 keys are 32 bytes"),
    }
}

/// Encrypts `in_out` in place and returns the tag.
pub(crate) fn seal_in_place(
    key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    in_out: &mut [u8],
) -> [u8; TAG_LEN] {
    let (subkey, n) = ietf_key_and_nonce(key, nonce);
    match ring_key(subkey.0.as_ref()).seal_in_place_separate_tag(n, Aad::from(aad), in_out) {
        Ok(tag) => {
            let mut out = [0u8; TAG_LEN];
            out.copy_from_slice(tag.as_ref());
            out
        }
        // ring refuses only inputs longer than ~256 GiB; tokens are capped at 4 KiB.
        Err(_) => unreachable!("ChaCha20-Poly1305 input within length limits"),
    }
}

/// Decrypts `ciphertext || tag` in place; returns the plaintext slice.
pub(crate) fn open_in_place<'a>(
    key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    in_out: &'a mut [u8],
) -> Result<&'a mut [u8], AeadFailure> {
    if in_out.len() < TAG_LEN {
        return Err(AeadFailure);
    }
    let (subkey, n) = ietf_key_and_nonce(key, nonce);
    ring_key(subkey.0.as_ref())
        .open_in_place(n, Aad::from(aad), in_out)
        .map_err(|_| AeadFailure)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn hchacha20_matches_draft_section_2_2_1() {
        let key: [u8; 32] = core::array::from_fn(|i| i as u8);
        let input: [u8; 16] = hex("000000090000004a0000000031415927").try_into().unwrap();
        let out = hchacha::<chacha20::R20>((&key).into(), (&input).into());
        assert_eq!(
            out.as_slice(),
            hex("82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc")
        );
    }

    #[test]
    fn xchacha20_poly1305_matches_draft_appendix_a_3_1() {
        let key: [u8; 32] = hex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f")
            .try_into()
            .unwrap();
        let nonce: [u8; 24] = hex("404142434445464748494a4b4c4d4e4f5051525354555657")
            .try_into()
            .unwrap();
        let aad = hex("50515253c0c1c2c3c4c5c6c7");
        let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let ct = hex(
            "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb
             731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452
             2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9
             21f9664c97637da9768812f615c68b13b52e",
        );
        let tag = hex("c0875924c1c7987947deafd8780acf49");

        let mut buf = pt.to_vec();
        let got_tag = seal_in_place(&key, &nonce, &aad, &mut buf);
        assert_eq!(buf, ct);
        assert_eq!(got_tag.as_slice(), tag.as_slice());

        let mut sealed = [ct.clone(), tag.clone()].concat();
        let opened = open_in_place(&key, &nonce, &aad, &mut sealed).unwrap();
        assert_eq!(opened, pt);

        let mut bad = [ct, tag].concat();
        bad[0] ^= 1;
        assert_eq!(
            open_in_place(&key, &nonce, &aad, &mut bad),
            Err(AeadFailure)
        );
    }

    #[test]
    fn agrees_with_the_chacha20poly1305_crate_both_ways() {
        use chacha20poly1305::XChaCha20Poly1305;
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        let key = [7u8; 32];
        let cipher = XChaCha20Poly1305::new((&key).into());
        for len in [0usize, 1, 15, 16, 63, 64, 65, 200, 3000] {
            let nonce: [u8; 24] = core::array::from_fn(|i| (i * 3 + len) as u8);
            let pt: Vec<u8> = (0..len).map(|i| (i * 31) as u8).collect();
            let aad = b"header and cookie name";

            let theirs = cipher
                .encrypt((&nonce).into(), Payload { msg: &pt, aad })
                .unwrap();
            let mut ours = pt.clone();
            let tag = seal_in_place(&key, &nonce, aad, &mut ours);
            ours.extend_from_slice(&tag);
            assert_eq!(ours, theirs, "len {len}");

            let opened = open_in_place(&key, &nonce, aad, &mut ours).unwrap();
            assert_eq!(opened, pt.as_slice());
        }
    }

    #[test]
    fn open_refuses_input_shorter_than_a_tag() {
        let mut short = [0u8; 15];
        assert_eq!(
            open_in_place(&[0; 32], &[0; 24], b"", &mut short),
            Err(AeadFailure)
        );
    }
}
