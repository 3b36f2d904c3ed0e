//! Reading Salt's `.p` files: one msgpack object per file, decoded without copying into a
//! borrowed [`ValueRef`], tolerant of every shape Salt has written (see salt-cache-notes §2).

use std::fmt;
use std::io;
use std::path::Path;

use rmpv::ValueRef;

/// Why a cache file could not be used. Callers branch on the kind: a truncated `.load.p`
/// may still be being written, a vanished file was removed by the master's cleanup, and only
/// a [permanent](ReadError::is_permanent) error may be recorded as done.
#[derive(Debug)]
pub(crate) enum ReadError {
    Io(io::Error),
    /// Not a regular file (a FIFO, socket, device or folder): never opened for reading.
    NotRegular(&'static str),
    /// Larger than the cap (`--max-return-bytes`): (its size, the cap).
    TooBig(u64, u64),
    Empty,
    Truncated,
    Corrupt(String),
    /// msgpack, but not the shape the file must have (a `.minions.p` that is not a list of
    /// minion ids).
    Shape(&'static str),
}

impl ReadError {
    /// The file is gone (master cleanup raced us); not the file's fault.
    pub(crate) fn is_vanished(&self) -> bool {
        matches!(self, ReadError::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }

    /// Broken for good: the same bytes will fail the same way at the next pass, so the file may
    /// be recorded after its one warning. Everything else (permission denied, I/O error, out of
    /// memory, too many open files, vanished, over the size cap) depends on the moment or the
    /// configuration, and is tried again.
    pub(crate) fn is_permanent(&self) -> bool {
        matches!(
            self,
            ReadError::NotRegular(_)
                | ReadError::Empty
                | ReadError::Truncated
                | ReadError::Corrupt(_)
                | ReadError::Shape(_)
        )
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(e) if e.kind() == io::ErrorKind::NotFound => f.write_str("vanished"),
            ReadError::Io(e) => write!(f, "unreadable: {e}"),
            ReadError::NotRegular(kind) => write!(f, "not a regular file ({kind}): not read"),
            ReadError::TooBig(size, cap) => write!(
                f,
                "{size} bytes, more than --max-return-bytes {cap}: not read"
            ),
            ReadError::Empty => f.write_str("empty file"),
            ReadError::Truncated => f.write_str("truncated msgpack"),
            ReadError::Corrupt(why) => write!(f, "not msgpack: {why}"),
            ReadError::Shape(why) => f.write_str(why),
        }
    }
}

/// Reads a whole regular file of at most `max` bytes; the bytes outlive the values decoded
/// from them. Opened without blocking, so a FIFO in the cache (or a device) cannot hang a run,
/// and never read beyond `max`, so a file that grows (or `/dev/zero` behind a link) cannot
/// fill the memory.
pub(crate) fn read_file(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};

    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(ReadError::Io)?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    let t = meta.file_type();
    if !t.is_file() {
        return Err(ReadError::NotRegular(match () {
            _ if t.is_dir() => "a folder",
            _ if t.is_fifo() => "a FIFO",
            _ if t.is_socket() => "a socket",
            _ if t.is_char_device() || t.is_block_device() => "a device",
            _ => "not a file",
        }));
    }
    if meta.len() > max {
        return Err(ReadError::TooBig(meta.len(), max));
    }
    let mut buf = Vec::new();
    // A return too big for the memory left is a failed file for now, not an abort.
    buf.try_reserve_exact(meta.len() as usize + 1)
        .map_err(|_| ReadError::Io(io::ErrorKind::OutOfMemory.into()))?;
    file.take(max.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(ReadError::Io)?;
    if buf.len() as u64 > max {
        return Err(ReadError::TooBig(buf.len() as u64, max));
    }
    Ok(buf)
}

/// How deep values may nest, counted as rmpv counts it (a container costs two, a string
/// three): the limit, and so the files refused as corrupt, stay what they were with rmpv.
const MAX_DEPTH: u16 = 1024;

/// Decodes exactly one msgpack object that fills `buf`, borrowing its strings and bytes.
///
/// Our own decoder rather than rmpv's (whose values it still builds): a quarter faster on the
/// benchmark corpus, because it gives each map and array its room up front (rmpv grows them
/// from empty), capped by the bytes left so a corrupt length cannot ask for a huge
/// allocation, and because everything but the recursion is inlined into one function.
pub(crate) fn decode(buf: &[u8]) -> Result<ValueRef<'_>, ReadError> {
    decode_noting(buf).map(|(value, _)| value)
}

/// [`decode`], and whether any string in the object (a map key too) was not UTF-8 (a
/// Python 2 master's bytes in a str): the only case in which a value goes out altered.
pub(crate) fn decode_noting(buf: &[u8]) -> Result<(ValueRef<'_>, bool), ReadError> {
    if buf.is_empty() {
        return Err(ReadError::Empty);
    }
    let mut d = Decoder {
        buf,
        pos: 0,
        lossy: false,
    };
    let value = d.value(MAX_DEPTH).map_err(|bad| match bad {
        Bad::Truncated => ReadError::Truncated,
        Bad::Deep => ReadError::Corrupt("depth limit exceeded".into()),
        Bad::OutOfMemory => ReadError::Io(io::ErrorKind::OutOfMemory.into()),
    })?;
    if d.pos != buf.len() {
        // Plain text decodes as a fixint followed by junk: that is not a Salt file.
        return Err(ReadError::Corrupt(format!(
            "{} trailing bytes after the first object",
            buf.len() - d.pos
        )));
    }
    Ok((value, d.lossy))
}

/// Why decoding stopped; small, so that results move cheaply up the recursion.
#[derive(Debug, Clone, Copy)]
enum Bad {
    Truncated,
    Deep,
    /// A map or array larger than the memory left: transient, unlike the other two.
    OutOfMemory,
}

/// A cursor over one file's bytes. The helpers are `inline(always)`: left to itself the
/// compiler kept them as calls, and the decoder was then slower than rmpv's.
struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    /// A string that was not UTF-8 was met.
    lossy: bool,
}

