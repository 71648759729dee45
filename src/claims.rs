//! What a sealed cookie carries: [`Claims`] and the [`SessionId`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::clock::UnixMillis;
use crate::rng::{self, RandomError};

/// A 128-bit session identifier drawn from the operating system's CSPRNG.
///
/// It names a session for revocation; it is not a credential by itself (a cookie is), but it is
/// still kept out of logs: audit events carry [`SessionId::short_hash`] instead.
///
/// Serialized as its 32 hex digits in human-readable formats (JSON: what an API returning
/// [`SessionEntry`](crate::session_index::SessionEntry) shows), as its 16 bytes in binary
/// ones (postcard: the token format).
///
/// ```
/// # use sealed_sessions::SessionId;
/// let id = SessionId::from_bytes([0xab; 16]);
/// assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{}\"", "ab".repeat(16)));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; 16]);

/// The binary form: exactly what `#[derive(Serialize, Deserialize)]` on `SessionId` writes, so
/// the token format does not depend on the human-readable form.
#[derive(Serialize, Deserialize)]
#[serde(rename = "SessionId")]
struct RawSessionId([u8; 16]);

impl Serialize for SessionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            RawSessionId(self.0).serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SessionId, D::Error> {
        if d.is_human_readable() {
            let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
            SessionId::parse_hex(&s)
                .ok_or_else(|| serde::de::Error::custom("a session id is 32 hex digits"))
        } else {
            RawSessionId::deserialize(d).map(|raw| SessionId(raw.0))
        }
    }
}

impl SessionId {
    /// A fresh id from the OS CSPRNG.
    ///
    /// # Errors
    /// [`RandomError`] when the operating system cannot supply randomness.
    pub fn generate() -> Result<SessionId, RandomError> {
        let mut b = [0u8; 16];
        rng::fill(&mut b)?;
        Ok(SessionId(b))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// From raw bytes (as stored in a revocation list or in Redis).
    pub fn from_bytes(b: [u8; 16]) -> SessionId {
        SessionId(b)
    }

    /// Parses the 32-hex-digit form produced by `Display`.
    pub fn parse_hex(s: &str) -> Option<SessionId> {
        let s = s.as_bytes();
        if s.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            let hi = (s[2 * i] as char).to_digit(16)?;
            let lo = (s[2 * i + 1] as char).to_digit(16)?;
            *o = (hi * 16 + lo) as u8;
        }
        Some(SessionId(out))
    }

    /// A short, non-reversible tag for logs: the first 8 hex digits of SHA-256 of the id.
    pub fn short_hash(&self) -> String {
        let d = ring::digest::digest(&ring::digest::SHA256, &self.0);
        d.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl SessionId {
    /// The 32 lowercase hex digits of `Display`, as bytes on the stack (no allocation, for a
    /// response written on every request).
    pub fn to_hex(&self) -> [u8; 32] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 32];
        for (pair, b) in out.chunks_exact_mut(2).zip(self.0) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 0x0f)];
        }
        out
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.to_hex()).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId(#{})", self.short_hash())
    }
}

/// A short hash binding a session to properties of its client (see the fingerprint modes of the
/// HTTP layer). Compared in constant time.
#[derive(Clone, Copy, Serialize, Deserialize)]
pub struct Fingerprint([u8; 8]);

impl Fingerprint {
    /// Hashes the given parts (each length-prefixed, so parts cannot run into each other).
    pub fn from_parts(parts: &[&[u8]]) -> Fingerprint {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"sealed-sessions fingerprint v1");
        for p in parts {
            ctx.update(&(p.len() as u64).to_le_bytes());
            ctx.update(p);
        }
        let d = ctx.finish();
        let mut out = [0u8; 8];
        out.copy_from_slice(&d.as_ref()[..8]);
        Fingerprint(out)
    }

    /// From the raw 8 bytes.
    pub fn from_bytes(b: [u8; 8]) -> Fingerprint {
        Fingerprint(b)
    }

    /// The raw 8 bytes (a hash of client properties, not a secret), for tools that display it.
    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &Fingerprint) -> bool {
        use subtle::ConstantTimeEq;
        self.0.ct_eq(&other.0).into()
    }
}

