//! RELP framing as librelp speaks it, without I/O: frames to send, and replies parsed
//! incrementally from whatever bytes the socket handed over so far.
//!
//! A frame is `TXNR SP COMMAND SP DATALEN [SP DATA] LF`: the transaction number has 1 to 9
//! digits, the command 1 to 32 letters, the data length 1 to 9 digits (`0` and no data part
//! when empty). A client numbers its frames 1, 2, 3... within a session (`open` is 1) and the
//! server answers each with `TXNR rsp LEN CODE SP TEXT [LF DATA]`, where CODE is three digits
//! and 200 means done; it may also send the hint `0 serverclose 0` before it closes, which is
//! not answered. librelp (`src/relpframe.c`, `src/scrsp.c`, `src/offers.c`) is the reference;
//! no RELP crate is well kept, hence this module.

use std::fmt;

/// The highest transaction number: librelp writes at most 9 digits.
pub(crate) const MAX_TXNR: u32 = 999_999_999;
/// The longest command name librelp accepts.
const MAX_COMMAND: usize = 32;
/// Digits of a transaction number or a data length.
const MAX_DIGITS: usize = 9;
/// The longest response text: RELP cuts it at 80 characters.
const MAX_TEXT: usize = 80;

/// Appends one frame carrying `data` (which may hold any byte, LF too) to `out`.
pub(crate) fn write(out: &mut Vec<u8>, txnr: u32, command: &str, data: &[u8]) {
    debug_assert!((1..=MAX_TXNR).contains(&txnr), "txnr out of range");
    out.extend_from_slice(format!("{txnr} {command} {}", data.len()).as_bytes());
    if !data.is_empty() {
        out.push(b' ');
        out.extend_from_slice(data);
    }
    out.push(b'\n');
}

/// The data of our `open`: the offers librelp's client makes, with our name and version.
pub(crate) fn open_offers() -> Vec<u8> {
    format!(
        "relp_version=0\nrelp_software=saltship,{}\ncommands=syslog",
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes()
}

/// Whether the offers a server answered `open` with (the data after `200 OK`) enable the
/// `syslog` command, without which nothing can be sent.
pub(crate) fn offers_syslog(offers: &[u8]) -> bool {
    offers.split(|&c| c == b'\n').any(|line| {
        line.strip_prefix(b"commands=")
            .is_some_and(|values| values.split(|&c| c == b',').any(|v| v == b"syslog"))
    })
}

/// One frame the server sent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// The answer to our frame `txnr`.
    Rsp(Rsp),
    /// The server is closing the session: what it has not answered is not done.
    ServerClose,
}

/// A `rsp` frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Rsp {
    pub(crate) txnr: u32,
    /// 200 is success; anything else is an error; 0 when the reply had no data (imrelp's
    /// answer to `close`).
    pub(crate) code: u16,
    /// The human part after the code, at most 80 characters.
    pub(crate) text: String,
    /// What follows the text's LF (the offers, for `open`).
    pub(crate) data: Vec<u8>,
}

impl Rsp {
    pub(crate) fn ok(&self) -> bool {
        self.code == 200
    }
}

/// The server sent something that is not RELP.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FrameError(String);

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a RELP reply: {}", self.0)
    }
}

impl std::error::Error for FrameError {}

fn bad(why: impl Into<String>) -> FrameError {
    FrameError(why.into())
}

/// Frames from a byte stream that arrives in pieces.
#[derive(Debug)]
pub(crate) struct Reader {
    buf: Vec<u8>,
    /// A server frame's data may be at most this long (replies are short).
    max_data: usize,
}

impl Reader {
    pub(crate) fn new(max_data: usize) -> Reader {
        Reader {
            buf: Vec::new(),
            max_data,
        }
    }

    /// Adds bytes read from the socket.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Whether part of a frame is waiting for the rest.
    pub(crate) fn is_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The next whole frame, `None` until one has arrived, or an error as soon as the bytes
    /// cannot be the start of a frame. After an error the stream is lost.
    pub(crate) fn next(&mut self) -> Result<Option<Incoming>, FrameError> {
        let Some(head) = header(&self.buf, self.max_data)? else {
            return Ok(None);
        };
        let end = head.data_at + head.len;
        let Some(&trailer) = self.buf.get(end) else {
            return Ok(None);
        };
        if trailer != b'\n' {
            return Err(bad(format!("frame {} does not end in LF", head.txnr)));
        }
        let data = self.buf[head.data_at..end].to_vec();
        self.buf.drain(..=end);
        incoming(head.txnr, &head.command, &data).map(Some)
    }
}

