//! The token format: what the cookie value is, byte for byte.
//!
//! ```text
//! token  = base64url-nopad( raw )                      (RFC 4648 §5, no '=' padding)
//! raw    = version | kid_len | kid | nonce | ciphertext | tag
//!   version    1 byte   format version, currently 0x01
//!   kid_len    1 byte   length of the key id, 1..=16
//!   kid        kid_len  the key id, ASCII [A-Za-z0-9_-]
//!   nonce      24 bytes random XChaCha20 nonce (OS CSPRNG)
//!   ciphertext n bytes  XChaCha20-Poly1305 encryption of postcard(Claims<T>)
//!   tag        16 bytes Poly1305 tag
//! aad    = version | kid_len | kid | cookie_name
//! ```
//!
//! The associated data binds the format version, the key id and the cookie name: a token sealed
//! for one cookie name (one purpose) fails authentication under any other, and a key id cannot be
//! swapped without breaking the tag. The header is self-delimiting (length-prefixed key id), so
//! `header || cookie_name` is unambiguous.
//!
//! Parsing runs in two steps, each with its own type: [`UntrustedToken::parse`] checks length,
//! base64 and header syntax; [`UntrustedToken::open`] verifies the tag and only then decodes
//! [`Claims`]. Every failure is a [`TokenError`]; nothing here panics on any input.

use std::mem::MaybeUninit;

use base64_simd::Out;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::aead::{self, NONCE_LEN, TAG_LEN};
use crate::claims::{Claims, ClaimsHead, DecodeError, RawData};
use crate::keys::{KeyId, KeyRing};
use crate::rng::{self, RandomError};

/// The current token format version.
pub const FORMAT_VERSION: u8 = 1;
/// The longest token (cookie value) we will try to open: a browser keeps at most 4096 bytes of
/// name, value and attributes, so nothing longer can be one of ours.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Longest key id.
const MAX_KEY_ID_LEN: usize = crate::keys::MAX_ID_LEN;
/// Longest cookie name accepted as associated data.
pub const MAX_COOKIE_NAME_LEN: usize = 64;