impl PartialEq for Fingerprint {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other)
    }
}
impl Eq for Fingerprint {}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fingerprint(..)")
    }
}

/// The claims sealed into a cookie. They exist only after the token's tag has verified.
///
/// Times are [`UnixMillis`]. Field order is part of the wire format (postcard encodes fields in
/// declaration order): changing it requires a new token format version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims<T> {
    /// The session id, fresh on every login and regeneration.
    pub session_id: SessionId,
    /// The application's user id.
    pub user_id: String,
    /// The user's session version when this token's session was issued; a token whose version is
    /// below the user's current minimum is revoked (logout everywhere).
    pub version: u64,
    /// When the session was created (login).
    pub created_at: UnixMillis,
    /// Last password or step-up check.
    pub auth_time: UnixMillis,
    /// Last time the session was renewed; drives the idle timeout.
    pub last_seen: UnixMillis,
    /// Absolute expiry.
    pub expires_at: UnixMillis,
    /// Optional client binding.
    pub fingerprint: Option<Fingerprint>,
    /// Application data.
    pub data: T,
}

/// Application data left undecoded: the postcard bytes that follow the fixed claims.
///
/// Postcard is not self-describing, so a tool that does not know the application's data type
/// (the operator CLI's `inspect`) cannot turn these bytes into fields; it can show them, or try a
/// type it does know with [`RawData::decode`]. Obtained from [`crate::token::open_raw`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawData(Vec<u8>);

impl RawData {
    /// Wraps encoded data bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> RawData {
        RawData(bytes)
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The encoded bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// Decodes the bytes as `T`, which must use all of them.
    ///
    /// # Errors
    /// [`DecodeError`] when the bytes are not a postcard encoding of `T`, or `T` leaves some
    /// unused (a sign the data was written by a different type).
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, DecodeError> {
        match postcard::take_from_bytes::<T>(&self.0) {
            Ok((value, [])) => Ok(value),
            Ok((_, rest)) => Err(DecodeError::left_over(rest.len())),
            Err(e) => Err(DecodeError::postcard(e)),
        }
    }
}

/// Encoded claims or data that do not decode as the expected type: written by another type or
/// another release, or not an encoding at all. Its message says which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct DecodeError(DecodeErrorKind);

// Private, so the postcard error type is not part of the public API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum DecodeErrorKind {
    #[error(transparent)]
    Postcard(postcard::Error),
    #[error("{0} bytes left over after the data")]
    LeftOver(usize),
}

impl DecodeError {
    pub(crate) fn postcard(e: postcard::Error) -> DecodeError {
        DecodeError(DecodeErrorKind::Postcard(e))
    }

    pub(crate) fn left_over(bytes: usize) -> DecodeError {
        DecodeError(DecodeErrorKind::LeftOver(bytes))
    }
}

/// The fields of [`Claims`] before `data`, in the same order and with the same types.
///
/// Postcard writes a struct as its fields one after another with no framing, so decoding a
/// `ClaimsHead` from the start of an encoded `Claims<T>` reads exactly the fixed fields and leaves
/// the encoding of `data` as the remainder, whatever `T` is. A test pins this equivalence;
/// changing [`Claims`] means changing this too.
#[cfg_attr(test, derive(Deserialize))]
pub(crate) struct ClaimsHead {
    session_id: SessionId,
    user_id: String,
    version: u64,
    created_at: UnixMillis,
    auth_time: UnixMillis,
    last_seen: UnixMillis,
    expires_at: UnixMillis,
    fingerprint: Option<Fingerprint>,
}

