//! The store's schema migrations, applied in order, one list per engine
//! with the same versions, tables and columns (a unit test compares them).
//! Append only: never edit a migration that has shipped.

/// SQLite's migrations; `PRAGMA user_version` says how many ran.
pub const SQLITE: &[&str] = &[
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

/// PostgreSQL's migrations: SQLite's, with PostgreSQL's types (BIGINT for
/// every integer: SQLite's INTEGER is 64-bit) and an explicit insertion
/// order for the audit log (`rowid`, named as SQLite's implicit one so that
/// one query serves both). `recfleet_schema` says how many ran.
pub const POSTGRES: &[&str] = &[
    // 1: recordings, segments, audit, meta.
    "CREATE TABLE recordings (
        id TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        state TEXT NOT NULL,
        epoch BIGINT NOT NULL,
        worker TEXT,
        created_at BIGINT NOT NULL,
        started_at BIGINT,
        ended_at BIGINT,
        reason TEXT,
        restarts BIGINT NOT NULL DEFAULT 0,
        failed_placements BIGINT NOT NULL DEFAULT 0
     );
     CREATE TABLE segments (
        recording TEXT NOT NULL REFERENCES recordings(id),
        epoch BIGINT NOT NULL,
        part BIGINT NOT NULL,
        worker TEXT NOT NULL,
        file TEXT NOT NULL,
        started_at BIGINT NOT NULL,
        ended_at BIGINT,
        first_frame_at BIGINT,
        last_frame_at BIGINT,
        bytes BIGINT NOT NULL,
        sha256 TEXT NOT NULL,
        end_reason TEXT,
        current BIGINT NOT NULL,
        PRIMARY KEY (recording, epoch, part)
     );
     CREATE TABLE audit (
        rowid BIGSERIAL PRIMARY KEY,
        at BIGINT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL
     );
     CREATE TABLE meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);",
    // 2: paged lists by request time, and loading only what is live.
    "CREATE INDEX recordings_by_time ON recordings(created_at, id);
     CREATE INDEX recordings_by_end ON recordings(ended_at);",
    // 3: recordings land in object storage as chunks; the stitched outputs.
    "CREATE TABLE chunks (
        recording TEXT NOT NULL REFERENCES recordings(id),
        epoch BIGINT NOT NULL,
        part BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        key TEXT NOT NULL,
        bytes BIGINT NOT NULL,
        sha256 TEXT NOT NULL,
        media_start_ms BIGINT NOT NULL,
        duration_ms BIGINT NOT NULL,
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
        created_at BIGINT NOT NULL,
        attempts BIGINT NOT NULL,
        next_attempt_at BIGINT NOT NULL,
        delivered_at BIGINT,
        last_error TEXT,
        state TEXT NOT NULL,
        PRIMARY KEY (event_id, url)
     );
     CREATE INDEX webhook_deliveries_due ON webhook_deliveries(state, next_attempt_at);
     CREATE INDEX webhook_deliveries_by_recording ON webhook_deliveries(recording, created_at);",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Words of a migration that name tables and columns, without types.
    fn names(sql: &str) -> Vec<String> {
        const TYPES: &[&str] = &["INTEGER", "BIGINT", "BIGSERIAL", "PRIMARY", "KEY", "ROWID"];
        sql.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .filter(|w| !w.is_empty() && !TYPES.contains(&w.to_ascii_uppercase().as_str()))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn both_engines_have_the_same_versions_tables_and_columns() {
        assert_eq!(SQLITE.len(), POSTGRES.len());
        for (i, (a, b)) in SQLITE.iter().zip(POSTGRES).enumerate() {
            assert_eq!(names(a), names(b), "migration {}", i + 1);
        }
    }
}