/// Why a token could not be opened. Before the tag verifies every failure is "invalid" to the
/// outside world; the variants exist for logs and for the operator CLI's `inspect`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The input is longer than any token we issue; it was not decoded.
    #[error("token is {len} bytes, longer than the {max}-byte limit")]
    TooLong {
        /// Input length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The input is not unpadded base64url.
    #[error("token is not valid base64url")]
    BadEncoding,
    /// The decoded input is too short to hold a header, nonce and tag.
    #[error("token is truncated")]
    Truncated,
    /// The format version byte is not one this build understands.
    #[error("unknown token format version {0}")]
    UnknownVersion(u8),
    /// The key id in the header is malformed.
    #[error("malformed key id in token header")]
    BadKeyId,
    /// The key id is well formed but no key in the ring has it (retired or never known).
    #[error("token was sealed under key id {0:?}, which is not in the key ring")]
    UnknownKey(String),
    /// Authentication failed: tampered, sealed under a different key with the same id, or
    /// sealed for another cookie name. Deliberately one opaque case.
    #[error("token failed authentication (tampered, wrong key or other cookie name)")]
    Unauthentic,
    /// The tag verified but the claims do not decode as this application's claims type.
    #[error("token claims do not decode")]
    Claims(#[source] DecodeError),
    /// The tag verified but a time in the claims (`created_at`, `auth_time`, `last_seen`) lies
    /// further in the future than the allowed clock skew: sealed by a node whose clock runs
    /// ahead, and not to be trusted for idle or freshness checks.
    #[error("token claims carry a time further in the future than the allowed clock skew")]
    FromTheFuture,
}

/// Why a session could not be sealed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The Set-Cookie header would pass the browser limit; a browser would drop it silently.
    #[error("session cookie would be {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Size of the whole Set-Cookie value (name, value and attributes) that would be sent.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The claims could not be encoded (a data type whose `Serialize` fails, or one postcard
    /// cannot write, such as a sequence of unknown length).
    #[error("session claims could not be encoded")]
    Encode(#[source] EncodeError),
    /// The operating system's random generator failed.
    #[error("operating system randomness unavailable")]
    Random(#[source] RandomError),
    /// The cookie name is unusable as associated data.
    #[error("cookie name is longer than {MAX_COOKIE_NAME_LEN} bytes")]
    CookieName,
}

/// The session data could not be encoded; its message says why.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct EncodeError(postcard::Error);

/// Length of the base64url-nopad encoding of `n` bytes.
pub(crate) const fn encoded_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

fn header_len(kid: &KeyId) -> usize {
    2 + kid.as_bytes().len()
}

/// Size of the token for a plaintext of `plaintext_len` bytes under `kid`.
pub(crate) fn token_len(kid: &KeyId, plaintext_len: usize) -> usize {
    encoded_len(header_len(kid) + NONCE_LEN + plaintext_len + TAG_LEN)
}

/// Room for the associated data: the longest header, then the longest cookie name.
const AAD_MAX: usize = 2 + MAX_KEY_ID_LEN + MAX_COOKIE_NAME_LEN;

/// Writes the associated data (header bytes, then the cookie name) into `buf` and returns it;
/// `None` when either part is too long. Built in the caller's buffer rather than returned by
/// value: moving it right after writing it stalls the load on the stores still in flight.
fn build_aad<'b>(
    buf: &'b mut [u8; AAD_MAX],
    header: &[u8],
    cookie_name: &[u8],
) -> Option<&'b [u8]> {
    if header.len() > 2 + MAX_KEY_ID_LEN || cookie_name.len() > MAX_COOKIE_NAME_LEN {
        return None;
    }
    let len = header.len() + cookie_name.len();
    buf[..header.len()].copy_from_slice(header);
    buf[header.len()..len].copy_from_slice(cookie_name);
    Some(&buf[..len])
}

/// How many bytes a sealed token may take: the Set-Cookie value is `overhead + token` bytes
/// (name, `=`, attributes) and must not pass `limit`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    pub(crate) overhead: usize,
    pub(crate) limit: usize,
}

/// Seals `claims` under the ring's primary key with a random nonce. Refuses, before encrypting,
/// a token that would not fit the budget.
pub(crate) fn seal<T: Serialize>(
    ring: &KeyRing,
    cookie_name: &str,
    claims: &Claims<T>,
    budget: Budget,
) -> Result<String, SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    rng::fill(&mut nonce).map_err(SealError::Random)?;
    seal_with_nonce(ring, cookie_name, claims, &nonce, budget)
}

/// Seals with a caller-chosen nonce. Only for test vectors: a nonce must never repeat under one
/// key, so production sealing always draws it from the OS.
pub(crate) fn seal_with_nonce<T: Serialize>(
    ring: &KeyRing,
    cookie_name: &str,
    claims: &Claims<T>,
    nonce: &[u8; NONCE_LEN],
    budget: Budget,
) -> Result<String, SealError> {
    let (kid, key) = ring.primary();
    let kid_bytes = kid.as_bytes();
    let mut raw = Vec::with_capacity(header_len(kid) + NONCE_LEN + 128 + TAG_LEN);
    raw.push(FORMAT_VERSION);
    // KeyId guarantees 1..=16 bytes.
    raw.push(kid_bytes.len() as u8);
    raw.extend_from_slice(kid_bytes);
    let hlen = raw.len();
    let mut aad_buf = [0u8; AAD_MAX];
    let aad = build_aad(&mut aad_buf, &raw[..hlen], cookie_name.as_bytes())
        .ok_or(SealError::CookieName)?;
    raw.extend_from_slice(nonce);
    let body_start = raw.len();
    let mut raw =
        postcard::to_extend(claims, raw).map_err(|e| SealError::Encode(EncodeError(e)))?;
    let size = budget.overhead + token_len(kid, raw.len() - body_start);
    if size > budget.limit {
        return Err(SealError::TooLarge {
            size,
            limit: budget.limit,
        });
    }
    let tag = aead::seal_in_place(key.expose_secret(), nonce, aad, &mut raw[body_start..]);
    raw.extend_from_slice(&tag);
    Ok(base64_simd::URL_SAFE_NO_PAD.encode_to_string(&raw))
}

