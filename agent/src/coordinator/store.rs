//! The coordinator's durable store: one SQLite file (WAL), versioned schema
//! migrations. Recordings with their specs, segments with epochs, and an
//! audit log of operator actions. Everything the coordinator must not lose
//! across a restart is written here before it is acted on.

use std::collections::BTreeMap;
use std::path::Path;

use recfleet_protocol::manifest::{Chunk, ManifestSegment, Outputs, SegmentEndReason};
use recfleet_protocol::spec::RecordingSpec;
use recfleet_protocol::{ChunkReport, Epoch, RecordingId, RecordingState, WorkerName};
use rusqlite::{params, Connection, OptionalExtension};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("store {path}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// The cause.
        source: rusqlite::Error,
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

/// Schema migrations, applied in order; `PRAGMA user_version` says how many
/// ran. Append only: never edit a migration that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: recordings, segments, audit, meta.
    "CREATE TABLE recordings (
        id TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        state TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        worker TEXT,
        created_at INTEGER NOT NULL,
        started_at INTEGER,
        ended_at INTEGER,
        reason TEXT,
        restarts INTEGER NOT NULL DEFAULT 0,
        failed_placements INTEGER NOT NULL DEFAULT 0
     );
     CREATE TABLE segments (
        recording TEXT NOT NULL REFERENCES recordings(id),
        epoch INTEGER NOT NULL,
        part INTEGER NOT NULL,
        worker TEXT NOT NULL,
        file TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        ended_at INTEGER,
        first_frame_at INTEGER,
        last_frame_at INTEGER,
        bytes INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        end_reason TEXT,
        current INTEGER NOT NULL,
        PRIMARY KEY (recording, epoch, part)
     );
     CREATE TABLE audit (
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL
     );
     CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);",
    // 2: paged lists by request time, and loading only what is live.
    "CREATE INDEX recordings_by_time ON recordings(created_at, id);
     CREATE INDEX recordings_by_end ON recordings(ended_at);",
    // 3: recordings land in object storage as chunks; the stitched outputs.
    "CREATE TABLE chunks (
        recording TEXT NOT NULL REFERENCES recordings(id),
        epoch INTEGER NOT NULL,
        part INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        key TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        media_start_ms INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        PRIMARY KEY (recording, epoch, part, seq)
     );
     ALTER TABLE recordings ADD COLUMN outputs TEXT;",
    // 4: the webhook outbox, one row per (event, URL); see webhook/outbox.rs.
    "CREATE TABLE webhook_deliveries (
        event_id TEXT NOT NULL,
        url TEXT NOT NULL,
        event_type TEXT NOT NULL,
        recording TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        delivered_at INTEGER,
        last_error TEXT,
        state TEXT NOT NULL,
        PRIMARY KEY (event_id, url)
     );
     CREATE INDEX webhook_deliveries_due ON webhook_deliveries(state, next_attempt_at);
     CREATE INDEX webhook_deliveries_by_recording ON webhook_deliveries(recording, created_at);",
];

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
    conn: Connection,
    path: String,
}

impl Store {
    /// Opens (or creates) the store at `path` and migrates it.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let p = path.display().to_string();
        let err = |source| StoreError::Sqlite {
            path: p.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
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
        let mut store = Store { conn, path: p };
        store.migrate()?;
        Ok(store)
    }