impl<'a> Decoder<'a> {
    #[inline(always)]
    fn take(&mut self, n: usize) -> Result<&'a [u8], Bad> {
        let end = self.pos.checked_add(n).ok_or(Bad::Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(Bad::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    #[inline(always)]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Bad> {
        let bytes = self.take(N)?;
        Ok(bytes.try_into().expect("take gave N bytes"))
    }

    #[inline(always)]
    fn u8(&mut self) -> Result<u8, Bad> {
        let b = *self.buf.get(self.pos).ok_or(Bad::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    /// A big-endian length of `width` bytes (1, 2 or 4).
    #[inline(always)]
    fn len(&mut self, width: u8) -> Result<usize, Bad> {
        Ok(match width {
            1 => usize::from(self.u8()?),
            2 => usize::from(u16::from_be_bytes(self.array()?)),
            _ => u32::from_be_bytes(self.array()?) as usize,
        })
    }

    #[inline(always)]
    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn value(&mut self, depth: u16) -> Result<ValueRef<'a>, Bad> {
        let depth = deeper(depth)?;
        let start = self.pos;
        let marker = self.u8()?;
        Ok(match marker {
            0x00..=0x7f => ValueRef::from(marker),
            0x80..=0x8f => self.map(usize::from(marker & 0x0f), depth)?,
            0x90..=0x9f => self.seq(usize::from(marker & 0x0f), depth)?,
            0xa0..=0xbf => self.str(start, usize::from(marker & 0x1f), depth)?,
            // 0xc1 is reserved: rmpv reads it as nil, and so do we.
            0xc0 | 0xc1 => ValueRef::Nil,
            0xc2 => ValueRef::Boolean(false),
            0xc3 => ValueRef::Boolean(true),
            0xc4..=0xc6 => {
                let n = self.len(1 << (marker - 0xc4))?;
                deeper(depth)?;
                ValueRef::Binary(self.take(n)?)
            }
            0xc7..=0xc9 => {
                let n = self.len(1 << (marker - 0xc7))?;
                self.ext(n, depth)?
            }
            0xca => ValueRef::F32(f32::from_be_bytes(self.array()?)),
            0xcb => ValueRef::F64(f64::from_be_bytes(self.array()?)),
            0xcc => ValueRef::from(self.u8()?),
            0xcd => ValueRef::from(u16::from_be_bytes(self.array()?)),
            0xce => ValueRef::from(u32::from_be_bytes(self.array()?)),
            0xcf => ValueRef::from(u64::from_be_bytes(self.array()?)),
            0xd0 => ValueRef::from(i8::from_be_bytes(self.array()?)),
            0xd1 => ValueRef::from(i16::from_be_bytes(self.array()?)),
            0xd2 => ValueRef::from(i32::from_be_bytes(self.array()?)),
            0xd3 => ValueRef::from(i64::from_be_bytes(self.array()?)),
            0xd4..=0xd8 => self.ext(1 << (marker - 0xd4), depth)?,
            0xd9..=0xdb => {
                let n = self.len(1 << (marker - 0xd9))?;
                self.str(start, n, depth)?
            }
            0xdc | 0xdd => {
                let n = self.len(2 << (marker - 0xdc))?;
                self.seq(n, depth)?
            }
            0xde | 0xdf => {
                let n = self.len(2 << (marker - 0xde))?;
                self.map(n, depth)?
            }
            0xe0..=0xff => ValueRef::from(marker as i8),
        })
    }

    #[inline(always)]
    fn str(&mut self, start: usize, n: usize, depth: u16) -> Result<ValueRef<'a>, Bad> {
        deeper(deeper(depth)?)?;
        let bytes = self.take(n)?;
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(ValueRef::from(text)),
            // Invalid UTF-8 (Python 2 masters) keeps its bytes in a form only rmpv can build:
            // let it decode this one string again (it cannot fail: the bytes are all there).
            Err(_) => {
                self.lossy = true;
                rmpv::decode::read_value_ref(&mut &self.buf[start..self.pos])
                    .map_err(|_| Bad::Truncated)
            }
        }
    }

