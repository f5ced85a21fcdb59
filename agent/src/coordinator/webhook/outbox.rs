//! The durable outbox of webhook deliveries: one row per (event, URL) in
//! the coordinator's store (table `webhook_deliveries`). The driver inserts
//! rows in the transaction of the state change they report; the sender
//! claims due rows and records each attempt's outcome. Plain functions over
//! the store's engine (SQLite or PostgreSQL), so that both the driver's
//! connection and the sender's use them.

use crate::coordinator::store::db::{values, Db, DbError};
use recfleet_protocol::{RecordingId, WebhookDelivery, WebhookState};

use super::event::WebhookEvent;
use super::retry::AfterFailure;

/// The most deliveries `record show` lists for one recording.
pub const SHOW_MAX: u32 = 1000;
/// Longest error text kept for a delivery.
const ERROR_MAX: usize = 500;

/// A delivery the sender is to attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// Event id.
    pub event_id: String,
    /// Where to.
    pub url: String,
    /// `recording.started`, ...
    pub event_type: String,
    /// The signed body.
    pub body: String,
    /// Event time (ms): the retry window counts from it.
    pub created_at: u64,
    /// Attempts made before this one.
    pub attempts: u32,
}

/// Queues `event` for every URL (a second insert of the same event and URL
/// is ignored: at most one row each).
pub fn insert(db: &Db, event: &WebhookEvent, urls: &[String]) -> Result<(), DbError> {
    let body = event.body();
    for url in urls {
        db.execute(
            "INSERT INTO webhook_deliveries
                (event_id, url, event_type, recording, body, created_at, attempts, next_attempt_at, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?6, 'pending')
             ON CONFLICT (event_id, url) DO NOTHING",
            values![
                event.id.as_str(),
                url.as_str(),
                event.kind.as_str(),
                event.recording.as_str(),
                body.as_str(),
                event.at
            ],
        )?;
    }
    Ok(())
}

