//! Secret values: resolved from the environment or a file at load, never
//! printed.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        assert_eq!(
            format!("{:?}", Secret::new("hunter2")),
            "Secret(<redacted>)"
        );
    }
}