    /// The connection: tests set limits on it, and the webhook outbox
    /// (`webhook::outbox`) keeps its own statements, in the turn's
    /// transaction.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// A failed statement of another module on [`Self::conn`] (the webhook
    /// outbox) as this store's error.
    pub fn sql_error(&self, source: rusqlite::Error) -> StoreError {
        self.err(source)
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let version: usize = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            .map_err(|e| self.err(e))? as usize;
        if version > MIGRATIONS.len() {
            return Err(StoreError::BadRow {
                table: "schema",
                detail: format!(
                    "schema version {version} is newer than this build knows ({})",
                    MIGRATIONS.len()
                ),
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = self.conn.transaction().map_err(|e| StoreError::Sqlite {
                path: self.path.clone(),
                source: e,
            })?;
            tx.execute_batch(sql).map_err(|e| StoreError::Sqlite {
                path: self.path.clone(),
                source: e,
            })?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(|e| StoreError::Sqlite {
                    path: self.path.clone(),
                    source: e,
                })?;
            tx.commit().map_err(|e| StoreError::Sqlite {
                path: self.path.clone(),
                source: e,
            })?;
        }
        Ok(())
    }

    /// Increments and returns the boot counter (event numbers start from it,
    /// so they keep increasing across restarts).
    pub fn next_boot(&self) -> Result<u64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO meta(key, value) VALUES('boot', 1)
                 ON CONFLICT(key) DO UPDATE SET value = value + 1",
                [],
            )
            .map_err(|e| self.err(e))?;
        let boot: i64 = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'boot'", [], |r| {
                r.get(0)
            })
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
        self.conn
            .prepare_cached(
                "INSERT INTO recordings(id, spec, state, epoch, worker, created_at, started_at, ended_at, reason, restarts, failed_placements, outputs)
                 VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT(id) DO UPDATE SET spec=?2, state=?3, epoch=?4, worker=?5, started_at=?7, ended_at=?8,
                   reason=?9, restarts=?10, failed_placements=?11, outputs=?12",
            )
            .and_then(|mut st| st.execute(params![
                    r.spec.id.as_str(),
                    spec,
                    r.state.as_str(),
                    r.epoch.0 as i64,
                    r.worker.as_ref().map(|w| w.as_str().to_string()),
                    r.created_at as i64,
                    r.started_at.map(|v| v as i64),
                    r.ended_at.map(|v| v as i64),
                    r.reason,
                    r.restarts,
                    r.failed_placements,
                    outputs,
                ]))
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
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<RecordingRow>, StoreError> {
        let sql = format!(
            "SELECT spec, state, epoch, worker, created_at, started_at, ended_at, reason, restarts, failed_placements, outputs
             FROM recordings {filter}"
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(args, |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, u32>(8)?,
                    r.get::<_, u32>(9)?,
                    r.get::<_, Option<String>>(10)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (
                spec,
                state,
                epoch,
                worker,
                created,
                started,
                ended,
                reason,
                restarts,
                failed,
                outputs,
            ) = row.map_err(|e| self.err(e))?;
            let bad = |detail: String| StoreError::BadRow {
                table: "recordings",
                detail,
            };
            let spec: RecordingSpec =
                serde_json::from_str(&spec).map_err(|e| bad(e.to_string()))?;
            let state = parse_state(&state).ok_or_else(|| bad(format!("unknown state {state}")))?;
            let outputs: Option<Outputs> = outputs
                .map(|o| serde_json::from_str(&o))
                .transpose()
                .map_err(|e| bad(e.to_string()))?;
            let worker = worker
                .map(WorkerName::new)
                .transpose()
                .map_err(|e| bad(e.to_string()))?;
            out.push(RecordingRow {
                spec,
                state,
                epoch: Epoch(epoch as u64),
                worker,
                created_at: created as u64,
                started_at: started.map(|v| v as u64),
                ended_at: ended.map(|v| v as u64),
                reason,
                restarts,
                failed_placements: failed,
                outputs,
            });
        }
        Ok(out)
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
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO segments(recording, epoch, part, worker, file, started_at, ended_at, first_frame_at,
                   last_frame_at, bytes, sha256, end_reason, current)
                 VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )
            .and_then(|mut st| st.execute(params![
                    recording.as_str(),
                    s.epoch.0 as i64,
                    s.part,
                    s.worker.as_str(),
                    s.file,
                    s.started_at as i64,
                    s.ended_at.map(|v| v as i64),
                    s.first_frame_at.map(|v| v as i64),
                    s.last_frame_at.map(|v| v as i64),
                    s.bytes as i64,
                    s.sha256,
                    reason,
                    s.current,
                ]))
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
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<(RecordingId, ManifestSegment)>, StoreError> {
        let sql = format!(
            "SELECT recording, epoch, part, worker, file, started_at, ended_at, first_frame_at, last_frame_at, bytes, sha256, end_reason, current
             FROM segments {filter}"
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(args, |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, u32>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                    r.get::<_, Option<i64>>(7)?,
                    r.get::<_, Option<i64>>(8)?,
                    r.get::<_, i64>(9)?,
                    r.get::<_, String>(10)?,
                    r.get::<_, Option<String>>(11)?,
                    r.get::<_, bool>(12)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (
                rec,
                epoch,
                part,
                worker,
                file,
                started,
                ended,
                first,
                last,
                bytes,
                sha,
                reason,
                current,
            ) = row.map_err(|e| self.err(e))?;
            let bad = |detail: String| StoreError::BadRow {
                table: "segments",
                detail,
            };
            let end_reason: Option<SegmentEndReason> = reason
                .map(|r| serde_json::from_str(&r))
                .transpose()
                .map_err(|e| bad(e.to_string()))?;
            out.push((
                RecordingId::new(rec).map_err(|e| bad(e.to_string()))?,
                ManifestSegment {
                    worker: WorkerName::new(worker).map_err(|e| bad(e.to_string()))?,
                    epoch: Epoch(epoch as u64),
                    part,
                    file,
                    started_at: started as u64,
                    ended_at: ended.map(|v| v as u64),
                    first_frame_at: first.map(|v| v as u64),
                    last_frame_at: last.map(|v| v as u64),
                    bytes: bytes as u64,
                    sha256: sha,
                    end_reason,
                    current,
                    chunks: Vec::new(),
                },
            ));
        }
        Ok(out)
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
        self.conn
            .prepare_cached(
                "INSERT INTO audit(at, actor, action, target, detail) VALUES(?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut st| st.execute(params![at as i64, actor, action, target, detail]))
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The audit log, oldest first (for tests and `recfleet audit` later).
    pub fn audit_log(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT actor, action, target FROM audit ORDER BY rowid")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Runs one SQL statement of transaction control.
    fn control(&self, sql: &str) -> Result<(), StoreError> {
        self.conn.execute_batch(sql).map_err(|e| self.err(e))
    }

    /// Begins a turn's transaction (several inputs, one commit: one fsync).
    pub fn begin(&self) -> Result<(), StoreError> {
        self.control("BEGIN IMMEDIATE")
    }
    /// Marks the start of one input's writes inside the transaction.
    pub fn savepoint(&self) -> Result<(), StoreError> {
        self.control("SAVEPOINT input")
    }
    /// Keeps one input's writes.
    pub fn release(&self) -> Result<(), StoreError> {
        self.control("RELEASE input")
    }
    /// Undoes one input's writes, keeping the transaction.
    pub fn rollback_to(&self) -> Result<(), StoreError> {
        self.control("ROLLBACK TO input; RELEASE input")
    }
    /// Makes the transaction durable.
    pub fn commit(&self) -> Result<(), StoreError> {
        self.control("COMMIT")
    }
    /// Whether a transaction is open (SQLite rolls one back by itself
    /// after some errors, a full disk among them).
    pub fn in_transaction(&self) -> bool {
        !self.conn.is_autocommit()
    }
    /// Abandons the transaction (after a failed commit as well).
    pub fn rollback(&self) {
        if !self.conn.is_autocommit() {
            if let Err(e) = self.conn.execute_batch("ROLLBACK") {
                tracing::warn!(error = %e, "rollback failed");
            }
        }
    }

    /// A small write that fails while the disk is full or the file is
    /// read-only: the readiness probe while the store refuses writes.
    pub fn probe_write(&self, now: u64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO meta(key, value) VALUES('probe', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = ?1",
                params![now as i64],
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
            &[&(ended_after as i64)],
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
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO chunks(recording, epoch, part, seq, key, bytes, sha256, media_start_ms, duration_ms)
                 VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    id.as_str(),
                    c.epoch.0 as i64,
                    c.part,
                    seq,
                    chunk.key,
                    chunk.bytes as i64,
                    chunk.sha256,
                    chunk.media_start_ms as i64,
                    chunk.duration_ms as i64,
                ])
            })
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The stored chunks of a recording by (epoch, part), in order.
    pub fn chunks_of(
        &self,
        id: &RecordingId,
    ) -> Result<BTreeMap<(u64, u32), Vec<Chunk>>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT epoch, part, seq, key, bytes, sha256, media_start_ms, duration_ms
                 FROM chunks WHERE recording = ?1 ORDER BY epoch, part, seq",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([id.as_str()], |r| {
                let seq: i64 = r.get(2)?;
                Ok((
                    (r.get::<_, i64>(0)? as u64, r.get::<_, u32>(1)?),
                    Chunk {
                        seq: u32::try_from(seq).ok(),
                        key: r.get(3)?,
                        bytes: r.get::<_, i64>(4)? as u64,
                        sha256: r.get(5)?,
                        media_start_ms: r.get::<_, i64>(6)? as u64,
                        duration_ms: r.get::<_, i64>(7)? as u64,
                    },
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out: BTreeMap<(u64, u32), Vec<Chunk>> = BTreeMap::new();
        for row in rows {
            let (k, c) = row.map_err(|e| self.err(e))?;
            out.entry(k).or_default().push(c);
        }
        Ok(out)
    }

    /// The segments of one recording, in (epoch, part) order.
    pub fn segments_of(&self, id: &RecordingId) -> Result<Vec<ManifestSegment>, StoreError> {
        Ok(self
            .query_segments("WHERE recording = ?1 ORDER BY epoch, part", &[&id.as_str()])?
            .into_iter()
            .map(|(_, s)| s)
            .collect())
    }

    /// One recording's row.
    fn row(&self, id: &RecordingId) -> Result<Option<RecordingRow>, StoreError> {
        Ok(self
            .query_recordings("WHERE id = ?1", &[&id.as_str()])?
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
        let mut stmt = self.conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![at, id, i64::from(limit) + 1], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, at) = row.map_err(|e| self.err(e))?;
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
        let totals = self
            .conn
            .prepare_cached(
                "SELECT count(*), coalesce(sum(CASE WHEN ended_at IS NOT NULL THEN bytes ELSE 0 END), 0)
                 FROM segments WHERE recording = ?1",
            )
            .and_then(|mut st| {
                st.query_row([id.as_str()], |r| {
                    Ok((r.get::<_, i64>(0)? as u32, r.get::<_, i64>(1)? as u64))
                })
            })
            .map_err(|e| self.err(e))?;
        Ok(Some((row, totals)))
    }

    /// Whether the store answers (for readiness).
    pub fn ping(&self) -> bool {
        self.conn
            .query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
            .optional()
            .is_ok()
    }
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
    }

    #[test]
    fn a_store_from_a_newer_build_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        Store::open(&path)
            .unwrap()
            .conn
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let err = Store::open(&path).unwrap_err().to_string();
        assert!(err.contains("newer than this build"), "{err}");
    }
}
