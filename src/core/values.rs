//! The small value languages of rule files: conditions (`> 15000`, `>= 85%`, `< 512Mi`),
//! quantities and durations. They are parsed inside `Deserialize` so that serde_yaml attaches
//! the exact `line:col` of the offending scalar to every error.

use std::fmt;
use std::time::Duration;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// A comparison operator of `when` / `clear`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }

    /// Whether a lower value is "more extreme" for this operator. Used to aggregate several
    /// series that land on one target: the series closest to (or deepest into) the
    /// condition wins, so one healthy pod never hides a sick one.
    pub fn prefers_low(self) -> bool {
        matches!(self, Op::Lt | Op::Le)
    }
}

/// `OP NUMBER`, e.g. `> 15000`, `>= 85%`, `< 512Mi`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Condition {
    pub op: Op,
    pub threshold: f64,
}

impl Condition {
    pub fn holds(&self, value: f64) -> bool {
        match self.op {
            Op::Gt => value > self.threshold,
            Op::Ge => value >= self.threshold,
            Op::Lt => value < self.threshold,
            Op::Le => value <= self.threshold,
            Op::Eq => value == self.threshold,
            Op::Ne => value != self.threshold,
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op.symbol(), self.threshold)
    }
}

impl std::str::FromStr for Condition {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        let s = s.trim();
        let (op, rest) = [
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            (">", Op::Gt),
            ("<", Op::Lt),
        ]
        .iter()
        .find_map(|(sym, op)| s.strip_prefix(sym).map(|rest| (*op, rest)))
        .ok_or_else(|| {
            format!("invalid condition `{s}`: expected an operator (>, >=, <, <=, ==, !=) and a number, e.g. `> 15000`")
        })?;
        let threshold = parse_quantity(rest.trim()).map_err(|e| format!("invalid condition `{s}`: {e}"))?;
        Ok(Condition { op, threshold })
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_scalar(d, "a condition such as `> 15000`", str::parse)
    }
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why a value of a rule file or a setting does not parse: the message names the value and
/// the expected form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(pub String);

impl From<String> for ValueError {
    fn from(message: String) -> Self {
        ValueError(message)
    }
}

/// Parses `15000`, `85%` (= 85), `0.5`, `512Mi`, `2Gi` (bytes), `1k` / `3M` (decimal).
/// The result is always finite: the product with the unit is checked too, since a finite
/// number can overflow with it (`1e308Ti`), and an infinite threshold prints as `inf`,
/// which does not parse back.
pub fn parse_quantity(s: &str) -> Result<f64, ValueError> {
    const SUFFIXES: [(&str, f64); 10] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("%", 1.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("", 1.0),
    ];
    let s = s.trim();
    for (suffix, factor) in SUFFIXES {
        if let Some(num) = s.strip_suffix(suffix) {
            if suffix.is_empty() || !num.is_empty() {
                return match num.trim().parse::<f64>().map(|n| n * factor) {
                    Ok(n) if n.is_finite() => Ok(n),
                    _ => Err(ValueError(format!(
                        "expected a number, optionally with %, Ki/Mi/Gi/Ti or k/M/G/T, found `{s}`"
                    ))),
                };
            }
        }
    }
    unreachable!("the empty suffix matches every string")
}

/// A byte quantity such as `8Gi`; kept as bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes(pub u64);

impl std::str::FromStr for Bytes {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let bad = || {
            ValueError::from(format!("invalid byte quantity `{s}`: expected a number with an optional unit Ki/Mi/Gi/Ti (or k/M/G/T), e.g. `512Mi` or `2Gi`"))
        };
        let n = parse_quantity(s).map_err(|_| bad())?;
        if n < 0.0 || s.trim().ends_with('%') {
            return Err(bad());
        }
        Ok(Bytes(n.round() as u64))
    }
}

