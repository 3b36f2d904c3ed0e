//! Pure: every job in the cache as the fleet gauges see it (its function, when it was published,
//! which minions it targeted and which returned), and what that says per minion: its last
//! return, the jobs it missed, how many of its latest jobs in a row. Any job counts (`cmd.run`,
//! `test.ping`...), not only state runs; `saltutil.find_job` (the CLI's own polling) counts for
//! returns only, as job events skip it.
//!
//! What it costs: bytes per minion and job, not kilobytes. A name is stored once (an id of 4
//! bytes); a job's targeted set is shared with every other job that targeted the same minions
//! (`salt '*'` every hour targets one fleet); a job's returns are one bit per targeted minion.
//! 500 jobs of 2,000 minions hold about 2,000 names, one set of 8 KB and 500 x 250 bytes of bits.
//!
//! The rule for a miss is the job events' (docs/events.md "When"): a job is final once its
//! `.load.p` and `.minions.p` were read and every targeted minion returned, or `--return-wait`
//! passed since its publish; then each targeted minion without a return missed it. A return is a minion folder in the job folder: Salt makes
//! it right before it writes `return.p` into it, and its creation is what changes the job
//! folder's mtime, which tells when a job needs listing again.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use crate::time::SECOND;

/// The funs given a label of their own in `saltship_jobs`; the rest are `fun="other"`.
pub(crate) const TOP_FUNS: usize = 20;
/// The CLI's own polling of a running job: no job of its own for the gauges (job events skip
/// it too), but its returns show the minion is alive.
const POLLING: &str = "saltutil.find_job";

/// Names stored once, by a small id.
#[derive(Debug, Default, Clone)]
struct Names {
    by_id: Vec<Arc<str>>,
    ids: HashMap<Arc<str>, u32>,
}

impl Names {
    fn id(&mut self, name: &str) -> u32 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = u32::try_from(self.by_id.len()).expect("fewer than 4 billion names");
        let name: Arc<str> = name.into();
        self.by_id.push(name.clone());
        self.ids.insert(name, id);
        id
    }
}

/// One job folder as read from the cache, for [`Census::put`].
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Facts {
    pub(crate) jid: String,
    /// Microseconds since the epoch.
    pub(crate) publish: Option<i64>,
    /// `fun` (a multi-function job's joined by commas); `None` without a `.load.p`.
    pub(crate) fun: Option<String>,
    /// The targeted minions (`.minions.p`, empty without one).
    pub(crate) targeted: Vec<String>,
    /// The minion folders.
    pub(crate) returned: Vec<String>,
    /// The job folder's mtime (ns) when it was listed, if old enough to trust: unchanged, the
    /// folder needs no listing again.
    pub(crate) mtime: Option<i64>,
    /// Its `.load.p` and `.minions.p` were read (or the job is too old for them to come):
    /// only its returns can change.
    pub(crate) whole: bool,
}

#[derive(Debug, Clone)]
struct Entry {
    jid: Box<str>,
    publish: Option<i64>,
    /// An id in `funs`; `None` when unknown.
    fun: Option<u32>,
    polling: bool,
    /// Sorted ids, shared between jobs.
    targeted: Arc<[u32]>,
    /// Bit i: `targeted[i]` returned.
    returned: Box<[u64]>,
    /// Returned without being targeted (no `.minions.p`): sorted ids.
    extra: Box<[u32]>,
    mtime: Option<i64>,
    whole: bool,
}

impl Entry {
    fn complete(&self) -> bool {
        let n = self.targeted.len();
        (0..n).all(|i| self.returned[i / 64] & (1 << (i % 64)) != 0)
    }

    /// Whether its misses are final at `now`, with `wait` for the minions: as a job event's
    /// (docs/events.md "When"), a job caught before its `.load.p` and `.minions.p` is not
    /// complete, however few it names.
    fn is_final(&self, now: i64, wait: i64) -> bool {
        self.publish.is_none_or(|p| now >= p.saturating_add(wait))
            || (self.whole && self.complete())
    }
}

