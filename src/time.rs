//! Time arithmetic, pure: jids to instants, a minion's local `start_time` to an absolute
//! timestamp, and the `--since`/`--until` forms. Instants are microseconds since the Unix epoch.
//!
//! A state's `start_time` is the minion's local time of day with no date or zone. The jid says
//! when the job was published (UTC since Salt 3000). Time zones are whole quarter hours, and a
//! minion starts its first state moments after the publish, so the first state's time of day
//! gives the minion's offset; every state then sits at the one instant in
//! `[publish - 7.5 min, publish + 24 h - 7.5 min)` with its time of day, which also carries runs
//! across midnight.

use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, TimeZone, Utc};

pub(crate) const SECOND: i64 = 1_000_000;
const DAY: i64 = 86_400 * SECOND;
const QUARTER_HOUR: i64 = 900 * SECOND;

/// How jids are read: UTC (Salt 3000 and later) or the master's zone (2019.2 and earlier).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JidZone {
    Utc,
    Local,
    Fixed(FixedOffset),
}

impl JidZone {
    pub(crate) fn parse(text: &str) -> Option<JidZone> {
        match text {
            "utc" | "UTC" | "Z" => Some(JidZone::Utc),
            "local" => Some(JidZone::Local),
            _ => DateTime::parse_from_rfc3339(&format!("2000-01-01T00:00:00{text}"))
                .ok()
                .map(|d| JidZone::Fixed(*d.offset())),
        }
    }
}

/// The instant a jid names, if it is a time-stamped jid (`YYYYMMDDhhmmssffffff[_pid]`).
pub(crate) fn jid_instant(jid: &str, zone: JidZone) -> Option<i64> {
    let digits = jid
        .get(..20)
        .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))?;
    if jid.len() > 20 && !jid[20..].starts_with('_') {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(digits, "%Y%m%d%H%M%S%6f").ok()?;
    let utc = match zone {
        JidZone::Utc => naive.and_utc(),
        JidZone::Local => Local
            .from_local_datetime(&naive)
            .earliest()?
            .with_timezone(&Utc),
        JidZone::Fixed(off) => off
            .from_local_datetime(&naive)
            .single()?
            .with_timezone(&Utc),
    };
    Some(utc.timestamp_micros())
}

/// `HH:MM:SS[.ffffff]` as microseconds since midnight.
pub(crate) fn time_of_day(text: &str) -> Option<i64> {
    // Salt writes two digits each and six after the point: read those directly, and leave
    // every other spelling to the general parse.
    plain_time_of_day(text.as_bytes()).or_else(|| any_time_of_day(text))
}

/// [`time_of_day`] for every spelling it takes (`7:5:3`, `+07:05:03`, `07:05:03.5`, ...).
fn any_time_of_day(text: &str) -> Option<i64> {
    let (hms, frac) = match text.split_once('.') {
        Some((hms, frac)) => (hms, frac),
        None => (text, ""),
    };
    let mut parts = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    if parts.next().is_some()
        || !(0..24).contains(&h)
        || !(0..60).contains(&m)
        || !(0..62).contains(&s)
    {
        return None;
    }
    let micros = if frac.is_empty() {
        0
    } else if frac.len() <= 6 && frac.bytes().all(|b| b.is_ascii_digit()) {
        frac.parse::<i64>().ok()? * 10_i64.pow(6 - frac.len() as u32)
    } else {
        return None;
    };
    Some(((h * 60 + m) * 60 + s) * SECOND + micros)
}

