//! The coordinator's store on a real PostgreSQL (Debian's, initdb into a
//! temp dir): what SQLite keeps, PostgreSQL keeps the same way (rows,
//! segments, chunks, pages, audit, webhook outbox), one input's failed
//! writes undo only that input, and a fenced store writes nothing once
//! another coordinator leads.

use std::time::Duration;

use recfleet_agent::coordinator::database::DbTarget;
use recfleet_agent::coordinator::lease::pg::{self as lease, Candidate};
use recfleet_agent::coordinator::lease::Term;
use recfleet_agent::coordinator::store::db::DbError;
use recfleet_agent::coordinator::store::pg::Fence;
use recfleet_agent::coordinator::store::{RecordingRow, Store, StoreError};
use recfleet_protocol::manifest::{Chunk, ManifestSegment};
use recfleet_protocol::spec::RecordingSpec;
use recfleet_protocol::{ChunkReport, Epoch, RecordingId, RecordingState, WorkerName};
use recfleet_testkit::postgres::PgServer;

const WITHIN: Duration = Duration::from_secs(5);

fn target(db: &PgServer) -> DbTarget {
    DbTarget {
        url: db.url(),
        ca: None,
    }
}

fn row(id: &str, created_at: u64) -> RecordingRow {
    RecordingRow {
        spec: RecordingSpec::new(RecordingId::new(id).unwrap(), "http://127.0.0.1/x"),
        state: RecordingState::Pending,
        epoch: Epoch(0),
        worker: None,
        created_at,
        started_at: None,
        ended_at: None,
        reason: None,
        restarts: 0,
        failed_placements: 0,
        outputs: None,
    }
}

