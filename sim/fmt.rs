//! Numbers for people: every report (run, sweep, compare) and every sentence `compare` writes
//! formats its figures here, so "13,638", "1.12 µs" and "2.3×" read the same everywhere.
//!
//! Counts take thousands separators (always a comma, whatever the locale); durations and rates
//! take the unit that keeps the number between 1 and 1,000, with three significant digits.
//! Nothing here knows what is being counted.

/// A count with thousands separators: 1234567 -> "1,234,567".
pub fn count(n: u64) -> String {
    group(&n.to_string())
}

/// A signed count with thousands separators: -1234 -> "-1,234".
pub fn signed(n: i64) -> String {
    if n < 0 {
        format!("-{}", count(n.unsigned_abs()))
    } else {
        count(n as u64)
    }
}

/// A number with `decimals` digits after the point and separators before it: "12,345.6".
/// Non-finite values print as "–".
pub fn decimal(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let text = format!("{:.*}", decimals, v.abs());
    let (int, frac) = text.split_once('.').map_or((text.as_str(), None), |(i, f)| (i, Some(f)));
    let sign = if v < 0.0 && text.chars().any(|c| c.is_ascii_digit() && c != '0') { "-" } else { "" };
    match frac {
        Some(f) => format!("{sign}{}.{f}", group(int)),
        None => format!("{sign}{}", group(int)),
    }
}

/// Three significant digits for values >= 1, e.g. 1.23, 12.3, 123, 1,234; three decimals
/// below 1.
pub fn sig3(value: f64) -> String {
    match value {
        v if v >= 100.0 || v == 0.0 => decimal(v, 0),
        v if v >= 10.0 => format!("{v:.1}"),
        v if v >= 1.0 => format!("{v:.2}"),
        v => format!("{v:.3}"),
    }
}

/// A duration in ns with three significant digits: "850 ns", "12.3 µs", "1.50 ms", "2.00 s".
pub fn ns(ns: u64) -> String {
    let (value, unit) = match ns {
        0..1_000 => return format!("{ns} ns"),
        1_000..1_000_000 => (ns as f64 / 1e3, "µs"),
        1_000_000..1_000_000_000 => (ns as f64 / 1e6, "ms"),
        _ => (ns as f64 / 1e9, "s"),
    };
    // 999,950 ns rounds to "1000 µs": say "1.00 ms" instead.
    let shown = sig3(value);
    match (shown.as_str(), unit) {
        ("1,000", "µs") => "1.00 ms".into(),
        ("1,000", "ms") => "1.00 s".into(),
        _ => format!("{shown} {unit}"),
    }
}

/// A fractional duration in ns, as [`ns`] (sub-nanosecond means print as "0.42 ns").
pub fn ns_f(v: f64) -> String {
    if v.is_finite() && v > 0.0 && v < 1.0 {
        format!("{v:.2} ns")
    } else if v.is_finite() && v >= 0.0 {
        ns(v.round() as u64)
    } else {
        "–".into()
    }
}

/// A point in simulated time, exact to the nanosecond, in the unit that reads best:
/// "1.118 µs", "100.001118 ms", "2.5 s", "750 ns".
pub fn instant_ns(t: u64) -> String {
    let (scale, unit): (u64, &str) = match t {
        0..1_000 => return format!("{t} ns"),
        1_000..1_000_000 => (1_000, "µs"),
        1_000_000..1_000_000_000 => (1_000_000, "ms"),
        _ => (1_000_000_000, "s"),
    };
    let digits = scale.ilog10() as usize;
    let frac = format!("{:0digits$}", t % scale);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        format!("{} {unit}", count(t / scale))
    } else {
        format!("{}.{frac} {unit}", count(t / scale))
    }
}

