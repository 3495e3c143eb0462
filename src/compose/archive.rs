//! After an issue is frozen, its section files leave the sections folder for
//! `archive/<issue>/`, so the folder is ready for the next issue.

use super::Issue;
use crate::domain::IssueId;
use std::path::{Path, PathBuf};

/// Why a section file could not be archived.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Issue {
    /// The (file name, content) pairs the issue was composed from: what is frozen with
    /// it, and what tells whether a folder's files have already gone out.
    pub fn source_pairs(&self) -> Vec<(String, String)> {
        self.sources
            .iter()
            .map(|s| (s.name(), s.text.clone()))
            .collect()
    }
}

/// An I/O failure to `what` the file or folder `path`.
fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError {
    let path = path.to_owned();
    move |source| ArchiveError::Io { what, path, source }
}

/// Moves the issue's section files from the sections folder to `archive/<issue>/`.
/// Only a file that still holds what the issue was made from is moved: one an editor has
/// since replaced with the next issue's text stays. Files already moved (a re-run after
/// a crash) are skipped; a file whose name is taken in the archive gets a numbered name
/// rather than overwriting it.
pub fn archive_sources(
    sections: &Path,
    archive: &Path,
    issue: IssueId,
    sources: &[(String, String)],
) -> Result<(), ArchiveError> {
    let dest_dir = archive.join(issue.to_string());
    for (name, content) in sources {
        let from = sections.join(name);
        match std::fs::read(&from) {
            Ok(bytes) if bytes == content.as_bytes() => {}
            _ => continue,
        }
        std::fs::create_dir_all(&dest_dir).map_err(io("create", &dest_dir))?;
        let mut to = dest_dir.join(name);
        let mut n = 1;
        while to.exists() {
            to = dest_dir.join(format!("{name}.{n}"));
            n += 1;
        }
        move_file(&from, &to)?;
    }
    Ok(())
}

/// Moves `from` to `to`: renamed, or on another file system copied, made durable and
/// removed. A `from` that is gone by then was moved by another daemon archiving the same
/// issue (the issue itself is in the store): nothing is left to do.
fn move_file(from: &Path, to: &Path) -> Result<(), ArchiveError> {
    let gone = |e: &std::io::Error| {
        e.kind() == std::io::ErrorKind::NotFound && !std::fs::exists(from).unwrap_or(true)
    };
    if let Err(e) = std::fs::rename(from, to) {
        if gone(&e) {
            return Ok(());
        }
        // Another file system: copy, make it durable, then remove.
        match std::fs::copy(from, to) {
            Err(e) if gone(&e) => return Ok(()),
            copied => copied.map_err(io("archive", from))?,
        };
        std::fs::File::open(to)
            .and_then(|f| f.sync_all())
            .map_err(io("write", to))?;
        match std::fs::remove_file(from) {
            Err(e) if gone(&e) => {}
            removed => removed.map_err(io("remove", from))?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Several daemons sharing a store freeze one issue and each archives its files: a
    /// file another one moved between this one's look at it and its move is archived,
    /// not an error that fails the send (seen with three `send-now` at once).
    #[test]
    fn a_file_moved_away_meanwhile_by_another_daemon_is_already_archived() {
        let dir = std::env::temp_dir().join(format!("gazette-archive-race-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let result = move_file(&dir.join("01-introduction.md"), &dir.join("archived.md"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(result.is_ok(), "{result:?}");
    }
}
