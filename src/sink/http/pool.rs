//! The HTTP sinks' keep-alive connections, closed when idle: ureq's agent keeps a finished
//! connection for the next request but never lets one go on its own, so a quiet `watch` would
//! hold it until the server's idle timeout cut it, and the server logs that as an error (Fluent
//! Bit: "timed out after 10 seconds"). Here a small thread drops the agent, and with it every
//! pooled connection (a FIN from our side), once no request ran for [`IDLE_CLOSE`]; the next
//! request opens a fresh one. That costs a connect (and a TLS handshake) per request only when
//! requests are more than five seconds apart.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// An idle connection is closed after this long: before the usual server idle timeouts
/// (Fluent Bit 10 s, Go's and Elasticsearch's longer), and long enough that a steady stream
/// keeps its connection.
pub(crate) const IDLE_CLOSE: Duration = Duration::from_secs(5);

/// How often the closing thread looks.
const TICK: Duration = Duration::from_millis(250);

/// One agent at a time, made anew after an idle spell.
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    make: Box<dyn Fn() -> ureq::Agent + Send + Sync>,
    state: Mutex<State>,
}

struct State {
    agent: ureq::Agent,
    /// Requests not finished yet (a request's helper thread may outlive its caller's wait).
    in_flight: usize,
    /// When the last request finished, while the agent may hold a connection.
    idle_since: Option<Instant>,
}

impl Pool {
    /// A pool of the agents `make` builds.
    pub(crate) fn new(make: impl Fn() -> ureq::Agent + Send + Sync + 'static) -> Pool {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                agent: make(),
                in_flight: 0,
                idle_since: None,
            }),
            make: Box::new(make),
        });
        let weak = Arc::downgrade(&shared);
        // Ends within a tick of the pool's end.
        let _ = std::thread::Builder::new()
            .name("http-idle".into())
            .spawn(move || close_when_idle(&weak));
        Pool { shared }
    }

    /// The agent for one request; [`Pool::done`] must follow when it finished.
    pub(crate) fn start(&self) -> ureq::Agent {
        let mut state = self.shared.lock();
        state.in_flight += 1;
        state.agent.clone()
    }

    /// A handle that marks the end of a request started with [`Pool::start`].
    pub(crate) fn ender(&self) -> Ender {
        Ender(self.shared.clone())
    }
}

/// Ends a request: its connection, kept by the agent, starts its idle time.
pub(crate) struct Ender(Arc<Shared>);

impl Ender {
    pub(crate) fn done(self) {
        let mut state = self.0.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        state.idle_since = Some(Instant::now());
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }
}

/// Replaces the agent (dropping its idle connections) whenever no request ran for
/// [`IDLE_CLOSE`]; returns when the pool is gone.
fn close_when_idle(shared: &Weak<Shared>) {
    loop {
        std::thread::sleep(TICK);
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let stale = {
            let mut state = shared.lock();
            let idle =
                state.in_flight == 0 && state.idle_since.is_some_and(|t| t.elapsed() >= IDLE_CLOSE);
            if !idle {
                continue;
            }
            state.idle_since = None;
            // Built under the lock: a request never gets the old agent after this.
            std::mem::replace(&mut state.agent, (shared.make)())
        };
        log::debug!(
            "closing HTTP connections idle for {} s",
            IDLE_CLOSE.as_secs()
        );
        drop(stale);
    }
}
