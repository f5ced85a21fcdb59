//! Coordinators of one fleet on a real PostgreSQL (Debian's, initdb into a
//! temp dir), with real workers and Chromium: the leader killed, the leader
//! cut off from the database, and every coordinator restarted, while a
//! recording runs. Each prints what it measured.

use std::time::{Duration, Instant};

use recfleet_agent::demo::DemoServer;
use recfleet_protocol::spec::{RecordingSpec, Viewport};
use recfleet_protocol::{
    ConsoleRequest, ConsoleResponse, DrainMode, RecordingId, RecordingState, WorkerName,
};
use recfleet_testkit::fleet::FleetOptions;
use recfleet_testkit::http::http_get;
use recfleet_testkit::postgres::PgServer;
use recfleet_testkit::tcp_cut::CutProxy;
use recfleet_testkit::TestFleet;
use recfleet_tests::recordings::stop_and_complete;

fn spec(id: &str, url: String) -> RecordingSpec {
    let mut s = RecordingSpec::new(RecordingId::new(id).unwrap(), url);
    s.viewport = Viewport {
        width: 640,
        height: 360,
    };
    s.fps = 10;
    s.stop.max_duration_secs = Some(600);
    s
}

fn w(name: &str) -> WorkerName {
    WorkerName::new(name).unwrap()
}

