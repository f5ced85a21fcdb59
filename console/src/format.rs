//! Small text formatters shared by the table output and the TUI.

/// Bytes in binary units: `512 B`, `1.5 KiB`, `3.2 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A compact duration from milliseconds: `42s`, `5m12s`, `2h05m`, `3d04h`.
pub fn span(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// Time since `then`, or `-` if `then` is zero or in the future.
pub fn age(now: u64, then: u64) -> String {
    if then == 0 || then > now {
        "-".to_string()
    } else {
        span(now - then)
    }
}

/// Wall-clock time of day (UTC) of a Unix-milliseconds instant: `14:03:27`.
pub fn clock(ms: u64) -> String {
    let s = (ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
}

/// A position in a recording, ms: `0:04:07.250` (negative before its first
/// frame: `-0:00:00.500`).
pub fn media_time(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let a = ms.unsigned_abs();
    format!(
        "{sign}{}:{:02}:{:02}.{:03}",
        a / 3_600_000,
        a / 60_000 % 60,
        a / 1000 % 60,
        a % 1000
    )
}

/// At most `max` characters of `s`, with `…` where it was cut.
pub fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Frames per second from thousandths: `14.9`.
pub fn fps(milli: u32) -> String {
    format!("{:.1}", f64::from(milli) / 1000.0)
}

/// Frames per second with the share that repeats the previous picture,
/// when it is enough to see: `15.0`, `15.0 31%rep`.
pub fn fps_repeated(milli: u32, repeated_permille: u16) -> String {
    if repeated_permille >= REPEATING_PERMILLE {
        format!("{} {}%rep", fps(milli), (repeated_permille + 5) / 10)
    } else {
        fps(milli)
    }
}

/// A share of repeated frames from which a recording is flagged, per mille
/// (the worker's `rate::REPEATING_PERMILLE`).
pub const REPEATING_PERMILLE: u16 = 50;

/// CPU from millicores: `1.25`.
pub fn cores(millicores: u32) -> String {
    format!("{:.2}", f64::from(millicores) / 1000.0)
}

/// Round-trip time from microseconds: `0.4ms`, `12ms`.
pub fn rtt(us: u32) -> String {
    if us < 10_000 {
        format!("{:.1}ms", f64::from(us) / 1000.0)
    } else {
        format!("{}ms", us / 1000)
    }
}

/// Labels as `k=v,k2=v2`.
pub fn labels(l: &std::collections::BTreeMap<String, String>) -> String {
    l.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Aligned columns with a header row; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                line.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_says_when_its_picture_repeats() {
        assert_eq!(fps_repeated(15_000, 0), "15.0");
        assert_eq!(fps_repeated(15_000, 49), "15.0");
        assert_eq!(fps_repeated(14_900, 312), "14.9 31%rep");
    }

    #[test]
    fn units() {
        assert_eq!(bytes(10), "10 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(span(42_000), "42s");
        assert_eq!(span(312_000), "5m12s");
        assert_eq!(span(7_500_000), "2h05m");
        assert_eq!(age(10, 20), "-");
        assert_eq!(clock(3_723_000), "01:02:03");
        assert_eq!(rtt(400), "0.4ms");
        assert_eq!(rtt(12_345), "12ms");
    }

    #[test]
    fn table_aligns() {
        let t = table(
            &["NAME", "STATE"],
            &[
                vec!["w1".into(), "ready".into()],
                vec!["worker-22".into(), "lost".into()],
            ],
        );
        assert_eq!(t, "NAME       STATE\nw1         ready\nworker-22  lost\n");
    }
}
