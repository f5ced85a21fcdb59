//! The lease in PostgreSQL: one row, its term and expiry set by the
//! database (its `now()`, never a coordinator's clock), and the registry of
//! coordinators that `recfleet coordinators` lists.

use std::time::Duration;

use tokio_postgres::{Client, GenericClient};

use super::{LeaseRow, Term};
use crate::coordinator::database::{self, ConnectError, DbTarget};

/// Tables of the lease and of the coordinators' heartbeats. Idempotent, run
/// under an advisory lock so that coordinators starting together do not
/// race on it.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS recfleet_lease (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    holder TEXT NOT NULL,
    name TEXT NOT NULL,
    address TEXT NOT NULL,
    term BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
INSERT INTO recfleet_lease VALUES (1, '', '', '', 0, 'epoch') ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS recfleet_coordinators (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    address TEXT NOT NULL,
    role TEXT NOT NULL,
    term BIGINT NOT NULL,
    seen_at TIMESTAMPTZ NOT NULL
);";

/// An arbitrary key of our own for the schema's advisory lock.
const SCHEMA_LOCK: i64 = 0x7265_6366_6c65_6574; // "recfleet"

/// The first statement of every write transaction of a leader: it locks the
/// lease row (shared) only where the row still names the leader's
/// incarnation and term and has not expired on the database's clock. No row:
/// the leader was deposed and the transaction must write nothing. A row:
/// a takeover (an UPDATE of that row) waits until this transaction ends, so
/// everything it writes lands before the new term begins, and the new
/// leader, which loads after its takeover commits, sees it.
pub const FENCE: &str = "SELECT 1 FROM recfleet_lease
     WHERE id = 1 AND holder = $1 AND term = $2 AND expires_at > now() FOR SHARE";

/// Why a lease operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The database refused or is unreachable.
    #[error("lease: {}", database::with_causes(.0))]
    Db(#[from] tokio_postgres::Error),
    /// The database did not answer in time.
    #[error("lease: the database did not answer within {0:?}")]
    Timeout(Duration),
    /// The lease is held by another term: this coordinator was deposed.
    #[error("lease: deposed (the lease has another holder or term)")]
    Deposed,
    /// No connection could be made.
    #[error("lease: {0}")]
    Connect(#[from] ConnectError),
}

/// Who this coordinator is, in the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Its name (`--name`).
    pub name: String,
    /// This incarnation: the name, the pid and the start time, so that a
    /// restarted coordinator of the same name is a new holder.
    pub holder: String,
    /// Where clients reach it.
    pub address: String,
}

impl Candidate {
    /// A candidate for this process.
    pub fn new(name: &str, address: &str) -> Self {
        Candidate {
            name: name.to_string(),
            holder: format!(
                "{name}/{}-{}",
                std::process::id(),
                recfleet_protocol::now_ms()
            ),
            address: address.to_string(),
        }
    }
}

/// A coordinator as its heartbeat says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorRow {
    /// Its name.
    pub name: String,
    /// Where clients reach it.
    pub address: String,
    /// "leader" or "standby", as it said.
    pub role: String,
    /// The term it acts under (leader) or last saw (standby).
    pub term: Term,
    /// Milliseconds since its last heartbeat, on the database's clock.
    pub seen_ms_ago: i64,
}

async fn timed<T>(
    within: Duration,
    f: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, LeaseError> {
    tokio::time::timeout(within, f)
        .await
        .map_err(|_| LeaseError::Timeout(within))?
        .map_err(LeaseError::Db)
}

/// Connects to the database (see [`crate::coordinator::database`]).
pub async fn connect(target: &DbTarget, within: Duration) -> Result<Client, LeaseError> {
    Ok(database::connect(target, within).await?)
}

/// Creates the lease tables if they are missing.
pub async fn ensure_schema(client: &mut Client, within: Duration) -> Result<(), LeaseError> {
    let tx = timed(within, client.transaction()).await?;
    timed(
        within,
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK]),
    )
    .await?;
    timed(within, tx.batch_execute(SCHEMA)).await?;
    timed(within, tx.commit()).await
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Takes the lease if it has expired (or was never held): a new term.
/// `None`: another coordinator holds it.
pub async fn try_acquire(
    client: &impl GenericClient,
    me: &Candidate,
    ttl: Duration,
    within: Duration,
) -> Result<Option<Term>, LeaseError> {
    let row = timed(
        within,
        client.query_opt(
            "UPDATE recfleet_lease
                SET holder = $1, name = $2, address = $3, term = term + 1,
                    expires_at = now() + $4 * interval '1 millisecond'
              WHERE id = 1 AND expires_at <= now()
          RETURNING term",
            &[&me.holder, &me.name, &me.address, &ms(ttl)],
        ),
    )
    .await?;
    Ok(row.map(|r| Term(r.get::<_, i64>(0) as u64)))
}

