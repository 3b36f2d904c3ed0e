//! `--dry-run`: events go to stdout through one buffered writer; confirming is flushing.

use std::io::{self, BufWriter, Stdout, Write};

use super::{Keys, Sink, SinkError, SinkStats};

pub(crate) struct StdoutSink {
    out: BufWriter<Stdout>,
    stats: SinkStats,
    /// Bytes sent since the last flush.
    unflushed: usize,
}

impl StdoutSink {
    pub(crate) fn new() -> StdoutSink {
        StdoutSink {
            out: BufWriter::with_capacity(1 << 16, io::stdout()),
            stats: SinkStats::default(),
            unflushed: 0,
        }
    }
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self::new()
    }
}

fn error(e: io::Error) -> SinkError {
    if e.kind() == io::ErrorKind::BrokenPipe {
        SinkError::Closed
    } else {
        SinkError::Io(e)
    }
}

impl Sink for StdoutSink {
    fn send(&mut self, bytes: &[u8], keys: &[Keys]) -> Result<(), SinkError> {
        self.out.write_all(bytes).map_err(error)?;
        self.unflushed += bytes.len();
        self.stats.events_sent += keys.len() as u64;
        Ok(())
    }

    fn confirm(&mut self) -> Result<(), SinkError> {
        self.unflushed = 0;
        self.out.flush().map_err(error)
    }

    fn unconfirmed(&self) -> usize {
        self.unflushed
    }

    fn stats(&self) -> SinkStats {
        self.stats
    }
}
