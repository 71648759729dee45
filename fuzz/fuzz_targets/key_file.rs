//! Arbitrary bytes as key material: a key file's content (`Key::from_base64`) and the
//! `SEALED_SESSIONS_KEYS` value (`KeyRing::from_env_value`). Neither may panic, an accepted key
//! is 32 bytes that re-encode to the same key, and no error message may quote the input (it may
//! be a key pasted in the wrong place).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealed_sessions::{Key, KeyRing};

/// Whether `message` quotes `input`. Only inputs that look like key text count: 24 or more
/// characters without whitespace (shorter runs, and phrases of the messages themselves, occur
/// by chance).
fn quotes(message: &str, input: &str) -> bool {
    let input = input.trim();
    input.len() >= 24 && !input.contains(char::is_whitespace) && message.contains(input)
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Key::from_base64(&text) {
        Ok(key) => {
            let again = Key::from_base64(&key.to_base64()).expect("re-encoded key parses");
            assert_eq!(again.expose_secret(), key.expose_secret());
        }
        Err(e) => assert!(!quotes(&format!("{e} {e:?}"), &text), "error quotes input"),
    }
    match KeyRing::from_env_value(&text) {
        Ok(ring) => {
            assert_eq!(ring.ids().count(), ring.len());
            let ids: Vec<_> = ring.ids().cloned().collect();
            for id in &ids {
                assert!(ring.get(id.as_bytes()).is_some());
            }
            // Debug shows ids only, never key text.
            let debug = format!("{ring:?}");
            for id in ids {
                if let Some(key) = ring.get(id.as_bytes()) {
                    assert!(!debug.contains(key.to_base64().as_str()));
                }
            }
        }
        Err(e) => {
            let shown = format!("{e} {e:?}");
            for item in text.split(',') {
                if let Some((_, key)) = item.split_once(':') {
                    assert!(!quotes(&shown, key), "error quotes key text");
                }
            }
        }
    }
});
