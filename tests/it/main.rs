//! The integration tests, one crate (one link, one `common` compiled once): each file is a
//! module named for what it covers, driving the built binary (`common::Saltship`) against a
//! copy of `testdata/` and, where a receiver is needed, a real one started on 127.0.0.1.
//! `cargo test --test it <module>::` runs one file's tests.

mod common;

mod bad_input;
mod check;
mod checkpoint;
mod cli;
mod cluster;
mod config;
mod counts;
mod delivery;
mod faults;
mod filters;
mod first_run;
mod fixtures;
mod http_acks;
mod http_faults;
mod http_receivers;
mod job_events;
mod job_files;
mod kafka;
mod kafka_live;
mod legacy;
mod live_jobs;
mod man;
mod metrics;
mod metrics_fleet;
mod metrics_serve;
mod operator;
mod otlp;
mod otlp_faults;
mod receivers;
mod rejected;
mod relp;
mod salt2019;
mod secrets;
mod sync;
mod syndic;
mod tls;
mod watch;