/// A token that has been decoded and whose header parsed, but whose tag has not been checked.
/// Nothing in it is trusted.
pub struct UntrustedToken {
    raw: Vec<u8>,
    kid_end: usize,
}

impl UntrustedToken {
    /// Decodes a cookie value and checks the header's syntax. Refuses over-long input before
    /// decoding it.
    ///
    /// # Errors
    /// [`TokenError::TooLong`], [`TokenError::BadEncoding`], [`TokenError::Truncated`],
    /// [`TokenError::UnknownVersion`], [`TokenError::BadKeyId`].
    pub fn parse(token: &str) -> Result<UntrustedToken, TokenError> {
        check_token_len(token)?;
        // base64-simd picks SSE/AVX2 at run time: about 3x faster than a scalar decoder here.
        let raw = base64_simd::URL_SAFE_NO_PAD
            .decode_to_vec(token.as_bytes())
            .map_err(|_| TokenError::BadEncoding)?;
        let kid_end = check_header(&raw)?;
        Ok(UntrustedToken { raw, kid_end })
    }

    /// The key id named in the header (ASCII, checked by `parse`).
    pub fn key_id(&self) -> &str {
        // parse() checked these bytes are ASCII.
        std::str::from_utf8(&self.raw[2..self.kid_end]).unwrap_or("")
    }

    /// Verifies the tag with the ring's key of the header's id and the cookie name, then decodes
    /// the claims. Trailing bytes after the claims are refused.
    ///
    /// # Errors
    /// [`TokenError::UnknownKey`], [`TokenError::Unauthentic`], [`TokenError::Claims`].
    pub fn open<T: DeserializeOwned>(
        mut self,
        ring: &KeyRing,
        cookie_name: &str,
    ) -> Result<Claims<T>, TokenError> {
        decode_claims(self.decrypt(ring, cookie_name)?)
    }

    /// As [`open`](Self::open), for a caller that does not know the application's data type: the
    /// fixed claims are decoded and `data` is left as its encoded bytes (everything after them).
    ///
    /// This works because postcard writes a struct's fields in order with no framing, so the
    /// fixed fields can be read on their own and whatever follows them is the encoding of `data`.
    /// The tag is verified first, exactly as in `open`.
    ///
    /// # Errors
    /// [`TokenError::UnknownKey`], [`TokenError::Unauthentic`], and [`TokenError::Claims`] when
    /// the fixed fields do not decode.
    pub fn open_raw(
        mut self,
        ring: &KeyRing,
        cookie_name: &str,
    ) -> Result<Claims<RawData>, TokenError> {
        let plain = self.decrypt(ring, cookie_name)?;
        let (head, data) = ClaimsHead::take_from(plain)
            .map_err(|e| TokenError::Claims(DecodeError::postcard(e)))?;
        Ok(head.with_data(RawData::from_bytes(data.to_vec())))
    }

    /// Verifies the tag and decrypts in place; returns the plaintext (the encoded claims).
    fn decrypt(&mut self, ring: &KeyRing, cookie_name: &str) -> Result<&[u8], TokenError> {
        decrypt(&mut self.raw, self.kid_end, ring, cookie_name).map(|(plain, _)| plain)
    }
}

/// Refuses input longer than any token we issue, before decoding it.
fn check_token_len(token: &str) -> Result<(), TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong {
            len: token.len(),
            max: MAX_TOKEN_LEN,
        });
    }
    Ok(())
}

