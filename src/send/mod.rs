//! Send: the delivery engine, from the ledger to the recipients' servers.
//!
//! - [`Transport`] is the boundary: one required method, errors that say whether a
//!   failure is the recipient's (transient, permanent), a request to slow down, an
//!   unknown outcome, or a fault of the relay or of this machine. Beside it:
//!   [`FileTransport`] (`.eml` files, the default), [`SmtpTransport`] (lettre over our own
//!   TCP_NODELAY sockets, a pool, TLS, AUTH, timeouts), [`RelayPool`] (several relays by
//!   priority and weight, a failed one backed off) and [`StubTransport`] (tests).
//! - [`MessageFactory`] makes each recipient's message from a frozen issue.
//! - [`RetryPolicy`] decides what a result means for a ledger row.
//! - [`DeliveryWorker`] drives it: `try_once(now) -> Outcome` and `run_until_stopped`,
//!   claiming each batch's rows so several workers share one ledger, backing the relay
//!   off as a whole when it fails and stopping within a grace.

mod configured;
mod file;
mod message;
mod policy;
mod pool;
mod relay_size;
mod smtp;
mod smtp_data;
mod stub;
mod transport;
mod worker;

pub use configured::ConfiguredTransport;
pub use file::FileTransport;
pub use message::{MessageError, MessageFactory, dkim_signer};
pub use policy::RetryPolicy;
pub use pool::RelayPool;
pub use relay_size::announced_size;
pub use smtp::{RelayProbe, SmtpTransport, StartTlsProbe};
pub use stub::StubTransport;
pub use transport::{OutgoingMessage, SendError, Transport};
pub use worker::{BatchReport, DeliveryWorker, Outcome, ROWS_PER_CONNECTION, RunEnd, WorkerError};
