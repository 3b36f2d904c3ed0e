//! Real receivers: rsyslog (imtcp) started by the test on 127.0.0.1, writing what it receives
//! to a file. Every event must arrive intact and parse back. CI installs rsyslog and sets
//! SALTSHIP_REQUIRE_RECEIVERS=1, so there a missing rsyslogd fails instead of skipping.

use crate::common::rsyslog::{contrib_conf, rsyslogd, Rsyslog};
use crate::common::{cache_copy, free_port, Saltship};
use serde_json::Value;

/// `contrib/rsyslog/saltship.conf`, the config the README gives, with this test's ports and
/// folder: both of its inputs, json lines and RFC 5424 syslog, deliver every event intact.
#[test]
fn the_contrib_rsyslog_config_receives_json_and_syslog() {
    let Some(bin) = rsyslogd() else { return };
    let (tmp, jobs) = cache_copy("jobs");
    // What is sent: events cut to the default 10,000 bytes (the dry-run prints them whole).
    let want = Saltship::dry_run(&jobs)
        .more(["--max-event-bytes", "10000"])
        .run();
    assert!(
        want.events.iter().any(|e| e["truncated"] == true),
        "no event big enough to be cut"
    );
    let (json_port, syslog_port) = (free_port(), free_port());
    let conf = contrib_conf(json_port, syslog_port, tmp.path());
    let rsyslog = Rsyslog::start(&bin, tmp.path(), &conf, &[json_port, syslog_port]);
    for (port, format) in [(json_port, "json"), (syslog_port, "syslog")] {
        let run = Saltship::backfill(&jobs)
            .target(&format!("127.0.0.1:{port}"))
            .more(["--format", format])
            .run();
        assert_eq!(run.code, 0, "{format}: {}", run.stderr);
    }
    rsyslog.assert_contrib_outputs(&want.events);
}

/// RFC 5424 frames with octet counting, parsed by rsyslog itself: its view of each message's
/// header, structured data and MSG is written back as JSON.
#[test]
fn rsyslog_parses_octet_counted_rfc5424() {
    let Some(bin) = rsyslogd() else { return };
    let (tmp, jobs) = cache_copy("jobs");
    let want = Saltship::dry_run(&jobs)
        .more(["--max-event-bytes", "10000"])
        .run();
    let template = r#"template(name="out" type="list" option.jsonf="on") {
  property(outname="host" name="hostname" format="jsonf")
  property(outname="app" name="app-name" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="sd" name="structured-data" format="jsonf")
  property(outname="pri" name="syslogseverity" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
}"#;
    let port = free_port();
    let conf = format!(
        r#"global(maxMessageSize="64k")
module(load="imtcp")
{template}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="saltship")
ruleset(name="saltship") {{ action(type="omfile" file="{}/received.log" template="out") }}
"#,
        tmp.path().display()
    );
    let rsyslog = Rsyslog::start(&bin, tmp.path(), &conf, &[port]);
    let run = Saltship::backfill(&jobs)
        .target(&format!("127.0.0.1:{port}"))
        .more(["--format", "syslog"])
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    // jsonf writes one object per message, with nothing between them.
    let text = rsyslog.output("received.log", |t| {
        t.matches(r#""msgid":"#).count() >= want.events.len()
    });
    let records: Vec<Value> = serde_json::Deserializer::from_str(&text)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("rsyslog wrote bad JSON ({e}): {text}"));
    assert_eq!(records.len(), want.events.len(), "one message per event");
    let mut got = std::collections::HashMap::new();
    for rec in &records {
        let msg: Value = serde_json::from_str(rec["msg"].as_str().expect("msg").trim_start())
            .unwrap_or_else(|e| panic!("MSG is not the JSON event ({e}): {rec}"));
        assert_eq!(rec["host"], msg["minion_id"], "{rec}");
        assert_eq!(rec["app"], "saltship");
        assert_eq!(rec["msgid"], "state");
        let sd = rec["sd"].as_str().expect("sd");
        assert!(
            sd.starts_with("[saltship@32473 ")
                && sd.contains(&format!("jid=\"{}\"", msg["jid"].as_str().expect("jid"))),
            "{sd}"
        );
        let severity = match &msg["result"] {
            Value::Bool(true) => "6",
            Value::Bool(false) => "3",
            _ => "4",
        };
        assert_eq!(rec["pri"], severity, "{rec}");
        got.insert(msg["event_id"].as_str().expect("id").to_owned(), msg);
    }
    for ev in &want.events {
        let msg = got
            .get(ev["event_id"].as_str().expect("id"))
            .unwrap_or_else(|| panic!("lost: {ev}"));
        // The size limit covers the syslog header too, so a cut event is cut a little more.
        if ev["truncated"] == true {
            assert_eq!(msg["truncated"], true);
        } else {
            assert_eq!(msg, ev, "changed in transit");
        }
    }
}
