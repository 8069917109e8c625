//! The filter grammar of RFC 7644 §3.4.2.2, exactly the part IdPs send when they look people and
//! groups up: `attrPath op value`, `attrPath pr`, `and`, `or`, `not (…)` and parentheses, with
//! the operators `eq ne co sw ew pr gt ge lt le`. Complex value filters inside a filter
//! (`emails[type eq "work"]`) are refused as `invalidFilter`.
//!
//! Written here rather than taken from a crate: the one maintained candidate (`scim-filter`)
//! evaluates a filter over an in-memory collection of serialized resources, which would mean
//! reading an org's every user to answer one lookup; here a filter compiles to a SQL condition
//! with bound parameters over the resource's own columns ([`Attribute`]), so a lookup reads only
//! what it matches and memory stays bounded. Attribute names are resolved while parsing, so an
//! unknown attribute is an error before any SQL exists, and no client text ever reaches SQL
//! except as a bound parameter.

use crate::store::Value;

use super::error::{ScimError, ScimType};

/// Longest filter accepted, in bytes; deeper than [`MAX_DEPTH`] nested groups is refused too,
/// so parsing is bounded in time and stack whatever a client sends.
pub const MAX_FILTER_LEN: usize = 2048;
pub const MAX_DEPTH: usize = 16;
/// Most bound values one filter yields (D1 binds at most 100 per statement, and the list query
/// binds a few of its own).
pub const MAX_ARGS: usize = 64;
/// Most comparisons (and `pr` tests) one filter holds: IdPs look a person or a group up with one
/// or a few; a long chain only costs the database (and `pr` binds nothing, so [`MAX_ARGS`] does
/// not bound it).
pub const MAX_TERMS: usize = 50;

/// A resource's filterable attributes: each names one SQL expression of the list query.
pub trait Attribute: Copy + std::fmt::Debug + PartialEq {
    /// The attribute a path names (already without the schema URN, compared case-insensitively
    /// as RFC 7643 §2.1 requires), if the resource has one by that name.
    fn resolve(path: &str) -> Option<Self>;
    fn column(self) -> Column;
}

/// How an attribute is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// The SQL expression (a column of the list query's tables).
    pub expr: &'static str,
    pub kind: Kind,
    /// For a multi-valued attribute held in another table: an `EXISTS (…)` template whose
    /// `{}` receives the condition on `expr`.
    pub within: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text compared exactly (`caseExact: true`: ids, externalId).
    ExactText,
    /// Text compared without regard to case (`userName`, emails, names).
    Text,
    /// A boolean stored as 0 or 1.
    Bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Bool(bool),
    Number(f64),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter<A> {
    Compare(A, CompareOp, Literal),
    Present(A),
    And(Box<Filter<A>>, Box<Filter<A>>),
    Or(Box<Filter<A>>, Box<Filter<A>>),
    Not(Box<Filter<A>>),
}

fn invalid(msg: impl Into<String>) -> ScimError {
    ScimError::bad(ScimType::InvalidFilter, msg)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    Word(String),
    Str(String),
    Number(f64),
}

fn lex(input: &str) -> Result<Vec<Token>, ScimError> {
    let mut out = Vec::new();
    let bytes = input.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' => {
                out.push(Token::Open);
                i += 1;
            }
            b')' => {
                out.push(Token::Close);
                i += 1;
            }
            b'[' | b']' => {
                return Err(invalid("complex value filters (`[...]`) are not supported"))
            }
            b'"' => {
                // A JSON string: find its end (skipping escapes), then let serde_json decode it.
                let start = i;
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return Err(invalid("unterminated string")),
                        Some(b'\\') => i += 2,
                        Some(b'"') => break,
                        Some(_) => i += 1,
                    }
                }
                i += 1;
                let s: String = serde_json::from_slice(&bytes[start..i])
                    .map_err(|_| invalid("malformed string"))?;
                out.push(Token::Str(s));
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len()
                    && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let n: f64 = input[start..i]
                    .parse()
                    .map_err(|_| invalid("malformed number"))?;
                out.push(Token::Number(n));
            }
            c if c.is_ascii_alphabetic() || c == b'$' || c == b'_' => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric()
                        || matches!(bytes[i], b'_' | b'-' | b'.' | b':' | b'$'))
                {
                    i += 1;
                }
                out.push(Token::Word(input[start..i].to_owned()));
            }
            _ => return Err(invalid("unexpected character in filter")),
        }
    }
    Ok(out)
}

