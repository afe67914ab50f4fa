//! Why a kiorexctl command failed, as a stable code (`KX-CTL-…`, listed in docs/ops/errors.md)
//! and a documented exit status, so that scripts and Ansible can branch on the cause.

use std::fmt;

/// Exit statuses, documented in docs/ops/kiorexctl.md. clap itself exits with 2 on a usage error.
pub mod exit {
    /// The command failed; the message carries a `KX-CTL-…` code.
    pub const FAILED: i32 = 1;
    /// A check ran and found a problem: a preflight check failed, a component is unhealthy.
    pub const CHECK_FAILED: i32 = 3;
    /// A bundle or a backup did not verify: a file was changed, is missing, or the key is wrong.
    pub const NOT_AUTHENTIC: i32 = 4;
    /// The command refused to act because it would be unsafe (a skipped major version, an
    /// existing file with different content, a live cluster needed).
    pub const REFUSED: i32 = 5;
}

/// A failure with its code and exit status. Other errors exit with [`exit::FAILED`].
#[derive(Debug)]
pub struct Failure {
    pub code: &'static str,
    pub exit: i32,
    pub message: String,
}

impl Failure {
    pub fn new(code: &'static str, exit: i32, message: impl Into<String>) -> Failure {
        Failure {
            code,
            exit,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for Failure {}

/// The exit status for an error that reached `main`.
pub fn exit_status(error: &anyhow::Error) -> i32 {
    error
        .chain()
        .find_map(|e| e.downcast_ref::<Failure>())
        .map_or(exit::FAILED, |f| f.exit)
}

/// Shorthand: `Err(fail(code, status, message))?`.
pub fn fail(code: &'static str, exit: i32, message: impl Into<String>) -> anyhow::Error {
    Failure::new(code, exit, message).into()
}
