//! Leadership on a real PostgreSQL (Debian's, initdb into a temp dir): one
//! leader at a time, terms issued by the database, a leader cut off from
//! the database stops acting before another takes over, and nothing a
//! deposed leader writes lands (checked in the database with psql).

use std::time::{Duration, Instant};

use recfleet_agent::coordinator::database::DbTarget;
use recfleet_agent::coordinator::lease::pg::{self, Candidate, LeaseError};
use recfleet_agent::coordinator::lease::timing::{Leadership, StepDown};
use recfleet_agent::coordinator::lease::{LeaseSettings, Term};
use recfleet_testkit::postgres::PgServer;
use recfleet_testkit::tcp_cut::CutProxy;
use tokio_postgres::Client;

const WITHIN: Duration = Duration::from_secs(2);

async fn client(url: &str) -> Client {
    let target = DbTarget {
        url: url.to_string(),
        ca: None,
    };
    let mut c = pg::connect(&target, Duration::from_secs(10)).await.unwrap();
    pg::ensure_schema(&mut c, Duration::from_secs(10))
        .await
        .unwrap();
    c
}

/// A write of the leader `me` under `term`, fenced: Ok if it landed.
async fn fenced_write(
    c: &mut Client,
    me: &Candidate,
    term: Term,
    n: i32,
) -> Result<(), LeaseError> {
    let tx = c.transaction().await?;
    pg::fence(&tx, me, term, WITHIN).await?;
    tx.execute(
        "INSERT INTO writes(term, n) VALUES ($1, $2)",
        &[&(term.0 as i64), &n],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_stops_before_another_takes_over_and_its_writes_never_land() {
    let db = PgServer::start().await.unwrap();
    db.query("CREATE TABLE writes (term BIGINT, n INT)")
        .await
        .unwrap();
    let proxy = CutProxy::start(db.addr).await.unwrap();
    let settings = LeaseSettings::default();
    let (a, b) = (Candidate::new("a", "a:7000"), Candidate::new("b", "b:7000"));
    let mut ca = client(&db.url_via(proxy.addr)).await;
    let cb = client(&db.url()).await;

    // a leads term 1; b cannot take it while a renews.
    let mut la = Leadership::new(settings);
    let sent = Instant::now();
    let term = pg::try_acquire(&ca, &a, settings.ttl, WITHIN)
        .await
        .unwrap();
    assert_eq!(term, Some(Term(1)));
    la.acquired(Term(1), sent);
    fenced_write(&mut ca, &a, Term(1), 1).await.unwrap();
    for _ in 0..4 {
        tokio::time::sleep(settings.renew_every).await;
        let sent = Instant::now();
        pg::renew(&ca, &a, Term(1), settings.ttl, WITHIN)
            .await
            .unwrap();
        la.renewed(sent);
        assert_eq!(
            pg::try_acquire(&cb, &b, settings.ttl, WITHIN)
                .await
                .unwrap(),
            None
        );
    }

    // Cut a off. It keeps trying to renew and stops acting at its deadline.
    proxy.cut();
    let cut_at = Instant::now();
    let stepped_down_at = loop {
        if let Some(why) = la.check(Instant::now()) {
            assert_eq!(why, StepDown::Expired);
            break Instant::now();
        }
        let sent = Instant::now();
        match pg::renew(&ca, &a, Term(1), settings.ttl, Duration::from_millis(300)).await {
            Ok(()) => la.renewed(sent),
            Err(LeaseError::Deposed) => panic!("deposed while cut off: nobody else could renew"),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stopped_after = stepped_down_at - cut_at;
    assert!(
        stopped_after < settings.ttl,
        "a acted {stopped_after:?} after it was cut off"
    );

    // b takes over with term 2, only after a stopped acting.
    let taken_at = loop {
        if let Some(t) = pg::try_acquire(&cb, &b, settings.ttl, WITHIN)
            .await
            .unwrap()
        {
            assert_eq!(t, Term(2));
            break Instant::now();
        }
        assert!(
            cut_at.elapsed() < Duration::from_secs(15),
            "b never took over"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(taken_at > stepped_down_at);
    println!(
        "a stopped acting {} ms after the cut; b led {} ms after the cut, {} ms after a stopped",
        stopped_after.as_millis(),
        (taken_at - cut_at).as_millis(),
        (taken_at - stepped_down_at).as_millis()
    );

    // a comes back: its term-1 writes and renewals are refused, and the
    // database holds nothing of term 1 past the cut.
    proxy.restore();
    let mut ca = client(&db.url_via(proxy.addr)).await;
    assert!(matches!(
        fenced_write(&mut ca, &a, Term(1), 2).await,
        Err(LeaseError::Deposed)
    ));
    assert!(matches!(
        pg::renew(&ca, &a, Term(1), settings.ttl, WITHIN).await,
        Err(LeaseError::Deposed)
    ));
    assert_eq!(
        pg::try_acquire(&ca, &a, settings.ttl, WITHIN)
            .await
            .unwrap(),
        None
    );
    let mut cb = cb;
    fenced_write(&mut cb, &b, Term(2), 3).await.unwrap();
    let rows = db
        .query("SELECT term, n FROM writes ORDER BY n")
        .await
        .unwrap();
    assert_eq!(rows, ["1|1", "2|3"]);
    let lease = pg::current(&cb, WITHIN).await.unwrap();
    assert_eq!((lease.name.as_str(), lease.term), ("b", Term(2)));

    // A clean handover: b releases, a takes term 3 at once.
    pg::release(&cb, &b, Term(2), WITHIN).await.unwrap();
    assert_eq!(
        pg::try_acquire(&ca, &a, settings.ttl, WITHIN)
            .await
            .unwrap(),
        Some(Term(3))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_waits_for_a_write_already_past_the_fence() {
    let db = PgServer::start().await.unwrap();
    db.query("CREATE TABLE writes (term BIGINT, n INT)")
        .await
        .unwrap();
    let (a, b) = (Candidate::new("a", "a:7000"), Candidate::new("b", "b:7000"));
    let mut ca = client(&db.url()).await;
    let cb = client(&db.url()).await;
    let ttl = Duration::from_millis(500);
    assert_eq!(
        pg::try_acquire(&ca, &a, ttl, WITHIN).await.unwrap(),
        Some(Term(1))
    );

    // a's transaction passes the fence, then stalls past its lease.
    let tx = ca.transaction().await.unwrap();
    pg::fence(&tx, &a, Term(1), WITHIN).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let takeover = tokio::spawn(async move {
        let t = pg::try_acquire(&cb, &b, ttl, Duration::from_secs(10)).await;
        (t, cb)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !takeover.is_finished(),
        "the takeover did not wait for a's transaction"
    );
    tx.execute("INSERT INTO writes VALUES (1, 1)", &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let (t, cb) = takeover.await.unwrap();
    assert_eq!(t.unwrap(), Some(Term(2)));
    // The new leader sees what a wrote before it lost the lease.
    let n: i64 = cb
        .query_one("SELECT count(*) FROM writes WHERE term = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_postgres_is_used_and_checked_against_the_given_ca() {
    let pki = recfleet_testkit::pki::Pki::new(&tempfile::tempdir().unwrap().keep()).unwrap();
    let db = PgServer::start_tls(
        &pki.dir().join("coordinator.pem"),
        &pki.dir().join("coordinator-key.pem"),
    )
    .await
    .unwrap();
    let url = format!(
        "postgres://postgres@localhost:{}/postgres?sslmode=require",
        db.addr.port()
    );
    let trusted = DbTarget {
        url: url.clone(),
        ca: Some(pki.dir().join("ca.pem")),
    };
    let c = pg::connect(&trusted, Duration::from_secs(10))
        .await
        .unwrap();
    let ssl: bool = c
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "the connection is not encrypted");
    // The system's roots do not know the test CA: refused, and said why.
    let untrusted = DbTarget { url, ca: None };
    let e = pg::connect(&untrusted, Duration::from_secs(10))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("certificate") || e.contains("Unknown"), "{e}");
}
