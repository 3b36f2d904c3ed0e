//! Every wait of a sink ends by one deadline (`--deliver-timeout` since the last progress) or
//! at once when we are asked to stop: socket reads and writes block for short slices only,
//! and look at both between them.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The longest a socket call blocks before the deadline and the stop flag are looked at again.
pub(crate) const SLICE: Duration = Duration::from_millis(100);

/// A deadline that progress pushes back (while it [slides](Wait::slide)), and the stop flag
/// (set by SIGTERM).
#[derive(Debug, Clone)]
pub(crate) struct Wait {
    until: Instant,
    patience: Duration,
    slides: bool,
    stop: Option<Arc<AtomicBool>>,
}

impl Wait {
    /// A wait that ends `patience` from now unless progress pushes it back.
    pub(crate) fn new(patience: Duration, stop: Option<Arc<AtomicBool>>) -> Wait {
        Wait {
            until: Instant::now() + patience,
            patience,
            slides: true,
            stop,
        }
    }

    #[cfg(test)]
    pub(crate) fn until(&self) -> Instant {
        self.until
    }

    /// The receiver took something: the deadline starts again, if it slides.
    pub(crate) fn progress(&mut self) {
        if self.slides {
            self.restart();
        }
    }

    /// Whether [`Wait::progress`] pushes the deadline back: while all is well, a receiver
    /// that takes bytes is alive; after a fault only an acknowledgement counts (a receiver
    /// that accepts, takes a buffer's worth and closes must not keep us trying forever).
    pub(crate) fn slide(&mut self, slides: bool) {
        self.slides = slides;
    }

    /// Starts the deadline again, as after an acknowledgement.
    pub(crate) fn restart(&mut self) {
        self.until = Instant::now() + self.patience;
    }

    /// The same wait (the same stop flag), ending `d` from now at the latest, and not pushed
    /// back by progress: for one step that must not take the whole deadline.
    pub(crate) fn capped(&self, d: Duration) -> Wait {
        Wait {
            until: self.until.min(Instant::now() + d),
            slides: false,
            ..self.clone()
        }
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
    }

    /// Time left before the deadline: an error once it passed or a stop was asked for.
    pub(crate) fn left(&self) -> io::Result<Duration> {
        if self.stopped() {
            return Err(io::Error::other("stopped"));
        }
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "deadline (--deliver-timeout) passed",
            ));
        }
        Ok(left)
    }

    /// Time left, at most one [`SLICE`].
    pub(crate) fn slice(&self) -> io::Result<Duration> {
        Ok(self.left()?.min(SLICE))
    }

    /// Sleeps `d` (cut short by the deadline), in slices so that a stop is seen at once.
    pub(crate) fn sleep(&self, d: Duration) -> io::Result<()> {
        let end = Instant::now() + d;
        loop {
            let now = Instant::now();
            if now >= end {
                return Ok(());
            }
            sleep(self.slice()?.min(end - now));
        }
    }
}

/// `sock` read and written in slices: blocks until data moves, the deadline passes or a stop is
/// asked for. Each write that moved a byte pushes the deadline back; reads do not (a receiver
/// that talks without reading makes no progress).
pub(crate) struct Patient<'a> {
    pub(crate) sock: &'a TcpStream,
    pub(crate) wait: &'a mut Wait,
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

impl Read for Patient<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            self.sock.set_read_timeout(Some(self.wait.slice()?))?;
            match (&mut &*self.sock).read(buf) {
                Err(e) if timed_out(&e) => continue,
                read => return read,
            }
        }
    }
}

impl Write for Patient<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            self.sock.set_write_timeout(Some(self.wait.slice()?))?;
            match (&mut &*self.sock).write(buf) {
                Err(e) if timed_out(&e) => continue,
                Ok(n) => {
                    if n > 0 {
                        self.wait.progress();
                    }
                    return Ok(n);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_ends_a_sleep_at_once() {
        let stop = Arc::new(AtomicBool::new(true));
        let wait = Wait::new(Duration::from_secs(60), Some(stop));
        let start = Instant::now();
        assert!(wait.sleep(Duration::from_secs(10)).is_err());
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_capped_wait_ends_at_its_cap_or_the_deadline_whichever_comes_first() {
        let long = Wait::new(Duration::from_secs(60), None);
        let mut short = long.capped(Duration::from_millis(20));
        assert!(short.until() < long.until());
        short.progress();
        sleep(Duration::from_millis(30));
        assert!(short.left().is_err());
        assert!(long.left().is_ok());
        let near = Wait::new(Duration::from_millis(10), None);
        assert_eq!(near.capped(Duration::from_secs(60)).until(), near.until());
    }

    #[test]
    fn progress_pushes_the_deadline_back() {
        let mut wait = Wait::new(Duration::from_millis(50), None);
        let first = wait.until();
        sleep(Duration::from_millis(60));
        assert_eq!(
            wait.left().map_err(|e| e.kind()),
            Err(io::ErrorKind::TimedOut)
        );
        wait.progress();
        assert!(wait.until() > first);
        assert!(wait.left().is_ok());
        wait.slide(false);
        let fixed = wait.until();
        sleep(Duration::from_millis(5));
        wait.progress();
        assert_eq!(wait.until(), fixed);
    }
}
