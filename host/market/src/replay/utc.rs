//! UTC timestamps: RFC 3339 / ISO 8601 text to nanoseconds and back, without a date library.

use super::NANOS_PER_SEC;
use crate::types::Timestamp;

fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

/// A UTC time `YYYY-MM-DD HH:MM:SS[.F]` (`T` may replace the space, `F` is 1–9 digits, a final
/// `Z` is allowed) as nanoseconds since the Unix epoch. Years 1970–2262.
pub fn parse_utc(text: &str) -> Result<Timestamp, String> {
    let bad = || format!("{text:?} is not a UTC time (YYYY-MM-DD HH:MM:SS[.fraction])");
    let body = text.strip_suffix('Z').unwrap_or(text);
    let (main, fraction) = body.split_once('.').unwrap_or((body, ""));
    let b = main.as_bytes();
    let shape = main.is_ascii()
        && b.len() == 19
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b' ' || b[10] == b'T')
        && b[13] == b':'
        && b[16] == b':';
    if !shape || (body.contains('.') && fraction.is_empty()) || fraction.len() > 9 {
        return Err(bad());
    }
    let number = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let part = &main[range];
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !fraction.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(format!("{text:?} is not a date"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(format!("{text:?} is not a time of day"));
    }
    if !(1970..=2262).contains(&year) {
        return Err(format!("{text:?} is outside 1970–2262"));
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second;
    let nanos = if fraction.is_empty() {
        0
    } else {
        fraction.parse::<u64>().map_err(|_| bad())? * 10u64.pow(9 - fraction.len() as u32)
    };
    (secs as u64)
        .checked_mul(NANOS_PER_SEC)
        .and_then(|n| n.checked_add(nanos))
        .ok_or_else(|| format!("{text:?} is outside 1970–2262"))
}

/// A timestamp as `YYYY-MM-DDTHH:MM:SS.fffffffffZ` (UTC).
pub fn format_utc(ts: Timestamp) -> String {
    let secs = (ts / NANOS_PER_SEC) as i64;
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let tod = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        tod / 3_600,
        tod % 3_600 / 60,
        tod % 60,
        ts % NANOS_PER_SEC
    )
}
