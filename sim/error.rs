//! Errors a user can act on. `main` maps them to exit codes: input errors (a scenario too big
//! for the memory limit included) exit 2, a failed run (broken invariant such as packet
//! conservation, or memory outgrown during the run) or an I/O failure exits 1.

use std::path::PathBuf;

/// A problem with a scenario file, located at `file:line:col` (1-based).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}:{line}:{col}: {message}")]
pub struct ScenarioError {
    pub path: String,
    pub line: usize,
    pub col: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The scenario is invalid: fix the file at the position given.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// A command-line argument does not fit the scenario (unknown pod, bad glob ...).
    #[error("{0}")]
    Usage(String),
    /// Reading or writing a file failed; the message names the path.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The simulation broke one of its own invariants (a bug in cnisim: please report it).
    #[error("simulation invariant violated: {0}")]
    Invariant(String),
    /// The scenario would need more memory than the limit (estimated before building): shrink
    /// it or raise `--max-memory`.
    #[error("{0}")]
    TooBig(String),
    /// The run outgrew the memory limit and was stopped; nothing was written.
    #[error("out of memory: {0}")]
    OutOfMemory(String),
}

impl Error {
    /// Exit code: 2 for bad input, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Scenario(_) | Error::Usage(_) | Error::TooBig(_) => 2,
            Error::Io { .. } | Error::Invariant(_) | Error::OutOfMemory(_) => 1,
        }
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { path: path.into(), source }
    }
}
