//! Reading the sections folder: which files are sections, and which to leave alone.

use super::{ComposeError, Diagnostic};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A section file as read from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

impl SourceFile {
    /// The file's name, without its folder.
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// What a folder held: the readable section files and notes about the rest.
#[derive(Debug)]
pub struct Folder {
    pub files: Vec<SourceFile>,
    pub diagnostics: Vec<Diagnostic>,
    /// Section files modified too recently to be read yet.
    pub unsettled: Option<Unsettled>,
}

/// Section files saved a moment ago, probably still being written: not read yet, and not
/// missing either. They will have settled at `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsettled {
    pub files: Vec<PathBuf>,
    /// When the last of them will have been left alone for the settle time.
    pub until: SystemTime,
}

const SECTION_EXTENSIONS: [&str; 3] = ["md", "markdown", "txt"];

/// Files an editor's tools leave behind: never sections, never worth a warning.
fn is_editor_litter(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.ends_with(".tmp")
        || (name.starts_with('#') && name.ends_with('#'))
}

/// `1572864` → `1.5 MB`.
fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / f64::from(1 << 20)).replace(".0 MB", " MB")
}

/// Reads every section file in `dir`, in name order.
///
/// A file modified less than `settle_time` before `now` is probably still being written
/// (an editor saving, a sync client copying), so it is skipped with a warning and picked
/// up on the next read.
pub fn read_folder(
    dir: &Path,
    settle_time: Duration,
    max_size: u64,
    now: SystemTime,
) -> Result<Folder, ComposeError> {
    let folder_error = |source| ComposeError::Folder {
        path: dir.to_owned(),
        source,
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(folder_error)?
        .collect::<Result<_, _>>()
        .map_err(folder_error)?;
    entries.sort_by_key(|e| e.file_name());

    let mut files = Vec::new();
    let mut diagnostics = Vec::new();
    let mut unsettled: Option<Unsettled> = None;
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_editor_litter(&name) {
            tracing::debug!(file = %path.display(), "skipping hidden or temporary file");
            continue;
        }
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                diagnostics.push(Diagnostic::warning(
                    &path,
                    None,
                    format!("cannot read: {e}"),
                ));
                continue;
            }
        };
        if meta.is_dir() {
            continue;
        }
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if !SECTION_EXTENSIONS.contains(&ext.as_str()) {
            diagnostics.push(Diagnostic::warning(
                &path,
                None,
                "ignored: section files end in .md, .markdown or .txt",
            ));
            continue;
        }
        // A file dated in the future (a skewed clock) is read now: waiting for it to
        // settle could take forever.
        if let Ok(modified) = meta.modified()
            && modified <= now
        {
            let age = now.duration_since(modified).unwrap_or(Duration::ZERO);
            if age < settle_time {
                diagnostics.push(Diagnostic::warning(
                    &path,
                    None,
                    format!(
                        "skipped: modified {}s ago and may still be being written; it will be read once it has been left alone for {}s",
                        age.as_secs(),
                        settle_time.as_secs()
                    ),
                ));
                let until = modified + settle_time;
                let entry = unsettled.get_or_insert_with(|| Unsettled {
                    files: Vec::new(),
                    until,
                });
                entry.files.push(path);
                entry.until = entry.until.max(until);
                continue;
            }
        }
        // Read nothing of a file too large to send: a huge file would only cost memory.
        if meta.len() > max_size {
            diagnostics.push(Diagnostic::error(
                &path,
                None,
                format!(
                    "is {}; a section file may be at most {} ([content] max_section_size). Move long material to a web page and link to it",
                    megabytes(meta.len()),
                    megabytes(max_size)
                ),
            ));
            continue;
        }
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                diagnostics.push(Diagnostic::error(&path, None, format!("cannot read: {e}")));
                continue;
            }
        };
        match String::from_utf8(bytes) {
            Ok(text) => files.push(SourceFile { path, text }),
            Err(e) => {
                let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
                diagnostics.push(Diagnostic::error(
                    &path,
                    Some(line),
                    "is not UTF-8 text; save it as UTF-8",
                ));
            }
        }
    }
    Ok(Folder {
        files,
        diagnostics,
        unsettled,
    })
}
