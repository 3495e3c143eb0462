//! A test double for [`Transport`]: records what it was given and answers as scripted.

use super::{OutgoingMessage, SendError, Transport};
use std::collections::HashMap;
use std::sync::Mutex;

/// Accepts every message, except for recipients given a scripted answer.
#[derive(Debug, Default)]
pub struct StubTransport {
    sent: Mutex<Vec<OutgoingMessage>>,
    /// Per recipient address: errors to return, one per attempt, before accepting.
    script: Mutex<HashMap<String, Vec<SendError>>>,
}

impl StubTransport {
    /// A stub that accepts everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next attempts for `address` fail with `errors`, in order; later ones succeed.
    pub fn fail(&self, address: &str, errors: Vec<SendError>) {
        let mut script = self.script.lock().expect("stub lock");
        let mut errors = errors;
        errors.reverse();
        script.insert(address.to_owned(), errors);
    }

    /// The messages accepted so far.
    pub fn sent(&self) -> Vec<OutgoingMessage> {
        self.sent.lock().expect("stub lock").clone()
    }
}

impl Transport for StubTransport {
    async fn send(&self, message: &OutgoingMessage) -> Result<(), SendError> {
        let failure = {
            let mut script = self.script.lock().expect("stub lock");
            message
                .envelope
                .to()
                .iter()
                .find_map(|to| script.get_mut(AsRef::<str>::as_ref(to)).and_then(Vec::pop))
        };
        match failure {
            Some(e) => Err(e),
            None => {
                self.sent.lock().expect("stub lock").push(message.clone());
                Ok(())
            }
        }
    }

    fn concurrency(&self) -> usize {
        4
    }
}