    #[inline(always)]
    fn ext(&mut self, n: usize, depth: u16) -> Result<ValueRef<'a>, Bad> {
        let depth = deeper(depth)?;
        let code = i8::from_be_bytes(self.array()?);
        deeper(depth)?;
        Ok(ValueRef::Ext(code, self.take(n)?))
    }

    #[inline(always)]
    fn seq(&mut self, n: usize, depth: u16) -> Result<ValueRef<'a>, Bad> {
        let depth = deeper(depth)?;
        // Every item takes at least a byte: a corrupt length cannot reserve more than the file.
        let mut items = Vec::new();
        items
            .try_reserve_exact(n.min(self.left()))
            .map_err(|_| Bad::OutOfMemory)?;
        for _ in 0..n {
            items.push(self.value(depth)?);
        }
        Ok(ValueRef::Array(items))
    }

    #[inline(always)]
    fn map(&mut self, n: usize, depth: u16) -> Result<ValueRef<'a>, Bad> {
        let depth = deeper(depth)?;
        // Every entry takes at least two bytes.
        let mut entries = Vec::new();
        entries
            .try_reserve_exact(n.min(self.left() / 2))
            .map_err(|_| Bad::OutOfMemory)?;
        for _ in 0..n {
            let key = self.value(depth)?;
            entries.push((key, self.value(depth)?));
        }
        Ok(ValueRef::Map(entries))
    }
}

/// One level deeper, or the file nests too deep.
#[inline(always)]
fn deeper(depth: u16) -> Result<u16, Bad> {
    depth.checked_sub(1).ok_or(Bad::Deep)
}

