//! The coordinator's durable store: one SQLite file (WAL, the embedded
//! default) or a PostgreSQL database shared by several coordinators, with
//! the same versioned schema migrations. Recordings with their specs,
//! segments with epochs, and an audit log of operator actions. Everything
//! the coordinator must not lose across a restart is written here before it
//! is acted on.

pub mod db;
mod migrations;
pub mod pg;
pub mod value;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use recfleet_protocol::manifest::{Chunk, ManifestSegment, Outputs, SegmentEndReason};
use recfleet_protocol::spec::RecordingSpec;
use recfleet_protocol::{ChunkReport, Epoch, RecordingId, RecordingState, WorkerName};

use db::{values, Db, DbError, Row, Value};

use super::database::DbTarget;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database said no, or did not answer.
    #[error("store {path}: {source}")]
    Db {
        /// The database file, or the PostgreSQL server (no credentials).
        path: String,
        /// The cause.
        source: DbError,
    },
    /// A row could not be decoded (a newer schema, or a damaged file).
    #[error("store: bad row in {table}: {detail}")]
    BadRow {
        /// The table.
        table: &'static str,
        /// What was wrong.
        detail: String,
    },
}

/// A recording as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingRow {
    /// The request.
    pub spec: RecordingSpec,
    /// Its state.
    pub state: RecordingState,
    /// Current placement (0 before the first).
    pub epoch: Epoch,
    /// Worker of the current placement.
    pub worker: Option<WorkerName>,
    /// Requested at.
    pub created_at: u64,
    /// First captured frame.
    pub started_at: Option<u64>,
    /// Reached an end state at.
    pub ended_at: Option<u64>,
    /// Why it failed, was interrupted or ended.
    pub reason: Option<String>,
    /// Slot restarts over all placements.
    pub restarts: u32,
    /// Placements that gave up or could not start.
    pub failed_placements: u32,
    /// The stitched outputs, once the recording is finalized.
    pub outputs: Option<Outputs>,
}

/// The store.
#[derive(Debug)]
pub struct Store {
    db: Db,
    path: String,
    location: Location,
}

/// How to open another connection to the same store.
#[derive(Debug, Clone)]
enum Location {
    Sqlite(std::path::PathBuf),
    Postgres {
        target: DbTarget,
        within: Duration,
        fence: Option<pg::Fence>,
    },
}

/// Where the store is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// An SQLite file.
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL URL (`postgres://...`).
    Postgres(String),
}

/// A PostgreSQL URL without its password, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "postgres://(unparsable URL)".into(),
    }
}

/// An arbitrary key of our own for the migrations' advisory lock.
const MIGRATE_LOCK: i64 = 0x7265_6366_6d69_6772; // "recfmigr"

