//! Quantities with units, as scenario files write them: `"10Gbit"`, `"5us"`, `"1500B"`,
//! `"64KiB"`.
//!
//! Parsing is strict: a number, then a unit from a fixed list, nothing else. A missing or
//! unknown unit is an error that lists the accepted ones, never a silent default.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::Serialize;

use crate::time::Duration;

/// A link or NIC rate in bits per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bandwidth(pub u64);

/// A size in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

const DURATION_UNITS: &[(&str, f64)] =
    &[("ns", 1.0), ("us", 1e3), ("µs", 1e3), ("ms", 1e6), ("s", 1e9), ("min", 60e9), ("h", 3600e9)];
const BANDWIDTH_UNITS: &[(&str, f64)] = &[
    ("bit", 1.0),
    ("Kbit", 1e3),
    ("kbit", 1e3),
    ("Mbit", 1e6),
    ("Gbit", 1e9),
    ("Tbit", 1e12),
    ("bps", 1.0),
    ("Kbps", 1e3),
    ("kbps", 1e3),
    ("Mbps", 1e6),
    ("Gbps", 1e9),
];
const SIZE_UNITS: &[(&str, f64)] = &[
    ("B", 1.0),
    ("KB", 1e3),
    ("kB", 1e3),
    ("KiB", 1024.0),
    ("MB", 1e6),
    ("MiB", 1048576.0),
    ("GB", 1e9),
    ("GiB", 1073741824.0),
];

/// Splits `"1.5ms"` into (1.5, "ms") and scales it by the unit's factor.
fn parse_quantity(text: &str, what: &str, units: &[(&str, f64)], example: &str) -> Result<f64, String> {
    if text.contains(char::is_whitespace) {
        let joined: String = text.split_whitespace().collect();
        return Err(format!(
            "{what} '{text}' has a space in it: write the number and the unit together, e.g. \"{joined}\""
        ));
    }
    let t = text;
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+' || c == '_'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let names = || units.iter().map(|(u, _)| format!("'{u}'")).collect::<Vec<_>>().join(", ");
    if num.is_empty() {
        return Err(format!("'{text}' is not a {what}: expected a number then a unit, e.g. \"{example}\""));
    }
    let value: f64 = num
        .replace('_', "")
        .parse()
        .map_err(|_| format!("'{num}' in '{text}' is not a number (write a {what} like \"{example}\")"))?;
    if value < 0.0 {
        return Err(format!("{what} '{text}' is negative; it must be zero or more"));
    }
    if !value.is_finite() {
        return Err(format!("{what} '{text}' is not finite"));
    }
    if unit.is_empty() {
        return Err(format!("{what} '{text}' has no unit: write e.g. \"{example}\" (units: {})", names()));
    }
    let factor =
        units.iter().find(|(u, _)| *u == unit).map(|(_, f)| *f).ok_or_else(|| {
            format!("unknown {what} unit '{unit}' in '{text}', expected one of {}", names())
        })?;
    let scaled = value * factor;
    if scaled > u64::MAX as f64 / 2.0 {
        return Err(format!("{what} '{text}' is too large"));
    }
    Ok(scaled)
}

/// Parses a duration such as `"5us"`, `"1.5ms"`, `"2s"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let ns = parse_quantity(text, "duration", DURATION_UNITS, "5us")?;
    if ns.fract() != 0.0 {
        return Err(format!("duration '{text}' is finer than one nanosecond, the simulator's resolution"));
    }
    Ok(Duration::from_nanos(ns as u64))
}

/// Parses a rate such as `"10Gbit"`, `"100Mbit"` (SI prefixes: 1 Gbit = 10^9 bit/s).
pub fn parse_bandwidth(text: &str) -> Result<Bandwidth, String> {
    let bps = parse_quantity(text, "bandwidth", BANDWIDTH_UNITS, "10Gbit")?;
    if bps.fract() != 0.0 {
        return Err(format!("bandwidth '{text}' is not a whole number of bits per second"));
    }
    Ok(Bandwidth(bps as u64))
}

