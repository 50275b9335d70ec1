//! Secret values: resolved from the environment or a file at load, never
//! printed; and tokens, of which only a digest is kept.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

/// A secret value. Its `Debug` never shows the value, so it cannot leak into
/// logs through a derived `Debug` of a config struct.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A secret field takes an inline value, `{env: NAME}` or `{file: PATH}`;
/// it is resolved at load, so a missing secret fails start-up instead of
/// the first request.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Source {
            Inline(String),
            Env { env: String },
            File { file: PathBuf },
        }
        let value = match Source::deserialize(d)? {
            Source::Inline(s) => s,
            Source::Env { env } => std::env::var(&env).map_err(|_| {
                serde::de::Error::custom(format!("environment variable {env} is not set"))
            })?,
            Source::File { file } => std::fs::read_to_string(&file)
                .map_err(|e| {
                    serde::de::Error::custom(format!(
                        "cannot read secret file {}: {e}",
                        file.display()
                    ))
                })?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
        };
        if value.is_empty() {
            return Err(serde::de::Error::custom("secret is empty"));
        }
        Ok(Secret(value))
    }
}

/// A bearer token as the service keeps it: the SHA-256 of the token, never
/// the token. Config gives the token (inline, `{env}`, `{file}`, as a
/// [`Secret`]) or its digest as `sha256:` and 64 hex digits (`dr-reactor
/// token hash`), so a config file or a secret store need not hold it.
/// Unsalted, which is sound for the long random tokens this is for (a
/// guess costs a 2^128 search), not for passwords people choose.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenDigest([u8; 32]);

const DIGEST_PREFIX: &str = "sha256:";

impl TokenDigest {
    /// The digest of a token presented by a caller.
    pub fn of(token: &str) -> TokenDigest {
        use sha2::Digest as _;
        TokenDigest(sha2::Sha256::digest(token.as_bytes()).into())
    }

    /// The `sha256:…` form that config accepts in place of the token.
    pub fn to_config(&self) -> String {
        let mut s = String::with_capacity(DIGEST_PREFIX.len() + 64);
        s.push_str(DIGEST_PREFIX);
        for b in self.0 {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// `sha256:` and 64 hex digits; `None` for anything else (a token).
    fn parse(text: &str) -> Option<TokenDigest> {
        let hex = text.strip_prefix(DIGEST_PREFIX)?;
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(TokenDigest(out))
    }

    /// Equal in constant time, so comparing does not tell how close it came.
    pub fn ct_eq(&self, other: &TokenDigest) -> bool {
        use subtle::ConstantTimeEq as _;
        self.0.ct_eq(&other.0).into()
    }

    /// A short public name of the digest (its first 8 bytes, of a second
    /// hash): what a console session records of the token that opened it,
    /// which tells tokens apart but gives nothing to try against the API.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest as _;
        let again = sha2::Sha256::digest(self.0);
        again[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl From<&Secret> for TokenDigest {
    /// A secret given as a digest stays that digest; any other value is a
    /// token, and is hashed.
    fn from(s: &Secret) -> TokenDigest {
        TokenDigest::parse(s.expose()).unwrap_or_else(|| TokenDigest::of(s.expose()))
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenDigest({})", self.fingerprint())
    }
}

impl<'de> Deserialize<'de> for TokenDigest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let secret = Secret::deserialize(d)?;
        let text = secret.expose();
        if text.starts_with(DIGEST_PREFIX) && TokenDigest::parse(text).is_none() {
            return Err(serde::de::Error::custom(
                "a token digest is `sha256:` and 64 hex digits (see `dr-reactor token hash`)",
            ));
        }
        Ok(TokenDigest::from(&secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_and_its_digest_form_are_the_same_credential() {
        let token = TokenDigest::of("s3cr3t-token-value");
        let config = token.to_config();
        assert!(
            config.starts_with("sha256:") && config.len() == 71,
            "{config}"
        );
        let parsed = TokenDigest::from(&Secret::new(config.clone()));
        assert!(parsed.ct_eq(&token));
        assert!(TokenDigest::from(&Secret::new("s3cr3t-token-value")).ct_eq(&token));
        assert!(!TokenDigest::of("s3cr3t-token-valuf").ct_eq(&token));
        // The published SHA-256 of "abc".
        assert_eq!(
            TokenDigest::of("abc").to_config(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let bad = serde_json::from_str::<TokenDigest>("\"sha256:abc\"");
        assert!(bad.is_err(), "a malformed digest is an error, not a token");
        assert!(
            !format!("{token:?}").contains(&config[7..]),
            "Debug shows no digest"
        );
    }

    #[test]
    fn debug_is_redacted() {
        assert_eq!(
            format!("{:?}", Secret::new("hunter2")),
            "Secret(<redacted>)"
        );
    }
}
