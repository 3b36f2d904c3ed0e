//! Strict decoders for the tests: each checks the framing and the rules of its format, then
//! returns the parsed message, so tests compare values rather than strings.

use serde_json::{Map, Value};

type Result<T> = std::result::Result<T, String>;

fn require(ok: bool, what: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(format!("broken rule: {what}"))
    }
}

fn object(bytes: &[u8]) -> Result<Map<String, Value>> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!("not an object: {other}")),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

/// One newline-terminated JSON object (`json`, `ecs`).
pub(super) fn ndjson(framed: &[u8]) -> Result<Map<String, Value>> {
    let body = framed.strip_suffix(b"\n").ok_or("no newline at the end")?;
    require(!body.contains(&b'\n') && !body.contains(&b'\r'), "one line")?;
    object(body)
}

/// One NUL-terminated GELF 1.1 message.
pub(super) fn gelf(framed: &[u8]) -> Result<Map<String, Value>> {
    let body = framed.strip_suffix(&[0]).ok_or("no NUL at the end")?;
    require(!body.contains(&0), "no NUL inside the message")?;
    let msg = object(body)?;
    for (key, value) in &msg {
        match key.as_str() {
            "version" => require(*value == "1.1", "version is 1.1")?,
            "host" | "short_message" => {
                require(value.as_str().is_some_and(|s| !s.is_empty()), key)?
            }
            "full_message" => require(value.is_string(), key)?,
            "timestamp" => require(value.is_number(), key)?,
            "level" => require(value.as_u64().is_some_and(|l| l <= 7), key)?,
            _ => {
                let name = key
                    .strip_prefix('_')
                    .ok_or(format!("unknown field {key}"))?;
                let word = |b: u8| b.is_ascii_alphanumeric() || b"_.-".contains(&b);
                require(name.bytes().all(word), "field names match ^[\\w\\.\\-]*$")?;
                require(key != "_id", "no _id")?;
                require(value.is_string() || value.is_number(), "strings or numbers")?;
            }
        }
    }
    for needed in ["version", "host", "short_message"] {
        require(msg.contains_key(needed), needed)?;
    }
    Ok(msg)
}

/// An RFC 5424 message, as read from its RFC 6587 octet-counted frame.
#[derive(Debug)]
pub(super) struct Syslog {
    pub(crate) pri: u8,
    pub(crate) timestamp: String,
    pub(crate) hostname: String,
    pub(crate) app_name: String,
    pub(crate) procid: String,
    pub(crate) msgid: String,
    pub(crate) sd: Vec<(String, Vec<(String, String)>)>,
    pub(crate) msg: Map<String, Value>,
}

struct Reader<'b> {
    bytes: &'b [u8],
    at: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Result<u8> {
        let b = self.peek().ok_or("message ends early")?;
        self.at += 1;
        Ok(b)
    }

    fn expect(&mut self, want: u8) -> Result<()> {
        require(
            self.next()? == want,
            &format!("{:?} expected", want as char),
        )
    }

    /// `1*max` PRINTUSASCII up to the next space, which is consumed.
    fn field(&mut self, max: usize, what: &str) -> Result<String> {
        let mut text = String::new();
        loop {
            match self.next()? {
                b' ' => break,
                b @ 33..=126 => text.push(b as char),
                _ => return Err(format!("{what}: not printable US-ASCII")),
            }
        }
        require((1..=max).contains(&text.len()), what)?;
        Ok(text)
    }

    /// SD-NAME: 1 to 32 PRINTUSASCII but `=`, space, `]` and `"`.
    fn sd_name(&mut self) -> Result<String> {
        let mut name = String::new();
        while let Some(b @ 33..=126) = self.peek().filter(|b| !b"= ]\"".contains(b)) {
            name.push(b as char);
            self.at += 1;
        }
        require(
            (1..=32).contains(&name.len()),
            "SD-NAME of 1 to 32 characters",
        )?;
        Ok(name)
    }

    /// PARAM-VALUE up to its closing quote, unescaped; `"`, `\` and `]` must come escaped.
    fn param_value(&mut self) -> Result<String> {
        let mut value = Vec::new();
        loop {
            match self.next()? {
                b'"' => break,
                b']' => return Err("unescaped ] in PARAM-VALUE".into()),
                b'\\' => match self.next()? {
                    b @ (b'"' | b'\\' | b']') => value.push(b),
                    b => value.extend([b'\\', b]),
                },
                b => value.push(b),
            }
        }
        String::from_utf8(value).map_err(|_| "PARAM-VALUE is not UTF-8".into())
    }

    fn sd_element(&mut self) -> Result<(String, Vec<(String, String)>)> {
        self.expect(b'[')?;
        let id = self.sd_name()?;
        if let Some((_, number)) = id.split_once('@') {
            require(
                number.bytes().all(|b| b.is_ascii_digit()),
                "SD-ID name@number",
            )?;
        }
        let mut params = Vec::new();
        while self.next()? == b' ' {
            let name = self.sd_name()?;
            self.expect(b'=')?;
            self.expect(b'"')?;
            params.push((name, self.param_value()?));
        }
        require(self.bytes[self.at - 1] == b']', "SD-ELEMENT ends with ]")?;
        Ok((id, params))
    }
}

