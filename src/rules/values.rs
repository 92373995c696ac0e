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
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
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

/// Parses `15000`, `85%` (= 85), `0.5`, `512Mi`, `2Gi` (bytes), `1k` / `3M` (decimal).
pub fn parse_quantity(s: &str) -> Result<f64, String> {
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
                return match num.trim().parse::<f64>() {
                    Ok(n) if n.is_finite() => Ok(n * factor),
                    _ => Err(format!(
                        "expected a number, optionally with %, Ki/Mi/Gi/Ti or k/M/G/T, found `{s}`"
                    )),
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
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let n = parse_quantity(s)?;
        if n < 0.0 || s.trim().ends_with('%') {
            return Err(format!(
                "expected a byte quantity such as `512Mi` or `2Gi`, found `{s}`"
            ));
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
            if self.0 >= factor && self.0 % factor == 0 {
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

/// A duration written `30s`, `5m`, `1h`, `7d` (humantime syntax; a unit is required so that
/// `5` is never silently read as 5 seconds in a rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dur(pub Duration);

impl std::str::FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s.trim()).map(Dur).map_err(|_| {
            format!("invalid duration `{s}`: expected a number and a unit, e.g. `30s`, `5m`, `1h`, `7d`")
        })
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
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
pub fn parse_scalar<'de, D, T>(d: D, expected: &'static str, parse: fn(&str) -> Result<T, String>) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct V<T> {
        expected: &'static str,
        parse: fn(&str) -> Result<T, String>,
    }
    impl<T> de::Visitor<'_> for V<T> {
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
            assert!(err.contains("expected"), "{text}: {err}");
        }
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
        assert!("5".parse::<Dur>().is_err());
        assert!("five minutes".parse::<Dur>().is_err());
    }
}