impl ClaimsHead {
    /// Decodes the fixed claims from the start of an encoded `Claims<T>` and returns the rest (the
    /// encoding of `data`). Accepts and refuses exactly what `postcard::take_from_bytes` does for
    /// this struct, with the same errors (a test compares the two on valid, cut and corrupted
    /// encodings), but reads the fields directly rather than through serde's visitors: this runs
    /// on every validation. What it buys, measured: a typical claims decode takes 100 ns this way
    /// against 131 ns through `postcard::from_bytes::<Claims<T>>`, 31 ns of the ~725 ns validate
    /// (medians; 2026-12-03, 2-core shared Intel Xeon; `cargo run --release -p
    /// sealed-sessions-bench --example hand_paths`).
    pub(crate) fn take_from(bytes: &[u8]) -> Result<(ClaimsHead, &[u8]), postcard::Error> {
        let mut r = Reader(bytes);
        let head = ClaimsHead {
            session_id: SessionId(r.array()?),
            user_id: r.string()?,
            version: r.varint_u64()?,
            created_at: UnixMillis(r.varint_u64()?),
            auth_time: UnixMillis(r.varint_u64()?),
            last_seen: UnixMillis(r.varint_u64()?),
            expires_at: UnixMillis(r.varint_u64()?),
            fingerprint: match r.byte()? {
                0 => None,
                1 => Some(Fingerprint(r.array()?)),
                _ => return Err(postcard::Error::DeserializeBadOption),
            },
        };
        Ok((head, r.0))
    }

    /// The full claims, with `data` as given.
    pub(crate) fn with_data<T>(self, data: T) -> Claims<T> {
        Claims {
            session_id: self.session_id,
            user_id: self.user_id,
            version: self.version,
            created_at: self.created_at,
            auth_time: self.auth_time,
            last_seen: self.last_seen,
            expires_at: self.expires_at,
            fingerprint: self.fingerprint,
            data,
        }
    }
}