/// `MSG-LEN SP SYSLOG-MSG`: the count must be the message's length in bytes.
pub(super) fn syslog(framed: &[u8]) -> Result<Syslog> {
    let space = framed.iter().position(|&b| b == b' ').ok_or("no MSG-LEN")?;
    let count = std::str::from_utf8(&framed[..space]).map_err(|e| e.to_string())?;
    require(
        !count.starts_with('0') && count.bytes().all(|b| b.is_ascii_digit()),
        "MSG-LEN is NONZERO-DIGIT *DIGIT",
    )?;
    let message = &framed[space + 1..];
    require(
        count.parse() == Ok(message.len()),
        "MSG-LEN counts the bytes",
    )?;
    let mut r = Reader {
        bytes: message,
        at: 0,
    };
    r.expect(b'<')?;
    let pri = r.field(5, "PRI")?;
    let pri: u8 = match pri.strip_suffix(">1").map(str::parse) {
        Some(Ok(pri)) if pri <= 191 => pri,
        _ => return Err(format!("bad PRI and VERSION {pri}")),
    };
    let timestamp = r.field(255, "TIMESTAMP")?;
    if timestamp != "-" {
        chrono::DateTime::parse_from_rfc3339(&timestamp).map_err(|e| e.to_string())?;
        let fraction = timestamp.split_once('.').map_or("", |(_, f)| f);
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        require(
            digits <= 6 && timestamp.contains('T'),
            "TIME-SECFRAC of 1 to 6 digits",
        )?;
    }
    let hostname = r.field(255, "HOSTNAME")?;
    let app_name = r.field(48, "APP-NAME")?;
    let procid = r.field(128, "PROCID")?;
    let msgid = r.field(32, "MSGID")?;
    let mut sd = Vec::new();
    if r.peek() == Some(b'-') {
        r.at += 1;
    } else {
        while r.peek() == Some(b'[') {
            sd.push(r.sd_element()?);
        }
        require(!sd.is_empty(), "STRUCTURED-DATA")?;
    }
    r.expect(b' ')?;
    let body = &message[r.at..];
    require(
        !body.starts_with(b"\xEF\xBB\xBF"),
        "MSG without BOM (our choice)",
    )?;
    let msg = object(body)?;
    Ok(Syslog {
        pri,
        timestamp,
        hostname,
        app_name,
        procid,
        msgid,
        sd,
        msg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decoders_reject_what_the_formats_forbid() {
        assert!(ndjson(b"{}\n").is_ok());
        assert!(ndjson(b"{}").is_err());
        assert!(gelf(b"{\"version\":\"1.1\",\"host\":\"h\",\"short_message\":\"m\"}\0").is_ok());
        let head = r#"{"version":"1.1","host":"h","short_message":"#;
        for bad in [
            r#""m","_id":1}"#,
            r#""m","_a b":1}"#,
            r#""m","_b":true}"#,
            r#""""}"#,
        ] {
            let bad = format!("{head}{bad}\0");
            assert!(gelf(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(
            gelf(format!(r#"{head}"m"}}"#).as_bytes()).is_err(),
            "no NUL"
        );
        let frame = |msg: &[u8]| [format!("{} ", msg.len()).as_bytes(), msg].concat();
        let good = b"<134>1 - h a - m [x@1 k=\"\\]\\\"\\\\\"] {}";
        let msg = syslog(&frame(good)).expect("valid");
        assert_eq!(msg.sd[0].1[0].1, "]\"\\");
        let bad: [&[u8]; 5] = [
            b"<134>1 - h a - m [x@1 k=\"]\"] {}",
            b"<134>1 - h a - m [x@y k=\"v\"] {}",
            b"<192>1 - h a - m - {}",
            b"<134>1 2026-01-01T00:00:00.1234567Z h a - m - {}",
            b"<134>1 - h a - m - \xEF\xBB\xBF{}",
        ];
        for b in bad {
            assert!(syslog(&frame(b)).is_err(), "{}", String::from_utf8_lossy(b));
        }
        assert!(syslog(&[b"99 ", &good[..]].concat()).is_err());
    }
}