/// Two coordinators on `db` (c0 through `first_store` if given), two
/// workers, one recording on w1.
async fn ha_fleet(
    db: &PgServer,
    first_store: Option<String>,
    id: &str,
) -> (TestFleet, DemoServer, RecordingId) {
    let page = DemoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut fleet = TestFleet::start_with(FleetOptions {
        store: Some(db.url()),
        first_store,
        standbys: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    fleet.add_worker(1, 2).unwrap();
    fleet.wait_workers(1, 60).await.unwrap();
    let id = RecordingId::new(id).unwrap();
    match fleet
        .request(ConsoleRequest::StartRecording(spec(
            id.as_str(),
            page.url("title=ha"),
        )))
        .await
        .unwrap()
    {
        ConsoleResponse::Started { .. } => {}
        other => panic!("{other:?}"),
    }
    fleet
        .wait_for(&id, 60, |d| d.info.state == RecordingState::Recording)
        .await
        .unwrap();
    fleet.add_worker(2, 2).unwrap();
    fleet.wait_workers(2, 60).await.unwrap();
    (fleet, page, id)
}

/// Which coordinator leads, by its /readyz (a standby answers 503 and says
/// so); waits up to `secs`.
async fn leader(fleet: &TestFleet, secs: u64) -> String {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        for name in fleet.coordinator_names() {
            let http = fleet.coordinator_http_of(&name).unwrap();
            if let Ok((200, _)) = http_get(http, "/readyz") {
                return name;
            }
        }
        assert!(
            Instant::now() < until,
            "no coordinator leads after {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn readyz(fleet: &TestFleet, name: &str) -> (u16, String) {
    http_get(fleet.coordinator_http_of(name).unwrap(), "/readyz").unwrap_or((0, String::new()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_kill_9_of_the_leader_a_standby_leads_the_recording_has_no_gap_and_a_drain_works() {
    let db = PgServer::start().await.unwrap();
    let (mut fleet, _page, id) = ha_fleet(&db, None, "ha-kill").await;
    let first = leader(&fleet, 30).await;
    let standby = fleet
        .coordinator_names()
        .into_iter()
        .find(|n| *n != first)
        .unwrap();
    let (code, why) = readyz(&fleet, &standby);
    assert_eq!(code, 503, "{why}");
    assert!(why.contains("standby"), "{why}");
    for (name, leads) in [(&first, 1), (&standby, 0)] {
        let (_, metrics) = http_get(fleet.coordinator_http_of(name).unwrap(), "/metrics").unwrap();
        assert!(
            metrics.contains(&format!("recfleet_coordinator_leader {leads}")),
            "{name}: {metrics}"
        );
    }
    let w1_pid = fleet.worker_pid("w1").unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let killed = Instant::now();
    fleet.kill_coordinator_named(&first).await;
    // The first console request the new leader answers.
    let answered = loop {
        if let Ok(ConsoleResponse::Workers(ws)) = fleet.request(ConsoleRequest::ListWorkers).await {
            if ws.len() == 2 {
                break killed.elapsed();
            }
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no leader answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(leader(&fleet, 5).await, standby);
    println!(
        "leader {first} killed; {standby} answered with both workers after {} ms",
        answered.as_millis()
    );
    assert!(answered < Duration::from_secs(15), "{answered:?}");
    match fleet
        .request(ConsoleRequest::ListCoordinators)
        .await
        .unwrap()
    {
        ConsoleResponse::Coordinators(list) => {
            let leaders: Vec<_> = list.iter().filter(|c| c.role == "leader").collect();
            assert_eq!(leaders.len(), 1, "{list:?}");
            assert_eq!(leaders[0].name, standby, "{list:?}");
            assert!(leaders[0].term >= 2, "{list:?}");
            assert!(leaders[0].lease_expires_in_ms.is_some_and(|e| e > 0));
            let dead = list.iter().find(|c| c.name == first).unwrap();
            assert_eq!(dead.role, "standby", "{list:?}");
        }
        other => panic!("{other:?}"),
    }
    let d = fleet.show(&id).await.unwrap();
    assert_eq!(d.info.state, RecordingState::Recording, "{:?}", d.info);
    assert_eq!(d.info.worker, Some(w("w1")));
    assert_eq!(
        fleet.worker_pid("w1"),
        Some(w1_pid),
        "the worker must not restart"
    );

    // A drain issued to the new leader moves the recording to w2.
    match fleet
        .request(ConsoleRequest::Drain {
            worker: w("w1"),
            mode: DrainMode::Migrate,
            deadline_secs: None,
            force: false,
        })
        .await
        .unwrap()
    {
        ConsoleResponse::Accepted { .. } => {}
        other => panic!("{other:?}"),
    }
    fleet
        .wait_for(&id, 90, |d| {
            d.info.worker == Some(w("w2")) && d.info.state == RecordingState::Recording
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let m = stop_and_complete(&mut fleet, &id).await;
    assert!(m.gaps.is_empty(), "gaps: {:?}", m.gaps);
    let recorded: Vec<_> = m
        .segments
        .iter()
        .filter(|s| s.first_frame_at.is_some())
        .map(|s| (s.worker.to_string(), s.epoch.0))
        .collect();
    assert_eq!(
        recorded.len(),
        2,
        "one segment on each worker: {recorded:?}"
    );
    // The store has the recording once, as completed.
    let rows = db
        .query("SELECT id, state FROM recordings ORDER BY id")
        .await
        .unwrap();
    assert_eq!(rows, ["ha-kill|completed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_a_leader_cut_off_from_postgres_stops_acting_and_none_of_its_writes_land() {
    let db = PgServer::start().await.unwrap();
    let proxy = CutProxy::start(db.addr).await.unwrap();
    let (mut fleet, _page, id) = ha_fleet(&db, Some(db.url_via(proxy.addr)), "ha-cut").await;
    // c0 reaches the database through the proxy: it must be the one to
    // lead for this test, so c1 is restarted until c0 leads.
    let mut first = leader(&fleet, 30).await;
    while first != "c0" {
        fleet.kill_coordinator_named("c1").await;
        first = leader(&fleet, 30).await;
        fleet.start_coordinator_named("c1").unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c0 = fleet.coordinator_addr_of("c0").unwrap();

    proxy.cut();
    let cut = Instant::now();
    // A request sent to c0 itself while it is cut off: whatever it answers,
    // nothing of it may land in the database.
    let endpoint = recfleet_protocol::quic::client_endpoint(
        &fleet.material("operator").unwrap(),
        Default::default(),
    )
    .unwrap();
    let conn = recfleet_protocol::quic::connect(&endpoint, c0, "localhost", Duration::from_secs(5))
        .await
        .unwrap();
    let page = DemoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let asked = recfleet_client::request_on(
        &conn,
        ConsoleRequest::StartRecording(spec("cut-off", page.url("title=cut"))),
        Duration::from_secs(15),
    )
    .await;
    println!("c0, cut off, answered a start with: {asked:?}");
    assert!(
        !matches!(asked, Ok(ConsoleResponse::Started { .. })),
        "a cut-off leader acknowledged a start: {asked:?}"
    );

    // c0 stops acting within its TTL (3 s): /readyz says standby.
    let stopped = loop {
        let (code, why) = readyz(&fleet, "c0");
        if code == 503 && why.contains("standby") {
            break cut.elapsed();
        }
        assert!(
            cut.elapsed() < Duration::from_secs(20),
            "c0 still acts: {why}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(leader(&fleet, 20).await, "c1");
    let took_over = cut.elapsed();
    println!(
        "c0 stepped down {} ms after the cut; c1 led at {} ms",
        stopped.as_millis(),
        took_over.as_millis()
    );
    assert!(stopped < Duration::from_secs(3), "{stopped:?}");
    let d = fleet
        .wait_for(&id, 30, |d| d.info.state == RecordingState::Recording)
        .await
        .unwrap();
    assert_eq!(d.info.worker, Some(w("w1")));

    // c0 comes back as a standby; its write never landed.
    proxy.restore();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (code, why) = readyz(&fleet, "c0");
    assert_eq!(code, 503, "{why}");
    assert!(why.contains("standby"), "{why}");
    assert_eq!(leader(&fleet, 5).await, "c1");
    let rows = db
        .query("SELECT count(*) FROM recordings WHERE id = 'cut-off'")
        .await
        .unwrap();
    assert_eq!(rows, ["0"]);
    let lease = db
        .query("SELECT name, term FROM recfleet_lease")
        .await
        .unwrap();
    println!("lease: {lease:?}");
    assert!(lease[0].starts_with("c1|"), "{lease:?}");
    let m = stop_and_complete(&mut fleet, &id).await;
    assert!(m.gaps.is_empty(), "gaps: {:?}", m.gaps);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_both_coordinators_restarted_lose_and_duplicate_nothing() {
    let db = PgServer::start().await.unwrap();
    let (mut fleet, page, id) = ha_fleet(&db, None, "ha-both").await;
    let second = RecordingId::new("ha-both-2").unwrap();
    match fleet
        .request(ConsoleRequest::StartRecording(spec(
            second.as_str(),
            page.url("title=two"),
        )))
        .await
        .unwrap()
    {
        ConsoleResponse::Started { .. } => {}
        other => panic!("{other:?}"),
    }
    fleet
        .wait_for(&second, 60, |d| d.info.state == RecordingState::Recording)
        .await
        .unwrap();
    let before = (
        fleet.show(&id).await.unwrap().info,
        fleet.show(&second).await.unwrap().info,
    );
    for name in fleet.coordinator_names() {
        fleet.kill_coordinator_named(&name).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restarted = Instant::now();
    for name in fleet.coordinator_names() {
        fleet.start_coordinator_named(&name).unwrap();
    }
    let lead = leader(&fleet, 30).await;
    fleet.wait_workers(2, 30).await.unwrap();
    println!(
        "both restarted; {lead} leads with both workers back after {} ms",
        restarted.elapsed().as_millis()
    );
    for (id, was) in [(&id, &before.0), (&second, &before.1)] {
        let d = fleet.show(id).await.unwrap();
        assert_eq!(d.info.state, RecordingState::Recording, "{:?}", d.info);
        assert_eq!(d.info.worker, was.worker, "{id} moved");
        assert_eq!(d.info.epoch, was.epoch, "{id} was placed again");
    }
    match fleet
        .request(ConsoleRequest::ListRecordings { states: Vec::new() })
        .await
        .unwrap()
    {
        ConsoleResponse::Recordings(rs) => {
            let mut ids: Vec<_> = rs.iter().map(|r| r.id.to_string()).collect();
            ids.sort();
            assert_eq!(ids, ["ha-both", "ha-both-2"]);
        }
        other => panic!("{other:?}"),
    }
    for r in [&id, &second] {
        let m = stop_and_complete(&mut fleet, r).await;
        assert!(m.gaps.is_empty(), "{r}: gaps: {:?}", m.gaps);
    }
}
