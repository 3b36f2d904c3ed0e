//! The "Exit status" part of each command's `--help`, one per command, each saying what its
//! man page's EXIT STATUS says (man/src/saltship-*.1.in), shorter.

/// `saltship --help`: every command's statuses in one list.
pub(super) const ALL: &str = "\
Exit status (each command's --help says its own):
  0  done; for sync and watch also when another saltship holds the state file's lock (it says
     so; -q silences it), and backfill then ships without recording; for check: every check passed
  1  finished, but some cache files could not be read (each was named in a warning), or the
     receiver refused some events for good, or sync could not write --metrics-file; for
     check: some check failed
  2  usage or configuration error (bad option, a cache folder that is not a Salt job cache,
     unreadable state file)
  3  could not deliver the events, or could not save the checkpoint";

pub(super) const WATCH: &str = "\
Exit status (watch runs until SIGTERM or SIGINT; a receiver that stays away does not end it):
  0  stopped by SIGTERM or SIGINT after confirming what was sent and saving the checkpoint,
     or while standing by (another saltship holds the state file's lease), and after --dry-run
     printed the catch-up
  1  stopped as for 0, but some cache files could not be read meanwhile (each named in a warning)
  2  usage or configuration error at start (bad option, a cache folder that is missing or not
     a Salt job cache, unreadable state file)
  3  could not save the checkpoint (state folder full or read-only): watch stops rather than
     ship again and again what it cannot record; or another saltship took over its lease while
     it hung: it stops before writing the checkpoint";

pub(super) const SYNC: &str = "\
Exit status:
  0  done: everything new was delivered and recorded, or there was nothing new; also when
     another saltship holds the state file's lock (it says so; -q silences it)
  1  finished, but some cache files could not be read (each named in a warning; tried again
     next run), or the receiver refused some events for good, or --metrics-file could not be
     written
  2  usage or configuration error, also under --dry-run (bad option, a cache folder that is
     missing or not a Salt job cache, unreadable state file, a read-only state folder at start)
  3  could not deliver (no acknowledgement within --deliver-timeout, or a bad token,
     certificate or credentials on every target, or a Kafka topic that does not exist), or
     could not save the checkpoint (state folder full): what was not recorded ships next run";

pub(super) const BACKFILL: &str = "\
Exit status:
  0  done: every event was delivered (or printed) and recorded; also when another saltship
     (a running watch) holds the state file's lock: backfill then ships without recording
  1  finished, but some cache files could not be read (each named in a warning; tried again
     next run), or the receiver refused some events for good
  2  usage or configuration error, also under --dry-run (bad option, a cache folder that is
     missing or not a Salt job cache, unreadable state file)
  3  could not deliver (no acknowledgement within --deliver-timeout, or a bad token,
     certificate or credentials on every target, or a Kafka topic that does not exist; it says
     from which job on), or could not save the checkpoint (state folder full or read-only)";

pub(super) const CHECK: &str = "\
Exit status:
  0  every check passed
  1  some check failed (its line says what to fix)
  2  usage or configuration error (bad option)";