/// Looks up `key` in a msgpack map whose keys may be str or bin (Python 2 masters wrote raw).
pub(crate) fn get<'v, 'a>(map: &'v ValueRef<'a>, key: &str) -> Option<&'v ValueRef<'a>> {
    match map {
        ValueRef::Map(entries) => entries
            .iter()
            .find(|(k, _)| as_bytes(k) == Some(key.as_bytes()))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// The bytes of a str or bin value, whatever its UTF-8 validity.
pub(crate) fn as_bytes<'v>(v: &'v ValueRef<'_>) -> Option<&'v [u8]> {
    match v {
        ValueRef::String(s) => Some(s.as_bytes()),
        ValueRef::Binary(b) => Some(b),
        _ => None,
    }
}

/// A str or bin value as text; invalid UTF-8 is replaced (Python 2 masters wrote any bytes).
pub(crate) fn as_text<'v>(v: &'v ValueRef<'_>) -> Option<std::borrow::Cow<'v, str>> {
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

    /// The decoder this one replaced: rmpv's, with the same mapping of its errors.
    fn with_rmpv(buf: &[u8]) -> Result<ValueRef<'_>, ReadError> {
        if buf.is_empty() {
            return Err(ReadError::Empty);
        }
        let mut rest = buf;
        let value = rmpv::decode::read_value_ref(&mut rest).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => ReadError::Truncated,
            _ => ReadError::Corrupt(e.to_string()),
        })?;
        if !rest.is_empty() {
            return Err(ReadError::Corrupt(format!(
                "{} trailing bytes after the first object",
                rest.len()
            )));
        }
        Ok(value)
    }

    /// Same value, or the same kind of error with the same message.
    fn assert_same_as_rmpv(buf: &[u8]) {
        match (decode(buf), with_rmpv(buf)) {
            (Ok(ours), Ok(theirs)) => assert_eq!(ours, theirs, "{buf:02x?}"),
            (Err(ours), Err(theirs)) => assert_eq!(ours.to_string(), theirs.to_string()),
            (ours, theirs) => panic!("{buf:02x?}: ours {ours:?}, rmpv {theirs:?}"),
        }
    }

    fn encoded(v: &rmpv::Value) -> Vec<u8> {
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, v).expect("encode into a Vec");
        buf
    }

    /// Every kind of value, each cut at every length: as rmpv read them.
    #[test]
    fn decoding_notes_a_string_that_is_not_utf8_in_a_key_or_a_value() {
        // {"a": ["b", "\xff"]}, {"\xff": 1}, {"a": "é"}
        let value_bad = [0x81, 0xa1, b'a', 0x92, 0xa1, b'b', 0xa1, 0xff];
        let key_bad = [0x81, 0xa1, 0xff, 0x01];
        let fine = [0x81, 0xa1, b'a', 0xa2, 0xc3, 0xa9];
        for (buf, lossy) in [
            (&value_bad[..], true),
            (&key_bad[..], true),
            (&fine[..], false),
        ] {
            let (value, noted) = decode_noting(buf).expect("decodes");
            assert_eq!(noted, lossy, "{buf:?}");
            assert_eq!(crate::json::lossy(&value), lossy, "{buf:?}");
        }
    }

    #[test]
    fn decodes_every_kind_as_rmpv_did() {
        use rmpv::Value;
        let values = [
            Value::Nil,
            Value::from(true),
            Value::from(false),
            Value::from(0),
            Value::from(127),
            Value::from(128),
            Value::from(-1),
            Value::from(-32),
            Value::from(-33),
            Value::from(-129),
            Value::from(-40_000),
            Value::from(65_536),
            Value::from(u64::MAX),
            Value::from(i64::MIN),
            Value::F32(1.5),
            Value::F64(-2.25),
            Value::from(""),
            Value::from("short"),
            Value::from("x".repeat(40).as_str()),
            Value::from("é".repeat(300).as_str()),
            Value::from("x".repeat(70_000).as_str()),
            Value::Binary(vec![]),
            Value::Binary(vec![1, 2, 3]),
            Value::Binary(vec![7; 300]),
            Value::Binary(vec![7; 70_000]),
            Value::Ext(78, b"20261123T18:57:50.440911".to_vec()),
            Value::Ext(79, vec![0xc0]),
            Value::Ext(5, vec![1; 2]),
            Value::Ext(5, vec![1; 4]),
            Value::Ext(5, vec![1; 8]),
            Value::Ext(5, vec![1; 16]),
            Value::Ext(-3, vec![1; 300]),
            Value::Ext(-3, vec![1; 70_000]),
            Value::Array(vec![]),
            Value::Array((0..20).map(Value::from).collect()),
            Value::Array((0..70_000).map(Value::from).collect()),
            Value::Map(vec![]),
            Value::Map(
                (0..20)
                    .map(|i| (Value::from(i), Value::from(format!("v{i}").as_str())))
                    .collect(),
            ),
            Value::Map(vec![(
                Value::Binary(b"fun".to_vec()),
                Value::Array(vec![Value::Nil, Value::Map(vec![])]),
            )]),
        ];
        for v in &values {
            let buf = encoded(v);
            assert_eq!(
                decode(&buf).expect("valid"),
                with_rmpv(&buf).expect("valid")
            );
            for cut in (0..buf.len()).filter(|c| *c < 64 || c % 997 == 0) {
                assert_same_as_rmpv(&buf[..cut]);
            }
            let mut trailing = buf.clone();
            trailing.push(0);
            assert_same_as_rmpv(&trailing);
        }
    }

    /// Invalid UTF-8, the reserved marker, lengths past the end, and nesting at and past the
    /// depth limit, for arrays, maps, strings, bins and exts at the bottom.
    #[test]
    fn odd_and_hostile_inputs_fail_as_they_did() {
        for buf in [
            &[0xa2, 0xff, b'a'][..],
            &[0x92, 0xd9, 2, 0xc3, 0x28, 0xc1],
            &[0xc1],
            &[0xdd, 0xff, 0xff, 0xff, 0xff],
            &[0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0],
            &[0xdb, 0xff, 0xff, 0xff, 0xff, b'a'],
            &[0xc6, 0xff, 0xff, 0xff, 0xff],
            &[0xc9, 0xff, 0xff, 0xff, 0xff, 78],
        ] {
            assert_same_as_rmpv(buf);
        }
        let leaves: [&[u8]; 7] = [
            &[0xc0],
            &[0x90],
            &[0x80],
            &[0xa1, b'a'],
            &[0xc4, 1, 1],
            &[0xd4, 78, 1],
            &[0x81, 0xc0],
        ];
        // Unoptimised test builds need more stack for 500 levels than release builds do.
        let deep = move || {
            for leaf in leaves {
                for levels in (505..=515).chain([1, 2000]) {
                    for open in [0x91, 0x81] {
                        let mut buf = Vec::new();
                        for _ in 0..levels {
                            buf.push(open);
                            if open == 0x81 {
                                buf.push(0xc0);
                            }
                        }
                        buf.extend_from_slice(leaf);
                        assert_same_as_rmpv(&buf);
                    }
                }
            }
        };
        std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn(deep)
            .expect("a test thread")
            .join()
            .expect("no panic");
    }

    /// Mutated real-looking files: whatever rmpv made of them, we make of them.
    #[test]
    fn mutated_files_decode_as_with_rmpv() {
        let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/jobs");
        let mut files = Vec::new();
        for entry in walkdir::WalkDir::new(fixture).sort_by_file_name() {
            let entry = entry.expect("fixture readable");
            if entry.file_name().to_string_lossy().ends_with(".p") {
                files.push(std::fs::read(entry.path()).expect("fixture readable"));
            }
        }
        assert!(files.len() > 10);
        // A fixed xorshift: the same mutations every run.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for file in files.iter().cycle().take(4000) {
            assert_same_as_rmpv(file);
            let mut bad = file.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % bad.len();
                bad[at] = next() as u8;
            }
            let cut = (next() as usize) % (bad.len() + 1);
            assert_same_as_rmpv(&bad);
            assert_same_as_rmpv(&bad[..cut]);
        }
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
