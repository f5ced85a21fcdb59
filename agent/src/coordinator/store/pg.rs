//! The store's PostgreSQL engine: one connection, prepared statements
//! cached by their text, and every write transaction fenced by the lease
//! (see `coordinator::lease`). The store's callers are synchronous (the
//! fleet driver's own thread); each call waits for its statement on the
//! runtime, within a deadline.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::{Client, Statement};

use super::value::{DbError, Row, Value};
use crate::coordinator::database::{self, ConnectError, DbTarget};
use crate::coordinator::lease::{pg::FENCE, Term};

/// The lease a connection's writes are fenced by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The holder (incarnation) that must still hold the lease.
    pub holder: String,
    /// Its term.
    pub term: Term,
}

/// A PostgreSQL connection of the store.
#[derive(Debug)]
pub struct PgConn {
    handle: tokio::runtime::Handle,
    client: Client,
    statements: RefCell<HashMap<String, Statement>>,
    within: Duration,
    fence: Option<Fence>,
    in_tx: Cell<bool>,
    /// What a transaction has to send and has not yet: savepoints, and the
    /// writes between them. All go out pipelined in one round trip when
    /// the transaction next needs an answer (a query, the release of a
    /// savepoint, the commit); a write's error shows then.
    pending: RefCell<Vec<Pending>>,
}

/// A statement of a transaction not sent yet.
#[derive(Debug)]
enum Pending {
    Control(&'static str),
    Write(Statement, Vec<Value>),
}

impl PgConn {
    /// Connects (from async code) with statements answered `within`.
    pub async fn connect(
        target: &DbTarget,
        within: Duration,
        fence: Option<Fence>,
    ) -> Result<PgConn, DbError> {
        let client = database::connect(target, within)
            .await
            .map_err(|e| match e {
                ConnectError::Db(e) => DbError::Postgres(e),
                ConnectError::Timeout(d) => DbError::Timeout(d),
                e @ ConnectError::Ca { .. } => DbError::Decode(e.to_string()),
            })?;
        Ok(PgConn {
            handle: tokio::runtime::Handle::current(),
            client,
            statements: RefCell::new(HashMap::new()),
            within,
            fence,
            in_tx: Cell::new(false),
            pending: RefCell::new(Vec::new()),
        })
    }

    /// Waits for `f` on the runtime, within the deadline. From a runtime
    /// thread (start-up code) it tells the runtime it blocks.
    fn run<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, DbError> {
        let within = self.within;
        let timed = async move {
            tokio::time::timeout(within, f)
                .await
                .map_err(|_| DbError::Timeout(within))?
                .map_err(DbError::Postgres)
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::task::block_in_place(|| self.handle.block_on(timed))
        } else {
            self.handle.block_on(timed)
        }
    }

    /// Waits for `f` with the pending control statements sent ahead of it
    /// on the same connection (PostgreSQL runs them in order; one round
    /// trip for all). An error of the control statements is the error.
    fn run_after_pending<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, DbError> {
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        if pending.is_empty() {
            return self.run(f);
        }
        let client = &self.client;
        self.run(async move {
            type Sent<'a> = std::pin::Pin<
                Box<
                    dyn std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'a,
                >,
            >;
            // Polled in order, so sent in order, before `f`.
            let sent: Vec<Sent<'_>> = pending
                .iter()
                .map(|p| -> Sent<'_> {
                    match p {
                        Pending::Control(sql) => Box::pin(client.batch_execute(sql)),
                        Pending::Write(st, params) => Box::pin(async move {
                            let p: Vec<&(dyn ToSql + Sync)> =
                                params.iter().map(|v| v as _).collect();
                            client.execute(st, &p).await.map(|_| ())
                        }),
                    }
                })
                .collect();
            let (before, r) =
                futures_util::future::join(futures_util::future::join_all(sent), f).await;
            // The first failure is the cause; what follows it failed
            // because the transaction was aborted.
            before.into_iter().collect::<Result<Vec<()>, _>>()?;
            r
        })
    }

    /// Sends what is queued and waits for it: a write's error shows here.
    pub fn flush(&self) -> Result<(), DbError> {
        self.run_after_pending(async { Ok(()) })
    }