impl fmt::Display for Bytes {
    /// The shortest exact binary form (`1Gi`, `768Mi`), as Kubernetes prints quantities.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (suffix, factor) in [
            ("Ti", 1u64 << 40),
            ("Gi", 1 << 30),
            ("Mi", 1 << 20),
            ("Ki", 1 << 10),
        ] {
            if self.0 >= factor && self.0.is_multiple_of(factor) {
                return write!(f, "{}{}", self.0 / factor, suffix);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_scalar(d, "a byte quantity such as `2Gi`", str::parse)
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A duration written `30s`, `5m`, `1h`, `7d`, or several such parts (`1h30m`; `ms` for
/// milliseconds). Stricter than humantime on purpose: a unit is required so that `5` is never
/// silently read as 5 seconds, and `5M` (humantime: five months) or `5 minutes` are errors
/// rather than surprises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dur(pub Duration);

const DURATION_UNITS: [(&str, u64); 5] = [
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

impl std::str::FromStr for Dur {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let bad = || {
            ValueError::from(format!("invalid duration `{s}`: expected a number and a unit (ms, s, m, h, d), e.g. `30s`, `5m`, `1h`, `7d`"))
        };
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(bad());
        }
        let mut millis: u64 = 0;
        while !rest.is_empty() {
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let (unit, factor) = DURATION_UNITS
                .iter()
                .find(|(unit, _)| {
                    rest.strip_prefix(unit)
                        .is_some_and(|after| !after.starts_with(|c: char| c.is_ascii_alphabetic()))
                })
                .ok_or_else(bad)?;
            rest = &rest[unit.len()..];
            millis = n
                .checked_mul(*factor)
                .and_then(|part| millis.checked_add(part))
                .ok_or_else(bad)?;
        }
        Ok(Dur(Duration::from_millis(millis)))
    }
}

impl fmt::Display for Dur {
    /// The form it is written in (`7d`, `1h30m`, `0s`), so it parses back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut left = self.0.as_millis();
        if left == 0 {
            return f.write_str("0s");
        }
        for (unit, factor) in DURATION_UNITS.iter().rev() {
            let factor = u128::from(*factor);
            if left >= factor {
                write!(f, "{}{unit}", left / factor)?;
                left %= factor;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_scalar(d, "a duration such as `5m`", str::parse)
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Parses a YAML scalar of any type (`when: 5` and `when: "> 5"` both reach `parse`, which
/// then says what is wrong instead of serde's generic type error). The parse runs inside the
/// scalar's visitor so that serde_yaml attaches the scalar's own `line:col` to the error.
pub fn parse_scalar<'de, D, T, E>(
    d: D,
    expected: &'static str,
    parse: fn(&str) -> Result<T, E>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    E: fmt::Display,
{
    struct V<T, P> {
        expected: &'static str,
        parse: fn(&str) -> Result<T, P>,
    }
    impl<T, P: fmt::Display> de::Visitor<'_> for V<T, P> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.expected)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.parse)(v).map_err(E::custom)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
            self.visit_str(&v.to_string())
        }
    }
    d.deserialize_any(V { expected, parse })
}

/// RFC 1123 subdomain, as Kubernetes requires of object names.
pub fn is_dns1123(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

/// A DNS-1123 label (a namespace's name): a [`is_dns1123`] name of at most 63 characters
/// without dots.
pub fn is_dns1123_label(name: &str) -> bool {
    name.len() <= 63 && !name.contains('.') && is_dns1123(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_parse_every_operator_and_unit() {
        let cases = [
            ("> 15000", Op::Gt, 15000.0),
            (">=85%", Op::Ge, 85.0),
            ("< 512Mi", Op::Lt, 536870912.0),
            ("<= 2Gi", Op::Le, 2147483648.0),
            ("== 0", Op::Eq, 0.0),
            ("!= 1.5", Op::Ne, 1.5),
            ("> 3k", Op::Gt, 3000.0),
            ("< -1", Op::Lt, -1.0),
        ];
        for (text, op, threshold) in cases {
            let c: Condition = text.parse().unwrap();
            assert_eq!((c.op, c.threshold), (op, threshold), "{text}");
        }
    }

    #[test]
    fn bad_conditions_say_what_was_expected() {
        for text in ["15000", "> ", ">> 5", "> 5 apples", "> NaN", "=> 5"] {
            let err = text.parse::<Condition>().unwrap_err();
            assert!(err.0.contains("expected"), "{text}: {err}");
        }
    }

    #[test]
    fn quantities_that_overflow_with_their_unit_are_refused() {
        // Found by the rule_loader fuzzer: `> 1e308Ti` had an infinite threshold.
        assert!(parse_quantity("1e308Ti").is_err());
        assert!("> 1e308Ti".parse::<Condition>().is_err());
        assert!("1e308Ti".parse::<Bytes>().is_err());
        assert_eq!(parse_quantity("1e300k"), Ok(1e303));
    }

    #[test]
    fn bytes_print_in_the_shortest_exact_binary_form() {
        let b: Bytes = "512Mi".parse().unwrap();
        assert_eq!(b.0, 512 << 20);
        assert_eq!(Bytes(1 << 30).to_string(), "1Gi");
        assert_eq!(Bytes(768 << 20).to_string(), "768Mi");
        assert_eq!(Bytes(1000).to_string(), "1000");
        assert!("85%".parse::<Bytes>().is_err());
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!("30s".parse::<Dur>().unwrap().0, Duration::from_secs(30));
        assert_eq!("7d".parse::<Dur>().unwrap().0, Duration::from_secs(7 * 86400));
        assert_eq!("1h30m".parse::<Dur>().unwrap().0, Duration::from_secs(5400));
        assert_eq!("500ms".parse::<Dur>().unwrap().0, Duration::from_millis(500));
        for bad in [
            "5",
            "five minutes",
            "5 minutes",
            "5M",
            "5min",
            "1.5h",
            "m",
            "",
            "-5s",
        ] {
            assert!(bad.parse::<Dur>().is_err(), "{bad}");
        }
        for text in ["0s", "30s", "5m", "1h30m", "7d", "1d1h1m1s1ms"] {
            assert_eq!(text.parse::<Dur>().unwrap().to_string(), text);
        }
    }
}
