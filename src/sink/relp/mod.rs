//! The RELP sink: rsyslog's acknowledged protocol (see `frame.rs` for the wire format).

pub(crate) mod frame;
pub(crate) mod link;
pub(crate) mod session;