/// `HH:MM:SS` or `HH:MM:SS.f` to `HH:MM:SS.ffffff`, all ASCII digits, in range; `None` for
/// anything else (which [`time_of_day`] then parses the slow way).
fn plain_time_of_day(b: &[u8]) -> Option<i64> {
    let digit = |i: usize| {
        b.get(i)
            .filter(|d| d.is_ascii_digit())
            .map(|d| i64::from(d - b'0'))
    };
    if b.len() < 8 || b[2] != b':' || b[5] != b':' || (b.len() > 8 && b[8] != b'.') {
        return None;
    }
    let two = |i: usize| Some(digit(i)? * 10 + digit(i + 1)?);
    let (h, m, s) = (two(0)?, two(3)?, two(6)?);
    let frac = b.get(9..).unwrap_or_default();
    if h >= 24 || m >= 60 || s >= 62 || (b.len() > 8 && frac.is_empty()) || frac.len() > 6 {
        return None;
    }
    let mut micros = 0;
    for i in 0..6 {
        micros = micros * 10 + if i < frac.len() { digit(9 + i)? } else { 0 };
    }
    Some(((h * 60 + m) * 60 + s) * SECOND + micros)
}

/// A minion's clock for one return: turns its local times of day into instants.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MinionClock {
    publish: i64,
    offset: i64,
}

impl MinionClock {
    /// `first_start` is the time of day of the first state the minion ran in this job.
    pub(crate) fn new(publish: i64, first_start: i64) -> MinionClock {
        let drift = (first_start - publish).rem_euclid(DAY);
        let offset = ((drift + QUARTER_HOUR / 2) / QUARTER_HOUR * QUARTER_HOUR) % DAY;
        MinionClock { publish, offset }
    }

    /// The instant at which the minion's clock showed `start` (time of day) during this job.
    pub(crate) fn instant(&self, start: i64) -> i64 {
        let mut after = (start - self.offset - self.publish).rem_euclid(DAY);
        if after >= DAY - QUARTER_HOUR / 2 {
            after -= DAY;
        }
        self.publish + after
    }

    /// The minion's offset from UTC in minutes, as deduced.
    #[cfg(test)]
    pub(crate) fn offset_minutes(&self) -> i64 {
        let off = self.offset / (60 * SECOND);
        if off > 12 * 60 + 45 {
            off - 24 * 60
        } else {
            off
        }
    }
}

/// RFC 3339 in UTC with microseconds, like `2026-11-23T18:57:50.440911Z`. Written by hand
/// into a fixed buffer: it runs once per event, and a general formatter costs more than the
/// rest of the event.
#[cfg(test)]
pub(crate) fn rfc3339(instant: i64) -> String {
    Rfc3339::new(instant).as_str().to_owned()
}

/// An RFC 3339 timestamp on the stack (years 0 to 9999).
#[derive(Clone, Copy)]
pub(crate) struct Rfc3339([u8; 27]);

impl Rfc3339 {
    pub(crate) fn new(instant: i64) -> Rfc3339 {
        let (days, micros) = (instant.div_euclid(DAY), instant.rem_euclid(DAY));
        let (y, m, d) = civil_from_days(days);
        let secs = micros / SECOND;
        let mut out = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, width: usize, mut n: i64| {
            for i in (at..at + width).rev() {
                out[i] = b'0' + (n % 10) as u8;
                n /= 10;
            }
        };
        put(0, 4, y.clamp(0, 9999));
        put(5, 2, i64::from(m));
        put(8, 2, i64::from(d));
        put(11, 2, secs / 3600);
        put(14, 2, secs / 60 % 60);
        put(17, 2, secs % 60);
        put(20, 6, micros % SECOND);
        Rfc3339(out)
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII digits and separators were written.
        std::str::from_utf8(&self.0).expect("ASCII")
    }
}