/// Every job folder in the cache, by its key.
#[derive(Debug, Default, Clone)]
pub(crate) struct Census {
    names: Names,
    funs: Names,
    sets: HashSet<Arc<[u32]>>,
    jobs: BTreeMap<Box<str>, Entry>,
}

/// What the census says of one minion.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Minion {
    pub(crate) name: Arc<str>,
    /// The publish time (seconds) of the newest job it returned to.
    pub(crate) last_return: Option<f64>,
    /// Whether it returned to any job in the cache.
    pub(crate) returned: bool,
    /// Final jobs in the cache that targeted it and got no return from it.
    pub(crate) missed: u64,
    /// Of the final jobs that targeted it, how many of the newest it missed in a row.
    pub(crate) missed_in_a_row: u64,
}

/// The census summed up at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Summary {
    /// Every minion a job targeted or got a return from, by name.
    pub(crate) minions: Vec<Minion>,
    /// Jobs by fun: the [`TOP_FUNS`] most frequent, then `other` (and `unknown` without a
    /// `.load.p`), polling jobs left out.
    pub(crate) jobs: Vec<(String, u64)>,
}

impl Census {
    /// The job folder `key`'s mtime when last listed (`None`: listed, but too fresh to trust),
    /// and whether it was read whole (its `.load.p` and `.minions.p` were there: a folder is
    /// made before them); `None` for a job not known.
    pub(crate) fn listed_at(&self, key: &str) -> Option<(Option<i64>, bool)> {
        self.jobs.get(key).map(|e| (e.mtime, e.whole))
    }

    /// Takes a job folder read whole.
    pub(crate) fn put(&mut self, key: &str, facts: Facts) {
        let targeted = self.set(&facts.targeted);
        let (returned, extra) = self.bits(&targeted, &facts.returned);
        let polling = facts
            .fun
            .as_deref()
            .is_some_and(|f| f.split(',').any(|f| f == POLLING));
        let entry = Entry {
            jid: facts.jid.into(),
            publish: facts.publish,
            fun: facts.fun.map(|f| self.funs.id(&f)),
            polling,
            targeted,
            returned,
            extra,
            mtime: facts.mtime,
            whole: facts.whole,
        };
        self.jobs.insert(key.into(), entry);
        self.forget_sets();
    }

    /// Takes a known job folder listed again: its minion folders now (`returned`), and its
    /// mtime when listed (see [`Facts::mtime`]).
    pub(crate) fn relisted(&mut self, key: &str, returned: &[String], mtime: Option<i64>) {
        let Some(targeted) = self.jobs.get(key).map(|e| e.targeted.clone()) else {
            return;
        };
        let (bits, extra) = self.bits(&targeted, returned);
        if let Some(e) = self.jobs.get_mut(key) {
            e.returned = bits;
            e.extra = extra;
            e.mtime = mtime;
        }
    }

    /// `returned` as bits over `targeted`, and the ids of the others.
    fn bits(&mut self, targeted: &[u32], returned: &[String]) -> (Box<[u64]>, Box<[u32]>) {
        let mut bits = vec![0u64; targeted.len().div_ceil(64)].into_boxed_slice();
        let mut extra = Vec::new();
        for name in returned {
            let id = self.names.id(name);
            match targeted.binary_search(&id) {
                Ok(i) => bits[i / 64] |= 1 << (i % 64),
                Err(_) => extra.push(id),
            }
        }
        extra.sort_unstable();
        extra.dedup();
        (bits, extra.into())
    }

    /// The shared set of `names`' ids.
    fn set(&mut self, names: &[String]) -> Arc<[u32]> {
        let mut ids: Vec<u32> = names.iter().map(|n| self.names.id(n)).collect();
        ids.sort_unstable();
        ids.dedup();
        if let Some(shared) = self.sets.get(ids.as_slice()) {
            return shared.clone();
        }
        let shared: Arc<[u32]> = ids.into();
        self.sets.insert(shared.clone());
        shared
    }