/// Extends our lease by `ttl` from the database's now. [`LeaseError::Deposed`]
/// if the row no longer names us and our term, or has expired.
pub async fn renew(
    client: &impl GenericClient,
    me: &Candidate,
    term: Term,
    ttl: Duration,
    within: Duration,
) -> Result<(), LeaseError> {
    let n = timed(
        within,
        client.execute(
            "UPDATE recfleet_lease
                SET expires_at = now() + $3 * interval '1 millisecond'
              WHERE id = 1 AND holder = $1 AND term = $2 AND expires_at > now()",
            &[&me.holder, &(term.0 as i64), &ms(ttl)],
        ),
    )
    .await?;
    if n == 1 {
        Ok(())
    } else {
        Err(LeaseError::Deposed)
    }
}

/// Gives the lease up at once (a clean shutdown): a standby takes over at
/// its next try instead of after the TTL.
pub async fn release(
    client: &impl GenericClient,
    me: &Candidate,
    term: Term,
    within: Duration,
) -> Result<(), LeaseError> {
    timed(
        within,
        client.execute(
            "UPDATE recfleet_lease SET expires_at = now()
              WHERE id = 1 AND holder = $1 AND term = $2",
            &[&me.holder, &(term.0 as i64)],
        ),
    )
    .await?;
    Ok(())
}

/// The lease as the database has it.
pub async fn current(
    client: &impl GenericClient,
    within: Duration,
) -> Result<LeaseRow, LeaseError> {
    let r = timed(
        within,
        client.query_one(
            "SELECT holder, name, address, term,
                    (extract(epoch FROM (expires_at - now())) * 1000)::bigint
               FROM recfleet_lease WHERE id = 1",
            &[],
        ),
    )
    .await?;
    Ok(LeaseRow {
        holder: r.get(0),
        name: r.get(1),
        address: r.get(2),
        term: Term(r.get::<_, i64>(3) as u64),
        expires_in_ms: r.get(4),
    })
}

/// Records that this coordinator is alive, in `role`, under `term`.
pub async fn heartbeat(
    client: &impl GenericClient,
    me: &Candidate,
    role: &str,
    term: Term,
    within: Duration,
) -> Result<(), LeaseError> {
    timed(
        within,
        client.execute(
            "INSERT INTO recfleet_coordinators(name, holder, address, role, term, seen_at)
                  VALUES ($1, $2, $3, $4, $5, now())
             ON CONFLICT (name) DO UPDATE
                SET holder = $2, address = $3, role = $4, term = $5, seen_at = now()",
            &[&me.name, &me.holder, &me.address, &role, &(term.0 as i64)],
        ),
    )
    .await?;
    Ok(())
}

/// Every coordinator that ever sent a heartbeat, by name.
pub async fn coordinators(
    client: &impl GenericClient,
    within: Duration,
) -> Result<Vec<CoordinatorRow>, LeaseError> {
    let rows = timed(
        within,
        client.query(
            "SELECT name, address, role, term,
                    (extract(epoch FROM (now() - seen_at)) * 1000)::bigint
               FROM recfleet_coordinators ORDER BY name",
            &[],
        ),
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| CoordinatorRow {
            name: r.get(0),
            address: r.get(1),
            role: r.get(2),
            term: Term(r.get::<_, i64>(3) as u64),
            seen_ms_ago: r.get(4),
        })
        .collect())
}

/// Checks, inside an open transaction, that we still hold the lease (see
/// [`FENCE`]). [`LeaseError::Deposed`] if not: roll back.
pub async fn fence(
    tx: &impl GenericClient,
    me: &Candidate,
    term: Term,
    within: Duration,
) -> Result<(), LeaseError> {
    let row = timed(within, tx.query_opt(FENCE, &[&me.holder, &(term.0 as i64)])).await?;
    row.map(|_| ()).ok_or(LeaseError::Deposed)
}
