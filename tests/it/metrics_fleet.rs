//! The job gauges (last return, missed jobs, jobs by fun, silent minions, shipping lag against
//! keep_jobs) on the real fleet fixture (`testdata/fleet`: a minion down, one killed mid-job,
//! an accepted key that never ran...), compared with what Salt's own view of each job
//! (`cases.json`, `jobs.list_job`) and the master's accepted keys (`pki/minions`) say, from a
//! metrics file, from the endpoint as jobs land, and through a real Prometheus.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::receiver::{Faults, Receiver};
use crate::common::watch::Watch;
use crate::common::{cache_copy, free_port, have, p, testdata, Saltship};
use crate::metrics::{
    contrib, get, jid_seconds, prometheus_scraping, promtool_accepts, samples, scrape, urlencode,
};

/// The families these tests compare in full.
const FAMILIES: [&str; 5] = [
    "saltship_minion_last_return_timestamp_seconds",
    "saltship_minion_missed_jobs",
    "saltship_minion_consecutive_missed_jobs",
    "saltship_jobs",
    "saltship_minion_silent",
];

fn cases() -> Vec<Value> {
    let text = std::fs::read(testdata("fleet/cases.json")).expect("cases.json");
    let mut cases: Vec<Value> = serde_json::from_slice(&text).expect("JSON");
    cases.sort_by(|a, b| a["jid"].as_str().cmp(&b["jid"].as_str()));
    cases
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(|n| n.as_str().expect("a name").to_owned())
        .collect()
}

fn pki() -> PathBuf {
    testdata("fleet/pki")
}

/// The accepted keys of the fixture's master.
fn keys() -> BTreeSet<String> {
    std::fs::read_dir(pki().join("minions"))
        .expect("pki/minions")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

/// The series of [`FAMILIES`] as Salt's views say they should be: a job's misses are the
/// minions `list_job` names and no return came from; the CLI's own `saltutil.find_job` polls
/// are no jobs of their own.
fn want(cases: &[Value]) -> BTreeMap<String, f64> {
    #[derive(Default)]
    struct Row {
        last: Option<f64>,
        missed: f64,
        in_a_row: f64,
    }
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let mut jobs: BTreeMap<String, f64> = BTreeMap::new();
    for case in cases {
        let jid = case["jid"].as_str().expect("jid");
        let polling = case["fun"] == "saltutil.find_job";
        for m in names(&case["minions_returned"]) {
            let row = rows.entry(m).or_default();
            row.last = Some(jid_seconds(jid));
            row.in_a_row = 0.0;
        }
        if polling {
            continue;
        }
        *jobs
            .entry(case["fun"].as_str().expect("fun").to_owned())
            .or_default() += 1.0;
        for m in names(&case["minions_targeted"]) {
            rows.entry(m).or_default();
        }
        for m in names(&case["minions_missing"]) {
            let row = rows.entry(m).or_default();
            row.missed += 1.0;
            row.in_a_row += 1.0;
        }
    }
    let mut out = BTreeMap::new();
    for (m, row) in &rows {
        let label = format!("{{minion=\"{m}\"}}");
        if let Some(t) = row.last {
            out.insert(format!("{}{label}", FAMILIES[0]), t);
        }
        out.insert(format!("{}{label}", FAMILIES[1]), row.missed);
        out.insert(format!("{}{label}", FAMILIES[2]), row.in_a_row);
    }
    for (fun, n) in jobs {
        out.insert(format!("{}{{fun=\"{fun}\"}}", FAMILIES[3]), n);
    }
    for key in keys() {
        if rows.get(&key).is_none_or(|r| r.last.is_none()) {
            out.insert(format!("{}{{minion=\"{key}\"}}", FAMILIES[4]), 1.0);
        }
    }
    out
}

/// The scraped series of [`FAMILIES`].
fn got(text: &str) -> BTreeMap<String, f64> {
    samples(text)
        .into_iter()
        .filter(|(series, _)| {
            let name = series.split('{').next().unwrap_or(series);
            FAMILIES.contains(&name)
        })
        .collect()
}

/// What differs between `got` and `want`, series by series.
fn differences(got: &BTreeMap<String, f64>, want: &BTreeMap<String, f64>) -> Vec<String> {
    let all: BTreeSet<&String> = got.keys().chain(want.keys()).collect();
    all.into_iter()
        .filter_map(|k| match (got.get(k), want.get(k)) {
            (Some(g), Some(w)) if (g - w).abs() <= 1e-6 * w.abs().max(1.0) => None,
            (g, w) => Some(format!("{k}: got {g:?}, want {w:?}")),
        })
        .collect()
}

#[test]
fn sync_counts_every_jobs_returns_and_misses_as_list_job_does_and_the_silent_minions() {
    let cases = cases();
    let want = want(&cases);
    // What the fixture is about: the stopped minion and the key that never ran are silent,
    // and missed every job that targeted them.
    assert_eq!(
        want.get("saltship_minion_silent{minion=\"f-silent\"}"),
        Some(&1.0)
    );
    assert!(want["saltship_minion_consecutive_missed_jobs{minion=\"f-down\"}"] >= 3.0);
    let (tmp, jobs) = cache_copy("fleet/jobs");
    let file = tmp.path().join("saltship.prom");
    let receiver = Receiver::start(Faults::default());
    let run = Saltship::sync(&jobs)
        .target(&receiver.target())
        .more(["--metrics-file", p(&file), "--pki-dir", p(&pki())])
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = std::fs::read_to_string(&file).expect("metrics file");
    let diff = differences(&got(&text), &want);
    assert!(diff.is_empty(), "{diff:#?}\n{text}");
    let all = samples(&text);
    let silent = want.keys().filter(|k| k.starts_with(FAMILIES[4])).count();
    assert_eq!(all["saltship_silent_minions"], silent as f64);
    assert_eq!(all["saltship_accepted_keys"], keys().len() as f64);
    assert_eq!(all["saltship_oldest_unshipped_return_age_seconds"], 0.0);
    assert_eq!(all["saltship_keep_jobs_seconds"], 86_400.0);
    promtool_accepts(&text);
}

#[test]
fn an_unreadable_pki_dir_is_one_warning_and_no_silent_minions() {
    let (tmp, jobs) = cache_copy("fleet/jobs");
    let missing = tmp.path().join("no-pki");
    let receiver = Receiver::start(Faults::default());
    let addr = format!("127.0.0.1:{}", free_port());
    let pki = p(&missing).to_owned();
    let env = [
        ("SALTSHIP_METRICS_LISTEN", addr.as_str()),
        ("SALTSHIP_PKI_DIR", pki.as_str()),
        ("SALTSHIP_RESCAN_INTERVAL", "1s"),
    ];
    let watch = Watch::start(&jobs, &tmp.path().join("state"), &receiver.target(), &env);
    let first = scrape(&addr, Duration::from_secs(30));
    // Several full rescans (each reads the keys again) go by.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        scrape(&addr, Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(500));
    }
    let (code, _, log) = watch.stop();
    assert_eq!(code, 0, "{log}");
    let named: Vec<&str> = log.lines().filter(|l| l.contains(&pki)).collect();
    assert_eq!(named.len(), 1, "{log}");
    assert!(named[0].contains("silent minions"), "{}", named[0]);
    for family in [
        "saltship_minion_silent",
        "saltship_silent_minions",
        "saltship_accepted_keys",
    ] {
        assert!(!first.contains(&format!("\n{family}")), "{first}");
    }
    // The rest of the gauges are there all the same.
    assert!(first.contains("saltship_minion_missed_jobs{minion=\"f-down\"}"));
}

