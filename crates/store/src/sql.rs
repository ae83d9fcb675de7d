//! The little SQL both backends speak: statements with `?1`-style placeholders, values that
//! are integers, text or NULL, and rows of those. The store's queries are written once
//! against [`Sql`]; `lite` and `pg` carry them to SQLite and PostgreSQL.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(String),
    #[error("corrupt stored object {0}: {1}")]
    Corrupt(String, String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq)]
pub enum V {
    I(i64),
    T(String),
    Null,
}

impl From<i64> for V {
    fn from(v: i64) -> V {
        V::I(v)
    }
}
impl From<bool> for V {
    fn from(v: bool) -> V {
        V::I(v as i64)
    }
}
impl From<&str> for V {
    fn from(v: &str) -> V {
        V::T(v.to_string())
    }
}
impl From<&String> for V {
    fn from(v: &String) -> V {
        V::T(v.clone())
    }
}
impl From<String> for V {
    fn from(v: String) -> V {
        V::T(v)
    }
}
impl<T: Into<V>> From<Option<T>> for V {
    fn from(v: Option<T>) -> V {
        v.map_or(V::Null, Into::into)
    }
}

/// One result row.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<V>);

impl Row {
    fn at(&self, i: usize) -> Result<&V> {
        self.0
            .get(i)
            .ok_or_else(|| StoreError::Db(format!("no column {i} in a result row")))
    }
    pub fn i(&self, i: usize) -> Result<i64> {
        self.oi(i)?
            .ok_or_else(|| StoreError::Db(format!("column {i} is NULL, not an integer")))
    }
    pub fn oi(&self, i: usize) -> Result<Option<i64>> {
        match self.at(i)? {
            V::I(v) => Ok(Some(*v)),
            V::Null => Ok(None),
            V::T(t) => Err(StoreError::Db(format!(
                "column {i} holds text '{t}', not an integer"
            ))),
        }
    }
    pub fn s(&self, i: usize) -> Result<String> {
        self.os(i)?
            .ok_or_else(|| StoreError::Db(format!("column {i} is NULL, not text")))
    }
    pub fn os(&self, i: usize) -> Result<Option<String>> {
        match self.at(i)? {
            V::T(v) => Ok(Some(v.clone())),
            V::Null => Ok(None),
            V::I(v) => Err(StoreError::Db(format!(
                "column {i} holds the integer {v}, not text"
            ))),
        }
    }
    pub fn b(&self, i: usize) -> Result<bool> {
        Ok(self.i(i)? != 0)
    }
}

/// A connection to one of the backends. Statements are prepared once and cached.
pub trait Sql: Send {
    /// Run a statement; the number of rows it changed.
    fn exec(&mut self, sql: &str, params: &[V]) -> Result<u64>;
    /// Run a query; its rows.
    fn query(&mut self, sql: &str, params: &[V]) -> Result<Vec<Row>>;
    /// Run several statements without parameters (schema, BEGIN, COMMIT).
    fn batch(&mut self, sql: &str) -> Result<()>;
    /// Run statements in order; each one's rows. A backend may send them all at once.
    fn query_all(&mut self, stmts: &[(&str, Vec<V>)]) -> Result<Vec<Vec<Row>>> {
        stmts.iter().map(|(sql, p)| self.query(sql, p)).collect()
    }
}

impl dyn Sql + '_ {
    pub fn one(&mut self, sql: &str, params: &[V]) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Run `f` in one transaction: all of it is committed, or none of it.
    pub fn transaction<T>(&mut self, f: impl FnOnce(&mut dyn Sql) -> Result<T>) -> Result<T> {
        self.batch("BEGIN")?;
        match f(self) {
            Ok(v) => {
                self.batch("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

/// `?1` → `$1`: PostgreSQL's placeholders (the statements never hold a `?` elsewhere).
pub fn dollar_placeholders(sql: &str) -> String {
    sql.replace('?', "$")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_say_what_they_hold_when_asked_for_something_else() {
        let r = Row(vec![V::I(5), V::T("x".into()), V::Null]);
        assert_eq!(r.i(0).unwrap(), 5);
        assert_eq!(r.s(1).unwrap(), "x");
        assert_eq!(r.oi(2).unwrap(), None);
        assert!(r.s(0).unwrap_err().to_string().contains("integer 5"));
        assert!(r.i(1).unwrap_err().to_string().contains("text 'x'"));
        assert!(r.i(2).unwrap_err().to_string().contains("NULL"));
        assert!(r.i(9).unwrap_err().to_string().contains("no column 9"));
        assert_eq!(
            dollar_placeholders("UPDATE t SET a=?2 WHERE b=?1"),
            "UPDATE t SET a=$2 WHERE b=$1"
        );
    }
}