/// Claims up to `limit` pending deliveries due at `now`: their next attempt
/// moves to `lease_until`, so that they are not claimed twice, and are
/// attempted again then if the process dies with them in flight (at least
/// once).
pub fn claim_due(db: &Db, now: u64, lease_until: u64, limit: usize) -> Result<Vec<Due>, DbError> {
    db.begin()?;
    let claimed = (|| {
        let rows = db.query(
            "SELECT event_id, url, event_type, body, created_at, attempts
             FROM webhook_deliveries
             WHERE state = 'pending' AND next_attempt_at <= ?1
             ORDER BY next_attempt_at LIMIT ?2",
            values![now, limit as u64],
        )?;
        let due = rows
            .iter()
            .map(|r| {
                Ok(Due {
                    event_id: r.text(0)?,
                    url: r.text(1)?,
                    event_type: r.text(2)?,
                    body: r.text(3)?,
                    created_at: r.int(4)? as u64,
                    attempts: r.int(5)? as u32,
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        for d in &due {
            db.execute(
                "UPDATE webhook_deliveries SET next_attempt_at = ?3 WHERE event_id = ?1 AND url = ?2",
                values![d.event_id.as_str(), d.url.as_str(), lease_until],
            )?;
        }
        db.commit()?;
        Ok(due)
    })();
    if claimed.is_err() {
        let _ = db.rollback();
    }
    claimed
}

/// The earliest time a pending delivery is due, if any is pending.
pub fn next_due(db: &Db) -> Result<Option<u64>, DbError> {
    let row = db.query_opt(
        "SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE state = 'pending'",
        &[],
    )?;
    Ok(row
        .map(|r| r.opt_int(0))
        .transpose()?
        .flatten()
        .map(|v| v as u64))
}

/// Pending deliveries (the gauge).
pub fn pending(db: &Db) -> Result<u64, DbError> {
    let row = db.query_opt(
        "SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'pending'",
        &[],
    )?;
    Ok(row.map(|r| r.int(0)).transpose()?.unwrap_or(0) as u64)
}

/// A 2xx answer arrived at `now`.
pub fn delivered(db: &Db, d: &Due, now: u64) -> Result<(), DbError> {
    db.execute(
        "UPDATE webhook_deliveries
         SET state = 'delivered', attempts = ?3, delivered_at = ?4, last_error = NULL
         WHERE event_id = ?1 AND url = ?2",
        values![d.event_id.as_str(), d.url.as_str(), d.attempts + 1, now],
    )
    .map(|_| ())
}

/// An attempt failed with `error`; `next` says whether and when to retry.
pub fn failed(db: &Db, d: &Due, error: &str, next: AfterFailure) -> Result<(), DbError> {
    let error = truncate(error, ERROR_MAX);
    let (state, next_at) = match next {
        AfterFailure::RetryAt(at) => ("pending", Some(at)),
        AfterFailure::GiveUp => ("failed", None),
    };
    db.execute(
        "UPDATE webhook_deliveries
         SET state = ?3, attempts = ?4, last_error = ?5,
             next_attempt_at = COALESCE(?6, next_attempt_at)
         WHERE event_id = ?1 AND url = ?2",
        values![
            d.event_id.as_str(),
            d.url.as_str(),
            state,
            d.attempts + 1,
            error,
            next_at
        ],
    )
    .map(|_| ())
}

/// Puts deliveries that were in flight at a shutdown back as due at `now`.
pub fn release(db: &Db, in_flight: &[Due], now: u64) -> Result<(), DbError> {
    for d in in_flight {
        db.execute(
            "UPDATE webhook_deliveries SET next_attempt_at = ?3
             WHERE event_id = ?1 AND url = ?2 AND state = 'pending'",
            values![d.event_id.as_str(), d.url.as_str(), now],
        )?;
    }
    Ok(())
}

/// A recording's deliveries, oldest event first (for `record show`).
pub fn for_recording(db: &Db, id: &RecordingId) -> Result<Vec<WebhookDelivery>, DbError> {
    let rows = db.query(
        "SELECT event_id, event_type, url, state, attempts, last_error, created_at,
                delivered_at, next_attempt_at
         FROM webhook_deliveries WHERE recording = ?1
         ORDER BY created_at, event_id, url LIMIT ?2",
        values![id.as_str(), SHOW_MAX],
    )?;
    rows.iter()
        .map(|r| {
            let state = match r.text(3)?.as_str() {
                "delivered" => WebhookState::Delivered,
                "failed" => WebhookState::Failed,
                _ => WebhookState::Pending,
            };
            Ok(WebhookDelivery {
                event_id: r.text(0)?,
                event_type: r.text(1)?,
                url: r.text(2)?,
                state,
                attempts: r.int(4)? as u32,
                last_error: r.opt_text(5)?,
                created_at: r.int(6)? as u64,
                delivered_at: r.opt_int(7)?.map(|v| v as u64),
                next_attempt_at: (state == WebhookState::Pending)
                    .then(|| r.int(8).map(|v| v as u64))
                    .transpose()?,
            })
        })
        .collect()
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::store::Store;
    use crate::coordinator::webhook::WebhookKind;

    fn event(id: &str, at: u64) -> WebhookEvent {
        WebhookEvent {
            id: id.into(),
            kind: WebhookKind::Started,
            recording: RecordingId::new("r1").unwrap(),
            at,
            reason: None,
            output: None,
        }
    }

    #[test]
    fn rows_are_claimed_once_and_record_their_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store.db")).unwrap();
        let conn = Db::Sqlite(rusqlite::Connection::open(dir.path().join("store.db")).unwrap());
        let urls = vec!["http://a/".to_string(), "http://b/".to_string()];
        insert(store.db(), &event("r1-1", 100), &urls).unwrap();
        insert(store.db(), &event("r1-1", 100), &urls).unwrap();
        assert_eq!(pending(&conn).unwrap(), 2, "one row per event and url");
        assert!(claim_due(&conn, 99, 1000, 10).unwrap().is_empty());
        let due = claim_due(&conn, 100, 1000, 10).unwrap();
        assert_eq!(due.len(), 2);
        assert!(
            claim_due(&conn, 500, 1000, 10).unwrap().is_empty(),
            "leased"
        );
        assert_eq!(next_due(&conn).unwrap(), Some(1000));
        delivered(&conn, &due[0], 200).unwrap();
        failed(&conn, &due[1], "HTTP 500", AfterFailure::RetryAt(300)).unwrap();
        let shown = for_recording(&conn, &RecordingId::new("r1").unwrap()).unwrap();
        assert_eq!(shown.len(), 2);
        assert_eq!(shown[0].state, WebhookState::Delivered);
        assert_eq!(shown[0].delivered_at, Some(200));
        assert_eq!(shown[1].state, WebhookState::Pending);
        assert_eq!(shown[1].last_error.as_deref(), Some("HTTP 500"));
        assert_eq!(shown[1].next_attempt_at, Some(300));
        let again = claim_due(&conn, 300, 2000, 10).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].attempts, 1);
        failed(&conn, &again[0], &"x".repeat(2000), AfterFailure::GiveUp).unwrap();
        let shown = for_recording(&conn, &RecordingId::new("r1").unwrap()).unwrap();
        assert_eq!(shown[1].state, WebhookState::Failed);
        assert_eq!(shown[1].attempts, 2);
        assert_eq!(shown[1].last_error.as_ref().map(String::len), Some(500));
        assert_eq!(pending(&conn).unwrap(), 0);
        assert_eq!(next_due(&conn).unwrap(), None);
    }
}
