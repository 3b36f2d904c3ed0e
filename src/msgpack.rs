//! Reading Salt's `.p` files: one msgpack object per file, decoded without copying into a
//! borrowed [`ValueRef`], tolerant of every shape Salt has written (see salt-cache-notes §2).

use std::fmt;
use std::io;
use std::path::Path;

use rmpv::ValueRef;

/// Why a cache file could not be used. Callers branch on the kind: a truncated `.load.p`
/// may still be being written, a vanished file was removed by the master's cleanup.
#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    Empty,
    Truncated,
    Corrupt(String),
}

impl ReadError {
    /// The file is gone (master cleanup raced us); not the file's fault.
    pub fn is_vanished(&self) -> bool {
        matches!(self, ReadError::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(e) if e.kind() == io::ErrorKind::NotFound => f.write_str("vanished"),
            ReadError::Io(e) => write!(f, "unreadable: {e}"),
            ReadError::Empty => f.write_str("empty file"),
            ReadError::Truncated => f.write_str("truncated msgpack"),
            ReadError::Corrupt(why) => write!(f, "not msgpack: {why}"),
        }
    }
}

/// Reads a whole file; the bytes outlive the values decoded from them.
pub fn read_file(path: &Path) -> Result<Vec<u8>, ReadError> {
    std::fs::read(path).map_err(ReadError::Io)
}

/// Decodes exactly one msgpack object that fills `buf`.
pub fn decode(buf: &[u8]) -> Result<ValueRef<'_>, ReadError> {
    if buf.is_empty() {
        return Err(ReadError::Empty);
    }
    let mut rest = buf;
    let value = rmpv::decode::read_value_ref(&mut rest).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => ReadError::Truncated,
        _ => ReadError::Corrupt(e.to_string()),
    })?;
    if !rest.is_empty() {
        // Plain text decodes as a fixint followed by junk: that is not a Salt file.
        return Err(ReadError::Corrupt(format!(
            "{} trailing bytes after the first object",
            rest.len()
        )));
    }
    Ok(value)
}

/// Looks up `key` in a msgpack map whose keys may be str or bin (Python 2 masters wrote raw).
pub fn get<'v, 'a>(map: &'v ValueRef<'a>, key: &str) -> Option<&'v ValueRef<'a>> {
    match map {
        ValueRef::Map(entries) => entries
            .iter()
            .find(|(k, _)| as_bytes(k) == Some(key.as_bytes()))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// The bytes of a str or bin value, whatever its UTF-8 validity.
pub fn as_bytes<'v>(v: &'v ValueRef<'_>) -> Option<&'v [u8]> {
    match v {
        ValueRef::String(s) => Some(s.as_bytes()),
        ValueRef::Binary(b) => Some(b),
        _ => None,
    }
}

/// A str or bin value as text; invalid UTF-8 is replaced (Python 2 masters wrote any bytes).
pub fn as_text<'v>(v: &'v ValueRef<'_>) -> Option<std::borrow::Cow<'v, str>> {
    match v {
        // rmpv validated the UTF-8 already.
        ValueRef::String(s) => Some(s.as_str().map_or_else(
            || String::from_utf8_lossy(s.as_bytes()),
            std::borrow::Cow::Borrowed,
        )),
        _ => as_bytes(v).map(String::from_utf8_lossy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_truncated_and_text_are_told_apart() {
        assert!(matches!(decode(b""), Err(ReadError::Empty)));
        // fixmap with one entry whose value is missing
        assert!(matches!(
            decode(&[0x81, 0xa1, b'a']),
            Err(ReadError::Truncated)
        ));
        // str8 announcing 200 bytes, 3 present
        assert!(matches!(
            decode(&[0xd9, 200, 1, 2, 3]),
            Err(ReadError::Truncated)
        ));
        assert!(matches!(decode(b"hello world"), Err(ReadError::Corrupt(_))));
    }

    #[test]
    fn str_and_bin_keys_both_match() {
        // {"fun": "x"} with the key as bin8 and as fixstr
        let bin_key = [0x81, 0xc4, 3, b'f', b'u', b'n', 0xa1, b'x'];
        let str_key = [0x81, 0xa3, b'f', b'u', b'n', 0xa1, b'x'];
        for buf in [&bin_key[..], &str_key[..]] {
            let v = decode(buf).expect("valid");
            assert_eq!(as_text(get(&v, "fun").expect("key")).as_deref(), Some("x"));
        }
    }

    #[test]
    fn invalid_utf8_is_decoded_lossily() {
        let buf = [0xa2, 0xff, b'a'];
        let v = decode(&buf).expect("valid msgpack");
        assert_eq!(as_text(&v).as_deref(), Some("\u{fffd}a"));
    }
}
