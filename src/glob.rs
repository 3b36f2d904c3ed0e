//! Shell-style globs (`*`, `?`, `[abc]`, `[!a-z]`), matched like Python's fnmatch, which is what
//! Salt's own targeting uses.

/// Whether `text` matches `pattern` in full.
pub(crate) fn matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it has swallowed up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
                continue;
            }
            Some('?') => Some(1),
            Some('[') => class(&p[pi..], t[ti]),
            Some(c) if *c == t[ti] => Some(1),
            _ => None,
        };
        match (step, star) {
            (Some(len), _) => {
                pi += len;
                ti += 1;
            }
            (None, Some((sp, st))) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Matches `c` against the class at the start of `p`; the pattern length consumed on a match.
fn class(p: &[char], c: char) -> Option<usize> {
    let mut i = 1;
    let negate = matches!(p.get(1), Some('!'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while let Some(&lo) = p.get(i) {
        if lo == ']' && !first {
            return (hit != negate).then_some(i + 1);
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&hi| hi != ']') {
            hit |= lo <= c && c <= p[i + 2];
            i += 3;
        } else {
            hit |= lo == c;
            i += 1;
        }
    }
    // An unclosed `[` is a literal, as in fnmatch.
    (c == '[').then_some(1)
}

/// Why `pattern` is refused as a filter: empty (it would match nothing), or a `[` never closed
/// (fnmatch reads it as a literal, which is never what was meant).
pub(crate) fn invalid(pattern: &str) -> Option<&'static str> {
    if pattern.is_empty() {
        return Some("an empty pattern would match nothing");
    }
    // No minion id or function is blank (a `SALTSHIP_MINION=" "` line is a slip).
    if pattern.trim().is_empty() {
        return Some("a pattern of only blanks would match nothing");
    }
    let p: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < p.len() {
        if p[i] == '[' {
            // A class ends at the first `]` after its first character (and a leading `!`).
            let start = i + 1 + usize::from(p.get(i + 1) == Some(&'!'));
            match p.iter().skip(start + 1).position(|&c| c == ']') {
                Some(end) => i = start + 1 + end,
                None => return Some("a '[' is never closed"),
            }
        }
        i += 1;
    }
    None
}

/// Whether `text` matches any of `patterns`; an empty list matches everything.
pub(crate) fn any(patterns: &[String], text: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| matches(p, text))
}

#[cfg(test)]
mod tests {
    use super::{invalid, matches};

    #[test]
    fn empty_and_unclosed_patterns_are_refused() {
        for bad in ["", " ", "\t \n", "[", "db[1", "[!", "[]"] {
            assert!(invalid(bad).is_some(), "{bad:?}");
        }
        for good in ["db1", "db*", "db[12]", "[!a-z]x", "[]]", "*"] {
            assert_eq!(invalid(good), None, "{good:?}");
        }
    }

    #[test]
    fn fnmatch_rules() {
        assert!(matches("web*", "web1"));
        assert!(matches("*", ""));
        assert!(matches("state.*", "state.apply"));
        assert!(!matches("state.*", "runner.state.orch"));
        assert!(matches("*state.orch*", "runner.state.orchestrate"));
        assert!(matches("db?", "db1") && !matches("db?", "db12"));
        assert!(matches("web[0-9]", "web7") && !matches("web[!0-9]", "web7"));
        assert!(matches("a*b*c", "axxbyyc") && !matches("a*b*c", "axxbyy"));
        assert!(matches("[", "[") && !matches("[", "a"));
        assert!(matches("日本*", "日本語"));
    }
}
