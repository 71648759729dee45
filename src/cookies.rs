//! Cookie attributes: the `__Host-` production preset, the explicit development preset, and
//! building/clearing Set-Cookie values with the `cookie` crate.

use std::time::Duration;

use cookie::{Cookie, SameSite};

use crate::token::MAX_COOKIE_NAME_LEN;

/// Cookie settings a browser would refuse or mishandle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CookieError {
    /// The cookie name is empty, longer than 64 bytes or has characters a cookie name cannot
    /// hold.
    #[error("invalid cookie name {0:?}")]
    Name(String),
    /// A `__Host-` cookie without Secure, with a Path other than `/`, or with a Domain.
    #[error("a __Host- cookie needs Secure, Path=/ and no Domain")]
    HostPrefix,
    /// A `__Secure-` cookie without Secure.
    #[error("a __Secure- cookie needs Secure")]
    SecurePrefix,
}

/// What a browser keeps of one cookie: name, value and attributes together.
pub const MAX_SET_COOKIE_LEN: usize = 4096;

/// How the session cookie is named and flagged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieSettings {
    name: String,
    secure: bool,
    same_site: SameSite,
    path: String,
    domain: Option<String>,
}

impl Default for CookieSettings {
    fn default() -> Self {
        CookieSettings::production()
    }
}

impl CookieSettings {
    /// `__Host-session`; Secure, HttpOnly, SameSite=Strict, Path=/, no Domain. The default.
    pub fn production() -> CookieSettings {
        CookieSettings {
            name: "__Host-session".into(),
            secure: true,
            same_site: SameSite::Strict,
            path: "/".into(),
            domain: None,
        }
    }

    /// For plain-http localhost development only: `session`, HttpOnly, SameSite=Lax, Path=/,
    /// **no Secure flag**. Never the default.
    pub fn insecure_dev() -> CookieSettings {
        CookieSettings {
            name: "session".into(),
            secure: false,
            same_site: SameSite::Lax,
            path: "/".into(),
            domain: None,
        }
    }

    /// Replaces the cookie name (checked by [`CookieSettings::validate`]).
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> CookieSettings {
        self.name = name.into();
        self
    }

    /// Sets SameSite.
    #[must_use]
    pub fn with_same_site(mut self, same_site: SameSite) -> CookieSettings {
        self.same_site = same_site;
        self
    }

    /// Sets a Domain attribute (not allowed with a `__Host-` name).
    #[must_use]
    pub fn with_domain(mut self, domain: impl Into<String>) -> CookieSettings {
        self.domain = Some(domain.into());
        self
    }

    /// Sets the Path attribute (must be `/` with a `__Host-` name).
    #[must_use]
    pub fn with_path(mut self, path: impl Into<String>) -> CookieSettings {
        self.path = path.into();
        self
    }

    /// The cookie name (also bound into every token as associated data).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the Secure attribute is set.
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Checks the name's syntax and the `__Host-` / `__Secure-` prefix rules.
    ///
    /// # Errors
    /// A [`CookieError`] naming the broken rule.
    pub fn validate(&self) -> Result<(), CookieError> {
        let n = &self.name;
        let token_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if n.is_empty() || n.len() > MAX_COOKIE_NAME_LEN || !n.chars().all(token_char) {
            return Err(CookieError::Name(n.clone()));
        }
        if n.starts_with("__Host-") && (!self.secure || self.path != "/" || self.domain.is_some()) {
            return Err(CookieError::HostPrefix);
        }
        if n.starts_with("__Secure-") && !self.secure {
            return Err(CookieError::SecurePrefix);
        }
        Ok(())
    }

