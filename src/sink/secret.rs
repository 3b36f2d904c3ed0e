//! Tokens and passwords that never reach a log: the [`Secret`] type, the one rule for a secret
//! read from a file or a variable ([`one_line`]), and a target as it may be printed
//! ([`shown`]: a URL's password masked).

use std::fmt;

use anyhow::{bail, Result};

/// A token or password: never printed, not even with `{:?}`.
#[derive(Clone)]
pub(crate) struct Secret(pub(crate) String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// The secret in `text`, read from `source` (a file's path or a variable's name): exactly one
/// line with text (blank lines and a trailing newline are fine), its surrounding spaces
/// trimmed. A second line would go into a request header (and a header error would print
/// it), so it is refused; no message ever shows the text.
pub(crate) fn one_line(text: &str, source: &str) -> Result<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match lines[..] {
        [] => bail!("{source} is empty"),
        [line] if line.chars().any(char::is_control) => {
            bail!("{source} has control characters in it (not shown)")
        }
        [line] => Ok(line.to_owned()),
        ref more => bail!(
            "{source} holds {} lines of text: give the secret alone, on one line (not shown)",
            more.len()
        ),
    }
}

/// `target` as messages show it: the password of a URL's user-info (or, without a password, the
/// user-info itself, which may be a token) replaced by `***`, and so is a query (which may hold
/// an `api_key=`): `http://admin:***@es:9200`. A password with a `/`, `?` or `#` in it that
/// was not percent-encoded still ends at its `@`: an `@` after the host part makes what comes
/// before it user-info, so a path with an `@` in it may be masked too (never a secret shown).
/// Everything that prints a target goes through here.
pub(crate) fn shown(target: &str) -> String {
    let start = target.find("://").map_or(0, |i| i + 3);
    let rest = &target[start..];
    // The user-info ends at the last `@` before the first `/`, `?` or `#` after the first `@`.
    let (masked, tail) = match rest.find('@') {
        Some(first) => {
            let end = rest[first..]
                .find(['/', '?', '#'])
                .map_or(rest.len(), |e| first + e);
            let at = rest[..end].rfind('@').unwrap_or(first);
            let masked = match rest[..at].split_once(':') {
                Some((user, _)) if !user.contains(['/', '?', '#']) => format!("{user}:***"),
                _ => "***".to_owned(),
            };
            (masked, &rest[at..])
        }
        None => (String::new(), rest),
    };
    let tail = match tail.find(['?', '#']) {
        Some(q) => format!("{}***", &tail[..=q]),
        None => tail.to_owned(),
    };
    format!("{}{masked}{tail}", &target[..start])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_shows_in_debug() {
        let s = Secret("hunter2".into());
        assert_eq!(format!("{s:?}"), "<secret>");
    }

    #[test]
    fn a_secret_is_one_line_of_text() {
        for ok in ["tok", "tok\n", " tok \r\n", "\ntok\n\n"] {
            assert_eq!(one_line(ok, "f").expect(ok), "tok");
        }
        for (bad, why) in [
            ("", "f is empty"),
            (" \n\n", "f is empty"),
            (
                "hunter2\n#c\n",
                "f holds 2 lines of text: give the secret alone, on one line (not shown)",
            ),
            ("hun\u{1}ter2", "f has control characters in it (not shown)"),
            ("hun\rter2", "f has control characters in it (not shown)"),
        ] {
            assert_eq!(one_line(bad, "f").expect_err(bad).to_string(), why);
        }
    }

    #[test]
    fn a_urls_password_is_masked() {
        for (target, want) in [
            ("http://admin:pw@h:9200", "http://admin:***@h:9200"),
            ("https://u:p@ss@h/es/x@y", "https://u:***@h/es/x@y"),
            ("http://token@h:8088", "http://***@h:8088"),
            ("http://h/a", "http://h/a"),
            ("http://h:8088/a@b", "http://h:***@b"),
            ("http://h:8088?x=@", "http://h:***@"),
            ("https://h:9200/x?api_key=hunter2", "https://h:9200/x?***"),
            ("https://h:9200/x#hunter2", "https://h:9200/x#***"),
            ("https://u:hun#ter2@h:9200/x", "https://u:***@h:9200/x"),
            ("https://u:hun/ter2@h:9200/x", "https://u:***@h:9200/x"),
            (
                "https://u:hun?ter2@h:9200/x?q=1",
                "https://u:***@h:9200/x?***",
            ),
            ("https://tok/en@h/x", "https://***@h/x"),
            ("https://u:p/a@ss@h/x@y", "https://u:***@h/x@y"),
            ("admin:pw@h:6000", "admin:***@h:6000"),
            ("127.0.0.1:6000", "127.0.0.1:6000"),
            ("[::1]:6000", "[::1]:6000"),
        ] {
            assert_eq!(shown(target), want, "{target}");
        }
    }
}
