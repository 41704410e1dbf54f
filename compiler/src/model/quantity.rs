//! Kubernetes resource quantities (`500m`, `16Gi`, `2`) and durations (`10m`, `7d`).

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The quantity grammar of Kubernetes (`resource.Quantity`): a decimal number and a suffix.
pub const QUANTITY_PATTERN: &str =
    r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]+)?$";

/// A resource quantity as written in the spec, e.g. `500m`, `16Gi`, `2`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity(pub String);

impl Quantity {
    pub fn new(s: impl Into<String>) -> Quantity {
        Quantity(s.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The amount in nano-units (so `500m` = 500,000,000 and `1Ki` = 1,024,000,000,000).
    pub fn nanos(&self) -> Option<i128> {
        parse_nanos(&self.0)
    }
    /// A quantity from a whole number of units.
    pub fn from_units(n: u64) -> Quantity {
        Quantity(n.to_string())
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The largest quantity plinth accepts, in units: Kubernetes' own bound for the quantities it
/// computes with (2^63 - 1), far above any real CPU, memory or storage amount.
pub const MAX_UNITS: i128 = i64::MAX as i128;

/// Why a quantity is refused, if it is: it does not follow the grammar, or it is larger than
/// [`MAX_UNITS`] (so no check ever counts an overflowing amount as zero).
pub fn problem(s: &str) -> Option<String> {
    match parse_nanos(s) {
        None if grammatical(s) => Some(format!(
            "`{s}` is out of range for a quantity (at most {MAX_UNITS} units)"
        )),
        None => Some(format!("`{s}` is not a valid quantity")),
        Some(n) if n > MAX_UNITS * 1_000_000_000 => Some(format!(
            "`{s}` is out of range for a quantity (at most {MAX_UNITS} units)"
        )),
        Some(_) => None,
    }
}

/// Whether `s` follows the quantity grammar (whatever its size).
fn grammatical(s: &str) -> bool {
    let s = s.strip_prefix('+').unwrap_or(s);
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let number_ok = !num.is_empty() && num != "." && num.matches('.').count() <= 1;
    let suffix_ok = matches!(
        suffix,
        "" | "n"
            | "u"
            | "m"
            | "k"
            | "M"
            | "G"
            | "T"
            | "P"
            | "E"
            | "Ki"
            | "Mi"
            | "Gi"
            | "Ti"
            | "Pi"
            | "Ei"
    ) || (suffix.len() > 1
        && suffix.starts_with(['e', 'E'])
        && suffix[1..]
            .strip_prefix(['+', '-'])
            .unwrap_or(&suffix[1..])
            .chars()
            .all(|c| c.is_ascii_digit()));
    number_ok && suffix_ok
}

/// Parse a quantity into nano-units; `None` if it does not follow the grammar or overflows.
pub fn parse_nanos(s: &str) -> Option<i128> {
    let s = s.strip_prefix('+').unwrap_or(s);
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return None;
    }
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if frac.len() > 9 {
        return None;
    }
    let int: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let frac_n: i128 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    let base = int.checked_mul(1_000_000_000)?.checked_add(frac_n)?;
    let (mul, div): (i128, i128) = match suffix {
        "" => (1, 1),
        "n" => (1, 1_000_000_000),
        "u" => (1, 1_000_000),
        "m" => (1, 1000),
        "k" => (1000, 1),
        "M" => (1_000_000, 1),
        "G" => (1_000_000_000, 1),
        "T" => (1_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000, 1),
        "E" => (1_000_000_000_000_000_000, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        "Ei" => (1 << 60, 1),
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().ok()?;
            if !(-9..=18).contains(&exp) {
                return None;
            }
            if exp >= 0 {
                (10i128.pow(exp as u32), 1)
            } else {
                (1, 10i128.pow((-exp) as u32))
            }
        }
        _ => return None,
    };
    Some(base.checked_mul(mul)? / div)
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            I(u64),
            F(f64),
        }
        let s = match Raw::deserialize(d)? {
            Raw::S(s) => s,
            Raw::I(i) => i.to_string(),
            Raw::F(f) if f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f < 1e19 => {
                format!("{f:.0}")
            }
            Raw::F(f) => format!("{f:e}"),
        };
        if let Some(why) = problem(&s) {
            return Err(serde::de::Error::custom(format!("quantity: {why}")));
        }
        Ok(Quantity(s))
    }
}

impl JsonSchema for Quantity {
    fn schema_name() -> Cow<'static, str> {
        "Quantity".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A Kubernetes resource quantity: a number with an optional suffix (`500m`, `2`, `16Gi`, `1Ti`).",
            "anyOf": [
                { "type": "string", "pattern": QUANTITY_PATTERN },
                { "type": "number", "minimum": 0 }
            ]
        })
    }
}

/// The duration grammar: a whole number and a unit.
pub const DURATION_PATTERN: &str = r"^[0-9]+(ms|s|m|h|d|w|y)$";

/// A duration such as `30s`, `10m`, `1h`, `7d`, `2y`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Duration(pub String);

impl Duration {
    /// The duration in seconds (`ms` rounds down; a year is 365 days).
    pub fn seconds(&self) -> Option<u64> {
        let s = &self.0;
        let split = s.find(|c: char| !c.is_ascii_digit())?;
        let n: u64 = s[..split].parse().ok()?;
        let unit = match &s[split..] {
            "ms" => return Some(n / 1000),
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 604_800,
            "y" => 31_536_000,
            _ => return None,
        };
        n.checked_mul(unit)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: a whole number and a unit, one of `ms`, `s`, `m`, `h`, `d`, `w`, `y` (`30s`, `10m`, `7d`).",
            "type": "string",
            "pattern": DURATION_PATTERN
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_like_kubernetes() {
        assert_eq!(parse_nanos("500m"), Some(500_000_000));
        assert_eq!(parse_nanos("2"), Some(2_000_000_000));
        assert_eq!(parse_nanos("1.5"), Some(1_500_000_000));
        assert_eq!(parse_nanos("1Ki"), Some(1024 * 1_000_000_000));
        assert_eq!(
            parse_nanos("16Gi"),
            Some(16 * (1i128 << 30) * 1_000_000_000)
        );
        assert_eq!(parse_nanos("1e3"), Some(1000 * 1_000_000_000));
        assert_eq!(parse_nanos("1k"), parse_nanos("1000"));
        assert!(parse_nanos("1Gi").unwrap_or(0) > parse_nanos("1G").unwrap_or(0));
        assert_eq!(parse_nanos("abc"), None);
        assert_eq!(parse_nanos("1.2.3"), None);
        assert_eq!(parse_nanos("5Gb"), None);
        assert_eq!(parse_nanos(""), None);
        assert_eq!(parse_nanos("999999999999999999999999999999Ei"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(Duration("10m".into()).seconds(), Some(600));
        assert_eq!(Duration("7d".into()).seconds(), Some(604_800));
        assert_eq!(Duration("1500ms".into()).seconds(), Some(1));
        assert_eq!(Duration("10x".into()).seconds(), None);
    }
}
