//! `--jid-timezone auto`: the zone a master writes its jids in, read from the job folders' own
//! times. A master writes `.load.p` when it publishes (Salt 2019.2 and 3008 alike; the `jid`
//! file is rewritten at every return, so it tells the last return, not the publish), so a
//! jid read as UTC minus its `.load.p` mtime is the master's UTC offset, give or take the
//! moments between making the jid and writing the file. Zones are whole quarter hours.
//!
//! A copied cache (fresh mtimes, as a git clone of `testdata/` leaves them) gives offsets that
//! disagree from job to job, or no plausible offset at all. Then the cache's shapes may still
//! tell: a runner job's `.load.p` holding the runner's whole return is written only by Salt
//! 3006.3 and later (`salt/utils/job.py` `store_job` saves the return load of a job the
//! local cache has no load for; 3006.2 and 2019.2 leave runner jobs without `.load.p`), and
//! jids are UTC since Salt 3000 (`gen_jid` uses `utcnow`). Otherwise UTC, with one warning
//! saying how to set the zone: the jids could be a pre-3000 master's local time.

use std::path::{Path, PathBuf};

use chrono::FixedOffset;

use crate::msgpack;
use crate::time::{jid_instant, JidZone, SECOND};

/// How many of the newest jobs are asked.
const SAMPLES: usize = 20;
/// Between making the jid and writing `.load.p` (milliseconds on the real masters of
/// `testdata/`): far more than a busy master takes, far less than half a quarter hour.
const SLACK: i64 = 60 * SECOND;
/// How far one job's gap may stray from the others' and still agree.
const AGREE: i64 = 10 * SECOND;
const QUARTER_HOUR: i64 = 900 * SECOND;
/// Zones run from -12:00 to +14:00.
const WIDEST: i64 = 14 * 3600 * SECOND;
/// A jid this far ahead of its own `.load.p` is read in the wrong zone.
const FUTURE: i64 = 60 * SECOND;
/// How many jobs' `.load.p` are read for a sign of Salt 3006.3+, at most, and how big one
/// may be: the sign is in any runner job, and a copied cache is read once.
const PROOF_JOBS: usize = 1000;
const PROOF_BYTES: u64 = 1 << 20;

/// What the sampled jobs say about the master's zone.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No job with a jid and a `.load.p` (a fresh master).
    NoJobs,
    /// Three quarters of the jobs agree on this offset (seconds east of UTC).
    Offset(i32),
    /// The times do not tell one offset (a copied cache, a clock set meanwhile).
    Unclear,
}

/// The offset the `(jid read as UTC, .load.p mtime)` pairs agree on, both in microseconds:
/// three quarters of the jobs within [`AGREE`] of the median gap (a copy's mtimes are all
/// alike while its jids spread), and that gap within [`SLACK`] of a quarter hour.
pub(crate) fn verdict(samples: &[(i64, i64)]) -> Verdict {
    if samples.is_empty() {
        return Verdict::NoJobs;
    }
    let mut gaps: Vec<i64> = samples.iter().map(|&(jid, mtime)| jid - mtime).collect();
    gaps.sort_unstable();
    let median = gaps[gaps.len() / 2];
    let agreeing = gaps.iter().filter(|g| (*g - median).abs() <= AGREE).count();
    let quarter = (median as f64 / QUARTER_HOUR as f64).round() as i64 * QUARTER_HOUR;
    if agreeing * 4 < samples.len() * 3
        || (median - quarter).abs() > SLACK
        || quarter.abs() > WIDEST
    {
        return Verdict::Unclear;
    }
    Verdict::Offset(i32::try_from(quarter / SECOND).unwrap_or(0))
}

/// The zone to read jids in: `explicit` when given (warning when the newest jids then lie in
/// the future of their files), otherwise what the cache's times say, logged once at `-v`.
pub(crate) fn resolve(root: &Path, explicit: Option<JidZone>) -> JidZone {
    let loads = loads(root);
    let jobs = newest_jobs(&loads);
    let utc: Vec<(i64, i64)> = jobs
        .iter()
        .filter_map(|(jid, mtime)| Some((jid_instant(jid, JidZone::Utc)?, *mtime)))
        .collect();
    let zone = match explicit {
        Some(zone) => zone,
        None => match verdict(&utc) {
            Verdict::NoJobs => {
                log::debug!(
                    "jid zone: no jobs yet in {}, reading jids as UTC",
                    root.display()
                );
                JidZone::Utc
            }
            Verdict::Offset(secs) => {
                let offset = FixedOffset::east_opt(secs).expect("within a day");
                log::debug!(
                    "jid zone: the master writes jids at UTC{offset} (from the times of {} jobs in {})",
                    utc.len(),
                    root.display()
                );
                match secs {
                    0 => JidZone::Utc,
                    _ => JidZone::Fixed(offset),
                }
            }
            Verdict::Unclear => match utc_salt(&loads) {
                Some(load) => {
                    log::debug!(
                        "jid zone: UTC, as Salt 3000 and later write jids: {} is a runner's return \
                         load, which only Salt 3006.3 and later write (the times of the job \
                         folders do not tell)",
                        load.display()
                    );
                    JidZone::Utc
                }
                None => {
                    log::warn!(
                    "{}: the job folders' times do not tell the zone of the jids (a copied cache?): \
                     reading them as UTC; set --jid-timezone (utc for Salt 3000 and later, local \
                     or an offset like +05:30 for a 2019.2 master)",
                        root.display()
                    );
                    // One warning: the future check would only repeat it.
                    return JidZone::Utc;
                }
            },
        },
    };
    warn_future(root, &jobs, zone);
    zone
}

