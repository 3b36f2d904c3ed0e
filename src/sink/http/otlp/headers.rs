//! The extra request headers of the OTLP sink (`--otlp-header KEY=VALUE`, and the lines of
//! `--otlp-header-file`), checked. A value may be a token: no message ever shows one.

use anyhow::{bail, Result};

use crate::sink::secret::Secret;

/// Headers the sink sets itself: a user's value would make the request lie about its body.
const OURS: [&str; 4] = [
    "content-type",
    "content-encoding",
    "content-length",
    "transfer-encoding",
];

/// One `KEY=VALUE` (or `Key: Value`), from `source` (for the message).
pub(crate) fn parse(text: &str, source: &str) -> Result<(String, Secret)> {
    // At the first separator: what follows may hold the other one (a token's `=` padding).
    let Some(at) = text.find(['=', ':']) else {
        bail!("{source}: use KEY=VALUE (the value is not shown here)");
    };
    let (name, value) = (text[..at].trim(), text[at + 1..].trim());
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        bail!("{source}: '{name}' is not a header name");
    }
    if value.is_empty() || value.chars().any(|c| c.is_control() && c != '\t') {
        bail!("{source}: the value of {name} is empty or has control characters");
    }
    if OURS.contains(&name.to_ascii_lowercase().as_str()) {
        bail!("{source}: saltship sets {name} itself (see --otlp-encoding, --otlp-compression)");
    }
    Ok((name.to_owned(), Secret(value.to_owned())))
}

/// The headers of a file's `text`: one per line; blank lines and `#` comments are skipped.
pub(crate) fn parse_file(text: &str, path: &str) -> Result<Vec<(String, Secret)>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(n, l)| parse(l, &format!("{path} line {}", n + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_key_value_or_http_style() {
        let (name, value) = parse("X-Scope-OrgID=tenant1", "--otlp-header").expect("ok");
        assert_eq!(
            (name.as_str(), value.0.as_str()),
            ("X-Scope-OrgID", "tenant1")
        );
        let (name, value) = parse("Authorization: Bearer a=b", "f").expect("ok");
        assert_eq!(
            (name.as_str(), value.0.as_str()),
            ("Authorization", "Bearer a=b")
        );
    }

    #[test]
    fn a_file_skips_blanks_and_comments_and_names_the_bad_line() {
        let text = "# tokens\n\napi-key = s3cret\nX-Tenant=t\n";
        let headers = parse_file(text, "/etc/h").expect("ok");
        let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["api-key", "X-Tenant"]);
        let err = parse_file("a=1\nno-separator-s3cret\n", "/etc/h").expect_err("bad");
        assert_eq!(
            err.to_string(),
            "/etc/h line 2: use KEY=VALUE (the value is not shown here)"
        );
    }

    #[test]
    fn messages_never_show_a_value() {
        for bad in [
            "bad name=s3cret",
            "X=",
            "Content-Type=s3cret",
            "X=s3\u{1}cret",
        ] {
            let err = parse(bad, "--otlp-header").expect_err(bad).to_string();
            assert!(!err.contains("s3"), "{err}");
        }
    }
}
