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
    let io = |what, path: &Path| {
        let path = path.to_owned();
        move |source| ArchiveError::Io { what, path, source }
    };
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
        if std::fs::rename(&from, &to).is_err() {
            // Another file system: copy, make it durable, then remove.
            std::fs::copy(&from, &to).map_err(io("archive", &from))?;
            std::fs::File::open(&to)
                .and_then(|f| f.sync_all())
                .map_err(io("write", &to))?;
            std::fs::remove_file(&from).map_err(io("remove", &from))?;
        }
    }
    Ok(())
}