#[test]
fn shipping_lag_is_set_against_keep_jobs_while_the_receiver_is_down() {
    let (tmp, jobs) = cache_copy("fleet/jobs");
    let file = tmp.path().join("saltship.prom");
    let closed = format!("127.0.0.1:{}", free_port());
    let t0 = chrono::Utc::now().timestamp() as f64;
    let run = Saltship::sync(&jobs)
        .state_file(&tmp.path().join("state"))
        .target(&closed)
        .more(["--deliver-timeout", "1s", "--keep-jobs", "36h"])
        .more(["--metrics-file", p(&file), "--pki-dir", p(&pki())])
        .run();
    assert_eq!(run.code, 3, "{}", run.stderr);
    let t1 = chrono::Utc::now().timestamp() as f64;
    let got = samples(&std::fs::read_to_string(&file).expect("metrics file"));
    // The oldest job with returns to ship: the first state run that got a return.
    let oldest = cases()
        .into_iter()
        .filter(|c| c["fun"].as_str().is_some_and(|f| f.starts_with("state.")))
        .find(|c| !names(&c["minions_returned"]).is_empty())
        .expect("a state run");
    let publish = jid_seconds(oldest["jid"].as_str().expect("jid"));
    let age = got["saltship_oldest_unshipped_return_age_seconds"];
    assert!(
        age >= t0 - publish - 1.0 && age <= t1 - publish + 1.0,
        "age {age}, published {publish}, run from {t0} to {t1}"
    );
    assert_eq!(got["saltship_keep_jobs_seconds"], 36.0 * 3600.0);

    // Once a receiver takes everything, nothing is behind.
    let receiver = Receiver::start(Faults::default());
    let run = Saltship::sync(&jobs)
        .state_file(&tmp.path().join("state"))
        .target(&receiver.target())
        .more(["--metrics-file", p(&file), "--pki-dir", p(&pki())])
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let got = samples(&std::fs::read_to_string(&file).expect("metrics file"));
    assert_eq!(got["saltship_oldest_unshipped_return_age_seconds"], 0.0);
}