fn segment(worker: &str, epoch: u64) -> ManifestSegment {
    ManifestSegment {
        worker: WorkerName::new(worker).unwrap(),
        epoch: Epoch(epoch),
        part: 0,
        file: format!("segments/e{epoch}-p0"),
        started_at: 10,
        ended_at: Some(20),
        first_frame_at: Some(11),
        last_frame_at: Some(19),
        bytes: 100,
        sha256: "ab".into(),
        end_reason: None,
        current: true,
        chunks: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_on_postgres_keeps_what_sqlite_keeps() {
    let db = PgServer::start().await.unwrap();
    let s = Store::open_postgres(&target(&db), WITHIN, None)
        .await
        .unwrap();
    assert!(s.is_postgres());
    assert_eq!(s.next_boot().unwrap(), 1);
    assert_eq!(s.next_boot().unwrap(), 2);
    let mut r = row("a", 5);
    s.put_recording(&r).unwrap();
    r.state = RecordingState::Recording;
    r.epoch = Epoch(2);
    r.worker = Some(WorkerName::new("w1").unwrap());
    r.started_at = Some(7);
    s.put_recording(&r).unwrap();
    s.put_recording(&row("b", 6)).unwrap();
    s.put_segment(&r.spec.id, &segment("w1", 2)).unwrap();
    s.put_segment(&r.spec.id, &segment("w1", 2)).unwrap();
    for seq in [None, Some(0), Some(1)] {
        let chunk = Chunk {
            seq,
            key: format!("segments/e2-p0/{seq:?}"),
            bytes: 10,
            sha256: "cd".into(),
            media_start_ms: seq.map_or(0, |n| u64::from(n) * 2000),
            duration_ms: 2000,
        };
        let report = ChunkReport {
            recording: r.spec.id.clone(),
            epoch: Epoch(2),
            part: 0,
            chunk,
        };
        s.put_chunk(&r.spec.id, &report).unwrap();
    }
    s.audit(1, "operator/alice", "stop", "a", "").unwrap();

    // A second coordinator's view: a store opened again reads it all.
    drop(s);
    let s = Store::open_postgres(&target(&db), WITHIN, None)
        .await
        .unwrap();
    assert_eq!(s.next_boot().unwrap(), 3);
    let loaded = s.load_window(0).unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded[0].0, r);
    assert_eq!(loaded[0].1.len(), 1, "one segment, replaced not doubled");
    let chunks = s.chunks_of(&r.spec.id).unwrap();
    let seqs: Vec<_> = chunks[&(2, 0)].iter().map(|c| c.seq).collect();
    assert_eq!(seqs, [None, Some(0), Some(1)]);
    let (ids, next) = s.page_ids(&[], None, 1).unwrap();
    assert_eq!(ids, [RecordingId::new("a").unwrap()]);
    let (ids, next) = s.page_ids(&[], next.as_deref(), 1).unwrap();
    assert_eq!((ids, next), (vec![RecordingId::new("b").unwrap()], None));
    let (_, totals) = s.summary(&r.spec.id).unwrap().unwrap();
    assert_eq!(totals, (1, 100));
    assert_eq!(
        s.audit_log().unwrap(),
        vec![("operator/alice".into(), "stop".into(), "a".into())]
    );

    // One input's failed write (a segment of an unknown recording breaks
    // the foreign key) is undone alone; the transaction goes on.
    s.begin().unwrap();
    s.savepoint().unwrap();
    s.put_recording(&row("c", 8)).unwrap();
    s.release().unwrap();
    s.savepoint().unwrap();
    // The error shows when the input's writes go out (at the latest when
    // its savepoint is released), as the driver writes an input.
    let bad = s
        .put_segment(&RecordingId::new("nobody").unwrap(), &segment("w1", 1))
        .and_then(|()| s.release());
    let bad = bad.unwrap_err().to_string();
    assert!(bad.contains("foreign key"), "{bad}");
    s.rollback_to().unwrap();
    s.savepoint().unwrap();
    s.put_recording(&row("d", 9)).unwrap();
    s.release().unwrap();
    s.commit().unwrap();
    let ids: Vec<String> = s
        .recordings()
        .unwrap()
        .iter()
        .map(|r| r.spec.id.to_string())
        .collect();
    assert_eq!(ids, ["a", "b", "c", "d"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_store_writes_nothing_once_another_coordinator_leads() {
    let db = PgServer::start().await.unwrap();
    let t = target(&db);
    let mut c = lease::connect(&t, WITHIN).await.unwrap();
    lease::ensure_schema(&mut c, WITHIN).await.unwrap();
    let (a, b) = (Candidate::new("a", "a:7800"), Candidate::new("b", "b:7800"));
    let ttl = Duration::from_millis(300);
    assert_eq!(
        lease::try_acquire(&c, &a, ttl, WITHIN).await.unwrap(),
        Some(Term(1))
    );
    let fence = Fence {
        holder: a.holder.clone(),
        term: Term(1),
    };
    let s = Store::open_postgres(&t, WITHIN, Some(fence)).await.unwrap();
    s.begin().unwrap();
    s.put_recording(&row("before", 1)).unwrap();
    s.commit().unwrap();

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        lease::try_acquire(&c, &b, ttl, WITHIN).await.unwrap(),
        Some(Term(2))
    );
    let err = s.begin().unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Db {
                source: DbError::Deposed,
                ..
            }
        ),
        "{err}"
    );
    assert!(!s.in_transaction());
    let rows = db
        .query("SELECT id FROM recordings ORDER BY id")
        .await
        .unwrap();
    assert_eq!(rows, ["before"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_outbox_works_on_postgres_from_a_blocking_thread() {
    use recfleet_agent::coordinator::webhook::event::{WebhookEvent, WebhookKind};
    use recfleet_agent::coordinator::webhook::outbox;
    let db = PgServer::start().await.unwrap();
    let s = Store::open_postgres(&target(&db), WITHIN, None)
        .await
        .unwrap();
    let event = WebhookEvent {
        id: "r1-1".into(),
        kind: WebhookKind::Started,
        recording: RecordingId::new("r1").unwrap(),
        at: 100,
        reason: None,
        output: None,
    };
    let urls = vec!["http://a/".to_string(), "http://b/".to_string()];
    outbox::insert(s.db(), &event, &urls).unwrap();
    outbox::insert(s.db(), &event, &urls).unwrap();
    // The sender's own connection, used from the blocking pool as the
    // sender uses it.
    let sender = s.open_another(Duration::from_secs(5)).await.unwrap();
    let (due, again, pending) = tokio::task::spawn_blocking(move || {
        let due = outbox::claim_due(&sender, 100, 1000, 10).unwrap();
        let again = outbox::claim_due(&sender, 500, 1000, 10).unwrap();
        outbox::delivered(&sender, &due[0], 200).unwrap();
        (due, again, outbox::pending(&sender).unwrap())
    })
    .await
    .unwrap();
    assert_eq!(due.len(), 2, "one row per event and url");
    assert!(again.is_empty(), "claimed rows are leased");
    assert_eq!(pending, 1);
    let shown = outbox::for_recording(s.db(), &RecordingId::new("r1").unwrap()).unwrap();
    assert_eq!(shown.len(), 2);
    assert_eq!(shown[0].delivered_at, Some(200));
}