impl Store {
    /// Opens (or creates) the SQLite store at `path` and migrates it.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let p = path.display().to_string();
        let err = |source: rusqlite::Error| StoreError::Db {
            path: p.clone(),
            source: source.into(),
        };
        let conn = rusqlite::Connection::open(path).map_err(err)?;
        // WAL: readers never block the writer; FULL: a committed request
        // survives a power cut too, not only a crash of the process.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        let store = Store {
            db: Db::Sqlite(conn),
            path: p,
            location: Location::Sqlite(path.to_path_buf()),
        };
        store.migrate_sqlite()?;
        Ok(store)
    }

    /// Connects to the PostgreSQL store at `target` and migrates it (under an
    /// advisory lock: coordinators starting together migrate once). With
    /// `fence`, every write transaction checks that the lease is still
    /// that holder's and term. Statements are answered `within`.
    pub async fn open_postgres(
        target: &DbTarget,
        within: Duration,
        fence: Option<pg::Fence>,
    ) -> Result<Store, StoreError> {
        let path = redact_url(&target.url);
        let conn = pg::PgConn::connect(target, within, fence.clone())
            .await
            .map_err(|source| StoreError::Db {
                path: path.clone(),
                source,
            })?;
        let store = Store {
            db: Db::Postgres(Box::new(conn)),
            path,
            location: Location::Postgres {
                target: target.clone(),
                within,
                fence,
            },
        };
        store.migrate_postgres()?;
        Ok(store)
    }

    /// Another connection to the same store (the webhook sender's), with
    /// the same fence. SQLite's waits up to `busy` for the driver's commits.
    pub async fn open_another(&self, busy: Duration) -> Result<Db, StoreError> {
        match &self.location {
            Location::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path)
                    .and_then(|c| {
                        c.busy_timeout(busy)?;
                        c.pragma_update(None, "synchronous", "FULL")?;
                        Ok(c)
                    })
                    .map_err(|e| self.err(e))?;
                Ok(Db::Sqlite(conn))
            }
            Location::Postgres {
                target,
                within,
                fence,
            } => pg::PgConn::connect(target, *within, fence.clone())
                .await
                .map(|c| Db::Postgres(Box::new(c)))
                .map_err(|e| self.err(e)),
        }
    }

    /// The SQLite connection, for tests that set limits on it.
    pub fn sqlite(&self) -> Option<&rusqlite::Connection> {
        match &self.db {
            Db::Sqlite(c) => Some(c),
            Db::Postgres(_) => None,
        }
    }

    /// The engine, for the webhook outbox (`webhook::outbox`), which keeps
    /// its own statements in the turn's transaction.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Whether this store is on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.db, Db::Postgres(_))
    }

    /// A failed statement of another module on [`Self::db`] (the webhook
    /// outbox) as this store's error.
    pub fn db_error(&self, source: DbError) -> StoreError {
        self.err(source)
    }

    fn err(&self, source: impl Into<DbError>) -> StoreError {
        StoreError::Db {
            path: self.path.clone(),
            source: source.into(),
        }
    }

    fn newer(version: usize, known: usize) -> StoreError {
        StoreError::BadRow {
            table: "schema",
            detail: format!("schema version {version} is newer than this build knows ({known})"),
        }
    }

    fn migrate_sqlite(&self) -> Result<(), StoreError> {
        let Db::Sqlite(conn) = &self.db else {
            return Ok(());
        };
        let version: usize = conn
            .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            .map_err(|e| self.err(e))? as usize;
        if version > migrations::SQLITE.len() {
            return Err(Self::newer(version, migrations::SQLITE.len()));
        }
        for (i, sql) in migrations::SQLITE.iter().enumerate().skip(version) {
            let step = || -> rusqlite::Result<()> {
                conn.execute_batch("BEGIN")?;
                conn.execute_batch(sql)?;
                conn.pragma_update(None, "user_version", (i + 1) as i64)?;
                conn.execute_batch("COMMIT")
            };
            if let Err(e) = step() {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(self.err(e));
            }
        }
        Ok(())
    }

    fn migrate_postgres(&self) -> Result<(), StoreError> {
        let db = &self.db;
        let step = || -> Result<(), DbError> {
            db.batch("BEGIN")?;
            db.execute("SELECT pg_advisory_xact_lock(?1)", values![MIGRATE_LOCK])?;
            db.batch("CREATE TABLE IF NOT EXISTS recfleet_schema (version BIGINT NOT NULL)")?;
            let version = match db.query_opt("SELECT version FROM recfleet_schema", &[])? {
                Some(r) => r.int(0)? as usize,
                None => {
                    db.execute("INSERT INTO recfleet_schema VALUES (0)", &[])?;
                    0
                }
            };
            if version > migrations::POSTGRES.len() {
                return Err(DbError::Decode(format!(
                    "schema version {version} is newer than this build knows ({})",
                    migrations::POSTGRES.len()
                )));
            }
            for (i, sql) in migrations::POSTGRES.iter().enumerate().skip(version) {
                db.batch(sql)?;
                db.execute(
                    "UPDATE recfleet_schema SET version = ?1",
                    values![(i + 1) as i64],
                )?;
            }
            db.batch("COMMIT")
        };
        step().map_err(|e| {
            let _ = db.batch("ROLLBACK");
            match e {
                DbError::Decode(detail) => StoreError::BadRow {
                    table: "schema",
                    detail,
                },
                e => self.err(e),
            }
        })
    }

    /// Increments and returns the boot counter (event numbers start from it,
    /// so they keep increasing across restarts).
    pub fn next_boot(&self) -> Result<u64, StoreError> {
        self.db
            .execute(
                "INSERT INTO meta(key, value) VALUES('boot', 1)
                 ON CONFLICT(key) DO UPDATE SET value = meta.value + 1",
                &[],
            )
            .map_err(|e| self.err(e))?;
        let boot = self
            .db
            .query_opt("SELECT value FROM meta WHERE key = 'boot'", &[])
            .and_then(|r| r.map_or(Ok(0), |r| r.int(0)))
            .map_err(|e| self.err(e))?;
        Ok(boot as u64)
    }

    /// Inserts or replaces a recording.
    pub fn put_recording(&self, r: &RecordingRow) -> Result<(), StoreError> {
        let bad = |e: serde_json::Error| StoreError::BadRow {
            table: "recordings",
            detail: e.to_string(),
        };
        let spec = serde_json::to_string(&r.spec).map_err(bad)?;
        let outputs = r
            .outputs
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(bad)?;
        self.db
            .execute(
                "INSERT INTO recordings(id, spec, state, epoch, worker, created_at, started_at, ended_at, reason, restarts, failed_placements, outputs)
                 VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT(id) DO UPDATE SET spec=?2, state=?3, epoch=?4, worker=?5, started_at=?7, ended_at=?8,
                   reason=?9, restarts=?10, failed_placements=?11, outputs=?12",
                values![
                    r.spec.id.as_str(),
                    spec,
                    r.state.as_str(),
                    r.epoch.0,
                    r.worker.as_ref().map(|w| w.as_str()),
                    r.created_at,
                    r.started_at,
                    r.ended_at,
                    r.reason.as_ref(),
                    r.restarts,
                    r.failed_placements,
                    outputs,
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Every recording.
    pub fn recordings(&self) -> Result<Vec<RecordingRow>, StoreError> {
        self.query_recordings("", &[])
    }

    /// Recordings matching `filter` (SQL after FROM, e.g. a WHERE and a
    /// LIMIT), oldest first.
    fn query_recordings(
        &self,
        filter: &str,
        args: &[Value],
    ) -> Result<Vec<RecordingRow>, StoreError> {
        let sql = format!(
            "SELECT spec, state, epoch, worker, created_at, started_at, ended_at, reason, restarts, failed_placements, outputs
             FROM recordings {filter}"
        );
        let rows = self.db.query(&sql, args).map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| recording_row(r).map_err(|e| self.decode("recordings", e)))
            .collect()
    }

    /// A row's decoding failure: a bad row, not a database error.
    fn decode(&self, table: &'static str, e: DbError) -> StoreError {
        match e {
            DbError::Decode(detail) => StoreError::BadRow { table, detail },
            e => self.err(e),
        }
    }

    /// Inserts or replaces a segment of a recording.
    pub fn put_segment(
        &self,
        recording: &RecordingId,
        s: &ManifestSegment,
    ) -> Result<(), StoreError> {
        let reason = s
            .end_reason
            .as_ref()
            .map(|r| serde_json::to_string(r).unwrap_or_default());
        self.db
            .execute(
                "INSERT INTO segments(recording, epoch, part, worker, file, started_at, ended_at, first_frame_at,
                   last_frame_at, bytes, sha256, end_reason, current)
                 VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                 ON CONFLICT(recording, epoch, part) DO UPDATE SET worker=?4, file=?5, started_at=?6,
                   ended_at=?7, first_frame_at=?8, last_frame_at=?9, bytes=?10, sha256=?11,
                   end_reason=?12, current=?13",
                values![
                    recording.as_str(),
                    s.epoch.0,
                    s.part,
                    s.worker.as_str(),
                    s.file.as_str(),
                    s.started_at,
                    s.ended_at,
                    s.first_frame_at,
                    s.last_frame_at,
                    s.bytes,
                    s.sha256.as_str(),
                    reason,
                    s.current,
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Segments of every recording, in (epoch, part) order.
    pub fn segments(&self) -> Result<Vec<(RecordingId, ManifestSegment)>, StoreError> {
        self.query_segments("ORDER BY recording, epoch, part", &[])
    }

    /// Segments matching `filter` (SQL after FROM).
    fn query_segments(
        &self,
        filter: &str,
        args: &[Value],
    ) -> Result<Vec<(RecordingId, ManifestSegment)>, StoreError> {
        let sql = format!(
            "SELECT recording, epoch, part, worker, file, started_at, ended_at, first_frame_at, last_frame_at, bytes, sha256, end_reason, current
             FROM segments {filter}"
        );
        let rows = self.db.query(&sql, args).map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| segment_row(r).map_err(|e| self.decode("segments", e)))
            .collect()
    }

    /// Records an operator action.
    pub fn audit(
        &self,
        at: u64,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.db
            .execute(
                "INSERT INTO audit(at, actor, action, target, detail) VALUES(?1, ?2, ?3, ?4, ?5)",
                values![at, actor, action, target, detail],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The latest `limit` entries of the audit trail, oldest first.
    pub fn audit_trail(
        &self,
        limit: u32,
    ) -> Result<Vec<recfleet_protocol::AuditEntry>, StoreError> {
        let rows = self
            .db
            .query(
                "SELECT at, actor, action, target FROM audit ORDER BY rowid DESC LIMIT ?1",
                values![i64::from(limit)],
            )
            .map_err(|e| self.err(e))?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(recfleet_protocol::AuditEntry {
                    at: u64::try_from(r.int(0)?).unwrap_or(0),
                    actor: r.text(1)?,
                    action: r.text(2)?,
                    target: r.text(3)?,
                })
            })
            .collect::<Result<Vec<_>, DbError>>()
            .map_err(|e| self.decode("audit", e))?;
        out.reverse();
        Ok(out)
    }

    /// The audit log, oldest first (for tests).
    pub fn audit_log(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let rows = self
            .db
            .query(
                "SELECT actor, action, target FROM audit ORDER BY rowid",
                &[],
            )
            .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?, r.text(2)?)))
            .collect::<Result<_, DbError>>()
            .map_err(|e| self.decode("audit", e))
    }

    /// Begins a turn's transaction (several inputs, one commit: one fsync).
    /// On PostgreSQL, fenced: [`DbError::Deposed`] if this coordinator no
    /// longer holds the lease.
    pub fn begin(&self) -> Result<(), StoreError> {
        self.db.begin().map_err(|e| self.err(e))
    }
    /// Marks the start of one input's writes inside the transaction.
    pub fn savepoint(&self) -> Result<(), StoreError> {
        self.db.control("SAVEPOINT input").map_err(|e| self.err(e))
    }
    /// Keeps one input's writes.
    pub fn release(&self) -> Result<(), StoreError> {
        // On PostgreSQL the input's writes go out now, pipelined in one
        // round trip, so that a failed one is this input's.
        self.db
            .control("RELEASE SAVEPOINT input")
            .and_then(|()| self.db.flush())
            .map_err(|e| self.err(e))
    }
    /// Undoes one input's writes, keeping the transaction.
    pub fn rollback_to(&self) -> Result<(), StoreError> {
        self.db
            .batch("ROLLBACK TO SAVEPOINT input; RELEASE SAVEPOINT input")
            .map_err(|e| self.err(e))
    }
    /// Makes the transaction durable.
    pub fn commit(&self) -> Result<(), StoreError> {
        self.db.commit().map_err(|e| self.err(e))
    }
    /// Whether a transaction is open (SQLite rolls one back by itself
    /// after some errors, a full disk among them).
    pub fn in_transaction(&self) -> bool {
        self.db.in_transaction()
    }
    /// Abandons the transaction (after a failed commit as well).
    pub fn rollback(&self) {
        if let Err(e) = self.db.rollback() {
            tracing::warn!(error = %e, "rollback failed");
        }
    }

    /// A small write that fails while the disk is full or the file is
    /// read-only: the readiness probe while the store refuses writes.
    pub fn probe_write(&self, now: u64) -> Result<(), StoreError> {
        self.db
            .execute(
                "INSERT INTO meta(key, value) VALUES('probe', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = ?1",
                values![now],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// What the coordinator keeps in memory at start-up: every recording
    /// not ended, and those ended after `ended_after` (wall-clock ms), each
    /// with its segments.
    pub fn load_window(
        &self,
        ended_after: u64,
    ) -> Result<Vec<(RecordingRow, Vec<ManifestSegment>)>, StoreError> {
        let rows = self.query_recordings(
            "WHERE ended_at IS NULL OR ended_at >= ?1 ORDER BY created_at, id",
            values![ended_after],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let segments = self.segments_of(&row.spec.id)?;
            out.push((row, segments));
        }
        Ok(out)
    }

    /// Records a stored chunk (or replaces what was known of it).
    pub fn put_chunk(&self, id: &RecordingId, c: &ChunkReport) -> Result<(), StoreError> {
        // The init object has no number: it sorts first as -1.
        let (seq, chunk) = (c.chunk.seq.map_or(-1, i64::from), &c.chunk);
        self.db
            .execute(
                "INSERT INTO chunks(recording, epoch, part, seq, key, bytes, sha256, media_start_ms, duration_ms)
                 VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT(recording, epoch, part, seq) DO UPDATE SET key=?5, bytes=?6, sha256=?7,
                   media_start_ms=?8, duration_ms=?9",
                values![
                    id.as_str(),
                    c.epoch.0,
                    c.part,
                    seq,
                    chunk.key.as_str(),
                    chunk.bytes,
                    chunk.sha256.as_str(),
                    chunk.media_start_ms,
                    chunk.duration_ms,
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The stored chunks of a recording by (epoch, part), in order.
    pub fn chunks_of(
        &self,
        id: &RecordingId,
    ) -> Result<BTreeMap<(u64, u32), Vec<Chunk>>, StoreError> {
        let rows = self
            .db
            .query(
                "SELECT epoch, part, seq, key, bytes, sha256, media_start_ms, duration_ms
                 FROM chunks WHERE recording = ?1 ORDER BY epoch, part, seq",
                values![id.as_str()],
            )
            .map_err(|e| self.err(e))?;
        let mut out: BTreeMap<(u64, u32), Vec<Chunk>> = BTreeMap::new();
        for r in &rows {
            let (k, c) = chunk_row(r).map_err(|e| self.decode("chunks", e))?;
            out.entry(k).or_default().push(c);
        }
        Ok(out)
    }

    /// The segments of one recording, in (epoch, part) order.
    pub fn segments_of(&self, id: &RecordingId) -> Result<Vec<ManifestSegment>, StoreError> {
        Ok(self
            .query_segments(
                "WHERE recording = ?1 ORDER BY epoch, part",
                values![id.as_str()],
            )?
            .into_iter()
            .map(|(_, s)| s)
            .collect())
    }

    /// One recording's row.
    fn row(&self, id: &RecordingId) -> Result<Option<RecordingRow>, StoreError> {
        Ok(self
            .query_recordings("WHERE id = ?1", values![id.as_str()])?
            .into_iter()
            .next())
    }

    /// One recording with its segments.
    pub fn recording(
        &self,
        id: &RecordingId,
    ) -> Result<Option<(RecordingRow, Vec<ManifestSegment>)>, StoreError> {
        let Some(row) = self.row(id)? else {
            return Ok(None);
        };
        let segments = self.segments_of(id)?;
        Ok(Some((row, segments)))
    }

    /// One page of recording ids oldest first, after the page token
    /// `after`, and the token of the next page. Index-only: the caller
    /// takes what is in memory from memory and the rest with [`Self::summary`].
    pub fn page_ids(
        &self,
        states: &[RecordingState],
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<RecordingId>, Option<String>), StoreError> {
        let (at, id) = match after {
            None => (-1i64, String::new()),
            Some(token) => {
                let (at, id) = parse_page_token(token).ok_or_else(|| StoreError::BadRow {
                    table: "page token",
                    detail: format!("\"{token}\" is not a token this coordinator gave"),
                })?;
                (at as i64, id)
            }
        };
        let states_sql = if states.is_empty() {
            String::new()
        } else {
            // State names come from the enum, never from the client.
            let list: Vec<String> = states.iter().map(|s| format!("'{}'", s.as_str())).collect();
            format!("AND state IN ({})", list.join(","))
        };
        let sql = format!(
            "SELECT id, created_at FROM recordings
             WHERE (created_at > ?1 OR (created_at = ?1 AND id > ?2)) {states_sql}
             ORDER BY created_at, id LIMIT ?3"
        );
        let rows = self
            .db
            .query(&sql, values![at, id, i64::from(limit) + 1])
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for r in &rows {
            let (id, at) = (|| Ok::<_, DbError>((r.text(0)?, r.int(1)?)))()
                .map_err(|e| self.decode("recordings", e))?;
            let id = RecordingId::new(id).map_err(|e| StoreError::BadRow {
                table: "recordings",
                detail: e.to_string(),
            })?;
            out.push((at as u64, id));
        }
        let more = out.len() > limit as usize;
        out.truncate(limit as usize);
        let next = more
            .then(|| out.last())
            .flatten()
            .map(|(at, id)| page_token(*at, id));
        Ok((out.into_iter().map(|(_, id)| id).collect(), next))
    }

    /// A recording's row with its segment totals (count, bytes of ended
    /// segments), without reading the segments themselves.
    pub fn summary(&self, id: &RecordingId) -> Result<Option<Summary>, StoreError> {
        let Some(row) = self.row(id)? else {
            return Ok(None);
        };
        // CAST: PostgreSQL sums BIGINTs into NUMERIC.
        let totals = self
            .db
            .query_opt(
                "SELECT count(*), CAST(coalesce(sum(CASE WHEN ended_at IS NOT NULL THEN bytes ELSE 0 END), 0) AS BIGINT)
                 FROM segments WHERE recording = ?1",
                values![id.as_str()],
            )
            .and_then(|r| match r {
                Some(r) => Ok((r.int(0)? as u32, r.int(1)? as u64)),
                None => Ok((0, 0)),
            })
            .map_err(|e| self.err(e))?;
        Ok(Some((row, totals)))
    }

    /// The coordinators that share this store, by name, with the lease's
    /// holder as `leader` while its lease lasts. Empty on SQLite (one
    /// coordinator, no lease).
    pub fn coordinators(&self) -> Result<Vec<recfleet_protocol::CoordinatorInfo>, StoreError> {
        if !self.is_postgres() {
            return Ok(Vec::new());
        }
        let rows = self
            .db
            .query(
                "SELECT c.name, c.address,
                        CASE WHEN l.holder = c.holder THEN l.term ELSE c.term END,
                        CAST(extract(epoch FROM (now() - c.seen_at)) * 1000 AS BIGINT),
                        CASE WHEN l.holder = c.holder
                             THEN CAST(extract(epoch FROM (l.expires_at - now())) * 1000 AS BIGINT) END
                   FROM recfleet_coordinators c CROSS JOIN recfleet_lease l
                  ORDER BY c.name",
                &[],
            )
            .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| {
                let expires = r.opt_int(4)?;
                let leads = expires.is_some_and(|e| e > 0);
                Ok(recfleet_protocol::CoordinatorInfo {
                    name: r.text(0)?,
                    address: r.text(1)?,
                    role: if leads { "leader" } else { "standby" }.into(),
                    term: r.int(2)? as u64,
                    lease_expires_in_ms: expires.filter(|_| leads),
                    seen_ms_ago: r.int(3)?.max(0) as u64,
                })
            })
            .collect::<Result<_, DbError>>()
            .map_err(|e| self.decode("recfleet_coordinators", e))
    }

    /// Whether the store answers (for readiness).
    pub fn ping(&self) -> bool {
        self.db.query("SELECT 1", &[]).is_ok()
    }
}

fn recording_row(r: &Row) -> Result<RecordingRow, DbError> {
    let bad = |e: &dyn std::fmt::Display| DbError::Decode(e.to_string());
    let spec: RecordingSpec = serde_json::from_str(&r.text(0)?).map_err(|e| bad(&e))?;
    let state = r.text(1)?;
    let state = parse_state(&state).ok_or_else(|| bad(&format!("unknown state {state}")))?;
    let outputs: Option<Outputs> = r
        .opt_text(10)?
        .map(|o| serde_json::from_str(&o))
        .transpose()
        .map_err(|e| bad(&e))?;
    let worker = r
        .opt_text(3)?
        .map(WorkerName::new)
        .transpose()
        .map_err(|e| bad(&e))?;
    Ok(RecordingRow {
        spec,
        state,
        epoch: Epoch(r.int(2)? as u64),
        worker,
        created_at: r.int(4)? as u64,
        started_at: r.opt_int(5)?.map(|v| v as u64),
        ended_at: r.opt_int(6)?.map(|v| v as u64),
        reason: r.opt_text(7)?,
        restarts: r.int(8)? as u32,
        failed_placements: r.int(9)? as u32,
        outputs,
    })
}

fn segment_row(r: &Row) -> Result<(RecordingId, ManifestSegment), DbError> {
    let bad = |e: &dyn std::fmt::Display| DbError::Decode(e.to_string());
    let end_reason: Option<SegmentEndReason> = r
        .opt_text(11)?
        .map(|r| serde_json::from_str(&r))
        .transpose()
        .map_err(|e| bad(&e))?;
    Ok((
        RecordingId::new(r.text(0)?).map_err(|e| bad(&e))?,
        ManifestSegment {
            worker: WorkerName::new(r.text(3)?).map_err(|e| bad(&e))?,
            epoch: Epoch(r.int(1)? as u64),
            part: r.int(2)? as u32,
            file: r.text(4)?,
            started_at: r.int(5)? as u64,
            ended_at: r.opt_int(6)?.map(|v| v as u64),
            first_frame_at: r.opt_int(7)?.map(|v| v as u64),
            last_frame_at: r.opt_int(8)?.map(|v| v as u64),
            bytes: r.int(9)? as u64,
            sha256: r.text(10)?,
            end_reason,
            current: r.int(12)? != 0,
            chunks: Vec::new(),
        },
    ))
}

fn chunk_row(r: &Row) -> Result<((u64, u32), Chunk), DbError> {
    Ok((
        (r.int(0)? as u64, r.int(1)? as u32),
        Chunk {
            seq: u32::try_from(r.int(2)?).ok(),
            key: r.text(3)?,
            bytes: r.int(4)? as u64,
            sha256: r.text(5)?,
            media_start_ms: r.int(6)? as u64,
            duration_ms: r.int(7)? as u64,
        },
    ))
}

/// A recording's row and its segment totals (count, bytes of ended ones).
pub type Summary = (RecordingRow, (u32, u64));

/// A page token: where the previous page ended, `created_at.id` (opaque to
/// clients; ids cannot hold a dot-free prefix confusion since the time is
/// digits only).
pub fn page_token(created_at: u64, id: &RecordingId) -> String {
    format!("{created_at}.{id}")
}

/// The inverse of [`page_token`].
pub fn parse_page_token(token: &str) -> Option<(u64, String)> {
    let (at, id) = token.split_once('.')?;
    Some((at.parse().ok()?, RecordingId::new(id).ok()?.to_string()))
}

fn parse_state(s: &str) -> Option<RecordingState> {
    RecordingState::ALL.into_iter().find(|st| st.as_str() == s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str) -> RecordingRow {
        RecordingRow {
            spec: RecordingSpec::new(RecordingId::new(id).unwrap(), "http://127.0.0.1/x"),
            state: RecordingState::Pending,
            epoch: Epoch(0),
            worker: None,
            created_at: 5,
            started_at: None,
            ended_at: None,
            reason: None,
            restarts: 0,
            failed_placements: 0,
            outputs: None,
        }
    }

    #[test]
    fn recordings_and_segments_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        {
            let s = Store::open(&path).unwrap();
            assert_eq!(s.next_boot().unwrap(), 1);
            let mut r = row("a");
            s.put_recording(&r).unwrap();
            r.state = RecordingState::Recording;
            r.epoch = Epoch(2);
            r.worker = Some(WorkerName::new("w1").unwrap());
            s.put_recording(&r).unwrap();
            s.put_segment(
                &r.spec.id,
                &ManifestSegment {
                    worker: WorkerName::new("w1").unwrap(),
                    epoch: Epoch(2),
                    part: 0,
                    file: "a/a-e2-p0.mp4".into(),
                    started_at: 10,
                    ended_at: Some(20),
                    first_frame_at: Some(11),
                    last_frame_at: Some(19),
                    bytes: 100,
                    sha256: "ab".into(),
                    end_reason: Some(SegmentEndReason::ChildExited {
                        process: "ffmpeg".into(),
                        status: "signal 9".into(),
                    }),
                    current: true,
                    chunks: Vec::new(),
                },
            )
            .unwrap();
            s.audit(1, "operator/alice", "stop", "a", "").unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.next_boot().unwrap(), 2);
        let rows = s.recordings().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].state, RecordingState::Recording);
        assert_eq!(rows[0].epoch, Epoch(2));
        let segs = s.segments().unwrap();
        assert_eq!(segs.len(), 1);
        assert!(matches!(
            segs[0].1.end_reason,
            Some(SegmentEndReason::ChildExited { .. })
        ));
        assert_eq!(
            s.audit_log().unwrap(),
            vec![("operator/alice".into(), "stop".into(), "a".into())]
        );
        s.audit(2, "viewer/bob", "refused", "drain a worker", "")
            .unwrap();
        s.audit(3, "operator/alice", "drain", "w1", "").unwrap();
        // The latest two, oldest first.
        let trail = s.audit_trail(2).unwrap();
        let got: Vec<(u64, &str)> = trail.iter().map(|e| (e.at, e.action.as_str())).collect();
        assert_eq!(got, vec![(2, "refused"), (3, "drain")]);
    }

    #[test]
    fn a_store_from_a_newer_build_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        Store::open(&path)
            .unwrap()
            .sqlite()
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let err = Store::open(&path).unwrap_err().to_string();
        assert!(err.contains("newer than this build"), "{err}");
    }
}
