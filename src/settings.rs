//! The leaf types every component's configuration uses: a problem found with its key path, the
//! list validation fills, and a secret given by reference. Imports nothing from the crate, so
//! each component keeps its own config type beside its code without an import circle through
//! [`crate::config`].

use std::fmt;

use serde::Deserialize;

/// One thing wrong with the configuration, with the key path where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Where: `store.batch_max_messages`, `feeds[1].topics[0]`, `alerts.rules[2].metric`.
    pub path: String,
    /// What is wrong, in a sentence an operator can act on.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found so far. Validation adds to it and goes on, so an operator sees all of a
/// file's problems in one pass.
#[derive(Debug, Default)]
pub struct Problems(Vec<ConfigProblem>);

impl Problems {
    /// Record that the value at `path` is wrong.
    pub fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Record `message` at `path` unless `ok`.
    pub fn check(&mut self, ok: bool, path: impl Into<String>, message: impl Into<String>) {
        if !ok {
            self.add(path, message);
        }
    }

    /// Record that the number at `path` must be at least 1, unless it is.
    pub fn at_least_one(&mut self, value: usize, path: &str) {
        self.check(value >= 1, path, "must be at least 1");
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems, in the order they were found.
    pub fn into_vec(self) -> Vec<ConfigProblem> {
        self.0
    }
}

impl Extend<ConfigProblem> for Problems {
    fn extend<I: IntoIterator<Item = ConfigProblem>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

/// A secret (password, token) that never appears in logs or `Debug` output. In the file it is a
/// literal, `env:VAR` (read from the environment) or `file:/path` (first line of a file).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that sends it (a header, a signature key).
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn resolve(spec: &str) -> Result<Secret, String> {
        if let Some(var) = spec.strip_prefix("env:") {
            std::env::var(var)
                .map(Secret)
                .map_err(|_| format!("environment variable {var} is not set"))
        } else if let Some(path) = spec.strip_prefix("file:") {
            std::fs::read_to_string(path)
                .map(|s| Secret(s.lines().next().unwrap_or_default().to_owned()))
                .map_err(|e| format!("cannot read secret file {path}: {e}"))
        } else {
            Ok(Secret(spec.to_owned()))
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spec = String::deserialize(d)?;
        Secret::resolve(&spec).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_never_printed() {
        let s = Secret::resolve("hunter2").unwrap();
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "hunter2");
        assert!(Secret::resolve("env:IOC_TEST_SURELY_UNSET_VAR").is_err());
    }
}