    fn base<'a>(&self, value: impl Into<std::borrow::Cow<'a, str>>) -> Cookie<'a> {
        let mut c = Cookie::new(self.name.clone(), value);
        c.set_http_only(true);
        c.set_secure(self.secure);
        c.set_same_site(self.same_site);
        c.set_path(self.path.clone());
        if let Some(d) = &self.domain {
            c.set_domain(d.clone());
        }
        c
    }

    /// The Set-Cookie for a session value, kept by the browser for `max_age`.
    pub fn build(&self, value: String, max_age: Duration) -> Cookie<'static> {
        let mut c = self.base(value);
        c.set_max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
        ));
        c
    }

    /// The Set-Cookie that deletes the session cookie: empty value, Max-Age=0, every other
    /// attribute the same as the live cookie's (a browser only replaces a cookie whose name,
    /// domain and path match).
    pub fn clearing(&self) -> Cookie<'static> {
        let mut c = self.base("");
        c.set_max_age(cookie::time::Duration::ZERO);
        c
    }

    /// Bytes of a Set-Cookie value other than the token, for the longest Max-Age we send.
    pub(crate) fn overhead(&self, max_age: Duration) -> usize {
        self.build(String::new(), max_age).to_string().len()
    }

    /// Every value of this cookie in a `Cookie` request header, in order. Malformed pairs are
    /// skipped.
    pub fn values_in<'h>(&'h self, header: &'h str) -> impl Iterator<Item = &'h str> + 'h {
        header.split(';').filter_map(move |pair| {
            let (name, value) = pair.split_once('=')?;
            (name.trim() == self.name).then(|| value.trim().trim_matches('"'))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_cookie_has_host_prefix_and_strict_flags() {
        let s = CookieSettings::production();
        s.validate().expect("valid");
        let c = s.build("v".into(), Duration::from_secs(60)).to_string();
        for part in [
            "__Host-session=v",
            "HttpOnly",
            "SameSite=Strict",
            "Secure",
            "Path=/",
            "Max-Age=60",
        ] {
            assert!(c.contains(part), "{c} lacks {part}");
        }
        assert!(!c.contains("Domain"), "{c}");
    }

    #[test]
    fn clearing_cookie_mirrors_attributes_with_max_age_zero() {
        let s = CookieSettings::production();
        let c = s.clearing().to_string();
        for part in [
            "__Host-session=",
            "HttpOnly",
            "SameSite=Strict",
            "Secure",
            "Path=/",
            "Max-Age=0",
        ] {
            assert!(c.contains(part), "{c} lacks {part}");
        }
    }

    #[test]
    fn dev_preset_is_not_secure_and_lax() {
        let c = CookieSettings::insecure_dev()
            .build("v".into(), Duration::from_secs(1))
            .to_string();
        assert!(c.starts_with("session=v"));
        assert!(c.contains("SameSite=Lax") && c.contains("HttpOnly") && !c.contains("Secure"));
    }

    #[test]
    fn host_prefix_without_secure_or_with_domain_is_refused() {
        let insecure = CookieSettings::insecure_dev().with_name("__Host-x");
        assert_eq!(insecure.validate(), Err(CookieError::HostPrefix));
        let domain = CookieSettings::production().with_domain("example.com");
        assert_eq!(domain.validate(), Err(CookieError::HostPrefix));
        let path = CookieSettings::production().with_path("/app");
        assert_eq!(path.validate(), Err(CookieError::HostPrefix));
        let secure = CookieSettings::insecure_dev().with_name("__Secure-x");
        assert_eq!(secure.validate(), Err(CookieError::SecurePrefix));
    }

    #[test]
    fn bad_cookie_names_are_refused() {
        for bad in ["", "a b", "a;b", "a=b", &"x".repeat(65)] {
            let s = CookieSettings::insecure_dev().with_name(bad);
            assert!(matches!(s.validate(), Err(CookieError::Name(_))), "{bad:?}");
        }
    }

    #[test]
    fn values_in_finds_every_occurrence_of_the_name_only() {
        let s = CookieSettings::insecure_dev();
        let h = "a=1; session=first; xsession=no; garbage; session=second";
        assert_eq!(s.values_in(h).collect::<Vec<_>>(), vec!["first", "second"]);
    }
}
