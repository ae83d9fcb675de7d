//! Lenient scalar parsing: numbers and booleans sent as strings (`"code":"200"`) are accepted,
//! as Graph docs examples do (reference §3.7).

use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_json::Value;

fn to_i64<E: de::Error>(v: Value) -> Result<Option<i64>, E> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            })
            .map(Some)
            .ok_or_else(|| E::custom(format!("expected an integer, got {n}"))),
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| E::custom(format!("expected an integer, got \"{s}\""))),
        other => Err(E::custom(format!("expected an integer, got {other}"))),
    }
}

pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    to_i64(Value::deserialize(d)?)
}

pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(b)),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        other => Err(de::Error::custom(format!(
            "expected a boolean, got {other}"
        ))),
    }
}

pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(de::Error::custom(format!("expected a string, got {other}"))),
    }
}
