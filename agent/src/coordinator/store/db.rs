//! One SQL interface over the store's two engines: SQLite (embedded, the
//! default) and PostgreSQL (several coordinators, one leading). The store's
//! statements are written once, with `?1`-style placeholders and types and
//! syntax both engines take (ON CONFLICT upserts, CAST, BIGINT columns);
//! values and rows cross this interface as [`Value`]s.

use super::pg::PgConn;
pub(crate) use super::value::values;
pub use super::value::{DbError, Row, Value};

/// The engine under the store.
#[derive(Debug)]
pub enum Db {
    /// An embedded SQLite file.
    Sqlite(rusqlite::Connection),
    /// A PostgreSQL connection.
    Postgres(Box<PgConn>),
}

impl Db {
    /// Runs a statement; the number of rows it changed.
    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        match self {
            Db::Sqlite(c) => {
                let mut st = c.prepare_cached(sql)?;
                Ok(st.execute(rusqlite::params_from_iter(params.iter()))? as u64)
            }
            Db::Postgres(p) => p.execute(sql, params),
        }
    }

    /// Runs a query; its rows.
    pub fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        match self {
            Db::Sqlite(c) => {
                let mut st = c.prepare_cached(sql)?;
                let n = st.column_count();
                let rows = st.query_map(rusqlite::params_from_iter(params.iter()), |r| {
                    (0..n)
                        .map(|i| {
                            Ok(match r.get_ref(i)? {
                                rusqlite::types::ValueRef::Null => Value::Null,
                                rusqlite::types::ValueRef::Integer(v) => Value::Int(v),
                                rusqlite::types::ValueRef::Real(v) => Value::Int(v as i64),
                                rusqlite::types::ValueRef::Text(t) => {
                                    Value::Text(String::from_utf8_lossy(t).into_owned())
                                }
                                rusqlite::types::ValueRef::Blob(b) => {
                                    Value::Text(String::from_utf8_lossy(b).into_owned())
                                }
                            })
                        })
                        .collect::<rusqlite::Result<Vec<Value>>>()
                        .map(Row)
                })?;
                Ok(rows.collect::<rusqlite::Result<Vec<Row>>>()?)
            }
            Db::Postgres(p) => p.query(sql, params),
        }
    }

    /// The first row of a query, if any.
    pub fn query_opt(&self, sql: &str, params: &[Value]) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Runs statements without parameters (schema, transaction control).
    pub fn batch(&self, sql: &str) -> Result<(), DbError> {
        match self {
            Db::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Db::Postgres(p) => p.batch(sql),
        }
    }

    /// Transaction control (savepoints) that may wait for the next
    /// statement: on PostgreSQL it goes out in that statement's round trip.
    pub fn control(&self, sql: &'static str) -> Result<(), DbError> {
        match self {
            Db::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Db::Postgres(p) => {
                p.control(sql);
                Ok(())
            }
        }
    }

    /// Sends the writes a PostgreSQL transaction queued and waits for them
    /// (SQLite writes at once: nothing to do).
    pub fn flush(&self) -> Result<(), DbError> {
        match self {
            Db::Sqlite(_) => Ok(()),
            Db::Postgres(p) => p.flush(),
        }
    }

    /// Begins a write transaction. On PostgreSQL it is fenced: it fails
    /// with [`DbError::Deposed`] (and is rolled back) unless the lease
    /// still names this coordinator's term.
    pub fn begin(&self) -> Result<(), DbError> {
        match self {
            // IMMEDIATE: take the write lock now, not at the first write.
            Db::Sqlite(c) => Ok(c.execute_batch("BEGIN IMMEDIATE")?),
            Db::Postgres(p) => p.begin(),
        }
    }

    /// Whether a transaction is open (SQLite rolls one back by itself
    /// after some errors, a full disk among them).
    pub fn in_transaction(&self) -> bool {
        match self {
            Db::Sqlite(c) => !c.is_autocommit(),
            Db::Postgres(p) => p.in_transaction(),
        }
    }

    /// Commits the open transaction.
    pub fn commit(&self) -> Result<(), DbError> {
        match self {
            Db::Sqlite(c) => Ok(c.execute_batch("COMMIT")?),
            Db::Postgres(p) => p.commit(),
        }
    }

    /// Abandons the open transaction, if any.
    pub fn rollback(&self) -> Result<(), DbError> {
        if !self.in_transaction() {
            return Ok(());
        }
        match self {
            Db::Sqlite(c) => Ok(c.execute_batch("ROLLBACK")?),
            Db::Postgres(p) => p.rollback(),
        }
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
        })
    }
}