/// A frame's header, read so far.
struct Header {
    txnr: u32,
    command: String,
    len: usize,
    /// Where the data starts (where the trailer is, when there is none).
    data_at: usize,
}

/// Parses the header at the start of `buf`: `None` while it is incomplete.
fn header(buf: &[u8], max_data: usize) -> Result<Option<Header>, FrameError> {
    let Some((txnr, at)) = number(buf, 0, "transaction number")? else {
        return Ok(None);
    };
    let Some((command, at)) = word(buf, at)? else {
        return Ok(None);
    };
    let Some((len, at)) = number(buf, at, "data length")? else {
        return Ok(None);
    };
    if len > max_data as u64 {
        return Err(bad(format!("{len} bytes of data, more than {max_data}")));
    }
    let len = len as usize;
    let data_at = match (len, buf.get(at - 1)) {
        // `0` and the trailer: `number` stopped at the LF.
        (0, _) => at - 1,
        (_, Some(b' ')) => at,
        _ => return Err(bad("data length not followed by a space")),
    };
    Ok(Some(Header {
        txnr: txnr as u32,
        command,
        len,
        data_at,
    }))
}

/// Digits from `at` up to a space (or an LF, for a data length): the value and where the
/// next field starts.
fn number(buf: &[u8], at: usize, what: &str) -> Result<Option<(u64, usize)>, FrameError> {
    let mut value = 0u64;
    for (i, &c) in buf[at.min(buf.len())..].iter().enumerate() {
        match c {
            b'0'..=b'9' if i < MAX_DIGITS => value = value * 10 + u64::from(c - b'0'),
            b' ' | b'\n' if i > 0 => {
                if c == b'\n' && (what != "data length" || value != 0) {
                    return Err(bad(format!("{what} ends in LF")));
                }
                return Ok(Some((value, at + i + 1)));
            }
            b'0'..=b'9' => return Err(bad(format!("{what} longer than {MAX_DIGITS} digits"))),
            _ => return Err(bad(format!("{what} holds {:?}", char::from(c)))),
        }
    }
    Ok(None)
}

/// A command name from `at` up to a space.
fn word(buf: &[u8], at: usize) -> Result<Option<(String, usize)>, FrameError> {
    for (i, &c) in buf[at.min(buf.len())..].iter().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' if i < MAX_COMMAND => {}
            b' ' if i > 0 => {
                let name = String::from_utf8_lossy(&buf[at..at + i]).into_owned();
                return Ok(Some((name, at + i + 1)));
            }
            _ => return Err(bad(format!("command holds {:?}", char::from(c)))),
        }
    }
    Ok(None)
}

/// What a whole frame means to a client.
fn incoming(txnr: u32, command: &str, data: &[u8]) -> Result<Incoming, FrameError> {
    match command {
        "rsp" => rsp(txnr, data).map(Incoming::Rsp),
        "serverclose" => Ok(Incoming::ServerClose),
        other => Err(bad(format!("unexpected command {other:?}"))),
    }
}

/// `CODE SP TEXT [LF DATA]`, as librelp's client reads it.
fn rsp(txnr: u32, data: &[u8]) -> Result<Rsp, FrameError> {
    if data.is_empty() {
        // imrelp answers `close` so: a reply without a code, which is no success.
        return Ok(Rsp {
            txnr,
            code: 0,
            text: String::new(),
            data: Vec::new(),
        });
    }
    // The spec's `RSP-CODE [SP HUMANMSG] LF [CMDDATA]`: librelp always writes the space.
    let (code, rest) = match data {
        [a, b, c, rest @ ..] if [a, b, c].iter().all(|d| d.is_ascii_digit()) => (
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'),
            rest,
        ),
        _ => return Err(bad(format!("rsp {txnr} has no three-digit code"))),
    };
    let (text, data) = match rest {
        [] => (&[][..], &[][..]),
        [b'\n', data @ ..] => (&[][..], data),
        [b' ', rest @ ..] => {
            let cut = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            (&rest[..cut], rest.get(cut + 1..).unwrap_or_default())
        }
        _ => return Err(bad(format!("rsp {txnr}: code not followed by a space"))),
    };
    let text = String::from_utf8_lossy(&text[..text.len().min(MAX_TEXT)]).into_owned();
    let data = data.to_vec();
    Ok(Rsp {
        txnr,
        code,
        text,
        data,
    })
}