/// The schema URNs a path may start with (`urn:…:User:userName`).
const URN_PREFIXES: &[&str] = &[
    "urn:ietf:params:scim:schemas:core:2.0:user:",
    "urn:ietf:params:scim:schemas:core:2.0:group:",
];

/// The attribute part of a path, lower-cased, without a schema URN.
pub fn attribute_name(path: &str) -> String {
    let lower = path.to_ascii_lowercase();
    for p in URN_PREFIXES {
        if let Some(rest) = lower.strip_prefix(p) {
            return rest.to_owned();
        }
    }
    lower
}

struct Parser<A> {
    tokens: std::iter::Peekable<std::vec::IntoIter<Token>>,
    depth: usize,
    _attr: std::marker::PhantomData<A>,
}

fn keyword(t: Option<&Token>, word: &str) -> bool {
    matches!(t, Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
}

impl<A: Attribute> Parser<A> {
    fn or(&mut self) -> Result<Filter<A>, ScimError> {
        let mut left = self.and()?;
        while keyword(self.tokens.peek(), "or") {
            self.tokens.next();
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter<A>, ScimError> {
        let mut left = self.unary()?;
        while keyword(self.tokens.peek(), "and") {
            self.tokens.next();
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn group(&mut self) -> Result<Filter<A>, ScimError> {
        if self.tokens.next() != Some(Token::Open) {
            return Err(invalid("expected `(`"));
        }
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(invalid("filter is nested too deeply"));
        }
        let inner = self.or()?;
        self.depth -= 1;
        if self.tokens.next() != Some(Token::Close) {
            return Err(invalid("expected `)`"));
        }
        Ok(inner)
    }

    fn unary(&mut self) -> Result<Filter<A>, ScimError> {
        if keyword(self.tokens.peek(), "not") {
            self.tokens.next();
            return Ok(Filter::Not(Box::new(self.group()?)));
        }
        if self.tokens.peek() == Some(&Token::Open) {
            return self.group();
        }
        let path = match self.tokens.next() {
            Some(Token::Word(w)) => w,
            _ => return Err(invalid("expected an attribute name")),
        };
        let attr = A::resolve(&attribute_name(&path))
            .ok_or_else(|| invalid(format!("`{}` cannot be filtered on", truncate(&path))))?;
        let op = match self.tokens.next() {
            Some(Token::Word(w)) => w.to_ascii_lowercase(),
            _ => return Err(invalid("expected an operator")),
        };
        let op = match op.as_str() {
            "pr" => return Ok(Filter::Present(attr)),
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            other => return Err(invalid(format!("unknown operator `{}`", truncate(other)))),
        };
        let value = match self.tokens.next() {
            Some(Token::Str(s)) => Literal::Str(s),
            Some(Token::Number(n)) => Literal::Number(n),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("true") => Literal::Bool(true),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("false") => Literal::Bool(false),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("null") => Literal::Null,
            _ => return Err(invalid("expected a value")),
        };
        Ok(Filter::Compare(attr, op, value))
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Parses a filter over `A`'s attributes.
pub fn parse<A: Attribute>(input: &str) -> Result<Filter<A>, ScimError> {
    if input.len() > MAX_FILTER_LEN {
        return Err(invalid(format!(
            "filter is longer than {MAX_FILTER_LEN} bytes"
        )));
    }
    let mut p = Parser::<A> {
        tokens: lex(input)?.into_iter().peekable(),
        depth: 0,
        _attr: std::marker::PhantomData,
    };
    let f = p.or()?;
    if p.tokens.next().is_some() {
        return Err(invalid("unexpected text after the filter"));
    }
    Ok(f)
}

/// A SQL condition with its bound parameters, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub sql: String,
    pub args: Vec<Value>,
}

impl<A: Attribute> Filter<A> {
    /// The filter as a SQL condition over the attributes' columns.
    pub fn to_sql(&self) -> Result<Condition, ScimError> {
        let terms = self.terms();
        if terms > MAX_TERMS {
            return Err(invalid(format!(
                "filter has {terms} comparisons (at most {MAX_TERMS})"
            )));
        }
        let mut args = Vec::new();
        let sql = self.write(&mut args)?;
        if args.len() > MAX_ARGS {
            return Err(invalid(format!(
                "filter compares too many values (at most {MAX_ARGS})"
            )));
        }
        Ok(Condition { sql, args })
    }

    /// The comparisons and presence tests in the filter.
    fn terms(&self) -> usize {
        match self {
            Filter::And(a, b) | Filter::Or(a, b) => a.terms() + b.terms(),
            Filter::Not(a) => a.terms(),
            Filter::Present(_) | Filter::Compare(..) => 1,
        }
    }

    /// The operands of a chain of the same connective (`a or b or c`), left to right, so the
    /// chain becomes one flat n-ary `(a OR b OR c)` rather than a nesting per term.
    fn chain<'f>(&'f self, and: bool, out: &mut Vec<&'f Filter<A>>) {
        match self {
            Filter::And(a, b) if and => {
                a.chain(and, out);
                b.chain(and, out);
            }
            Filter::Or(a, b) if !and => {
                a.chain(and, out);
                b.chain(and, out);
            }
            other => out.push(other),
        }
    }

    fn write(&self, args: &mut Vec<Value>) -> Result<String, ScimError> {
        Ok(match self {
            Filter::And(..) | Filter::Or(..) => {
                let and = matches!(self, Filter::And(..));
                let mut operands = Vec::new();
                self.chain(and, &mut operands);
                let parts = operands
                    .into_iter()
                    .map(|f| f.write(args))
                    .collect::<Result<Vec<_>, _>>()?;
                format!("({})", parts.join(if and { " AND " } else { " OR " }))
            }
            Filter::Not(a) => format!("(NOT coalesce({}, 0))", a.write(args)?),
            Filter::Present(attr) => {
                let c = attr.column();
                let cond = match c.kind {
                    Kind::Bool => format!("({} IS NOT NULL)", c.expr),
                    _ => format!("({0} IS NOT NULL AND {0} != '')", c.expr),
                };
                wrap(c, cond)
            }
            Filter::Compare(attr, op, lit) => {
                let c = attr.column();
                let cond = compare(c, *op, lit, args)?;
                wrap(c, cond)
            }
        })
    }
}

fn wrap(c: Column, cond: String) -> String {
    match c.within {
        Some(template) => template.replace("{}", &cond),
        None => cond,
    }
}

fn compare(
    c: Column,
    op: CompareOp,
    lit: &Literal,
    args: &mut Vec<Value>,
) -> Result<String, ScimError> {
    let e = c.expr;
    match (c.kind, lit) {
        (_, Literal::Null) => match op {
            CompareOp::Eq => Ok(format!("({e} IS NULL OR {e} = '')")),
            CompareOp::Ne => Ok(format!("({e} IS NOT NULL AND {e} != '')")),
            _ => Err(invalid("null can only be compared with eq or ne")),
        },
        (Kind::Bool, Literal::Bool(b)) => {
            args.push(Value::Int(i64::from(*b)));
            match op {
                CompareOp::Eq => Ok(format!("({e} = ?)")),
                CompareOp::Ne => Ok(format!("({e} != ?)")),
                _ => Err(invalid("a boolean can only be compared with eq or ne")),
            }
        }
        (Kind::Text | Kind::ExactText, Literal::Str(s)) => {
            let (x, v) = if c.kind == Kind::Text {
                (format!("lower({e})"), s.to_lowercase())
            } else {
                (e.to_owned(), s.clone())
            };
            let sql = match op {
                CompareOp::Eq => format!("({x} = ?)"),
                CompareOp::Ne => format!("({e} IS NULL OR {x} != ?)"),
                CompareOp::Co => format!("(instr({x}, ?) > 0)"),
                CompareOp::Sw => format!("(substr({x}, 1, length(?1)) = ?1)"),
                CompareOp::Ew => format!("({x} IS NOT NULL AND substr({x}, -length(?1)) = ?1)"),
                CompareOp::Gt => format!("({x} > ?)"),
                CompareOp::Ge => format!("({x} >= ?)"),
                CompareOp::Lt => format!("({x} < ?)"),
                CompareOp::Le => format!("({x} <= ?)"),
            };
            // `?1` stands for "this comparison's value, used twice": expand it into two plain
            // placeholders, so numbering never depends on what came before.
            let uses = sql.matches("?1").count();
            let sql = sql.replace("?1", "?");
            if matches!(op, CompareOp::Sw | CompareOp::Ew) && v.is_empty() {
                return Ok(format!("({e} IS NOT NULL)"));
            }
            for _ in 0..uses.max(1) {
                args.push(Value::Text(v.clone()));
            }
            Ok(sql)
        }
        _ => Err(invalid("the value's type does not match the attribute")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum T {
        Name,
        Ext,
        Active,
        Member,
    }

    impl Attribute for T {
        fn resolve(path: &str) -> Option<Self> {
            match path {
                "username" => Some(T::Name),
                "externalid" => Some(T::Ext),
                "active" => Some(T::Active),
                "members.value" | "members" => Some(T::Member),
                _ => None,
            }
        }
        fn column(self) -> Column {
            let (expr, kind, within) = match self {
                T::Name => ("name", Kind::Text, None),
                T::Ext => ("ext", Kind::ExactText, None),
                T::Active => ("active", Kind::Bool, None),
                T::Member => (
                    "m.who",
                    Kind::ExactText,
                    Some("EXISTS (SELECT 1 FROM m WHERE m.t = t.id AND {})"),
                ),
            };
            Column { expr, kind, within }
        }
    }

    fn rows(filter: &str) -> Result<Vec<i64>, ScimError> {
        let f = parse::<T>(filter)?;
        let cond = f.to_sql()?;
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch(
            "CREATE TABLE t (id INTEGER, name TEXT, ext TEXT, active INTEGER);
             CREATE TABLE m (t INTEGER, who TEXT);
             INSERT INTO t VALUES (1, 'Alice@Example.com', 'A1', 1), (2, 'bob@example.org', NULL, 0),
                                  (3, 'carol@example.com', 'a1', 1), (4, '', 'x', 1);
             INSERT INTO m VALUES (1, 'u1'), (3, 'u2');",
        )
        .unwrap();
        let params: Vec<rusqlite::types::Value> = cond
            .args
            .iter()
            .map(|v| match v {
                Value::Int(i) => rusqlite::types::Value::Integer(*i),
                Value::Text(s) => rusqlite::types::Value::Text(s.clone()),
                _ => unreachable!(),
            })
            .collect();
        let mut stmt = db
            .prepare(&format!("SELECT id FROM t WHERE {} ORDER BY id", cond.sql))
            .unwrap();
        let ids = stmt
            .query_map(rusqlite::params_from_iter(params), |r| r.get(0))
            .unwrap()
            .collect::<Result<Vec<i64>, _>>()
            .unwrap();
        Ok(ids)
    }

    #[test]
    fn operators_select_what_rfc_7644_says() {
        assert_eq!(rows(r#"userName eq "alice@example.com""#).unwrap(), [1]);
        assert_eq!(rows(r#"USERNAME Eq "ALICE@EXAMPLE.COM""#).unwrap(), [1]);
        assert_eq!(
            rows(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "bob@example.org""#)
                .unwrap(),
            [2]
        );
        // externalId is case-exact.
        assert_eq!(rows(r#"externalId eq "A1""#).unwrap(), [1]);
        assert_eq!(rows(r#"userName co "EXAMPLE.COM""#).unwrap(), [1, 3]);
        assert_eq!(rows(r#"userName sw "b""#).unwrap(), [2]);
        assert_eq!(rows(r#"userName ew ".org""#).unwrap(), [2]);
        assert_eq!(rows("userName pr").unwrap(), [1, 2, 3]);
        assert_eq!(rows("externalId pr").unwrap(), [1, 3, 4]);
        assert_eq!(rows("active eq false").unwrap(), [2]);
        assert_eq!(
            rows(r#"active eq true and userName co "example.com""#).unwrap(),
            [1, 3]
        );
        assert_eq!(
            rows(r#"userName sw "a" or userName sw "b""#).unwrap(),
            [1, 2]
        );
        assert_eq!(rows(r#"not (userName co "example")"#).unwrap(), [4]);
        assert_eq!(rows(r#"externalId ne "A1""#).unwrap(), [2, 3, 4]);
        assert_eq!(rows("externalId eq null").unwrap(), [2]);
        assert_eq!(rows(r#"members.value eq "u2""#).unwrap(), [3]);
        assert_eq!(
            rows(r#"members eq "u1" or (active eq false)"#).unwrap(),
            [1, 2]
        );
        // `and` binds tighter than `or`.
        assert_eq!(
            rows(r#"userName sw "b" or userName sw "c" and active eq false"#).unwrap(),
            [2]
        );
        assert_eq!(
            rows(r#"(userName sw "b" or userName sw "c") and active eq true"#).unwrap(),
            [3]
        );
        // A quote and a backslash inside a value are data, never SQL.
        assert_eq!(
            rows(r#"userName eq "x' OR 1=1 --\"\\""#).unwrap(),
            Vec::<i64>::new()
        );
    }

    #[test]
    fn malformed_or_unsupported_filters_are_invalid_filter() {
        for bad in [
            "",
            "userName",
            r#"userName eq"#,
            r#"userName xx "a""#,
            r#"nickName eq "a""#,
            r#"emails[type eq "work"]"#,
            r#"userName eq "a" and"#,
            r#"(userName eq "a""#,
            r#"userName eq "a")"#,
            r#"userName eq "unterminated"#,
            "active eq \"true\"",
            "userName eq 5",
            "active co true",
            "userName eq true",
            "not userName pr",
            "userName eq \"a\" userName",
            "!",
        ] {
            let e = rows(bad).unwrap_err();
            assert_eq!(
                (e.status, e.scim_type),
                (400, Some(ScimType::InvalidFilter)),
                "{bad}"
            );
        }
        let chain = |n: usize| vec!["userName pr"; n].join(" or ");
        let longest = parse::<T>(&chain(MAX_TERMS)).unwrap().to_sql().unwrap();
        assert_eq!(
            longest.sql.matches('(').count(),
            MAX_TERMS + 1,
            "one flat OR around the terms: {}",
            longest.sql
        );
        assert_eq!(rows(&chain(MAX_TERMS)).unwrap(), [1, 2, 3]);
        let e = rows(&chain(MAX_TERMS + 1)).unwrap_err();
        assert_eq!(
            (e.status, e.scim_type),
            (400, Some(ScimType::InvalidFilter))
        );
        let deep = format!("{}userName pr{}", "(".repeat(40), ")".repeat(40));
        assert!(parse::<T>(&deep).is_err());
        assert!(parse::<T>(&"a".repeat(MAX_FILTER_LEN + 1)).is_err());
    }

    proptest::proptest! {
        /// Whatever a client sends, parsing answers a filter or `invalidFilter`, never panics.
        #[test]
        fn parsing_never_panics(s in "\\PC{0,80}") {
            match parse::<T>(&s).and_then(|f| f.to_sql()) {
                // Every placeholder has its bound value.
                Ok(c) => proptest::prop_assert_eq!(c.sql.matches('?').count(), c.args.len()),
                Err(e) => proptest::prop_assert_eq!(e.scim_type, Some(ScimType::InvalidFilter)),
            }
        }

        /// Filters built from the grammar's own pieces parse, and bind what they compare.
        #[test]
        fn generated_filters_parse(
            terms in proptest::collection::vec(
                (0usize..4, 0usize..6, "[a-z@. ]{0,8}", proptest::bool::ANY), 1..6),
            joins in proptest::collection::vec(proptest::bool::ANY, 5),
        ) {
            let attrs = ["userName", "externalId", "members.value", "active"];
            let ops = ["eq", "ne", "co", "sw", "ew", "pr"];
            let mut text = String::new();
            for (i, (a, o, v, b)) in terms.iter().enumerate() {
                if i > 0 {
                    text.push_str(if joins[i - 1] { " and " } else { " or " });
                }
                let attr = attrs[*a];
                let op = if attr == "active" { ["eq", "ne", "pr"][*o % 3] } else { ops[*o] };
                let value = match (attr, op) {
                    (_, "pr") => String::new(),
                    ("active", _) => format!(" {b}"),
                    _ => format!(" {}", serde_json::json!(v)),
                };
                text.push_str(&format!("{attr} {op}{value}"));
            }
            let c = parse::<T>(&text).and_then(|f| f.to_sql());
            proptest::prop_assert!(c.is_ok(), "{} -> {:?}", text, c);
            let c = c.unwrap();
            proptest::prop_assert_eq!(c.sql.matches('?').count(), c.args.len());
        }
    }
}
