//! The file transport: every message becomes an `.eml` file in the outbox folder.
//!
//! It is the default of a fresh checkout, so the whole pipeline runs without a mail
//! server. A message with a stable name (an issue: `<issue>/<subscriber id>.eml`) is
//! written under it, so a resend after a crash replaces the same file instead of adding
//! a second one. Any other message (a proof, a notice, a confirmation) gets a fresh name
//! that sorts by the time it was written, `<UTC time>-<process>-<n>.eml`, and never takes
//! the place of an earlier file. Each file is written to a temporary name first, so a
//! reader never sees half a message. A write that fails (a full disk, a read-only folder)
//! removes its temporary file and is reported as a local fault naming the folder: sending
//! stops, and no recipient is charged with it.

use super::{OutgoingMessage, SendError, Transport};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes messages into `outbox_dir`.
#[derive(Debug, Clone)]
pub struct FileTransport {
    dir: PathBuf,
}

/// Where a message goes: its stable path, or a fresh one in a folder.
enum Target {
    Replace(PathBuf),
    Fresh(PathBuf),
}

impl FileTransport {
    /// A transport writing into `dir` (created when the first message is written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Where the message named `name` goes.
    pub fn path_for(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.eml"))
    }

    /// A name no other message of this process has, sorting by time.
    fn fresh_name() -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}-{}-{n:06}.eml",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ"),
            std::process::id()
        )
    }

    /// Writes `bytes` to a temporary file in `dir`, on disk before it is given its name.
    fn write_temporary(dir: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(bytes)?;
            // On disk before it is named: "sent" in the ledger must mean the file exists.
            file.sync_all()
        })();
        match written {
            Ok(()) => Ok(tmp),
            Err(e) => {
                // Half a message is worth nothing and would only fill the disk further.
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    fn write(target: &Target, bytes: &[u8]) -> std::io::Result<()> {
        let dir = match target {
            Target::Replace(path) => path.parent().unwrap_or(Path::new(".")),
            Target::Fresh(dir) => dir,
        };
        let tmp = Self::write_temporary(dir, bytes)?;
        let named = match target {
            Target::Replace(path) => std::fs::rename(&tmp, path),
            // A link fails rather than replace a file that is already there (another
            // process's message of the same microsecond): then take the next name.
            Target::Fresh(dir) => loop {
                match std::fs::hard_link(&tmp, dir.join(Self::fresh_name())) {
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    linked => break linked.and_then(|()| std::fs::remove_file(&tmp)),
                }
            },
        };
        if named.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        named
    }
}

impl Transport for FileTransport {
    async fn send(&self, message: &OutgoingMessage) -> Result<(), SendError> {
        let target = match &message.name {
            Some(name) => Target::Replace(self.path_for(name)),
            None => Target::Fresh(self.dir.clone()),
        };
        let folder = match &target {
            Target::Replace(path) => path.parent().unwrap_or(&self.dir),
            Target::Fresh(dir) => dir,
        }
        .display()
        .to_string();
        let bytes = message.bytes.clone();
        let fault = move |e: &dyn std::fmt::Display| {
            SendError::Local(format!("cannot write to the outbox folder {folder}: {e}"))
        };
        tokio::task::spawn_blocking(move || Self::write(&target, &bytes))
            .await
            .map_err(|e| fault(&e))?
            .map_err(|e| fault(&e))
    }

    fn concurrency(&self) -> usize {
        4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder of its own under the system's temporary folder, removed afterwards.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!(
                "gazette-file-transport-{}-{}",
                std::process::id(),
                chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn message(name: Option<&str>, body: &str) -> OutgoingMessage {
        let envelope = lettre::address::Envelope::new(
            Some("from@example.org".parse().unwrap()),
            vec!["to@example.org".parse().unwrap()],
        )
        .unwrap();
        OutgoingMessage {
            envelope,
            bytes: body.as_bytes().to_vec(),
            name: name.map(str::to_owned),
        }
    }

    fn files(dir: &Path) -> Vec<(String, String)> {
        let mut out: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let path = e.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&path).unwrap())
            })
            .collect();
        out.sort();
        out
    }

    #[tokio::test]
    async fn a_named_message_replaces_its_file_and_others_each_get_their_own() {
        let dir = Scratch::new();
        let t = FileTransport::new(dir.path());
        t.send(&message(Some("2021-09-01/7"), "first"))
            .await
            .unwrap();
        t.send(&message(Some("2021-09-01/7"), "again"))
            .await
            .unwrap();
        assert_eq!(
            files(&dir.path().join("2021-09-01")),
            [("7.eml".to_owned(), "again".to_owned())]
        );

        let side = dir.path().join("notices");
        let t = FileTransport::new(&side);
        for body in ["one", "two", "three"] {
            t.send(&message(None, body)).await.unwrap();
        }
        let written = files(&side);
        let bodies: Vec<_> = written.iter().map(|(_, b)| b.as_str()).collect();
        assert_eq!(
            bodies,
            ["one", "two", "three"],
            "sorted by name = by time: {written:?}"
        );
        assert!(
            written.iter().all(|(n, _)| n.ends_with(".eml")),
            "{written:?}"
        );
    }
}
