//! How the CLI's text output writes times, durations and counts for people: timestamps in UTC
//! as ISO 8601 with milliseconds, durations with a unit (`1.2 s`, `350 ms`), large counts
//! with a prefix. `--json` keeps the raw numbers (nanoseconds, bytes).

/// `2026-11-21T04:54:39.258Z`, from nanoseconds since the Unix epoch; `-` for 0 (never).
pub(crate) fn utc_ms(ns: i64) -> String {
    if ns == 0 {
        return "-".into();
    }
    let secs = ns.div_euclid(1_000_000_000);
    let ms = ns.rem_euclid(1_000_000_000) / 1_000_000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// [`utc_ms`] of an unsigned timestamp (JSON numbers from the host).
pub(crate) fn utc_ms_u(ns: u64) -> String {
    utc_ms(i64::try_from(ns).unwrap_or(i64::MAX))
}

/// [`utc_ms`] of a JSON number, `-` when it is not one.
pub(crate) fn utc_ms_json(v: &serde_json::Value) -> String {
    v.as_u64().map_or_else(|| "-".into(), utc_ms_u)
}

/// `850 ns`, `12.5 µs`, `350.0 ms`, `1.2 s`, `2 min 5 s`, `3 h 20 min`.
pub(crate) fn duration_ns(ns: u64) -> String {
    const US: u64 = 1_000;
    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;
    match ns {
        0..US => format!("{ns} ns"),
        US..MS => format!("{:.1} µs", ns as f64 / US as f64),
        MS..S => format!("{:.1} ms", ns as f64 / MS as f64),
        S..60_000_000_000 => format!("{:.1} s", ns as f64 / S as f64),
        60_000_000_000..3_600_000_000_000 => {
            format!("{} min {} s", ns / (60 * S), ns / S % 60)
        }
        _ => format!("{} h {} min", ns / (3_600 * S), ns / (60 * S) % 60),
    }
}

/// [`duration_ns`] of milliseconds given as a float (`busy_ms`); `0 s` for none.
pub(crate) fn duration_ms(ms: f64) -> String {
    if !(ms.is_finite() && ms > 0.0) {
        return "0 s".into();
    }
    duration_ns((ms * 1e6).min(u64::MAX as f64) as u64)
}

/// `1.2 G`, `350 M`, `12 k`, `900` (with `unit` after the prefix).
pub(crate) fn count(n: u64, unit: &str) -> String {
    let (value, prefix) = match n {
        0..1_000 if unit.is_empty() => return n.to_string(),
        0..1_000 => return format!("{n} {unit}"),
        1_000..1_000_000 => (n as f64 / 1e3, "k"),
        1_000_000..1_000_000_000 => (n as f64 / 1e6, "M"),
        _ => (n as f64 / 1e9, "G"),
    };
    format!("{value:.1} {prefix}{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_iso_8601_with_milliseconds() {
        assert_eq!(utc_ms(1), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc_ms(0), "-");
        assert_eq!(
            utc_ms(1_795_236_879_258_956_302),
            "2026-11-21T04:54:39.258Z"
        );
        assert_eq!(utc_ms(-1_000_000), "1969-12-31T23:59:59.999Z");
        assert_eq!(utc_ms_u(u64::MAX), utc_ms(i64::MAX));
        assert_eq!(utc_ms_json(&serde_json::json!("x")), "-");
    }

    #[test]
    fn durations_carry_their_unit() {
        assert_eq!(duration_ns(0), "0 ns");
        assert_eq!(duration_ns(850), "850 ns");
        assert_eq!(duration_ns(12_500), "12.5 µs");
        assert_eq!(duration_ns(350_000_000), "350.0 ms");
        assert_eq!(duration_ns(1_234_000_000), "1.2 s");
        assert_eq!(duration_ns(125_000_000_000), "2 min 5 s");
        assert_eq!(duration_ns(12_000_000_000_000), "3 h 20 min");
        assert_eq!(duration_ms(1234.0), "1.2 s");
        assert_eq!(duration_ms(f64::NAN), "0 s");
        assert_eq!(duration_ms(0.0), "0 s");
    }

    #[test]
    fn counts() {
        assert_eq!(count(0, ""), "0");
        assert_eq!(count(0, "B"), "0 B");
        assert_eq!(count(12_345, ""), "12.3 k");
        assert_eq!(count(2_097_152, "B"), "2.1 MB");
        assert_eq!(count(235_000_000_000, ""), "235.0 G");
    }
}