/// A cursor over postcard bytes, with postcard's rules for the types the fixed claims use.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], postcard::Error> {
        if n > self.0.len() {
            return Err(postcard::Error::DeserializeUnexpectedEnd);
        }
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(taken)
    }

    fn byte(&mut self) -> Result<u8, postcard::Error> {
        let (&b, rest) = self
            .0
            .split_first()
            .ok_or(postcard::Error::DeserializeUnexpectedEnd)?;
        self.0 = rest;
        Ok(b)
    }

    /// A fixed-size byte array: its bytes as they are (postcard writes arrays as tuples of `u8`).
    fn array<const N: usize>(&mut self) -> Result<[u8; N], postcard::Error> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// A LEB128 varint of at most 10 bytes whose 10th byte carries at most the top bit of a
    /// `u64`. Like postcard, accepts non-minimal encodings (trailing `0x80` groups).
    #[inline]
    fn varint_u64(&mut self) -> Result<u64, postcard::Error> {
        // Times in milliseconds take six bytes: read up to eight at once rather than a byte at a
        // time when they are there.
        if let Some(word) = self.0.first_chunk::<8>() {
            let word = u64::from_le_bytes(*word);
            // A byte without its top bit ends the varint.
            let ends = !word & 0x8080_8080_8080_8080;
            if ends != 0 {
                let len = ends.trailing_zeros() as usize / 8 + 1;
                // Keep the varint's bytes, drop their continuation bits, and pack the 7-bit
                // groups together: pairs into 14 bits, then 28, then 56.
                let mut v = (word & (u64::MAX >> (64 - 8 * len))) & 0x7f7f_7f7f_7f7f_7f7f;
                v = (v & 0x007f_007f_007f_007f) | ((v & 0x7f00_7f00_7f00_7f00) >> 1);
                v = (v & 0x0000_3fff_0000_3fff) | ((v & 0x3fff_0000_3fff_0000) >> 2);
                v = (v & 0x0000_0000_0fff_ffff) | ((v & 0x0fff_ffff_0000_0000) >> 4);
                self.0 = &self.0[len..];
                return Ok(v);
            }
        }
        self.varint_u64_slow()
    }

    /// [`Self::varint_u64`] a byte at a time: near the end of the input, or for a varint of nine
    /// or ten bytes.
    #[cold]
    fn varint_u64_slow(&mut self) -> Result<u64, postcard::Error> {
        let mut out = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            out |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i == 9 && b > 1 {
                    return Err(postcard::Error::DeserializeBadVarint);
                }
                return Ok(out);
            }
        }
        Err(postcard::Error::DeserializeBadVarint)
    }

    /// A varint length, then that many bytes of UTF-8.
    fn string(&mut self) -> Result<String, postcard::Error> {
        let len = usize::try_from(self.varint_u64()?)
            .map_err(|_| postcard::Error::DeserializeUnexpectedEnd)?;
        let bytes = self.take(len)?;
        let s = std::str::from_utf8(bytes).map_err(|_| postcard::Error::DeserializeBadUtf8)?;
        Ok(s.to_owned())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn session_id_is_hex_in_json_and_its_16_bytes_in_postcard() {
        let id = SessionId::from_bytes(*b"0123456789abcdef");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"30313233343536373839616263646566\"");
        assert_eq!(serde_json::from_str::<SessionId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<SessionId>("\"30\"").is_err());
        let bin = postcard::to_allocvec(&id).unwrap();
        assert_eq!(bin, b"0123456789abcdef");
        assert_eq!(postcard::from_bytes::<SessionId>(&bin).unwrap(), id);
    }

    fn claims<T>(data: T, fingerprint: Option<Fingerprint>) -> Claims<T> {
        Claims {
            session_id: SessionId::from_bytes([7; 16]),
            user_id: "alice".into(),
            version: 1_767_225_600_123,
            created_at: UnixMillis(1_767_225_600_000),
            auth_time: UnixMillis(1_767_225_601_000),
            last_seen: UnixMillis(1_767_225_602_000),
            expires_at: UnixMillis(1_767_312_000_000),
            fingerprint,
            data,
        }
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Data {
        role: String,
        tenant: u32,
        flags: Vec<bool>,
    }

    /// The property `open_raw` relies on: an encoded `Claims<T>` is the encoded head followed by
    /// exactly the encoded data, for data of any shape (including empty and unit).
    #[test]
    fn claims_head_decodes_the_fixed_fields_and_leaves_exactly_the_data() {
        let data = Data {
            role: "admin".into(),
            tenant: 42,
            flags: vec![true, false],
        };
        let fp = Some(Fingerprint::from_bytes([1, 2, 3, 4, 5, 6, 7, 8]));
        let full = postcard::to_allocvec(&claims(&data, fp)).unwrap();
        let (head, rest) = postcard::take_from_bytes::<ClaimsHead>(&full).unwrap();
        assert_eq!(rest, postcard::to_allocvec(&data).unwrap().as_slice());
        let back = head.with_data(RawData::from_bytes(rest.to_vec()));
        assert_eq!(back.data.decode::<Data>().unwrap(), data);
        assert_eq!(back.user_id, "alice");
        assert_eq!(back.fingerprint, fp);
        assert_eq!(back.last_seen, UnixMillis(1_767_225_602_000));

        for encoded in [
            postcard::to_allocvec(&claims((), None)).unwrap(),
            postcard::to_allocvec(&claims(String::new(), None)).unwrap(),
        ] {
            let (head, rest) = postcard::take_from_bytes::<ClaimsHead>(&encoded).unwrap();
            assert_eq!(head.with_data(()).expires_at, UnixMillis(1_767_312_000_000));
            assert!(rest.len() <= 1, "{rest:?}");
        }
    }

    /// What postcard's serde decoder makes of `bytes` as a `ClaimsHead`, in a comparable form.
    fn via_postcard(bytes: &[u8]) -> Result<(Claims<()>, &[u8]), postcard::Error> {
        postcard::take_from_bytes::<ClaimsHead>(bytes).map(|(h, rest)| (h.with_data(()), rest))
    }

    fn via_reader(bytes: &[u8]) -> Result<(Claims<()>, &[u8]), postcard::Error> {
        ClaimsHead::take_from(bytes).map(|(h, rest)| (h.with_data(()), rest))
    }

    /// A varint in postcard's encoding, possibly padded with non-minimal `0x80` groups.
    fn varint(mut v: u64, pad: usize) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
        for _ in 0..pad {
            *out.last_mut().unwrap() |= 0x80;
            out.push(0);
        }
        out
    }

    /// Encodings to start from: real claims, and hand-built ones with edge-case varints.
    fn seeds() -> Vec<Vec<u8>> {
        let fp = Some(Fingerprint::from_bytes([1, 2, 3, 4, 5, 6, 7, 8]));
        let mut seeds = vec![
            postcard::to_allocvec(&claims(("admin", 42u32), fp)).unwrap(),
            postcard::to_allocvec(&claims((), None)).unwrap(),
            postcard::to_allocvec(&Claims {
                user_id: "ünïcödé ✓".into(),
                version: u64::MAX,
                created_at: UnixMillis(0),
                auth_time: UnixMillis(127),
                last_seen: UnixMillis(128),
                expires_at: UnixMillis(1 << 63),
                ..claims(7u8, fp)
            })
            .unwrap(),
        ];
        for (v, pad) in [
            (0, 9),
            (0, 10),
            (1, 8),
            (u64::MAX, 0),
            (1 << 56, 0),
            ((1 << 56) - 1, 0),
            (5, 3),
        ] {
            let mut b = vec![3u8; 16];
            b.extend(varint(2, 0));
            b.extend(b"ab");
            for _ in 0..5 {
                b.extend(varint(v, pad));
            }
            b.push(0);
            b.push(0x2a);
            seeds.push(b);
        }
        // Ten-byte varints whose last byte is out of range for a u64, and an eleven-byte one.
        for last in [1u8, 2, 0x7f] {
            let mut b = vec![3u8; 16];
            b.push(0);
            b.extend([0xff; 9]);
            b.push(last);
            b.extend([0; 5]);
            seeds.push(b);
        }
        let mut b = vec![3u8; 16];
        b.push(0);
        b.extend([0x80; 10]);
        b.extend([0; 5]);
        seeds.push(b);
        // A string length past the end, and one that is not UTF-8.
        let mut b = vec![3u8; 16];
        b.extend(varint(u64::MAX, 0));
        seeds.push(b);
        let mut b = vec![3u8; 16];
        b.extend([2, 0xc3, 0x28]);
        b.extend([0; 6]);
        seeds.push(b);
        seeds
    }

    #[test]
    fn claims_head_reader_accepts_and_refuses_exactly_what_postcard_does() {
        let mut checked = 0usize;
        let mut accepted = 0usize;
        for seed in seeds() {
            let mut cases = vec![seed.clone()];
            cases.extend((0..seed.len()).map(|n| seed[..n].to_vec()));
            for i in 0..seed.len() {
                for v in [0x00, 0x01, 0x02, 0x7f, 0x80, 0x81, 0xc3, 0xff] {
                    let mut m = seed.clone();
                    m[i] = v;
                    cases.push(m);
                }
            }
            for case in cases {
                let ours = via_reader(&case);
                assert_eq!(ours, via_postcard(&case), "{case:02x?}");
                accepted += usize::from(ours.is_ok());
                checked += 1;
            }
        }
        assert!(
            accepted > 100 && checked - accepted > 100,
            "{accepted}/{checked}"
        );
    }

    proptest::proptest! {
        #[test]
        fn claims_head_reader_agrees_with_postcard_on_any_bytes(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..120)
        ) {
            proptest::prop_assert_eq!(via_reader(&bytes), via_postcard(&bytes));
        }
    }

    #[test]
    fn raw_data_decode_refuses_leftover_and_malformed_bytes() {
        let bytes = postcard::to_allocvec(&(5u32, true)).unwrap();
        let raw = RawData::from_bytes(bytes.clone());
        assert_eq!(raw.decode::<(u32, bool)>().unwrap(), (5, true));
        let err = raw.decode::<u32>().unwrap_err();
        assert_eq!(err, DecodeError::left_over(1));
        assert!(err.to_string().contains("left over"), "{err}");
        assert!(RawData::from_bytes(vec![]).decode::<u32>().is_err());
        assert_eq!(raw.as_bytes(), bytes.as_slice());
        assert_eq!(raw.into_bytes(), bytes);
    }

    #[test]
    fn session_id_displays_as_32_lowercase_hex_digits_and_parses_back() {
        let bytes: [u8; 16] = std::array::from_fn(|i| (i as u8).wrapping_mul(0x1f) ^ 0xa5);
        let id = SessionId::from_bytes(bytes);
        let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(id.to_string(), expected);
        assert_eq!(SessionId::parse_hex(&id.to_string()), Some(id));
    }

    #[test]
    fn fingerprint_bytes_round_trip() {
        let f = Fingerprint::from_bytes([9, 8, 7, 6, 5, 4, 3, 2]);
        assert_eq!(f.as_bytes(), &[9, 8, 7, 6, 5, 4, 3, 2]);
    }
}
