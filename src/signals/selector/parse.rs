//! The tokenizer and parser of label selectors, with the Kubernetes name, key and value
//! rules that the API server would apply.

use std::collections::BTreeSet;
use std::fmt;

use super::{Operator, Requirement, Selector, SelectorError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    Ident(&'a str),
    /// `!`
    Not,
    /// `=` or `==`
    Eq,
    /// `!=`
    NotEq,
    Open,
    Close,
    Comma,
    /// `>` or `<`
    Compare(char),
}

impl fmt::Display for Tok<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "`{s}`"),
            Tok::Not => f.write_str("`!`"),
            Tok::Eq => f.write_str("`=`"),
            Tok::NotEq => f.write_str("`!=`"),
            Tok::Open => f.write_str("`(`"),
            Tok::Close => f.write_str("`)`"),
            Tok::Comma => f.write_str("`,`"),
            Tok::Compare(c) => write!(f, "`{c}`"),
        }
    }
}

pub(super) struct Parser<'a> {
    input: &'a str,
    /// Tokens with their byte offset.
    tokens: Vec<(Tok<'a>, usize)>,
    next: usize,
}

fn is_special(c: char) -> bool {
    matches!(c, '!' | '=' | '(' | ')' | ',' | '<' | '>')
}

impl<'a> Parser<'a> {
    pub(super) fn new(input: &'a str) -> Result<Self, SelectorError> {
        let mut tokens = Vec::new();
        let mut chars = input.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            let tok = match c {
                c if c.is_whitespace() => continue,
                '!' | '=' => {
                    let double = chars.next_if(|&(_, n)| n == '=').is_some();
                    match (c, double) {
                        ('!', false) => Tok::Not,
                        ('!', true) => Tok::NotEq,
                        _ => Tok::Eq,
                    }
                }
                '(' => Tok::Open,
                ')' => Tok::Close,
                ',' => Tok::Comma,
                '<' | '>' => Tok::Compare(c),
                _ => {
                    let mut end = at + c.len_utf8();
                    while let Some((i, n)) = chars.next_if(|&(_, n)| !n.is_whitespace() && !is_special(n)) {
                        end = i + n.len_utf8();
                    }
                    Tok::Ident(&input[at..end])
                }
            };
            tokens.push((tok, at));
        }
        Ok(Parser {
            input,
            tokens,
            next: 0,
        })
    }

    fn error(&self, at: usize, message: impl Into<String>) -> SelectorError {
        SelectorError {
            selector: self.input.to_owned(),
            column: at + 1,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<(Tok<'a>, usize)> {
        self.tokens.get(self.next).copied()
    }

    fn bump(&mut self) -> Option<(Tok<'a>, usize)> {
        let t = self.peek();
        self.next += 1;
        t
    }

    fn end(&self) -> usize {
        self.input.len()
    }

    pub(super) fn selector(mut self) -> Result<Selector, SelectorError> {
        let mut requirements = Vec::new();
        if self.peek().is_none() {
            return Ok(Selector { requirements });
        }
        loop {
            requirements.push(self.requirement()?);
            match self.bump() {
                None => return Ok(Selector { requirements }),
                Some((Tok::Comma, at)) if self.peek().is_none() => {
                    return Err(self.error(at, "trailing `,`: expected a requirement after it"))
                }
                Some((Tok::Comma, _)) => {}
                Some((tok, at)) => {
                    return Err(self.error(at, format!("expected `,` or the end, found {tok}")))
                }
            }
        }
    }

    /// A label key; `wanted` says where, for the error.
    fn key(&mut self, wanted: &str) -> Result<String, SelectorError> {
        match self.bump() {
            Some((Tok::Ident(key), at)) => {
                check_key(key).map_err(|why| self.error(at, format!("invalid label key `{key}`: {why}")))?;
                Ok(key.to_owned())
            }
            Some((tok, at)) => Err(self.error(at, format!("expected {wanted}, found {tok}"))),
            None => Err(self.error(self.end(), format!("expected {wanted}"))),
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        if let Some((Tok::Not, _)) = self.peek() {
            self.bump();
            let key = self.key("a label key after `!`")?;
            if let Some((tok, at)) = self.peek().filter(|(t, _)| *t != Tok::Comma) {
                return Err(self.error(at, format!("`!{key}` takes no operator or value, found {tok}")));
            }
            return Ok(Requirement {
                key,
                op: Operator::DoesNotExist,
            });
        }
        let key = self.key("a label key")?;
        let op = match self.peek() {
            None | Some((Tok::Comma, _)) => Operator::Exists,
            Some((Tok::Eq, _)) => {
                self.bump();
                Operator::Equals(self.single_value()?)
            }
            Some((Tok::NotEq, _)) => {
                self.bump();
                Operator::NotEquals(self.single_value()?)
            }
            Some((Tok::Ident("in"), _)) => {
                self.bump();
                Operator::In(self.value_set("in")?)
            }
            Some((Tok::Ident("notin"), _)) => {
                self.bump();
                Operator::NotIn(self.value_set("notin")?)
            }
            Some((Tok::Compare(c), at)) => {
                return Err(self.error(
                    at,
                    format!("`{c}` is not supported; use `=`, `==`, `!=`, `in` or `notin`"),
                ))
            }
            Some((tok, at)) => {
                return Err(self.error(
                    at,
                    format!("unknown operator {tok} after `{key}`: expected `=`, `==`, `!=`, `in`, `notin`, `,` or the end"),
                ))
            }
        };
        Ok(Requirement { key, op })
    }

    /// The value after `=`, `==` or `!=`; empty when a `,` or the end follows (`a=` selects
    /// an empty value, as in Kubernetes).
    fn single_value(&mut self) -> Result<String, SelectorError> {
        match self.peek() {
            None | Some((Tok::Comma, _)) => Ok(String::new()),
            Some((Tok::Ident(v), at)) => {
                self.bump();
                check_value(v).map_err(|why| self.error(at, format!("invalid label value `{v}`: {why}")))?;
                Ok(v.to_owned())
            }
            Some((tok, at)) => Err(self.error(at, format!("expected a label value, found {tok}"))),
        }
    }

    fn value_set(&mut self, op: &str) -> Result<BTreeSet<String>, SelectorError> {
        match self.bump() {
            Some((Tok::Open, _)) => {}
            Some((tok, at)) => return Err(self.error(at, format!("expected `(` after `{op}`, found {tok}"))),
            None => return Err(self.error(self.end(), format!("expected `(` after `{op}`"))),
        }
        let mut values = BTreeSet::new();
        // `true` right after `(` or `,`: a value may come (empty values are allowed).
        let mut want_value = true;
        loop {
            match self.bump() {
                Some((Tok::Ident(v), at)) if want_value => {
                    check_value(v)
                        .map_err(|why| self.error(at, format!("invalid label value `{v}`: {why}")))?;
                    values.insert(v.to_owned());
                    want_value = false;
                }
                Some((Tok::Comma, _)) => {
                    if want_value {
                        values.insert(String::new());
                    }
                    want_value = true;
                }
                Some((Tok::Close, at)) => {
                    if want_value && !values.is_empty() {
                        values.insert(String::new());
                    }
                    if values.is_empty() {
                        return Err(self.error(at, format!("`{op}` needs at least one value")));
                    }
                    return Ok(values);
                }
                Some((tok, at)) => {
                    return Err(self.error(
                        at,
                        format!("expected a value, `,` or `)` in `{op} (…)`, found {tok}"),
                    ))
                }
                None => return Err(self.error(self.end(), format!("missing `)` to close `{op} (`"))),
            }
        }
    }
}

/// A label name: at most 63 characters, alphanumerics with `-`, `_`, `.` inside.
fn check_name(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    if name.is_empty() {
        return Err("the name part must not be empty".to_owned());
    }
    if name.len() > 63 {
        return Err(format!(
            "the name part is {} characters, at most 63 are allowed",
            name.len()
        ));
    }
    let edge_ok = |b: u8| b.is_ascii_alphanumeric();
    let inner_ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    if !edge_ok(bytes[0]) || !edge_ok(bytes[bytes.len() - 1]) || !bytes.iter().all(|&b| inner_ok(b)) {
        return Err(
            "must be alphanumerics, `-`, `_` or `.`, starting and ending with an alphanumeric".to_owned(),
        );
    }
    Ok(())
}

/// `[prefix/]name`: the prefix is a DNS subdomain (lowercase, at most 253 characters).
fn check_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if name.contains('/') {
            return Err("at most one `/` (between a DNS prefix and the name)".to_owned());
        }
        let dns_ok = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|part| {
                let b = part.as_bytes();
                !b.is_empty()
                    && b[0].is_ascii_alphanumeric()
                    && b[b.len() - 1].is_ascii_alphanumeric()
                    && b.iter()
                        .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            });
        if !dns_ok {
            return Err(format!(
                "the prefix `{prefix}` must be a lowercase DNS subdomain (e.g. `example.com`)"
            ));
        }
    }
    check_name(name)
}

/// A label value: empty, or a valid name.
fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    check_name(value).map_err(|why| why.replace("the name part", "the value"))
}
