//! Configuration errors. A file is checked whole: every problem is collected, each naming
//! its key as `<key>: <problem>`, so an operator fixes the file in one go.

use std::fmt;
use std::path::PathBuf;

/// One problem with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub problem: String,
}

impl Problem {
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Problem {
        Problem {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.problem)
    }
}

/// The problems found so far while turning a section into settings.
#[derive(Debug, Default)]
pub struct Problems(Vec<Problem>);

impl Problems {
    pub fn add(&mut self, key: impl Into<String>, problem: impl Into<String>) {
        self.0.push(Problem::new(key, problem));
    }

    /// Keep the value of `result`, or record its problem(s).
    pub fn take<T, E: Into<Problems>>(&mut self, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                self.0.extend(e.into().0);
                None
            }
        }
    }

    /// `d`, recording a problem when it is zero.
    pub fn nonzero(&mut self, key: &str, d: super::HumanDuration) -> std::time::Duration {
        if d.0.is_zero() {
            self.add(key, "must be greater than zero");
        }
        d.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `value` when nothing was recorded, else every problem.
    pub fn finish<T>(self, value: impl FnOnce() -> T) -> Result<T, Problems> {
        if self.0.is_empty() {
            Ok(value())
        } else {
            Err(self)
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter()
    }
}

impl From<Problem> for Problems {
    fn from(p: Problem) -> Problems {
        Problems(vec![p])
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// Every problem of the file, one `<key>: <problem>` per line.
    #[error("{0}")]
    Invalid(Problems),
}

impl From<Problems> for ConfigError {
    fn from(p: Problems) -> ConfigError {
        ConfigError::Invalid(p)
    }
}

impl From<Problem> for ConfigError {
    fn from(p: Problem) -> ConfigError {
        ConfigError::Invalid(p.into())
    }
}