/// Parses a size such as `"1500B"`, `"64KiB"` (KB = 1000 B, KiB = 1024 B).
pub fn parse_size(text: &str) -> Result<ByteSize, String> {
    let b = parse_quantity(text, "size", SIZE_UNITS, "1500B")?;
    if b.fract() != 0.0 {
        return Err(format!("size '{text}' is not a whole number of bytes"));
    }
    Ok(ByteSize(b as u64))
}

impl fmt::Display for Bandwidth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (div, unit) in
            [(1_000_000_000_000, "Tbit"), (1_000_000_000, "Gbit"), (1_000_000, "Mbit"), (1_000, "Kbit")]
        {
            if b >= div {
                let v = b as f64 / div as f64;
                let s = format!("{v:.3}");
                return write!(f, "{}{unit}", s.trim_end_matches('0').trim_end_matches('.'));
            }
        }
        write!(f, "{b}bit")
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b >= 1 << 20 && b % (1 << 20) == 0 {
            write!(f, "{}MiB", b >> 20)
        } else if b >= 1024 && b % 1024 == 0 {
            write!(f, "{}KiB", b >> 10)
        } else {
            write!(f, "{b}B")
        }
    }
}

/// A serde visitor that accepts a string and hands it to a parser.
struct StrVisitor<T>(fn(&str) -> Result<T, String>, &'static str);

impl<T> Visitor<'_> for StrVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a string such as {}", self.1)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.0)(v).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor(parse_duration, "\"5us\""))
    }
}
impl<'de> Deserialize<'de> for Bandwidth {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor(parse_bandwidth, "\"10Gbit\""))
    }
}
impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor(parse_size, "\"1500B\""))
    }
}

impl Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}
impl Serialize for crate::time::Instant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&Duration::from_nanos(self.as_nanos()).to_string())
    }
}
impl<'de> Deserialize<'de> for crate::time::Instant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Duration::deserialize(d).map(|d| crate::time::Instant::from_nanos(d.as_nanos()))
    }
}
impl Serialize for Bandwidth {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}
impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5us").unwrap(), Duration::from_nanos(5_000));
        assert_eq!(parse_duration("1.5ms").unwrap(), Duration::from_nanos(1_500_000));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("0ns").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        let e = parse_duration("1 s").unwrap_err();
        assert_eq!(
            e,
            "duration '1 s' has a space in it: write the number and the unit together, e.g. \"1s\""
        );
        assert!(parse_bandwidth(" 10Gbit").unwrap_err().contains("has a space in it"));
    }

    #[test]
    fn bandwidths_and_sizes() {
        assert_eq!(parse_bandwidth("10Gbit").unwrap(), Bandwidth(10_000_000_000));
        assert_eq!(parse_bandwidth("100Mbit").unwrap(), Bandwidth(100_000_000));
        assert_eq!(parse_size("64KiB").unwrap(), ByteSize(65_536));
        assert_eq!(parse_size("1500B").unwrap(), ByteSize(1500));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = parse_bandwidth("10Gbits").unwrap_err();
        assert!(e.contains("unknown bandwidth unit 'Gbits'") && e.contains("'Gbit'"), "{e}");
        let e = parse_duration("5").unwrap_err();
        assert!(e.contains("has no unit"), "{e}");
        let e = parse_duration("-5us").unwrap_err();
        assert!(e.contains("negative"), "{e}");
        let e = parse_size("abc").unwrap_err();
        assert!(e.contains("expected a number then a unit"), "{e}");
        let e = parse_duration("0.1ns").unwrap_err();
        assert!(e.contains("finer than one nanosecond"), "{e}");
    }

    #[test]
    fn display_round_trips() {
        for s in ["10Gbit", "1.5Mbit", "999bit"] {
            assert_eq!(parse_bandwidth(s).unwrap().to_string(), s);
        }
        for s in ["64KiB", "1500B", "2MiB"] {
            assert_eq!(parse_size(s).unwrap().to_string(), s);
        }
    }
}
