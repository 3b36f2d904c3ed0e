//! The delivery core under every network sink: what a sink tells it ([`protocol`]), what it
//! does with that ([`deliver`]), and the one deadline every wait keeps ([`wait`]).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

pub(crate) mod deliver;
pub(crate) mod protocol;
pub(crate) mod wait;

pub(crate) use deliver::Delivery;
pub(crate) use protocol::{Batch, BatchState, Fate, Fault, Protocol, Reply};
pub(crate) use wait::Wait;

/// What the core needs besides the protocol.
#[derive(Debug, Clone)]
pub(crate) struct CoreOptions {
    /// Give up (exit 3) after this long without progress.
    pub(crate) deliver_timeout: Duration,
    /// At most this many events per second, on average.
    pub(crate) max_rate: Option<f64>,
    /// Set by a signal handler: stop waiting for receivers.
    pub(crate) stop: Option<Arc<AtomicBool>>,
    /// A batch still filling goes out once its first event waited this long (`--linger`), or
    /// as soon as the caller has no more input ready ([`crate::sink::Sink::flush`]).
    pub(crate) linger: Duration,
}
