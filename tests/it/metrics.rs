//! The fleet's health as Prometheus sees it: `watch --metrics-listen` and `sync --metrics-file`
//! on a copy of the real cache, each minion's gauges compared with what Salt's own view
//! (`testdata/expected/`, `jobs.list_job`) says of its latest real state run; a real
//! Prometheus scraping the endpoint; an idle scraper that must hold nothing up.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::receiver::{event_ids, Faults, Receiver};
use crate::common::view::{expectations, expected_files, Expect};
use crate::common::watch::{land_job, source_job, Watch};
use crate::common::{cache_copy, dry_run_ids, free_port, have, p, Saltship};
use serde_json::Value;

/// What the gauges should say of one minion's latest real state run.
#[derive(Debug, Default, Clone, PartialEq)]
struct LastRun {
    jid: String,
    succeeded: f64,
    failed: f64,
    pending: f64,
    changed: f64,
    /// Seconds.
    duration: f64,
}

impl LastRun {
    fn of(jid: &str, expect: &Expect) -> LastRun {
        let mut run = LastRun {
            jid: jid.to_owned(),
            ..LastRun::default()
        };
        let states = match expect {
            Expect::States(states) => states,
            Expect::Error(_) => {
                run.failed = 1.0;
                return run;
            }
        };
        for state in states.values() {
            match state["result"] {
                Value::Bool(true) => run.succeeded += 1.0,
                Value::Bool(false) => run.failed += 1.0,
                _ => run.pending += 1.0,
            }
            let changed = match &state["changes"] {
                Value::Object(m) => !m.is_empty(),
                Value::Array(a) => !a.is_empty(),
                Value::String(s) => !s.is_empty(),
                Value::Bool(b) => *b,
                Value::Null => false,
                Value::Number(_) => true,
            };
            run.changed += f64::from(u8::from(changed));
            run.duration += state["duration"].as_f64().unwrap_or(0.0) / 1000.0;
        }
        run
    }
}

/// `test=True` anywhere in a job's arguments, as Salt shows them.
fn test_run(args: &Value) -> bool {
    match args {
        Value::Array(items) => items.iter().any(test_run),
        Value::Object(kw) => kw.get("test") == Some(&Value::Bool(true)),
        _ => false,
    }
}

/// Per minion (or master id, for orchestrations) its latest real state run, and every state
/// result counted by result (test runs included), from Salt's views of the jobs.
fn fleet(views: &[Value]) -> (BTreeMap<String, LastRun>, [f64; 3]) {
    let mut last: BTreeMap<String, LastRun> = BTreeMap::new();
    let mut totals = [0.0; 3];
    for view in views {
        let test = test_run(&view["Arguments"]) || view["Function"] == "state.test";
        for (jid, who, expect) in expectations(view) {
            let run = LastRun::of(&jid, &expect);
            totals[0] += run.succeeded;
            totals[1] += run.failed;
            totals[2] += run.pending;
            if !test && last.get(&who).is_none_or(|l| l.jid <= jid) {
                last.insert(who, run);
            }
        }
    }
    (last, totals)
}

/// Seconds since the epoch of a UTC jid.
pub(crate) fn jid_seconds(jid: &str) -> f64 {
    let t = chrono::NaiveDateTime::parse_from_str(&jid[..14], "%Y%m%d%H%M%S").expect("jid time");
    t.and_utc().timestamp() as f64 + jid[14..20].parse::<f64>().expect("micros") / 1e6
}

/// The samples of a text exposition, by series (`name{labels}`).
pub(crate) fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("series and value");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