/// The transaction number after `txnr` (a session that would pass [`MAX_TXNR`] is renewed
/// before, so this never wraps on the wire).
pub(crate) fn next_txnr(txnr: u32) -> Option<u32> {
    (txnr < MAX_TXNR).then_some(txnr + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(txnr: u32, command: &str, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write(&mut out, txnr, command, data);
        out
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Incoming>, FrameError> {
        let mut r = Reader::new(4096);
        r.push(bytes);
        let mut got = Vec::new();
        while let Some(f) = r.next()? {
            got.push(f);
        }
        assert!(!r.is_partial(), "bytes left over");
        Ok(got)
    }

    fn rsp_of(txnr: u32, code: u16, text: &str, data: &[u8]) -> Incoming {
        Incoming::Rsp(Rsp {
            txnr,
            code,
            text: text.into(),
            data: data.to_vec(),
        })
    }

    #[test]
    fn frames_are_written_as_librelp_writes_them() {
        assert_eq!(frame(1, "open", b"a=b"), b"1 open 3 a=b\n");
        assert_eq!(frame(7, "close", b""), b"7 close 0\n");
        assert_eq!(frame(42, "syslog", b"x\ny"), b"42 syslog 3 x\ny\n");
        assert_eq!(
            frame(MAX_TXNR, "syslog", b"m"),
            b"999999999 syslog 1 m\n".to_vec()
        );
    }

    #[test]
    fn the_open_offer_asks_for_the_syslog_command_at_version_0() {
        let offers = String::from_utf8(open_offers()).unwrap();
        let lines: Vec<&str> = offers.lines().collect();
        assert_eq!(lines[0], "relp_version=0");
        assert!(lines[1].starts_with("relp_software=saltship,"));
        assert_eq!(lines[2], "commands=syslog");
        assert!(!offers.ends_with('\n'), "librelp ends offers without LF");
    }

    #[test]
    fn the_servers_offers_say_whether_syslog_is_enabled() {
        let imrelp = b"relp_version=0\nrelp_software=http://librelp.adiscon.com,1.11.0,librelp\ncommands=syslog";
        assert!(offers_syslog(imrelp));
        assert!(offers_syslog(b"commands=foo,syslog\nrelp_version=0"));
        assert!(!offers_syslog(b"relp_version=0\ncommands="));
        assert!(!offers_syslog(b"relp_version=0\ncommands=syslogx"));
        assert!(!offers_syslog(b""));
    }

    #[test]
    fn the_answer_to_open_carries_the_offers() {
        let got = read_all(b"1 rsp 37 200 OK\nrelp_version=0\ncommands=syslog\n").unwrap();
        assert_eq!(
            got,
            [rsp_of(1, 200, "OK", b"relp_version=0\ncommands=syslog")]
        );
    }

    #[test]
    fn replies_of_every_kind_are_told_apart() {
        let wire = b"2 rsp 6 200 OK\n3 rsp 20 500 command disabled\n0 serverclose 0\n";
        let got = read_all(wire).unwrap();
        assert_eq!(
            got,
            [
                rsp_of(2, 200, "OK", b""),
                rsp_of(3, 500, "command disabled", b""),
                Incoming::ServerClose,
            ]
        );
        let Incoming::Rsp(r) = &got[1] else { panic!() };
        assert!(!r.ok());
    }

    #[test]
    fn imrelps_answer_to_close_has_no_code_and_is_no_success() {
        let got = read_all(b"4 rsp 0\n0 serverclose 0\n").unwrap();
        assert_eq!(got, [rsp_of(4, 0, "", b""), Incoming::ServerClose]);
        let Incoming::Rsp(r) = &got[0] else { panic!() };
        assert!(!r.ok());
    }

    #[test]
    fn a_code_without_text_is_read_as_the_spec_allows() {
        assert_eq!(
            read_all(b"1 rsp 3 200\n").unwrap(),
            [rsp_of(1, 200, "", b"")]
        );
        assert_eq!(
            read_all(b"1 rsp 5 200\nx\n").unwrap(),
            [rsp_of(1, 200, "", b"x")]
        );
    }

    #[test]
    fn a_frame_split_anywhere_is_read_once_it_is_whole() {
        let wire = b"12 rsp 6 200 OK\n0 serverclose 0\n13 rsp 37 200 OK\nrelp_version=0\ncommands=syslog\n";
        for cut in 0..wire.len() {
            for step in [1, 2, 5] {
                let mut r = Reader::new(4096);
                let mut got = Vec::new();
                r.push(&wire[..cut]);
                while let Some(f) = r.next().unwrap() {
                    got.push(f);
                }
                for piece in wire[cut..].chunks(step) {
                    r.push(piece);
                    while let Some(f) = r.next().unwrap() {
                        got.push(f);
                    }
                }
                assert_eq!(got.len(), 3, "cut at {cut}, step {step}");
                assert_eq!(got[1], Incoming::ServerClose);
                assert!(!r.is_partial());
            }
        }
    }

    #[test]
    fn an_incomplete_frame_waits_and_says_it_is_partial() {
        let mut r = Reader::new(4096);
        r.push(b"5 rsp 6 200 O");
        assert_eq!(r.next(), Ok(None));
        assert!(r.is_partial());
        r.push(b"K");
        assert_eq!(r.next(), Ok(None), "no trailer yet");
        r.push(b"\n");
        assert_eq!(r.next(), Ok(Some(rsp_of(5, 200, "OK", b""))));
        assert!(!r.is_partial());
    }

    #[test]
    fn garbage_is_an_error_at_its_first_byte() {
        for wire in [
            &b"HTTP/1.1 400 Bad Request\r\n"[..],
            b"SSH-2.0-OpenSSH_9.2\r\n",
            b"\x16\x03\x01",
            b" 1 rsp 6 200 OK\n",
            b"1  rsp",
            b"1 rsp1",
            b"1 rsp x",
            b"1 rsp 6\n",
            b"1 rsp 00000000001 ",
            b"1234567890 rsp",
        ] {
            let mut r = Reader::new(4096);
            r.push(wire);
            assert!(
                r.next().is_err(),
                "{:?} was taken",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn a_frame_must_end_in_lf_after_its_data() {
        assert!(read_all(b"1 rsp 6 200 OKX").is_err());
        assert!(
            read_all(b"1 rsp 0 \n").is_err(),
            "librelp wants `0` then LF"
        );
        assert!(read_all(b"1 rsp 4 200x\n").is_err(), "code then a letter");
    }

    #[test]
    fn commands_a_client_never_gets_are_errors() {
        assert!(read_all(b"1 syslog 1 x\n").is_err());
        assert!(read_all(b"1 open 0\n").is_err());
        assert!(read_all(b"1 rsp 6 2x0 OK\n").is_err());
    }

    #[test]
    fn data_longer_than_the_limit_is_refused_before_it_arrives() {
        let mut r = Reader::new(100);
        r.push(b"1 rsp 101 ");
        assert!(r.next().is_err());
        let mut r = Reader::new(100);
        r.push(b"1 rsp 100 ");
        assert_eq!(r.next(), Ok(None));
    }

    #[test]
    fn the_response_text_is_cut_at_80_characters_and_data_follows_its_lf() {
        let text = "x".repeat(100);
        let data = format!("500 {text}\nmore");
        let got = read_all(&frame(9, "rsp", data.as_bytes())).unwrap();
        let Incoming::Rsp(r) = &got[0] else { panic!() };
        assert_eq!(r.code, 500);
        assert_eq!(r.text.len(), 80);
        assert_eq!(r.data, b"more");
    }

    #[test]
    fn transaction_numbers_stop_at_nine_digits() {
        assert_eq!(next_txnr(1), Some(2));
        assert_eq!(next_txnr(MAX_TXNR - 1), Some(MAX_TXNR));
        assert_eq!(next_txnr(MAX_TXNR), None);
    }
}