/// One warning when jids read in `zone` lie after their own `.load.p` by more than a minute.
fn warn_future(root: &Path, jobs: &[(String, i64)], zone: JidZone) {
    let ahead = jobs
        .iter()
        .filter_map(|(jid, mtime)| Some((jid, jid_instant(jid, zone)? - mtime)))
        .filter(|(_, ahead)| *ahead > FUTURE)
        .max_by_key(|(_, ahead)| *ahead);
    if let Some((jid, ahead)) = ahead {
        log::warn!(
            "{}: jid {jid} lies {} min in the future of its .load.p: the jids are not in the zone \
             given by --jid-timezone; set the master's zone (auto, local or an offset like +05:30)",
            root.display(),
            ahead / (60 * SECOND)
        );
    }
}

/// A `.load.p` of the first [`PROOF_JOBS`] that only Salt 3006.3 or later writes: a runner's
/// return load (`{id, tgt, jid, return, fun: "runner.…", user}`, testdata/FINDINGS.md 4).
fn utc_salt(loads: &[(i64, PathBuf)]) -> Option<PathBuf> {
    loads.iter().take(PROOF_JOBS).find_map(|(_, dir)| {
        let path = dir.join(".load.p");
        let buf = msgpack::read_file(&path, PROOF_BYTES).ok()?;
        let load = msgpack::decode(&buf).ok()?;
        let fun = msgpack::get(&load, "fun").and_then(msgpack::as_text)?;
        let runner = fun.starts_with("runner.") && msgpack::get(&load, "return").is_some();
        runner.then_some(path)
    })
}

/// The jids and `.load.p` mtimes (µs) of the newest jobs, by `.load.p` mtime.
fn newest_jobs(loads: &[(i64, PathBuf)]) -> Vec<(String, i64)> {
    loads
        .iter()
        .take(SAMPLES)
        .filter_map(|(mtime, dir)| {
            let text = std::fs::read_to_string(dir.join("jid")).ok()?;
            Some((text.trim().to_owned(), *mtime))
        })
        .collect()
}

/// Every job folder with a `.load.p`, and that file's mtime (µs), newest first.
fn loads(root: &Path) -> Vec<(i64, PathBuf)> {
    let mut loads: Vec<(i64, PathBuf)> = Vec::new();
    for prefix in dirs(root).filter(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.len() == 2 && n.bytes().all(|b| b.is_ascii_hexdigit()))
    }) {
        for dir in dirs(&prefix) {
            if let Some(mtime) = mtime_micros(&dir.join(".load.p")) {
                loads.push((mtime, dir));
            }
        }
    }
    loads.sort_unstable_by_key(|load| std::cmp::Reverse(load.0));
    loads
}

fn dirs(dir: &Path) -> impl Iterator<Item = PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
}

fn mtime_micros(path: &Path) -> Option<i64> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    let since = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(since.as_micros()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3600 * SECOND;

    #[test]
    fn a_utc_master_gives_offset_zero() {
        let t = 1_796_000_000 * SECOND;
        let samples = [
            (t, t + 3_000),
            (t + H, t + H + 200_000),
            (t + 2 * H, t + 2 * H + 5),
        ];
        assert_eq!(verdict(&samples), Verdict::Offset(0));
    }

    #[test]
    fn a_kolkata_master_gives_five_and_a_half_hours() {
        let t = 1_796_000_000 * SECOND;
        let off = 5 * H + H / 2;
        let samples = [(t + off, t + 2_000), (t + H + off, t + H + 900_000)];
        assert_eq!(verdict(&samples), Verdict::Offset(19_800));
    }

    #[test]
    fn a_copied_cache_is_unclear_and_an_empty_one_has_no_jobs() {
        let copied = 1_796_900_000 * SECOND;
        let t = 1_796_000_000 * SECOND;
        let samples = [(t, copied), (t + H, copied + 10), (t + 3 * H, copied + 20)];
        assert_eq!(verdict(&samples), Verdict::Unclear);
        // Copied a few hours after: each job gives another quarter hour.
        let soon = t + 5 * H;
        let samples = [(t, soon), (t + H, soon), (t + 2 * H, soon)];
        assert_eq!(verdict(&samples), Verdict::Unclear);
        assert_eq!(verdict(&[]), Verdict::NoJobs);
    }

    #[test]
    fn one_late_load_among_many_does_not_change_the_offset() {
        let t = 1_796_000_000 * SECOND;
        let mut samples: Vec<(i64, i64)> = (0..8).map(|i| (t + i * H, t + i * H + 10)).collect();
        // A runner's .load.p written at its end, 20 minutes later.
        samples.push((t + 9 * H, t + 9 * H + 20 * 60 * SECOND));
        assert_eq!(verdict(&samples), Verdict::Offset(0));
    }

    #[test]
    fn a_copy_of_jobs_a_minute_apart_is_unclear_whenever_it_was_made() {
        let t = 1_796_000_000 * SECOND;
        // Jids 50 s apart, copied 4 h 30 min later within one second: the gaps spread by 50 s.
        let copied = t + 4 * H + H / 2;
        let samples: Vec<(i64, i64)> = (0..5).map(|i| (t + i * 10 * SECOND, copied + i)).collect();
        assert_eq!(verdict(&samples), Verdict::Unclear);
    }
}