/// The fixture's job folder of `case`.
fn fleet_job(case: &Value) -> PathBuf {
    let jid = case["jid"].as_str().expect("jid");
    let jobs = testdata("fleet/jobs");
    for prefix in std::fs::read_dir(&jobs).expect("jobs").flatten() {
        for job in std::fs::read_dir(prefix.path()).expect("prefix").flatten() {
            if std::fs::read_to_string(job.path().join("jid")).is_ok_and(|j| j.trim() == jid) {
                return job.path();
            }
        }
    }
    panic!("no job {jid}");
}

/// Lands a copy of the fleet's job `source` under `jid` as a master writes one: the folder,
/// `jid`, `.load.p`, `.minions.p`, then each return by a temp file and a rename.
fn land(jobs: &Path, source: &Path, jid: &str) {
    let dir = jobs.join(&jid[jid.len() - 2..]).join(format!("job{jid}"));
    std::fs::create_dir_all(&dir).expect("job folder");
    std::fs::write(dir.join("jid"), jid).expect("jid");
    for file in [".load.p", ".minions.p"] {
        std::fs::copy(source.join(file), dir.join(file)).expect(file);
    }
    for minion in std::fs::read_dir(source).expect("source").flatten() {
        if !minion.file_type().expect("type").is_dir() {
            continue;
        }
        let to = dir.join(minion.file_name());
        std::fs::create_dir_all(&to).expect("minion folder");
        let tmp = to.join(".___atomic_write_return");
        std::fs::copy(minion.path().join("return.p"), &tmp).expect("temp");
        std::fs::rename(&tmp, to.join("return.p")).expect("rename");
    }
}