    /// Queues transaction control to go out with the next statement.
    pub fn control(&self, sql: &'static str) {
        self.pending.borrow_mut().push(Pending::Control(sql));
    }

    fn statement(&self, sql: &str) -> Result<Statement, DbError> {
        if let Some(st) = self.statements.borrow().get(sql) {
            return Ok(st.clone());
        }
        let st = self.run(self.client.prepare(&placeholders(sql)))?;
        self.statements
            .borrow_mut()
            .insert(sql.to_string(), st.clone());
        Ok(st)
    }

    /// See [`super::db::Db::execute`].
    /// Inside a transaction the write is queued (see `pending`) and 1 is
    /// returned for the rows it changes; outside one it runs at once.
    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let st = self.statement(sql)?;
        if self.in_tx.get() {
            self.pending
                .borrow_mut()
                .push(Pending::Write(st, params.to_vec()));
            return Ok(1);
        }
        let p: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as _).collect();
        self.run_after_pending(self.client.execute(&st, &p))
    }

    /// See [`super::db::Db::query`].
    pub fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let st = self.statement(sql)?;
        let p: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as _).collect();
        let rows = self.run_after_pending(self.client.query(&st, &p))?;
        rows.iter().map(row).collect()
    }

    /// See [`super::db::Db::batch`].
    pub fn batch(&self, sql: &str) -> Result<(), DbError> {
        self.run_after_pending(self.client.batch_execute(sql))
    }

    /// Begins a transaction and checks the fence in it.
    pub fn begin(&self) -> Result<(), DbError> {
        self.in_tx.set(true);
        let Some(f) = &self.fence else {
            return self.batch("BEGIN");
        };
        let fence = match self.statement(FENCE) {
            Ok(st) => st,
            Err(e) => {
                self.in_tx.set(false);
                return Err(e);
            }
        };
        // BEGIN and the fence in one round trip.
        self.control("BEGIN");
        let term = f.term.0 as i64;
        match self.run_after_pending(self.client.query(&fence, &[&f.holder, &term])) {
            Ok(rows) if !rows.is_empty() => Ok(()),
            Ok(_) => {
                let _ = self.rollback();
                Err(DbError::Deposed)
            }
            Err(e) => {
                let _ = self.rollback();
                Err(e)
            }
        }
    }

    /// Whether a transaction is open.
    pub fn in_transaction(&self) -> bool {
        self.in_tx.get()
    }

    /// Commits.
    pub fn commit(&self) -> Result<(), DbError> {
        // Whatever the outcome, the transaction is over.
        self.in_tx.set(false);
        self.batch("COMMIT")
    }

    /// Rolls back.
    pub fn rollback(&self) -> Result<(), DbError> {
        self.in_tx.set(false);
        self.pending.borrow_mut().clear();
        self.run(self.client.batch_execute("ROLLBACK"))
    }
}

/// `?1` placeholders (the store's, SQLite's) as PostgreSQL's `$1`.
fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

fn row(r: &tokio_postgres::Row) -> Result<Row, DbError> {
    let mut out = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let v = match *col.type_() {
            Type::INT8 => r.try_get::<_, Option<i64>>(i)?.map(Value::Int),
            Type::INT4 => r
                .try_get::<_, Option<i32>>(i)?
                .map(|v| Value::Int(v.into())),
            Type::INT2 => r
                .try_get::<_, Option<i16>>(i)?
                .map(|v| Value::Int(v.into())),
            Type::BOOL => r
                .try_get::<_, Option<bool>>(i)?
                .map(|v| Value::Int(v.into())),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                r.try_get::<_, Option<String>>(i)?.map(Value::Text)
            }
            ref other => {
                return Err(DbError::Decode(format!(
                    "column {} has type {other}, which the store does not use",
                    col.name()
                )))
            }
        };
        out.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(out))
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Value::Text(t) => t.as_str().to_sql(ty, out),
        }
    }

    // The column decides: every store column is an integer or text, and
    // NULL goes anywhere.
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholders_are_translated_and_nothing_else() {
        assert_eq!(
            placeholders("SELECT a FROM t WHERE b = ?1 AND c IN (?2, ?12) AND d = '?'"),
            "SELECT a FROM t WHERE b = $1 AND c IN ($2, $12) AND d = '?'"
        );
    }
}
