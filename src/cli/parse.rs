//! Parse helpers for the command line: booleans from the environment, sizes, socket
//! addresses, and what the host tells (its name, the journal stream).

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use clap::builder::TypedValueParser;
use clap::error::ErrorKind;

/// A boolean from the environment in any usual spelling (1/0, yes/no, on/off, true/false, any
/// case); a bad one is an error that names the variable.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Boolish;

impl TypedValueParser for Boolish {
    type Value = bool;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<bool, clap::Error> {
        let text = value.to_string_lossy();
        match parse_bool(&text) {
            Some(b) => Ok(b),
            None => {
                let name = arg.map_or_else(String::new, |a| {
                    let long = a.get_long().map(|l| format!("--{l}")).unwrap_or_default();
                    match a.get_env() {
                        Some(env) => format!("{} ({long})", env.to_string_lossy()),
                        None => long,
                    }
                });
                let msg = format!(
                    "invalid value '{text}' for {name}: use 1 or 0, yes or no, on or off, true or false\n"
                );
                Err(clap::Error::raw(ErrorKind::InvalidValue, msg).with_cmd(cmd))
            }
        }
    }
}

/// `1/0`, `yes/no`, `y/n`, `on/off`, `true/false`, in any case; anything else is `None`.
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "on" | "true" => Some(true),
        "0" | "no" | "n" | "off" | "false" | "" => Some(false),
        _ => None,
    }
}

/// `ADDR:PORT` (a host name is resolved now, its first address taken).
pub(super) fn socket_addr(text: &str) -> Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .with_context(|| format!("'{text}': use ADDR:PORT, like 127.0.0.1:9617 or [::]:9617"))?
        .next()
        .with_context(|| format!("'{text}': no address"))
}

/// A size in bytes: `1048576`, `512K`, `64M`, `1G` (powers of 1024; `KiB`, `MiB`, `GiB` too).
pub(super) fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => bail!("'{text}': give bytes, or a number with K, M or G"),
    };
    n.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .filter(|n| *n > 0)
        .with_context(|| format!("'{text}': give a positive size, like 64M"))
}

/// This host's name, the master's default `id`.
pub(crate) fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Whether stderr is the journal stream systemd connected (`$JOURNAL_STREAM` holds its
/// `device:inode`), so log lines may carry syslog priorities.
pub(crate) fn journal_stream() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(wanted) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    std::fs::metadata("/proc/self/fd/2")
        .is_ok_and(|m| wanted.trim() == format!("{}:{}", m.dev(), m.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("1048576").ok(), Some(1 << 20));
        assert_eq!(parse_size("512K").ok(), Some(512 << 10));
        assert_eq!(parse_size("64MiB").ok(), Some(64 << 20));
        assert_eq!(parse_size("2g").ok(), Some(2 << 30));
        for bad in ["", "0", "-1", "12X", "M", "99999999999999G"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
