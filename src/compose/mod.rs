//! Compose: turn the sections folder into one issue.
//!
//! Editors drop one Markdown file per section into a folder. This stage reads the folder
//! (skipping files that are hidden, temporary or still being written), parses each file
//! into a [`Section`], orders them, and checks the result against the required sections.
//! Everything an editor should know about comes back as a [`Diagnostic`] naming the file
//! and line; nothing here renders or sends.

mod archive;
mod diagnostic;
mod folder;
pub(crate) mod section;

pub use archive::{ArchiveError, archive_sources};
pub use diagnostic::{Diagnostic, Severity};
pub use folder::{SourceFile, Unsettled, read_folder};
pub use section::{Section, SectionKind, parse_section};

use crate::domain::IssueId;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Why a folder could not be read at all (as opposed to a file in it being wrong).
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("cannot read the sections folder {path}")]
    Folder {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One issue as composed from a folder: sections in order, plus what is wrong with it.
#[derive(Debug, Clone)]
pub struct Issue {
    pub id: IssueId,
    pub sections: Vec<Section>,
    /// Errors hold the issue; warnings go on top of the proof.
    pub diagnostics: Vec<Diagnostic>,
    /// The files the issue was made from, kept so a frozen issue can be rebuilt.
    pub sources: Vec<SourceFile>,
    /// Files saved a moment ago and not read yet.
    pub unsettled: Option<Unsettled>,
}

/// Whether an issue can go out now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Nothing stops it.
    Sendable,
    /// Files still being written are all that may stand in the way: look again at
    /// `until`, and do not tell anyone the issue is held.
    Unsettled {
        files: Vec<PathBuf>,
        until: SystemTime,
    },
    /// Errors an editor has to fix.
    Held,
}

impl Issue {
    /// True when nothing stops the issue from going out.
    pub fn is_sendable(&self) -> bool {
        !self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// Sendable, held, or waiting for files that are still being written.
    ///
    /// An issue whose only errors are about the issue as a whole (a required section
    /// missing, no sections at all) while some files are still being written is not
    /// held: those files may well be the missing ones. An error in a file that has
    /// been read is the editors' to fix, unsettled files or not.
    pub fn readiness(&self) -> Readiness {
        if self.is_sendable() {
            return Readiness::Sendable;
        }
        match &self.unsettled {
            Some(u) if self.errors().all(|d| d.file.is_none()) => Readiness::Unsettled {
                files: u.files.clone(),
                until: u.until,
            },
            _ => Readiness::Held,
        }
    }

    /// Files saved a moment ago and not read yet, if any.
    pub fn unsettled(&self) -> Option<&Unsettled> {
        self.unsettled.as_ref()
    }

    /// The errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }

    /// The warnings only.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| !d.is_error())
    }
}

/// Options for composing, from `[content]`.
#[derive(Debug, Clone)]
pub struct ComposeOptions {
    /// Section kinds or file stems an issue cannot go out without.
    pub required: Vec<String>,
    /// Files modified more recently than this are skipped as still being written.
    pub settle_time: std::time::Duration,
    /// A section file larger than this (bytes) is an error, and is not read.
    pub max_section_size: u64,
}

/// Reads `dir` and composes the issue `id` from it, as of `now`.
pub fn compose(
    dir: &Path,
    id: IssueId,
    options: &ComposeOptions,
    now: SystemTime,
) -> Result<Issue, ComposeError> {
    let folder = read_folder(dir, options.settle_time, options.max_section_size, now)?;
    let mut diagnostics = folder.diagnostics;
    let mut sections = Vec::new();
    for source in &folder.files {
        match parse_section(&source.path, &source.text) {
            Ok((section, warnings)) => {
                diagnostics.extend(warnings);
                sections.push(section);
            }
            Err(error) => diagnostics.push(error),
        }
    }
    let mut issue = assemble(id, sections, diagnostics, folder.files, options);
    issue.unsettled = folder.unsettled;
    Ok(issue)
}

/// Orders parsed sections and adds the issue-wide checks.
pub fn assemble(
    id: IssueId,
    mut sections: Vec<Section>,
    mut diagnostics: Vec<Diagnostic>,
    sources: Vec<SourceFile>,
    options: &ComposeOptions,
) -> Issue {
    sections.sort_by(|a, b| {
        a.order
            .cmp(&b.order)
            .then_with(|| a.file_name.cmp(&b.file_name))
    });
    for required in &options.required {
        let wanted = required.trim().to_ascii_lowercase();
        let present = sections
            .iter()
            .any(|s| s.kind.as_str() == wanted || s.stem().eq_ignore_ascii_case(&wanted));
        let unreadable = diagnostics.iter().any(|d| {
            d.is_error()
                && d.file_stem()
                    .is_some_and(|s| s.eq_ignore_ascii_case(&wanted))
        });
        if !present && !unreadable {
            diagnostics.push(Diagnostic::issue_error(format!(
                "the required section '{required}' is missing (add a file such as {wanted}.md)"
            )));
        }
    }
    if sections.is_empty() {
        diagnostics.push(Diagnostic::issue_error(
            "the sections folder has no section files",
        ));
    }
    let intros: Vec<&Section> = sections
        .iter()
        .filter(|s| s.kind == SectionKind::Introduction)
        .collect();
    if intros.len() > 1 {
        let names: Vec<&str> = intros.iter().map(|s| s.file_name.as_str()).collect();
        diagnostics.push(Diagnostic::issue_warning(format!(
            "{} sections are introductions ({}); they appear in that order",
            intros.len(),
            names.join(", ")
        )));
    }
    diagnostics.sort_by_key(|d| std::cmp::Reverse(d.severity));
    Issue {
        id,
        sections,
        diagnostics,
        sources,
        unsettled: None,
    }
}
