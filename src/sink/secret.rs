//! A token or password that never reaches a log.

use std::fmt;

/// A token or password: never printed, not even with `{:?}`.
#[derive(Clone)]
pub(crate) struct Secret(pub(crate) String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_shows_in_debug() {
        let s = Secret("hunter2".into());
        assert_eq!(format!("{s:?}"), "<secret>");
    }
}
