//! What composing found wrong, with the file and line to look at.

use std::fmt;
use std::path::{Path, PathBuf};

/// How bad a finding is. Errors hold the issue; warnings are shown to the editors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// One finding about the sections folder or a file in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The file it is about, or `None` for the issue as a whole.
    pub file: Option<PathBuf>,
    /// 1-based line in that file, where known.
    pub line: Option<usize>,
    pub message: String,
}

impl Diagnostic {
    /// An error in `file` at `line`.
    pub fn error(file: &Path, line: Option<usize>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            file: Some(file.to_owned()),
            line,
            message: message.into(),
        }
    }

    /// A warning in `file` at `line`.
    pub fn warning(file: &Path, line: Option<usize>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            file: Some(file.to_owned()),
            line,
            message: message.into(),
        }
    }

    /// An error about the issue as a whole.
    pub fn issue_error(message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            file: None,
            line: None,
            message: message.into(),
        }
    }

    /// A warning about the issue as a whole.
    pub fn issue_warning(message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            file: None,
            line: None,
            message: message.into(),
        }
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The file's stem without any numeric prefix, for matching required sections.
    pub(crate) fn file_stem(&self) -> Option<String> {
        let stem = self.file.as_ref()?.file_stem()?.to_str()?;
        Some(super::section::strip_order_prefix(stem).1.to_owned())
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{line}: ", file.display())?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            (None, _) => {}
        }
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}: {}", self.message)
    }
}
