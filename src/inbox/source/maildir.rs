//! A local Maildir folder: new mail in `new/`, handled mail filed away.
//!
//! Processed messages move to the Maildir++ subfolder `.<processed>/cur/` with the seen
//! flag (`:2,S`); messages for a person move to `cur/` with no flags, which every Maildir
//! reader (Dovecot included) shows as unread. Renames within one file system are atomic,
//! so a crash leaves each file in one place or the other.

use super::{Disposition, MAX_MESSAGE_BYTES, MessageRef, SourceError, Waiting};
use std::collections::VecDeque;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A Maildir and the name of its processed subfolder.
#[derive(Debug)]
pub struct MaildirSource {
    root: PathBuf,
    processed: String,
    waiting: VecDeque<(String, u64)>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SourceError + '_ {
    move |source| SourceError::Maildir {
        path: path.display().to_string(),
        source,
    }
}

impl MaildirSource {
    /// A source reading `root` (created with `new/`, `cur/` and `tmp/` if missing).
    pub fn new(root: impl Into<PathBuf>, processed: &str) -> Self {
        Self {
            root: root.into(),
            processed: processed.trim_start_matches('.').to_owned(),
            waiting: VecDeque::new(),
        }
    }

    fn processed_dir(&self) -> PathBuf {
        self.root.join(format!(".{}", self.processed))
    }

    fn ensure_layout(&self) -> Result<(), SourceError> {
        for dir in [self.root.clone(), self.processed_dir()] {
            for sub in ["new", "cur", "tmp"] {
                let path = dir.join(sub);
                std::fs::create_dir_all(&path).map_err(io_err(&path))?;
            }
        }
        let marker = self.processed_dir().join("maildirfolder");
        if !marker.exists() {
            std::fs::write(&marker, b"").map_err(io_err(&marker))?;
        }
        Ok(())
    }

    pub(super) fn start_poll(&mut self) -> Result<usize, SourceError> {
        self.ensure_layout()?;
        let new = self.root.join("new");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&new).map_err(io_err(&new))? {
            let entry = entry.map_err(io_err(&new))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Dot files are not messages; names that are not valid UTF-8 cannot be
            // ours to rename reliably, and no delivery agent makes them.
            if name.starts_with('.') || entry.file_name().to_str().is_none() {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_file() {
                names.push((name, meta.len()));
            }
        }
        // Maildir names start with the delivery time, so this is roughly arrival order.
        names.sort();
        self.waiting = names.into();
        Ok(self.waiting.len())
    }

    pub(super) fn next_batch(&mut self) -> Result<Vec<Waiting>, SourceError> {
        let n = super::first_batch_len(self.waiting.iter().map(|(_, size)| *size as usize));
        let mut batch = Vec::with_capacity(n);
        for (name, _) in self.waiting.drain(..n) {
            let path = self.root.join("new").join(&name);
            let file = match std::fs::File::open(&path) {
                Ok(f) => f,
                // Someone else (a mail client) took it meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&path)(e)),
            };
            let mut raw = Vec::new();
            file.take(MAX_MESSAGE_BYTES as u64 + 1)
                .read_to_end(&mut raw)
                .map_err(io_err(&path))?;
            let truncated = raw.len() > MAX_MESSAGE_BYTES;
            raw.truncate(MAX_MESSAGE_BYTES);
            batch.push(Waiting {
                at: MessageRef::Maildir(name),
                raw,
                truncated,
            });
        }
        Ok(batch)
    }

    pub(super) fn dispose(
        &mut self,
        done: &[(MessageRef, Disposition)],
    ) -> Result<(), SourceError> {
        for (at, disposition) in done {
            let MessageRef::Maildir(name) = at else {
                continue;
            };
            let from = self.root.join("new").join(name);
            // A name may already carry an info part if someone put it in new/ by hand.
            let base = name.split_once(":2,").map_or(name.as_str(), |(b, _)| b);
            let to = match disposition {
                Disposition::Processed => {
                    self.processed_dir().join("cur").join(format!("{base}:2,S"))
                }
                Disposition::ForAPerson => self.root.join("cur").join(format!("{base}:2,")),
            };
            match std::fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&from)(e)),
            }
        }
        Ok(())
    }
}
