//! The executor trait and its values.

use std::fmt;

/// A value bound to, or read from, a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(v.into())
    }
}
impl From<u64> for Value {
    /// Counters and sizes we store stay far below 2^63; a larger one saturates rather than wraps.
    fn from(v: u64) -> Self {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(v.into())
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map(Into::into).unwrap_or(Value::Null)
    }
}

/// Why storage failed. The message names the statement or column for the log; it is never shown
/// to a caller.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// The runtime refused the statement (I/O, constraint, syntax).
    #[error("storage: {0}")]
    Exec(String),
    /// A stored value is not what the code wrote there (wrong type, unknown enum name): a bug or
    /// tampering, never a reason to pick a default.
    #[error("stored value unreadable: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn corrupt(what: impl fmt::Display) -> Self {
        StoreError::Corrupt(what.to_string())
    }
}

/// One result row, columns in the order of the `SELECT`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row(pub Vec<Value>);

impl Row {
    /// Column `i` as `T`; a missing column or a value of another type is [`StoreError::Corrupt`].
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T, StoreError> {
        let v = self
            .0
            .get(i)
            .ok_or_else(|| StoreError::corrupt(format!("column {i} missing")))?;
        T::from_value(v).ok_or_else(|| StoreError::corrupt(format!("column {i}: {v:?}")))
    }
}

/// Reading a typed value out of a column.
pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(*i),
            // The Workers runtime hands every number over as a double.
            Value::Real(f) if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 => {
                Some(*f as i64)
            }
            _ => None,
        }
    }
}
impl FromValue for u64 {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).and_then(|i| u64::try_from(i).ok())
    }
}
impl FromValue for u32 {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).and_then(|i| u32::try_from(i).ok())
    }
}
impl FromValue for bool {
    fn from_value(v: &Value) -> Option<Self> {
        match i64::from_value(v)? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
}
impl FromValue for f64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Real(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
}
impl FromValue for String {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Blob(b) => Some(b.clone()),
            _ => None,
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// A synchronous SQL executor: a Durable Object's SQLite, or SQLite itself in tests.
pub trait SqlExec {
    /// Runs one statement, calling `each` with its rows one at a time (none for writes), so a
    /// large result (a checkpoint's rows) is never collected.
    fn for_each(
        &self,
        sql: &str,
        args: &[Value],
        each: &mut dyn FnMut(Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// Runs one statement and returns its rows.
    fn query(&self, sql: &str, args: &[Value]) -> Result<Vec<Row>, StoreError> {
        let mut out = Vec::new();
        self.for_each(sql, args, &mut |r| {
            out.push(r);
            Ok(())
        })?;
        Ok(out)
    }

    /// Runs one statement, ignoring rows.
    fn exec(&self, sql: &str, args: &[Value]) -> Result<(), StoreError> {
        self.for_each(sql, args, &mut |_| Ok(()))
    }

    /// The first row, if any.
    fn one(&self, sql: &str, args: &[Value]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, args)?.into_iter().next())
    }
}

/// `vals![a, b]` builds an array of [`Value`]s (pass it as `&vals![..]`).
#[macro_export]
macro_rules! vals {
    ($($v:expr),* $(,)?) => { [$($crate::store::Value::from($v)),*] };
}