/// Scrapes until the job gauges equal `want` (bounded).
fn wait_for(addr: &str, want: &BTreeMap<String, f64>, watch: &Watch) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let diff = differences(&got(&scrape(addr, Duration::from_secs(10))), want);
        if diff.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{diff:#?}\nlog: {}", watch.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `--return-wait` of the watch test.
const WAIT: Duration = Duration::from_secs(6);

#[test]
fn watch_counts_a_ping_that_lands_its_misses_once_the_wait_is_over_and_after_a_cleanup() {
    let (tmp, jobs) = cache_copy("fleet/jobs");
    let receiver = Receiver::start(Faults::default());
    let addr = format!("127.0.0.1:{}", free_port());
    let pki = p(&pki()).to_owned();
    let env = [
        ("SALTSHIP_METRICS_LISTEN", addr.as_str()),
        ("SALTSHIP_PKI_DIR", pki.as_str()),
        ("SALTSHIP_RETURN_WAIT", "6s"),
        ("SALTSHIP_RESCAN_INTERVAL", "2s"),
    ];
    let mut cases = cases();
    let watch = Watch::start(&jobs, &tmp.path().join("state"), &receiver.target(), &env);
    wait_for(&addr, &want(&cases), &watch);

    // `salt '*' test.ping` again, now: not a state run, so its folder is not watched; its
    // returns count at once, its misses once the wait (`WAIT`) is over.
    let ping = cases
        .iter()
        .find(|c| c["case"] == "fleet-ping-after")
        .expect("case")
        .clone();
    let landed_at = Instant::now();
    let jid = chrono::Utc::now().format("%Y%m%d%H%M%S%6f").to_string();
    land(&jobs, &fleet_job(&ping), &jid);
    let before = want(&cases);
    let mut landed = ping;
    landed["jid"] = jid.clone().into();
    cases.push(landed);
    let after = want(&cases);
    let f_down = "saltship_minion_missed_jobs{minion=\"f-down\"}";
    let f_killed = "saltship_minion_last_return_timestamp_seconds{minion=\"f-killed\"}";
    assert_eq!(after[f_down], before[f_down] + 1.0);
    assert_eq!(after[f_killed], jid_seconds(&jid));
    // Its returns count as soon as they are seen; its misses only after the wait.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = got(&scrape(&addr, Duration::from_secs(10)));
        if now.get(f_killed) == Some(&after[f_killed]) {
            if landed_at.elapsed() < WAIT - Duration::from_secs(1) {
                assert_eq!(now.get(f_down), Some(&before[f_down]), "{now:#?}");
            }
            break;
        }
        assert!(Instant::now() < deadline, "{now:#?}\nlog: {}", watch.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_for(&addr, &after, &watch);

    // The master cleans up the newest job: it drops out at the next rescan.
    let last = cases.pop().expect("the landed job");
    let rel = jobs.join(&last["jid"].as_str().expect("jid")[18..]);
    std::fs::remove_dir_all(rel.join(format!("job{}", last["jid"].as_str().expect("jid"))))
        .expect("remove the job");
    wait_for(&addr, &want(&cases), &watch);
    let (code, _, log) = watch.stop();
    assert_eq!(code, 0, "{log}");
}

/// Answers of `expr` from the Prometheus at `web`, as (labels, value).
fn query(web: &str, expr: &str) -> Option<Vec<(HashMap<String, String>, f64)>> {
    let (status, body) = get(web, &format!("/api/v1/query?query={}", urlencode(expr))).ok()?;
    let answer: Value = serde_json::from_str(&body).ok().filter(|_| status == 200)?;
    let result = answer["data"]["result"].as_array()?;
    Some(
        result
            .iter()
            .map(|r| {
                let labels = r["metric"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                let value = r["value"][1].as_str().and_then(|v| v.parse().ok());
                (labels, value.unwrap_or(f64::NAN))
            })
            .collect(),
    )
}

/// The `expr` of the alert rule `name` in the rules file (one line, or a folded block).
fn alert_expr(rules: &str, name: &str) -> String {
    let at = rules
        .find(&format!("alert: {name}\n"))
        .unwrap_or_else(|| panic!("no alert {name}"));
    let rest = &rules[at..];
    let expr = &rest[rest.find("expr:").expect("expr") + 5..];
    let expr = expr.trim_start_matches([' ', '>', '-']);
    let mut out = String::new();
    for line in expr.lines() {
        if !out.is_empty() && (line.trim().is_empty() || line.trim_start().contains(": ")) {
            break;
        }
        out.push_str(line.trim());
        out.push(' ');
    }
    out.trim().to_owned()
}

#[test]
fn a_real_prometheus_scrapes_the_job_gauges_and_the_new_alerts_pick_the_right_minions() {
    let bin = Path::new("/usr/bin/prometheus");
    if !have("prometheus", bin.exists(), "prometheus") {
        return;
    }
    let (tmp, jobs) = cache_copy("fleet/jobs");
    let receiver = Receiver::start(Faults::default());
    let addr = format!("127.0.0.1:{}", free_port());
    let pki = p(&pki()).to_owned();
    let watch = Watch::start(
        &jobs,
        &tmp.path().join("state"),
        &receiver.target(),
        &[
            ("SALTSHIP_METRICS_LISTEN", addr.as_str()),
            ("SALTSHIP_PKI_DIR", pki.as_str()),
        ],
    );
    scrape(&addr, Duration::from_secs(30));
    let (_prometheus, web) = prometheus_scraping(bin, &addr, tmp.path());
    let want = want(&cases());
    // Prometheus starts in a few seconds; a loaded machine gets a generous bound.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = BTreeMap::new();
    while Instant::now() < deadline {
        seen.clear();
        for family in FAMILIES {
            for (labels, value) in query(&web, family).unwrap_or_default() {
                let (key, label) = if family == "saltship_jobs" {
                    ("fun", labels.get("fun"))
                } else {
                    ("minion", labels.get("minion"))
                };
                let label = label.cloned().unwrap_or_default();
                seen.insert(format!("{family}{{{key}=\"{label}\"}}"), value);
            }
        }
        if differences(&seen, &want).is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let diff = differences(&seen, &want);
    assert!(
        diff.is_empty(),
        "{diff:#?}\n{}",
        std::fs::read_to_string(tmp.path().join("prometheus.log")).unwrap_or_default()
    );
    // The rules' expressions, run by Prometheus on what it scraped.
    let rules = contrib("contrib/prometheus/saltship.rules.yml");
    let minions = |expr: &str| -> BTreeSet<String> {
        query(&web, expr)
            .unwrap_or_else(|| panic!("{expr} does not run"))
            .into_iter()
            .filter_map(|(l, _)| l.get("minion").cloned())
            .collect()
    };
    let n = 3.0;
    let missing: BTreeSet<String> = want
        .iter()
        .filter(|(k, v)| k.starts_with(FAMILIES[2]) && **v >= n)
        .map(|(k, _)| k[FAMILIES[2].len() + 9..k.len() - 2].to_owned())
        .collect();
    assert!(!missing.is_empty());
    assert_eq!(
        minions(&alert_expr(&rules, "SaltMinionMissingJobs")),
        missing
    );
    let silent: BTreeSet<String> = want
        .keys()
        .filter_map(|k| k.strip_prefix("saltship_minion_silent{minion=\""))
        .map(|k| k.trim_end_matches("\"}").to_owned())
        .collect();
    assert_eq!(minions(&alert_expr(&rules, "SaltMinionSilent")), silent);
    // Nothing is behind: the lag alert is quiet, and its expression runs.
    let lag = alert_expr(&rules, "SaltshipNearKeepJobs");
    assert_eq!(query(&web, &lag).map(|r| r.len()), Some(0), "{lag}");
    let (code, _, log) = watch.stop();
    assert_eq!(code, 0, "{log}");
}