/// Checks the header syntax of a decoded token and that it can hold a nonce and a tag; returns
/// where the key id ends.
fn check_header(raw: &[u8]) -> Result<usize, TokenError> {
    let Some(&version) = raw.first() else {
        return Err(TokenError::Truncated);
    };
    if version != FORMAT_VERSION {
        return Err(TokenError::UnknownVersion(version));
    }
    let Some(&kid_len) = raw.get(1) else {
        return Err(TokenError::Truncated);
    };
    let kid_len = usize::from(kid_len);
    if kid_len == 0 || kid_len > MAX_KEY_ID_LEN {
        return Err(TokenError::BadKeyId);
    }
    let kid_end = 2 + kid_len;
    if raw.len() < kid_end + NONCE_LEN + TAG_LEN {
        return Err(TokenError::Truncated);
    }
    if !raw[2..kid_end]
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
    {
        return Err(TokenError::BadKeyId);
    }
    Ok(kid_end)
}

/// Verifies the tag of a decoded token whose header `check_header` accepted, and decrypts it in
/// place; returns the plaintext (the encoded claims) and whether the key is the ring's primary.
fn decrypt<'a>(
    raw: &'a mut [u8],
    kid_end: usize,
    ring: &KeyRing,
    cookie_name: &str,
) -> Result<(&'a [u8], bool), TokenError> {
    let (head, body) = raw.split_at_mut(kid_end + NONCE_LEN);
    let (header, nonce) = head.split_at(kid_end);
    let Some((key, primary)) = ring.get_marked(&header[2..]) else {
        // check_header() accepted only ASCII key ids.
        let kid = std::str::from_utf8(&header[2..]).unwrap_or("");
        return Err(TokenError::UnknownKey(kid.to_owned()));
    };
    let mut aad_buf = [0u8; AAD_MAX];
    let aad =
        build_aad(&mut aad_buf, header, cookie_name.as_bytes()).ok_or(TokenError::Unauthentic)?;
    let nonce: &[u8; NONCE_LEN] = nonce.try_into().map_err(|_| TokenError::Truncated)?;
    let plain = aead::open_in_place(key.expose_secret(), nonce, aad, body)
        .map_err(|_| TokenError::Unauthentic)?;
    Ok((plain, primary))
}

/// The longest decoded token: [`MAX_TOKEN_LEN`] base64 characters hold at most this many bytes.
const MAX_RAW_LEN: usize = MAX_TOKEN_LEN / 4 * 3;

/// Decodes a token into `buf` and checks its header, with the same checks in the same order as
/// [`UntrustedToken::parse`], but without a heap allocation. Returns the decoded bytes and where
/// the key id ends.
fn parse_into<'a>(
    token: &str,
    buf: &'a mut [MaybeUninit<u8>; MAX_RAW_LEN],
) -> Result<(&'a mut [u8], usize), TokenError> {
    check_token_len(token)?;
    let raw = base64_simd::URL_SAFE_NO_PAD
        .decode(token.as_bytes(), Out::from_uninit_slice(buf))
        .map_err(|_| TokenError::BadEncoding)?;
    let kid_end = check_header(raw)?;
    Ok((raw, kid_end))
}

/// Claims opened by [`open_checked`], and whether they were sealed under the ring's primary key.
pub(crate) struct Opened<T> {
    pub(crate) claims: Claims<T>,
    pub(crate) under_primary: bool,
}

/// Parses and opens in one step, as [`open`] does (the same checks, errors and order), decoding
/// into a stack buffer rather than a `Vec`; also says whether the key is the ring's primary.
/// This is the engine's validation path.
pub(crate) fn open_checked<T: DeserializeOwned>(
    ring: &KeyRing,
    cookie_name: &str,
    token: &str,
) -> Result<Opened<T>, TokenError> {
    let mut buf = [MaybeUninit::uninit(); MAX_RAW_LEN];
    let (raw, kid_end) = parse_into(token, &mut buf)?;
    let (plain, under_primary) = decrypt(raw, kid_end, ring, cookie_name)?;
    Ok(Opened {
        claims: decode_claims(plain)?,
        under_primary,
    })
}