/// What differs between the scraped gauges and `want`; empty when they agree.
fn differences(got: &HashMap<String, f64>, want: &BTreeMap<String, LastRun>) -> Vec<String> {
    let mut out = Vec::new();
    let minions: Vec<&str> = got
        .keys()
        .filter_map(|s| s.strip_prefix("saltship_minion_last_state_run_success{minion=\""))
        .map(|s| s.trim_end_matches("\"}"))
        .collect();
    if minions.len() != want.len() {
        out.push(format!(
            "minions {minions:?}, want {:?}",
            want.keys().collect::<Vec<_>>()
        ));
    }
    for (minion, run) in want {
        let m = format!("minion=\"{minion}\"");
        let success = f64::from(u8::from(run.failed == 0.0));
        let series = [
            ("success", format!("{{{m}}}"), success),
            (
                "timestamp_seconds",
                format!("{{{m}}}"),
                jid_seconds(&run.jid),
            ),
            ("changed_states", format!("{{{m}}}"), run.changed),
            ("duration_seconds", format!("{{{m}}}"), run.duration),
            (
                "states",
                format!("{{{m},result=\"succeeded\"}}"),
                run.succeeded,
            ),
            ("states", format!("{{{m},result=\"failed\"}}"), run.failed),
            ("states", format!("{{{m},result=\"pending\"}}"), run.pending),
        ];
        for (name, labels, value) in series {
            let key = format!("saltship_minion_last_state_run_{name}{labels}");
            match got.get(&key) {
                Some(v) if (v - value).abs() <= 1e-6 * value.abs().max(1.0) => {}
                other => out.push(format!("{key}: {other:?}, want {value} (jid {})", run.jid)),
            }
        }
    }
    out
}

/// `GET path` from `addr` over HTTP/1.0: the status and the body.
pub(crate) fn get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut conn = TcpStream::connect(addr)?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = String::new();
    conn.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {head:?}")))?;
    Ok((status, body.to_owned()))
}