impl serde::Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `--since`/`--until`: RFC 3339, a plain date (midnight UTC: `2026-12-01`, or in a stated zone:
/// `2026-12-01+02:00`), a jid, or an age before `now` such as `90s`, `30m`, `24h`, `7d`, `2w`.
pub(crate) fn parse_point(text: &str, now: i64, zone: JidZone) -> Result<i64, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_micros());
    }
    if let Some((date, stated)) = text.split_at_checked(10) {
        let stated = if stated.is_empty() { "Z" } else { stated };
        let midnight = format!("{date}T00:00:00{stated}");
        if let Ok(t) = DateTime::parse_from_rfc3339(&midnight) {
            return Ok(t.timestamp_micros());
        }
    }
    if let Some(t) = jid_instant(text, zone) {
        return Ok(t);
    }
    parse_duration(text).map(|age| now - age).map_err(|_| {
        format!("'{text}' is not a time: use RFC 3339 (2026-11-23T18:00:00Z), a date (2026-11-23, midnight UTC), a jid, or an age like 24h or 7d")
    })
}

/// A span such as `500ms`, `90s`, `30m`, `24h`, `7d` or `2w`, in microseconds.
pub(crate) fn parse_duration(text: &str) -> Result<i64, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "ms" => 1_000,
        "s" => SECOND,
        "m" => 60 * SECOND,
        "h" => 3600 * SECOND,
        "d" => 86_400 * SECOND,
        "w" => 7 * 86_400 * SECOND,
        _ => 0,
    };
    match number.parse::<i64>() {
        Ok(n) if scale > 0 => n
            .checked_mul(scale)
            .ok_or_else(|| format!("'{text}' is too long")),
        _ => Err(format!(
            "'{text}' is not a duration: use a number and ms, s, m, h, d or w, like 90s or 5m"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .expect("valid")
            .timestamp_micros()
    }

    #[test]
    fn jid_forms() {
        let t = at("2026-11-23T18:57:50.440911Z");
        assert_eq!(jid_instant("20261123185750440911", JidZone::Utc), Some(t));
        assert_eq!(
            jid_instant("20261123185750440911_4242", JidZone::Utc),
            Some(t)
        );
        let plus2 = JidZone::parse("+02:00").expect("offset");
        assert_eq!(jid_instant("20261123205750440911", plus2), Some(t));
        assert_eq!(jid_instant("req", JidZone::Utc), None);
        assert_eq!(jid_instant("20261123185750440911x", JidZone::Utc), None);
        assert_eq!(jid_instant("20261399185750440911", JidZone::Utc), None);
    }

    /// The direct read of Salt's own spelling gives what the general parse gives, and
    /// declines everything else.
    #[test]
    fn plain_times_of_day_read_as_the_general_parse() {
        let mut texts: Vec<String> = [
            "00:00:00",
            "23:59:59.999999",
            "23:59:61",
            "23:59:62",
            "24:00:00",
            "12:60:00",
            "12:00:00.",
            "12:00:00.5",
            "12:00:00.1234567",
            "12:00:00.12a",
            "1:00:00",
            "+1:00:00",
            "-0:00:00",
            "01:02:03:04",
            "01:02",
            "",
            "ab:cd:ef",
            "01-02-03",
            "01:02:03x",
            "01:02:03.000001",
            "01:02:03.+1",
            "01:02:03.-1",
            "٠١:02:03",
        ]
        .map(str::to_owned)
        .into();
        for h in [0, 9, 23, 24, 99] {
            for m in [0, 59, 60] {
                for frac in ["", ".0", ".12", ".123456", ".1234567"] {
                    texts.push(format!("{h:02}:{m:02}:{:02}{frac}", (h + m) % 63));
                }
            }
        }
        for text in texts {
            let plain = plain_time_of_day(text.as_bytes());
            assert!(
                plain.is_none() || plain == any_time_of_day(&text),
                "{text:?}"
            );
            assert_eq!(time_of_day(&text), any_time_of_day(&text), "{text:?}");
        }
        assert!(plain_time_of_day(b"18:57:51.100000").is_some());
    }

    #[test]
    fn time_of_day_forms() {
        assert_eq!(time_of_day("00:00:01"), Some(SECOND));
        assert_eq!(
            time_of_day("18:57:50.440911"),
            Some(at("1970-01-01T18:57:50.440911Z"))
        );
        assert_eq!(
            time_of_day("18:57:50.5"),
            Some(at("1970-01-01T18:57:50.5Z"))
        );
        assert_eq!(time_of_day("25:00:00"), None);
        assert_eq!(time_of_day("garbage"), None);
    }

    #[test]
    fn minion_in_another_zone_gets_the_absolute_time() {
        // Published 18:57:50 UTC; a +05:45 minion starts at 00:42:51 local the next day.
        let publish = at("2026-11-23T18:57:50.440911Z");
        let first = time_of_day("00:42:51.100000").expect("tod");
        let clock = MinionClock::new(publish, first);
        assert_eq!(clock.offset_minutes(), 345);
        assert_eq!(clock.instant(first), at("2026-11-23T18:57:51.1Z"));
        let later = time_of_day("00:50:00").expect("tod");
        assert_eq!(clock.instant(later), at("2026-11-23T19:05:00Z"));
    }

    #[test]
    fn run_across_midnight_and_behind_utc() {
        // Published 23:59:58 UTC from a UTC-08:00 minion whose run goes past its midnight too.
        let publish = at("2026-11-23T23:59:58Z");
        let clock = MinionClock::new(publish, time_of_day("15:59:59").expect("tod"));
        assert_eq!(clock.offset_minutes(), -480);
        assert_eq!(
            clock.instant(time_of_day("16:00:03").expect("tod")),
            at("2026-11-24T00:00:03Z")
        );
        // A minion clock a little behind the master still maps to just before the publish.
        let utc = MinionClock::new(publish, time_of_day("23:59:57").expect("tod"));
        assert_eq!(utc.offset_minutes(), 0);
        assert_eq!(
            utc.instant(time_of_day("23:59:57").expect("tod")),
            at("2026-11-23T23:59:57Z")
        );
        assert_eq!(
            utc.instant(time_of_day("00:10:00").expect("tod")),
            at("2026-11-24T00:10:00Z")
        );
    }

    #[test]
    fn points_in_time() {
        let now = at("2026-11-23T12:00:00Z");
        assert_eq!(
            parse_point("24h", now, JidZone::Utc),
            Ok(at("2026-11-22T12:00:00Z"))
        );
        assert_eq!(
            parse_point("7d", now, JidZone::Utc),
            Ok(at("2026-11-16T12:00:00Z"))
        );
        assert_eq!(
            parse_point("2026-11-01T00:00:00+01:00", now, JidZone::Utc),
            Ok(at("2026-10-31T23:00:00Z"))
        );
        assert_eq!(
            parse_point("20261123100000000000", now, JidZone::Utc),
            Ok(at("2026-11-23T10:00:00Z"))
        );
        assert_eq!(
            parse_point("2026-12-01", now, JidZone::Utc),
            Ok(at("2026-12-01T00:00:00Z"))
        );
        assert_eq!(
            parse_point("2026-12-01+02:00", now, JidZone::Utc),
            Ok(at("2026-11-30T22:00:00Z"))
        );
        assert!(parse_point("2026-13-01", now, JidZone::Utc).is_err());
        assert!(parse_point("2026-12-01x", now, JidZone::Utc).is_err());
        assert!(parse_point("yesterday", now, JidZone::Utc).is_err());
        assert!(parse_point("", now, JidZone::Utc).is_err());
        assert!(parse_point("-3h", now, JidZone::Utc).is_err());
        assert_eq!(parse_duration("500ms"), Ok(500_000));
        assert_eq!(parse_duration("5m"), Ok(300 * SECOND));
        assert!(
            parse_duration("5").is_err()
                && parse_duration("m").is_err()
                && parse_duration("5 m").is_err()
        );
        assert_eq!(
            rfc3339(at("2026-11-23T18:57:50.440911Z")),
            "2026-11-23T18:57:50.440911Z"
        );
    }
}
