//! The file transport: every message becomes an `.eml` file in the outbox folder.
//!
//! It is the default of a fresh checkout, so the whole pipeline runs without a mail
//! server. Files are named `<issue>/<subscriber id>.eml`: a resend after a crash
//! overwrites the same file instead of adding a second one, and each file is written to
//! a temporary name and renamed, so a reader never sees half a message. A write that
//! fails (a full disk, a read-only folder) removes its temporary file and is reported as
//! a local fault naming the folder: sending stops, and no recipient is charged with it.

use super::{OutgoingMessage, SendError, Transport};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes messages into `outbox_dir`.
#[derive(Debug, Clone)]
pub struct FileTransport {
    dir: PathBuf,
}

impl FileTransport {
    /// A transport writing into `dir` (created when the first message is written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Where the message for `subscriber_id` of `issue` goes.
    pub fn path_for(&self, issue: &str, subscriber_id: i64) -> PathBuf {
        self.dir.join(issue).join(format!("{subscriber_id}.eml"))
    }

    fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(
            ".{}.tmp",
            path.file_name().unwrap_or_default().to_string_lossy()
        ));
        let written = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(bytes)?;
            // On disk before it is renamed: "sent" in the ledger must mean the file exists.
            file.sync_all()?;
            drop(file);
            std::fs::rename(&tmp, path)
        })();
        if written.is_err() {
            // Half a message is worth nothing and would only fill the disk further.
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}

impl Transport for FileTransport {
    async fn send(&self, message: &OutgoingMessage) -> Result<(), SendError> {
        let path = self.path_for(&message.issue.to_string(), message.subscriber_id);
        let bytes = message.bytes.clone();
        let folder = path.parent().unwrap_or(&self.dir).display().to_string();
        let fault = move |e: &dyn std::fmt::Display| {
            SendError::Local(format!("cannot write to the outbox folder {folder}: {e}"))
        };
        tokio::task::spawn_blocking(move || Self::write(&path, &bytes))
            .await
            .map_err(|e| fault(&e))?
            .map_err(|e| fault(&e))
    }

    fn concurrency(&self) -> usize {
        4
    }
}