/// A rate as "950 bit/s", "12.5 Mbit/s", "9.87 Gbit/s".
pub fn bps(bps: f64) -> String {
    const UNITS: [(f64, &str); 4] = [(1e12, "Tbit/s"), (1e9, "Gbit/s"), (1e6, "Mbit/s"), (1e3, "Kbit/s")];
    match UNITS.iter().find(|(scale, _)| bps >= *scale) {
        Some((scale, unit)) => format!("{} {unit}", sig3(bps / scale)),
        None => format!("{} bit/s", sig3(bps)),
    }
}

/// A size in bytes in binary units: "512 B", "12.3 KiB", "148 MiB", "1.50 GiB".
pub fn bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    match UNITS.iter().find(|(scale, _)| n >= *scale) {
        Some((scale, unit)) => format!("{} {unit}", sig3(n as f64 / *scale as f64)),
        None => format!("{n} B"),
    }
}

/// How many times one value is another's: "1.05×", "2.3×", "14×".
pub fn ratio(r: f64) -> String {
    if !r.is_finite() {
        return "–".into();
    }
    let text = if r < 1.995 {
        format!("{r:.2}")
    } else if r < 9.95 {
        format!("{r:.1}")
    } else {
        decimal(r, 0)
    };
    format!("{text}×")
}

/// An axis tick without float noise: "100", "2.5", "0.25", "1 000 000". On a chart a comma
/// at label size reads as a decimal point ("1.000"), so ticks group digits with a narrow
/// no-break space instead, as SI writes them.
pub fn tick(v: f64) -> String {
    if v.abs() >= 1000.0 {
        return decimal(v, 0).replace(',', "\u{202f}");
    }
    let text = format!("{v:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.to_string()
    }
}

/// Inserts a comma every three digits from the right of a run of ASCII digits.
fn group(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_decimals_take_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(13_638), "13,638");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(signed(-1234), "-1,234");
        assert_eq!(decimal(12_345.67, 1), "12,345.7");
        assert_eq!(decimal(-0.04, 1), "0.0");
        assert_eq!(decimal(-1500.0, 0), "-1,500");
        assert_eq!(decimal(f64::NAN, 1), "–");
        assert_eq!(sig3(1234.4), "1,234");
        assert_eq!(sig3(0.5), "0.500");
    }

    #[test]
    fn durations_take_the_unit_that_reads_best() {
        assert_eq!(ns(850), "850 ns");
        assert_eq!(ns(1_118), "1.12 µs");
        assert_eq!(ns(12_345), "12.3 µs");
        assert_eq!(ns(1_500_000), "1.50 ms");
        assert_eq!(ns(999_999), "1.00 ms");
        assert_eq!(ns(3_600_000_000_000), "3,600 s");
        assert_eq!(ns_f(0.25), "0.25 ns");
        assert_eq!(ns_f(2_500.4), "2.50 µs");
        assert_eq!(instant_ns(1_118), "1.118 µs");
        assert_eq!(instant_ns(100_001_118), "100.001118 ms");
        assert_eq!(instant_ns(2_500_000_000), "2.5 s");
        assert_eq!(instant_ns(3_000_000), "3 ms");
        assert_eq!(instant_ns(7), "7 ns");
    }

    #[test]
    fn rates_ratios_and_ticks() {
        assert_eq!(bps(950.0), "950 bit/s");
        assert_eq!(bps(12.5e6), "12.5 Mbit/s");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(155_207_680), "148 MiB");
        assert_eq!(bytes(12_595), "12.3 KiB");
        assert_eq!(ratio(1.0), "1.00×");
        assert_eq!(ratio(1.049), "1.05×");
        assert_eq!(ratio(2.34), "2.3×");
        assert_eq!(ratio(14.2), "14×");
        assert_eq!(ratio(1234.0), "1,234×");
        assert_eq!(tick(1_000_000.0), "1\u{202f}000\u{202f}000");
        assert_eq!(tick(2.5), "2.5");
        assert_eq!(tick(0.25), "0.25");
        assert_eq!(tick(-0.0001), "0");
    }
}