    /// Drops the sets no job uses any more.
    fn forget_sets(&mut self) {
        self.sets.retain(|s| Arc::strong_count(s) > 1);
    }

    /// Forgets the jobs not in `keys` (the master cleaned them up); returns how many.
    pub(crate) fn retain(&mut self, keys: &BTreeSet<&str>) -> usize {
        let before = self.jobs.len();
        self.jobs.retain(|k, _| keys.contains(&**k));
        self.forget_sets();
        self.compact();
        before - self.jobs.len()
    }

    /// The jobs whose misses are not final at `now` (their folders may still change), as
    /// [`Census::listed_at`] tells of them.
    pub(crate) fn open(&self, now: i64, wait: i64) -> Vec<(String, Option<i64>, bool)> {
        self.jobs
            .iter()
            .filter(|(_, e)| !e.is_final(now, wait))
            .map(|(k, e)| (k.to_string(), e.mtime, e.whole))
            .collect()
    }

    /// Each minion's returns and misses, and the jobs by fun, at `now`.
    pub(crate) fn summary(&self, now: i64, wait: i64) -> Summary {
        #[derive(Clone, Copy, Default)]
        struct Row {
            seen: bool,
            returned: bool,
            last: Option<i64>,
            missed: u64,
            in_a_row: u64,
        }
        let mut rows = vec![Row::default(); self.names.by_id.len()];
        let mut order: Vec<&Entry> = self.jobs.values().collect();
        order.sort_by(|a, b| a.jid.cmp(&b.jid));
        let mut by_fun: HashMap<Option<u32>, u64> = HashMap::new();
        for e in order {
            let returned = |row: &mut Row| {
                row.seen = true;
                row.returned = true;
                row.in_a_row = 0;
                if e.publish.is_some() {
                    row.last = row.last.max(e.publish);
                }
            };
            for id in e.extra.iter() {
                returned(&mut rows[*id as usize]);
            }
            let is_final = e.is_final(now, wait);
            for (i, id) in e.targeted.iter().enumerate() {
                let row = &mut rows[*id as usize];
                if e.returned[i / 64] & (1 << (i % 64)) != 0 {
                    returned(row);
                } else if !e.polling {
                    row.seen = true;
                    if is_final {
                        row.missed += 1;
                        row.in_a_row += 1;
                    }
                }
            }
            if !e.polling {
                *by_fun.entry(e.fun).or_default() += 1;
            }
        }
        let mut minions: Vec<Minion> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.seen)
            .map(|(id, r)| Minion {
                name: self.names.by_id[id].clone(),
                last_return: r.last.map(|t| t as f64 / SECOND as f64),
                returned: r.returned,
                missed: r.missed,
                missed_in_a_row: r.in_a_row,
            })
            .collect();
        minions.sort_by(|a, b| a.name.cmp(&b.name));
        Summary {
            minions,
            jobs: self.top_funs(by_fun),
        }
    }

    /// The most frequent funs by name, then `other` for the rest.
    fn top_funs(&self, by_fun: HashMap<Option<u32>, u64>) -> Vec<(String, u64)> {
        let mut counted: Vec<(String, u64)> = by_fun
            .into_iter()
            .map(|(f, n)| {
                let name = f.map_or("unknown".into(), |f| {
                    self.funs.by_id[f as usize].to_string()
                });
                (name, n)
            })
            .collect();
        counted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut top: BTreeMap<String, u64> = BTreeMap::new();
        for (i, (name, n)) in counted.into_iter().enumerate() {
            let label = if i < TOP_FUNS { name } else { "other".into() };
            *top.entry(label).or_default() += n;
        }
        top.into_iter().collect()
    }

    /// Stores the names anew once most of them belong to no job any more (minions renamed or
    /// retired, funs gone): a long-running `watch` keeps what its cache holds, not every name
    /// it ever saw.
    fn compact(&mut self) {
        let mut used: BTreeSet<u32> = self.sets.iter().flat_map(|s| s.iter().copied()).collect();
        used.extend(self.jobs.values().flat_map(|e| e.extra.iter().copied()));
        let funs: BTreeSet<u32> = self.jobs.values().filter_map(|e| e.fun).collect();
        if self.names.by_id.len() <= 2 * used.len() + 1024
            && self.funs.by_id.len() <= 2 * funs.len() + 1024
        {
            return;
        }
        // New ids in the order of the old ones: sorted sets stay sorted, and each job's bits
        // keep pointing at the same minions.
        let (mut names, mut new_funs) = (Names::default(), Names::default());
        let old = std::mem::take(&mut self.names);
        let old_funs = std::mem::take(&mut self.funs);
        let new: HashMap<u32, u32> = used
            .iter()
            .map(|id| (*id, names.id(&old.by_id[*id as usize])))
            .collect();
        let remap = |ids: &[u32]| -> Arc<[u32]> { ids.iter().map(|id| new[id]).collect() };
        let mut sets: HashMap<*const [u32], Arc<[u32]>> = HashMap::new();
        for e in self.jobs.values_mut() {
            let targeted = sets
                .entry(Arc::as_ptr(&e.targeted))
                .or_insert_with(|| remap(&e.targeted));
            e.targeted = targeted.clone();
            e.extra = remap(&e.extra).iter().copied().collect();
            e.fun = e.fun.map(|f| new_funs.id(&old_funs.by_id[f as usize]));
        }
        self.names = names;
        self.funs = new_funs;
        self.sets = sets.into_values().collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: i64 = 600 * SECOND;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// A job published at `t` seconds, targeting `targeted` (None: no `.minions.p`).
    fn job(t: i64, fun: &str, targeted: Option<&[&str]>, returned: &[&str]) -> Facts {
        Facts {
            jid: format!("2026120300{t:04}000000"),
            publish: Some(t * SECOND),
            fun: Some(fun.into()),
            targeted: targeted.map(names).unwrap_or_default(),
            returned: names(returned),
            mtime: None,
            whole: true,
        }
    }

    fn minion<'s>(s: &'s Summary, name: &str) -> &'s Minion {
        s.minions
            .iter()
            .find(|m| &*m.name == name)
            .unwrap_or_else(|| panic!("{name} in {s:?}"))
    }

    #[test]
    fn misses_count_once_final_and_in_a_row_back_to_the_last_return() {
        let all = ["web1", "web2", "down"];
        let mut c = Census::default();
        c.put(
            "k1",
            job(100, "test.ping", Some(&all), &["web1", "web2", "down"]),
        );
        c.put("k2", job(200, "cmd.run", Some(&all), &["web1", "web2"]));
        c.put("k3", job(300, "state.sls", Some(&all), &["web1"]));
        c.put("k4", job(400, POLLING, Some(&["down", "web2"]), &[]));
        // Published 100 s before `now`: not final, its misses do not count yet.
        c.put("k5", job(1000, "test.ping", Some(&all), &["web1"]));
        let now = 1100 * SECOND;
        let s = c.summary(now, WAIT);
        let down = minion(&s, "down");
        assert_eq!((down.missed, down.missed_in_a_row), (2, 2));
        assert_eq!(down.last_return, Some(100.0));
        let web2 = minion(&s, "web2");
        assert_eq!((web2.missed, web2.missed_in_a_row), (1, 1));
        assert_eq!(web2.last_return, Some(200.0));
        let web1 = minion(&s, "web1");
        assert_eq!((web1.missed, web1.missed_in_a_row), (0, 0));
        assert_eq!(web1.last_return, Some(1000.0));
        // The polling job is no job of its own.
        assert_eq!(
            s.jobs,
            [
                ("cmd.run".to_string(), 1),
                ("state.sls".into(), 1),
                ("test.ping".into(), 2)
            ]
        );
        // Once the wait is over the young job's misses count; a return resets the run.
        let later = c.summary(now + WAIT, WAIT);
        assert_eq!(minion(&later, "down").missed_in_a_row, 3);
        c.put("k6", job(1200, "test.ping", Some(&all), &["down"]));
        let s = c.summary(now + WAIT, WAIT);
        assert_eq!(minion(&s, "down").missed_in_a_row, 0);
        assert_eq!(minion(&s, "down").missed, 3);
        assert_eq!(c.open(now + WAIT, WAIT).len(), 1, "k6 waits for web1, web2");
    }

    #[test]
    fn a_complete_job_is_final_at_once_and_returns_without_targets_count() {
        let mut c = Census::default();
        c.put("k1", job(1000, "test.ping", Some(&["a", "b"]), &["a", "b"]));
        c.put(
            "k2",
            job(1001, "runner.state.orchestrate", None, &["master_master"]),
        );
        let now = 1002 * SECOND;
        assert!(c.open(now, WAIT).is_empty());
        let s = c.summary(now, WAIT);
        assert_eq!(minion(&s, "master_master").last_return, Some(1001.0));
        assert!(minion(&s, "b").returned);
    }

    #[test]
    fn relisting_keeps_the_targets_and_jobs_that_target_the_same_fleet_share_them() {
        let fleet: Vec<String> = (0..2000).map(|i| format!("web-{i:04}")).collect();
        let fleet_refs: Vec<&str> = fleet.iter().map(String::as_str).collect();
        let mut c = Census::default();
        for j in 0..50 {
            c.put(
                &format!("k{j}"),
                job(j, "test.ping", Some(&fleet_refs), &[]),
            );
        }
        assert_eq!(c.sets.len(), 1);
        c.relisted("k49", &names(&fleet_refs[..1500]), None);
        assert_eq!(c.sets.len(), 1);
        let s = c.summary(10_000 * SECOND, WAIT);
        assert_eq!(minion(&s, "web-0000").missed_in_a_row, 0);
        assert_eq!(minion(&s, "web-1999").missed_in_a_row, 50);
        assert_eq!(minion(&s, "web-1999").missed, 50);
    }

    #[test]
    fn cleaned_up_jobs_drop_out_and_their_names_are_stored_anew() {
        let mut c = Census::default();
        for j in 0..3000 {
            let name = format!("old-{j}");
            c.put(
                &format!("k{j}"),
                job(j, "test.ping", Some(&[&name]), &[&name]),
            );
        }
        c.put(
            "keep",
            job(5000, "cmd.run", Some(&["b", "a", "c"]), &["c", "a"]),
        );
        assert_eq!(c.retain(&["keep"].into_iter().collect()), 3000);
        assert_eq!(c.names.by_id.len(), 3, "compacted");
        assert_eq!(c.sets.len(), 1);
        let s = c.summary(10_000 * SECOND, WAIT);
        let got: Vec<(&str, u64)> = s.minions.iter().map(|m| (&*m.name, m.missed)).collect();
        assert_eq!(got, [("a", 0), ("b", 1), ("c", 0)]);
        assert_eq!(s.jobs, [("cmd.run".to_string(), 1)]);
    }

    #[test]
    fn only_the_most_frequent_funs_have_a_label() {
        let mut c = Census::default();
        for j in 0..(TOP_FUNS as i64 + 5) {
            for k in 0..=j {
                c.put(
                    &format!("k{j}-{k}"),
                    job(j, &format!("f{j:02}.x"), Some(&[]), &[]),
                );
            }
        }
        let s = c.summary(0, WAIT);
        assert_eq!(s.jobs.len(), TOP_FUNS + 1);
        let other = s.jobs.iter().find(|(f, _)| f == "other").expect("other");
        // f00..f04 (1 to 5 jobs each) fall out.
        assert_eq!(other.1, 1 + 2 + 3 + 4 + 5);
        assert!(!s.jobs.iter().any(|(f, _)| f == "f04.x"));
    }
}
