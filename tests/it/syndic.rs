//! A minion below a syndic, from real Salt 3008.5 daemons (`testdata/syndic/`): the master of
//! masters (`top/`, `testmaster`, `order_masters`) and the syndic's own master (`syndic/`,
//! `syndicmaster`) both store its returns under one jid. Each master's saltship ships every
//! state result as that master's `salt-run jobs.list_job` shows it, and both ship the same
//! `event_id`s: only `master` differs, so a receiver that drops duplicate ids keeps one.

use crate::common::view::{check, expected_in};
use crate::common::{cache_copy, p, testdata, Run, Saltship};
use serde_json::Value;

const SIDES: [(&str, &str); 2] = [("top", "testmaster"), ("syndic", "syndicmaster")];

fn ship(side: &str, master: &str) -> Run {
    let (_tmp, jobs) = cache_copy(&format!("syndic/{side}/jobs"));
    let run = Saltship::args(["backfill", "--dry-run", "--master-id", master])
        .more(["--cache-dir", p(&jobs)])
        .run();
    assert_eq!(run.code, 0, "{side}: {}", run.stderr);
    run
}

#[test]
fn each_master_ships_every_state_result_as_its_own_salt_view_shows() {
    for (side, master) in SIDES {
        let run = ship(side, master);
        let seen = check(&run, &expected_in(&format!("syndic/{side}/expected")));
        assert_eq!(
            seen,
            run.events.len(),
            "{side}: events for returns Salt does not show as state results"
        );
        assert!(seen > 0, "{side}: nothing shipped");
        for ev in &run.events {
            assert_eq!(ev["master"], master, "{side}");
            assert_eq!(ev["minion_id"], "app1", "{side}");
        }
    }
}

#[test]
fn every_case_ships_from_both_masters() {
    let cases: Vec<Value> =
        serde_json::from_slice(&std::fs::read(testdata("syndic/cases.json")).expect("cases"))
            .expect("JSON");
    for (side, master) in SIDES {
        let run = ship(side, master);
        for case in &cases {
            let n = run
                .events
                .iter()
                .filter(|e| e["jid"] == case["jid"])
                .count();
            let name = &case["case"];
            match case["expect"].as_str().expect("expect") {
                "states" => assert!(n > 0, "{side}/{name}: no events"),
                "error-event" => assert_eq!(n, 1, "{side}/{name}"),
                _ => assert_eq!(n, 0, "{side}/{name}"),
            }
        }
    }
}

#[test]
fn both_masters_ship_the_same_event_ids_and_only_master_differs() {
    let [top, lower] = SIDES.map(|(side, master)| {
        ship(side, master)
            .events
            .into_iter()
            .map(|mut e| {
                assert_eq!(e["master"], master);
                e.as_object_mut().expect("object").remove("master");
                e
            })
            .collect::<Vec<Value>>()
    });
    assert!(!top.is_empty());
    assert_eq!(top.len(), lower.len(), "event counts differ");
    for (t, l) in top.iter().zip(&lower) {
        assert_eq!(t, l, "the two masters' events differ beyond `master`");
    }
}