/// Decodes a whole plaintext as `Claims<T>`, refusing trailing bytes.
///
/// The fixed fields are read by [`ClaimsHead::take_from`] and only `data` goes through postcard's
/// serde decoder: the same bytes accepted, the same errors, fewer instructions.
fn decode_claims<T: DeserializeOwned>(plain: &[u8]) -> Result<Claims<T>, TokenError> {
    let claims = ClaimsHead::take_from(plain).and_then(|(head, rest)| {
        postcard::take_from_bytes::<T>(rest).map(|(data, rest)| (head.with_data(data), rest))
    });
    match claims {
        Ok((claims, [])) => Ok(claims),
        Ok((_, rest)) => Err(TokenError::Claims(DecodeError::left_over(rest.len()))),
        Err(e) => Err(TokenError::Claims(DecodeError::postcard(e))),
    }
}

/// Seals claims under the ring's primary key for `cookie_name`, refusing a token longer than
/// [`MAX_TOKEN_LEN`]. The engine uses a tighter budget that counts the cookie's name and
/// attributes too; this form is for tools and tests that work with tokens directly.
///
/// # Errors
/// [`SealError`].
pub fn seal_token<T: Serialize>(
    ring: &KeyRing,
    cookie_name: &str,
    claims: &Claims<T>,
) -> Result<String, SealError> {
    seal(
        ring,
        cookie_name,
        claims,
        Budget {
            overhead: 0,
            limit: MAX_TOKEN_LEN,
        },
    )
}

/// Parses and opens in one step.
///
/// # Errors
/// Any [`TokenError`].
pub fn open<T: DeserializeOwned>(
    ring: &KeyRing,
    cookie_name: &str,
    token: &str,
) -> Result<Claims<T>, TokenError> {
    open_checked(ring, cookie_name, token).map(|opened| opened.claims)
}