/// The first answer of `/metrics` within `within`, retrying while nothing listens yet.
pub(crate) fn scrape(addr: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        match get(addr, "/metrics") {
            Ok((200, body)) => return body,
            other => assert!(Instant::now() < deadline, "no metrics at {addr}: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Scrapes until the gauges equal `want` (bounded): what differs at the deadline fails.
fn wait_for_gauges(addr: &str, want: &BTreeMap<String, LastRun>, watch: &Watch) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let diff = differences(&samples(&scrape(addr, Duration::from_secs(10))), want);
        if diff.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{diff:#?}\nlog: {}", watch.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `promtool check metrics` on `text`, when promtool is installed.
pub(crate) fn promtool_accepts(text: &str) {
    if !have(
        "promtool",
        Path::new("/usr/bin/promtool").exists(),
        "prometheus",
    ) {
        return;
    }
    let mut child = Command::new("/usr/bin/promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn view_of(views: &[Value], case: &str) -> Value {
    let jid = std::fs::read_to_string(source_job(case).join("jid")).expect("jid");
    views
        .iter()
        .find(|v| v["jid"] == jid.trim())
        .expect("a view of the case")
        .clone()
}

#[test]
fn gauges_follow_the_latest_real_runs_through_new_jobs_cleanup_and_restart() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    let receiver = Receiver::start(Faults::default());
    let addr = format!("127.0.0.1:{}", free_port());
    let env = [
        ("SALTSHIP_METRICS_LISTEN", addr.as_str()),
        ("SALTSHIP_RESCAN_INTERVAL", "1s"),
    ];
    let mut views = expected_files();
    let (want, totals) = fleet(&views);
    assert!(want.len() >= 3, "web1, db1 and the orchestration: {want:?}");
    let watch = Watch::start(&jobs, &state, &receiver.target(), &env);
    // Right from the first answer: rebuilt from the cache before serving.
    let first = scrape(&addr, Duration::from_secs(30));
    let diff = differences(&samples(&first), &want);
    assert!(diff.is_empty(), "first scrape: {diff:#?}");
    promtool_accepts(&first);
    // Every state result read while catching up, test runs included.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = samples(&scrape(&addr, Duration::from_secs(10)));
        let counted = ["succeeded", "failed", "pending"]
            .map(|r| got[&format!("saltship_state_results_total{{result=\"{r}\"}}")]);
        if counted == totals {
            break;
        }
        assert!(Instant::now() < deadline, "{counted:?}, want {totals:?}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A newer run with failures replaces web1's and db1's; a newer test run does not.
    for (case, jid) in [
        ("failures", "20991231000000000001"),
        ("test-true-pending", "20991231000000000002"),
    ] {
        land_job(&jobs, &source_job(case), jid, Duration::from_millis(10));
        let mut view = view_of(&views, case);
        view["jid"] = jid.into();
        views.push(view);
    }
    let (want, _) = fleet(&views);
    assert_eq!(want["web1"].jid, "20991231000000000001");
    assert!(want["db1"].failed > 0.0);
    wait_for_gauges(&addr, &want, &watch);

    // The master cleans up the orchestrations, the master id's only runs: it drops out.
    for case in [
        "orchestrate",
        "orchestrate-single",
        "orchestrate-single-fail",
    ] {
        let orch = view_of(&views, case);
        let rel = source_job(case)
            .strip_prefix(crate::common::testdata("jobs"))
            .expect("under jobs")
            .to_owned();
        std::fs::remove_dir_all(jobs.join(rel)).expect("remove the job");
        views.retain(|v| v["jid"] != orch["jid"]);
    }
    let (want, _) = fleet(&views);
    assert!(!want.contains_key("testmaster"));
    wait_for_gauges(&addr, &want, &watch);
    let (code, _, log) = watch.stop();
    assert_eq!(code, 0, "{log}");

    // After a restart, with everything shipped already, the first answer is right again.
    let watch = Watch::start(&jobs, &state, &receiver.target(), &env);
    let first = samples(&scrape(&addr, Duration::from_secs(30)));
    let diff = differences(&first, &want);
    assert!(diff.is_empty(), "first scrape after a restart: {diff:#?}");
    let (code, _, log) = watch.stop();
    assert_eq!(code, 0, "{log}");
}

#[test]
fn sync_writes_the_same_gauges_to_its_metrics_file() {
    let (tmp, jobs) = cache_copy("jobs");
    let file = tmp.path().join("saltship.prom");
    let run = Saltship::dry_run(&jobs).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    // A real run: a dry run writes no metrics file.
    let receiver = Receiver::start(Faults::default());
    let run = Saltship::sync(&jobs)
        .target(&receiver.target())
        .arg("--metrics-file")
        .arg(&file)
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = std::fs::read_to_string(&file).expect("metrics file");
    let (want, _) = fleet(&expected_files());
    let diff = differences(&samples(&text), &want);
    assert!(diff.is_empty(), "{diff:#?}");
    let got = samples(&text);
    assert_eq!(got["saltship_events_total"], receiver.finish().len() as f64);
    promtool_accepts(&text);
}

#[test]
fn the_endpoint_answers_only_get_metrics() {
    let (tmp, jobs) = cache_copy("jobs");
    let receiver = Receiver::start(Faults::default());
    let addr = format!("127.0.0.1:{}", free_port());
    let watch = Watch::start(
        &jobs,
        &tmp.path().join("state"),
        &receiver.target(),
        &[("SALTSHIP_METRICS_LISTEN", addr.as_str())],
    );
    scrape(&addr, Duration::from_secs(30));
    assert_eq!(get(&addr, "/nothing").expect("GET").0, 404);
    let mut conn = TcpStream::connect(&addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    conn.write_all(b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        .expect("write");
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    let (code, _, log) = watch.stop();
    assert_eq!(code, 0, "{log}");
}

#[test]
fn a_taken_address_is_a_configuration_error() {
    let (_tmp, jobs) = cache_copy("jobs");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let run = Saltship::watch(&jobs)
        .target(&format!("127.0.0.1:{}", free_port()))
        .more(["--metrics-listen", &addr])
        .run();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("--metrics-listen {addr}: ")),
        "{}",
        run.stderr
    );
}

#[test]
fn idle_scrapers_hold_up_neither_shipping_nor_the_endpoint() {
    let (tmp, jobs) = cache_copy("jobs");
    let receiver = Receiver::start(Faults::default());
    let addr = format!("127.0.0.1:{}", free_port());
    let watch = Watch::start(
        &jobs,
        &tmp.path().join("state"),
        &receiver.target(),
        &[("SALTSHIP_METRICS_LISTEN", addr.as_str())],
    );
    scrape(&addr, Duration::from_secs(30));
    // Connections that send nothing, and one that sends half a request, all held open.
    let mut idle: Vec<TcpStream> = (0..40)
        .filter_map(|_| TcpStream::connect(&addr).ok())
        .collect();
    let mut half = TcpStream::connect(&addr).expect("connect");
    half.write_all(b"GET /metr").expect("write");
    idle.push(half);
    land_job(
        &jobs,
        &source_job("failures"),
        "20991231000000000001",
        Duration::from_millis(10),
    );
    let want: std::collections::HashSet<String> = dry_run_ids(&jobs);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !want.is_subset(&event_ids(&receiver.lines_so_far())) {
        assert!(
            Instant::now() < deadline,
            "shipping stalled: {}",
            watch.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The idle ones are dropped after their time: a scraper gets through while they are
    // still held open on this side.
    let text = scrape(&addr, Duration::from_secs(20));
    assert!(text.contains("saltship_minion_last_state_run_success{minion=\"web1\"} 0"));
    drop(idle);
    let (code, _, log) = watch.stop();
    assert_eq!(code, 0, "{log}");
}

/// `text` as a URL query value.
pub(crate) fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A real Prometheus, stopped by its PID when dropped.
/// A real Prometheus, from `bin`, scraping `addr` every second, its files in `dir`: the server
/// (stopped when dropped) and its web address.
pub(crate) fn prometheus_scraping(bin: &Path, addr: &str, dir: &Path) -> (Prometheus, String) {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: saltship\n    static_configs:\n      - targets: ['{addr}']\n"
        ),
    )
    .expect("config");
    let web = format!("127.0.0.1:{}", free_port());
    let server = Prometheus(
        Command::new(bin)
            .arg(format!("--config.file={}", p(&config)))
            .arg(format!("--storage.tsdb.path={}", p(&dir.join("tsdb"))))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).expect("log"))
            .spawn()
            .expect("start prometheus"),
    );
    (server, web)
}

pub(crate) struct Prometheus(pub(crate) Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_the_gauges() {
    let bin = Path::new("/usr/bin/prometheus");
    if !have("prometheus", bin.exists(), "prometheus") {
        return;
    }
    let (tmp, jobs) = cache_copy("jobs");
    let receiver = Receiver::start(Faults::default());
    let addr = format!("127.0.0.1:{}", free_port());
    let watch = Watch::start(
        &jobs,
        &tmp.path().join("state"),
        &receiver.target(),
        &[("SALTSHIP_METRICS_LISTEN", addr.as_str())],
    );
    let ours = samples(&scrape(&addr, Duration::from_secs(30)));
    let (_prometheus, web) = prometheus_scraping(bin, &addr, tmp.path());
    let query = "/api/v1/query?query=saltship_minion_last_state_run_states";
    // Prometheus starts in a few seconds; a loaded machine gets a generous bound.
    let deadline = Instant::now() + Duration::from_secs(120);
    let result = loop {
        let answer = get(&web, query).ok().filter(|(s, _)| *s == 200);
        let result = answer
            .and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok())
            .and_then(|v| v["data"]["result"].as_array().cloned())
            .unwrap_or_default();
        if !result.is_empty() {
            break result;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus has no saltship series: {}",
            std::fs::read_to_string(tmp.path().join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let (want, _) = fleet(&expected_files());
    assert_eq!(result.len(), want.len() * 3, "{result:#?}");
    // Every query of the Grafana dashboard is one Prometheus runs.
    for expr in dashboard_exprs() {
        let path = format!("/api/v1/query?query={}", urlencode(&expr));
        let (status, body) = get(&web, &path).expect("query");
        assert_eq!(status, 200, "{expr}: {body}");
        let answer: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(answer["status"], "success", "{expr}: {body}");
    }
    for series in &result {
        let m = &series["metric"];
        assert_eq!(m["job"], "saltship");
        let key = format!(
            "saltship_minion_last_state_run_states{{minion=\"{}\",result=\"{}\"}}",
            m["minion"].as_str().expect("minion"),
            m["result"].as_str().expect("result")
        );
        let value: f64 = series["value"][1]
            .as_str()
            .expect("value")
            .parse()
            .expect("number");
        assert_eq!(Some(&value), ours.get(&key), "{key}");
    }
    let (code, _, log) = watch.stop();
    assert_eq!(code, 0, "{log}");
}

/// The metric names saltship exposes, from a `sync --metrics-file` on the real cache (with
/// the fleet's accepted keys, none of which returned there: every one silent).
fn exposed_names() -> Vec<String> {
    let (tmp, jobs) = cache_copy("jobs");
    let file = tmp.path().join("saltship.prom");
    let receiver = Receiver::start(Faults::default());
    let run = Saltship::sync(&jobs)
        .target(&receiver.target())
        .arg("--metrics-file")
        .arg(&file)
        .arg("--pki-dir")
        .arg(crate::common::testdata("fleet/pki"))
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    std::fs::read_to_string(&file)
        .expect("metrics file")
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect()
}

/// Every `saltship_…` name in `text`.
fn names_used(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("saltship_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        out.push(&tail[..end]);
        rest = &tail[end..];
    }
    out
}

pub(crate) fn contrib(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).expect(rel)
}

/// The `expr`s of the Grafana dashboard's panels.
fn dashboard_exprs() -> Vec<String> {
    let dash: Value =
        serde_json::from_str(&contrib("contrib/grafana/saltship-fleet.json")).expect("JSON");
    assert!(dash["title"].is_string() && dash["uid"].is_string());
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 3);
    let mut exprs = Vec::new();
    for panel in panels {
        assert!(
            panel["type"].is_string() && panel["gridPos"]["w"].is_u64(),
            "{panel}"
        );
        assert_eq!(panel["datasource"]["type"], "prometheus", "{panel}");
        for target in panel["targets"].as_array().expect("targets") {
            exprs.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    exprs
}

#[test]
fn contrib_rules_and_dashboards_use_only_what_exists() {
    let names = exposed_names();
    assert!(names.iter().any(|n| n == "saltship_state_results_total"));
    let rules = contrib("contrib/prometheus/saltship.rules.yml");
    let grafana = dashboard_exprs().join("\n");
    for name in names_used(&rules).into_iter().chain(names_used(&grafana)) {
        assert!(names.iter().any(|n| n == name), "{name} is not exposed");
    }
    for needed in [
        "saltship_minion_last_state_run_success",
        "saltship_minion_last_state_run_timestamp_seconds",
        "saltship_minion_last_state_run_states",
        "saltship_minion_consecutive_missed_jobs",
        "saltship_minion_silent",
        "saltship_jobs",
        "saltship_oldest_unshipped_return_age_seconds",
        "saltship_keep_jobs_seconds",
    ] {
        assert!(
            grafana.contains(needed),
            "the dashboard does not show {needed}"
        );
    }
    if !have(
        "promtool",
        Path::new("/usr/bin/promtool").exists(),
        "prometheus",
    ) {
        return;
    }
    // The rules file, and the sample rule of docs/metrics.md.
    let page = contrib("docs/metrics.md");
    let section = page
        .split("\n## Fleet health")
        .nth(1)
        .expect("a Fleet health section");
    let sample = section
        .split("```yaml\n")
        .find(|b| b.contains("groups:"))
        .and_then(|b| b.split("```").next())
        .expect("a sample rule in docs/metrics.md");
    let tmp = tempfile::tempdir().expect("tempdir");
    let sample_file = tmp.path().join("sample.rules.yml");
    std::fs::write(&sample_file, sample).expect("write");
    for file in [
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/prometheus/saltship.rules.yml"),
        sample_file,
    ] {
        let out = Command::new("/usr/bin/promtool")
            .args(["check", "rules", p(&file)])
            .output()
            .expect("promtool");
        assert!(
            out.status.success(),
            "promtool check rules {}: {}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Element names of `xml` in order, checked to nest: a small well-formedness check.
fn xml_balanced(xml: &str) -> Result<(), String> {
    let mut open: Vec<&str> = Vec::new();
    let mut rest = xml;
    while let Some(at) = rest.find('<') {
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix("!--") {
            let end = after.find("-->").ok_or("unclosed comment")?;
            // XML forbids "--" inside a comment (an option name, say).
            if after[..end].contains("--") {
                return Err("-- inside a comment".into());
            }
            rest = &after[end + 3..];
            continue;
        }
        let end = rest.find('>').ok_or("unclosed tag")?;
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        let name = tag
            .trim_start_matches('/')
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap_or("");
        if tag.starts_with('/') {
            match open.pop() {
                Some(o) if o == name => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
        } else if !tag.ends_with('/') && !tag.starts_with('?') {
            open.push(name);
        }
    }
    if open.is_empty() {
        Ok(())
    } else {
        Err(format!("unclosed {open:?}"))
    }
}

#[test]
fn the_splunk_dashboard_is_well_formed_and_uses_event_fields() {
    let xml = contrib("contrib/splunk/saltship_fleet.xml");
    xml_balanced(&xml).expect("well-formed XML");
    assert!(xml_balanced("<a><b></a></b>").is_err());
    assert!(xml_balanced("<!-- see --events --><a></a>").is_err());
    // Every kind of event: the job panels use the job and no_return events' fields.
    let events = Saltship::dry_run(&crate::common::testdata("fleet/jobs"))
        .more(["--events", "all"])
        .run()
        .events;
    // Splunk's own words and the names the searches define; the rest must be event fields.
    let splunk = [
        "index",
        "sourcetype",
        "OR",
        "salt",
        "saltship",
        "search",
        "stats",
        "count",
        "eval",
        "as",
        "by",
        "round",
        "fields",
        "top",
        "limit",
        "sort",
        "dc",
        "true",
        "false",
        "succeeded",
        "total",
        "success_pct",
        "failed",
        "states",
        "NOT",
        "job",
        "no_return",
        "sum",
        "latest",
        "timechart",
        "jobs",
        "targeted",
        "returned",
        "missed",
        "last_missed_jid",
    ];
    let mut fields = 0;
    for query in xml.split("<query>").skip(1) {
        let query = query.split("</query>").next().expect("query");
        for word in query
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty() && !w.chars().all(|c| c.is_ascii_digit()))
            .filter(|w| !splunk.contains(w))
        {
            assert!(
                events.iter().any(|e| e.get(word).is_some()),
                "{word} is not an event field"
            );
            fields += 1;
        }
    }
    assert!(xml.contains("top limit=20 state_id") && fields >= 3);
    for kind in ["event_type=job", "event_type=no_return"] {
        assert!(
            xml.contains(&format!("search {kind} |")),
            "no panel of {kind}"
        );
    }
    // HEC users see the dashboard too: its default sourcetype is in the base search.
    assert!(xml.contains("sourcetype=\"salt:state\""));
}

/// A dry run's numbers are not the live ones: `sync --dry-run` and `watch --dry-run` leave the
/// metrics file as it was, whether it is named by the flag or by the environment (as from
/// /etc/default/saltship).
#[test]
fn a_dry_run_never_writes_the_metrics_file() {
    let (tmp, jobs) = cache_copy("jobs");
    let file = tmp.path().join("saltship.prom");
    std::fs::write(&file, "saltship_events_total 7\n").expect("the live file");
    for run in [
        Saltship::sync(&jobs)
            .arg("--dry-run")
            .arg("--metrics-file")
            .arg(&file),
        Saltship::sync(&jobs)
            .arg("--dry-run")
            .env("SALTSHIP_METRICS_FILE", &file),
        Saltship::watch(&jobs)
            .arg("--dry-run")
            .env("SALTSHIP_METRICS_FILE", &file),
    ] {
        let run = run.run();
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(!run.events.is_empty(), "{}", run.stderr);
        let text = std::fs::read_to_string(&file).expect("metrics file");
        assert_eq!(text, "saltship_events_total 7\n");
    }
}

/// The file names under `dir`.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A metrics file that cannot be written (a folder in its place, a folder that is missing):
/// `sync` warns once, leaves no `.prom.tmp` behind and exits 1 (docs/metrics.md).
#[test]
fn sync_with_an_unwritable_metrics_file_warns_once_leaves_no_litter_and_exits_1() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let jobs = tmp.path().join("jobs");
    std::fs::create_dir(&jobs).expect("an empty cache");
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let folder = out.join("saltship.prom");
    std::fs::create_dir(&folder).expect("a folder as the file");
    for (file, why) in [
        (folder.clone(), "is a folder"),
        (out.join("missing/saltship.prom"), "No such file"),
    ] {
        let run = Saltship::sync(&jobs)
            .target("127.0.0.1:9")
            .arg("--metrics-file")
            .arg(&file)
            .run_text();
        assert_eq!(run.code, 1, "{}", run.stderr);
        let warnings: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.contains("metrics file"))
            .collect();
        assert_eq!(warnings.len(), 1, "{}", run.stderr);
        assert!(
            warnings[0].contains(p(&file)) && warnings[0].contains(why),
            "{}",
            run.stderr
        );
        assert_eq!(names(&out), ["saltship.prom"], "no temp file left");
    }
}

/// Under `watch`, a metrics file that cannot be written is one warning (not one every 10 s),
/// and one line when it is written again; no temp file is left behind meanwhile.
#[test]
fn watch_warns_once_about_an_unwritable_metrics_file_and_once_when_it_recovers() {
    let (tmp, jobs) = cache_copy("jobs");
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let file = out.join("saltship.prom");
    std::fs::create_dir(&file).expect("a folder as the file");
    let receiver = Receiver::start(Faults::default());
    let state = tmp.path().join("state");
    let watch = Watch::start(
        &jobs,
        &state,
        &receiver.target(),
        &[("SALTSHIP_METRICS_FILE", p(&file))],
    );
    let within = |what: &str, secs: u64| {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !watch.log().contains(what) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        watch.log().contains(what)
    };
    assert!(within("is a folder", 20), "{}", watch.log());
    // Two more writes (every 10 s) fail the same way, unsaid.
    std::thread::sleep(Duration::from_secs(21));
    assert_eq!(names(&out), ["saltship.prom"], "no temp file left");
    std::fs::remove_dir(&file).expect("rmdir");
    assert!(within("written again", 15), "{}", watch.log());
    let (code, _, log) = watch.stop();
    assert_eq!(code, 0, "{log}");
    let about: Vec<&str> = log.lines().filter(|l| l.contains(p(&file))).collect();
    assert_eq!(about.len(), 2, "one warning, one recovery line: {log}");
    assert!(std::fs::read_to_string(&file).is_ok_and(|t| t.contains("saltship_events_total")));
}