/// Parses and opens in one step, leaving `data` undecoded (see [`UntrustedToken::open_raw`]):
/// for tools such as the operator CLI's `inspect`, which do not know the application's data type.
///
/// ```
/// use sealed_sessions::token::{open_raw, seal_token};
/// use sealed_sessions::clock::UnixMillis;
/// use sealed_sessions::{Claims, Key, KeyId, KeyRing, SessionId};
///
/// let ring = KeyRing::single(KeyId::new("k1").unwrap(), Key::generate().unwrap());
/// let claims = Claims {
///     session_id: SessionId::generate().unwrap(),
///     user_id: "alice".to_owned(),
///     version: 1,
///     created_at: UnixMillis(1_000),
///     auth_time: UnixMillis(1_000),
///     last_seen: UnixMillis(1_000),
///     expires_at: UnixMillis(90_000),
///     fingerprint: None,
///     data: ("admin".to_owned(), 42u32),
/// };
/// let token = seal_token(&ring, "__Host-session", &claims).unwrap();
/// let raw = open_raw(&ring, "__Host-session", &token).unwrap();
/// assert_eq!(raw.user_id, "alice");
/// assert_eq!(raw.data.decode::<(String, u32)>().unwrap(), ("admin".to_owned(), 42));
/// ```
///
/// # Errors
/// Any [`TokenError`].
pub fn open_raw(
    ring: &KeyRing,
    cookie_name: &str,
    token: &str,
) -> Result<Claims<RawData>, TokenError> {
    UntrustedToken::parse(token)?.open_raw(ring, cookie_name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod vectors {
    use super::*;
    use crate::claims::{Fingerprint, SessionId};
    use crate::clock::UnixMillis;
    use crate::keys::{Key, KeyId};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Data {
        role: String,
        tenant: u32,
    }

    #[derive(Deserialize)]
    struct Pass {
        name: String,
        key_id: String,
        key_hex: String,
        cookie_name: String,
        nonce_hex: String,
        session_id_hex: String,
        user_id: String,
        version: u64,
        created_at: u64,
        auth_time: u64,
        last_seen: u64,
        expires_at: u64,
        fingerprint_hex: Option<String>,
        role: String,
        tenant: u32,
        token: String,
    }

    #[derive(Deserialize)]
    struct File {
        pass: Vec<Pass>,
    }

    fn hex<const N: usize>(s: &str) -> [u8; N] {
        let v: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect();
        v.try_into().unwrap()
    }

    fn load() -> Vec<(Pass, KeyRing, Claims<Data>)> {
        let file: File =
            serde_json::from_str(include_str!("../tests/vectors/token_v1.json")).unwrap();
        file.pass
            .into_iter()
            .map(|p| {
                let ring = KeyRing::single(
                    KeyId::new(&p.key_id).unwrap(),
                    Key::from_bytes(hex::<32>(&p.key_hex)),
                );
                let claims = Claims {
                    session_id: SessionId::from_bytes(hex::<16>(&p.session_id_hex)),
                    user_id: p.user_id.clone(),
                    version: p.version,
                    created_at: UnixMillis(p.created_at),
                    auth_time: UnixMillis(p.auth_time),
                    last_seen: UnixMillis(p.last_seen),
                    expires_at: UnixMillis(p.expires_at),
                    fingerprint: p
                        .fingerprint_hex
                        .as_deref()
                        .map(|f| Fingerprint::from_bytes(hex::<8>(f))),
                    data: Data {
                        role: p.role.clone(),
                        tenant: p.tenant,
                    },
                };
                (p, ring, claims)
            })
            .collect()
    }

    const BUDGET: Budget = Budget {
        overhead: 0,
        limit: 4096,
    };

    #[test]
    fn fixed_key_and_nonce_give_the_exact_token() {
        for (p, ring, claims) in load() {
            let nonce = hex::<24>(&p.nonce_hex);
            let token = seal_with_nonce(&ring, &p.cookie_name, &claims, &nonce, BUDGET).unwrap();
            assert_eq!(token, p.token, "vector {}", p.name);
        }
    }

    #[test]
    fn vector_tokens_still_open_to_the_same_claims() {
        for (p, ring, claims) in load() {
            let opened: Claims<Data> = open(&ring, &p.cookie_name, &p.token).unwrap();
            assert_eq!(opened, claims, "vector {}", p.name);
        }
    }

    #[test]
    fn vector_tokens_open_raw_to_the_fixed_claims_and_the_encoded_data() {
        for (p, ring, claims) in load() {
            let raw = open_raw(&ring, &p.cookie_name, &p.token).unwrap();
            assert_eq!(
                raw.data.as_bytes(),
                postcard::to_allocvec(&claims.data).unwrap().as_slice(),
                "vector {}",
                p.name
            );
            let typed = Claims {
                session_id: raw.session_id,
                user_id: raw.user_id,
                version: raw.version,
                created_at: raw.created_at,
                auth_time: raw.auth_time,
                last_seen: raw.last_seen,
                expires_at: raw.expires_at,
                fingerprint: raw.fingerprint,
                data: raw.data.decode::<Data>().unwrap(),
            };
            assert_eq!(typed, claims, "vector {}", p.name);
        }
    }

    #[test]
    fn open_raw_fails_exactly_like_open_before_the_claims() {
        let (p, ring, _) = load().remove(0);
        let other = KeyRing::single(KeyId::new(&p.key_id).unwrap(), Key::from_bytes([0xee; 32]));
        let retired = KeyRing::single(KeyId::new("zz").unwrap(), Key::from_bytes([1; 32]));
        let cases: [(&KeyRing, &str, &str); 4] = [
            (&other, &p.cookie_name, &p.token),
            (&ring, "another-name", &p.token),
            (&retired, &p.cookie_name, &p.token),
            (&ring, &p.cookie_name, "not base64!"),
        ];
        for (r, name, token) in cases {
            let raw = open_raw(r, name, token).unwrap_err();
            assert_eq!(raw, open::<Data>(r, name, token).unwrap_err());
        }
        assert_eq!(
            open_raw(&other, &p.cookie_name, &p.token).unwrap_err(),
            TokenError::Unauthentic
        );
        assert_eq!(
            open_raw(&retired, &p.cookie_name, &p.token).unwrap_err(),
            TokenError::UnknownKey(p.key_id.clone())
        );
    }

    /// Seals arbitrary plaintext bytes (not claims) the way `seal_with_nonce` seals claims.
    fn seal_bytes(ring: &KeyRing, cookie_name: &str, plain: &[u8]) -> String {
        let (kid, key) = ring.primary();
        let mut raw = vec![FORMAT_VERSION, kid.as_bytes().len() as u8];
        raw.extend_from_slice(kid.as_bytes());
        let aad = [&raw[..], cookie_name.as_bytes()].concat();
        let nonce = [7u8; NONCE_LEN];
        raw.extend_from_slice(&nonce);
        let start = raw.len();
        raw.extend_from_slice(plain);
        let tag = aead::seal_in_place(key.expose_secret(), &nonce, &aad, &mut raw[start..]);
        raw.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(&raw)
    }

    #[test]
    fn open_raw_refuses_an_authentic_plaintext_too_short_for_the_fixed_claims() {
        let (p, ring, claims) = load().remove(0);
        let full = postcard::to_allocvec(&claims).unwrap();
        // The sealing helper is right: the whole encoding opens.
        let whole = seal_bytes(&ring, &p.cookie_name, &full);
        assert_eq!(open::<Data>(&ring, &p.cookie_name, &whole).unwrap(), claims);
        for len in [0, 10, 16, 30] {
            let token = seal_bytes(&ring, &p.cookie_name, &full[..len]);
            assert!(
                matches!(
                    open_raw(&ring, &p.cookie_name, &token),
                    Err(TokenError::Claims(_))
                ),
                "{len}"
            );
        }
        // Head complete, data missing: opens raw with empty data, which then does not decode.
        let head_len = full.len() - postcard::to_allocvec(&claims.data).unwrap().len();
        let token = seal_bytes(&ring, &p.cookie_name, &full[..head_len]);
        let raw = open_raw(&ring, &p.cookie_name, &token).unwrap();
        assert!(raw.data.as_bytes().is_empty());
        assert!(raw.data.decode::<Data>().is_err());
    }

    /// The Vec-based two-step path, as the public `UntrustedToken` API runs it.
    fn via_untrusted(ring: &KeyRing, name: &str, token: &str) -> Result<Claims<Data>, TokenError> {
        UntrustedToken::parse(token)?.open(ring, name)
    }

    /// The engine's stack-buffer path refuses every input the `UntrustedToken` path refuses, with
    /// the same error, and opens the same claims from every input it accepts.
    #[test]
    fn stack_path_agrees_with_the_untrusted_token_path_on_malformed_input() {
        let (p, ring, claims) = load().remove(0);
        let name = p.cookie_name.as_str();
        let other_key =
            KeyRing::single(KeyId::new(&p.key_id).unwrap(), Key::from_bytes([0xee; 32]));
        let retired = KeyRing::single(KeyId::new("zz").unwrap(), Key::from_bytes([1; 32]));
        let raw = URL_SAFE_NO_PAD.decode(&p.token).unwrap();
        let full = postcard::to_allocvec(&claims).unwrap();

        let mut tokens: Vec<String> = vec![
            p.token.clone(),
            String::new(),
            "a=b".into(),
            "AQ".into(),
            "AQI+/w==".into(),
            "not base64!".into(),
            format!("{}=", p.token),
            "A".repeat(MAX_TOKEN_LEN),
            "A".repeat(MAX_TOKEN_LEN + 1),
            "A".repeat(MAX_TOKEN_LEN + 4),
            // Authentic plaintexts that are not whole claims: cut, padded, corrupted.
            seal_bytes(&ring, name, &full[..full.len() - 1]),
            seal_bytes(&ring, name, &[&full[..], &[0]].concat()),
            seal_bytes(&ring, name, &[&full[..], &[1, 2, 3]].concat()),
            seal_bytes(&ring, name, &[]),
            seal_bytes(&ring, name, &[0xff; 40]),
        ];
        // A non-canonical last character (its unused bits set) must not decode.
        let mut last = p.token.clone();
        let c = last.pop().unwrap();
        last.push(if c == 'B' { 'C' } else { 'B' });
        tokens.push(last);
        for len in 0..p.token.len() {
            tokens.push(p.token[..len].to_owned());
        }
        for (i, v) in [
            (0, 2),
            (0, 0),
            (1, 0),
            (1, 17),
            (1, 200),
            (2, b'!'),
            (3, 0xff),
        ] {
            let mut m = raw.clone();
            m[i] = v;
            tokens.push(URL_SAFE_NO_PAD.encode(&m));
        }
        for byte in 0..raw.len() {
            let mut m = raw.clone();
            m[byte] ^= 0x20;
            tokens.push(URL_SAFE_NO_PAD.encode(&m));
        }
        for len in 0..raw.len() {
            tokens.push(URL_SAFE_NO_PAD.encode(&raw[..len]));
        }

        let mut opened = 0;
        for token in &tokens {
            for (r, n) in [
                (&ring, name),
                (&ring, "another-name"),
                (&other_key, name),
                (&retired, name),
            ] {
                let stack = open_checked::<Data>(r, n, token).map(|o| o.claims);
                assert_eq!(stack, via_untrusted(r, n, token), "{token:?} under {n}");
                opened += usize::from(stack.is_ok());
            }
        }
        // The vector token itself, and only it, opened (under its own key and name).
        assert_eq!(opened, 1);
    }

    #[test]
    fn stack_path_says_whether_the_key_is_the_primary() {
        let (p, ring, claims) = load().remove(0);
        let (kid, key) = ring.primary();
        let newer = KeyRing::new(
            (KeyId::new("newer").unwrap(), Key::from_bytes([5; 32])),
            vec![(kid.clone(), Key::from_bytes(*key.expose_secret()))],
        )
        .unwrap();
        let opened = open_checked::<Data>(&ring, &p.cookie_name, &p.token).unwrap();
        assert!(opened.under_primary);
        assert_eq!(opened.claims, claims);
        let opened = open_checked::<Data>(&newer, &p.cookie_name, &p.token).unwrap();
        assert!(!opened.under_primary);
        assert_eq!(opened.claims, claims);
    }

    /// Decodes the documented layout by hand and decrypts with the RustCrypto crate: the module
    /// docs, the vectors and the implementation all describe the same bytes.
    #[test]
    fn vector_layout_matches_the_documentation_and_an_independent_cipher() {
        use chacha20poly1305::XChaCha20Poly1305;
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        for (p, _ring, claims) in load() {
            let raw = URL_SAFE_NO_PAD.decode(&p.token).unwrap();
            assert_eq!(raw[0], FORMAT_VERSION);
            let n = raw[1] as usize;
            assert_eq!(&raw[2..2 + n], p.key_id.as_bytes());
            assert_eq!(raw[2 + n..2 + n + 24], hex::<24>(&p.nonce_hex));
            let mut aad = raw[..2 + n].to_vec();
            aad.extend_from_slice(p.cookie_name.as_bytes());
            let cipher = XChaCha20Poly1305::new((&hex::<32>(&p.key_hex)).into());
            let nonce = hex::<24>(&p.nonce_hex);
            let plain = cipher
                .decrypt(
                    (&nonce).into(),
                    Payload {
                        msg: &raw[2 + n + 24..],
                        aad: &aad,
                    },
                )
                .unwrap();
            assert_eq!(
                plain,
                postcard::to_allocvec(&claims).unwrap(),
                "vector {}",
                p.name
            );
        }
    }
}
