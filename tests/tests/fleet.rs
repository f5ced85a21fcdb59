//! A coordinator and workers as separate processes over real QUIC with real
//! certificates: placement, completion with manifests, idempotent starts,
//! validation, authorization, and a coordinator restart under load.

use std::time::Duration;

use recfleet_agent::demo::DemoServer;
use recfleet_protocol::quic::{self, TransportSettings};
use recfleet_protocol::spec::{RecordingSpec, Viewport};
use recfleet_protocol::{
    ConsoleRequest, ConsoleResponse, CoordinatorMessage, Epoch, ErrorCode, OpenStream, RecordingId,
    RecordingState, WorkerHello, WorkerName,
};
use recfleet_testkit::FleetOptions;
use recfleet_testkit::{procs, TestFleet};
use recfleet_tests::media;

fn small_spec(id: &str, url: String, secs: u32) -> RecordingSpec {
    // Small and slow enough that three browsers share two cores.
    let mut s = RecordingSpec::new(RecordingId::new(id).unwrap(), url);
    s.viewport = Viewport {
        width: 640,
        height: 360,
    };
    s.fps = 10;
    s.stop.max_duration_secs = Some(secs);
    s
}

async fn start(fleet: &mut TestFleet, spec: RecordingSpec) -> (bool, RecordingState) {
    match fleet
        .request(ConsoleRequest::StartRecording(spec))
        .await
        .unwrap()
    {
        ConsoleResponse::Started { recording, created } => (created, recording.state),
        other => panic!("start refused: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_three_recordings_spread_over_two_workers_and_complete() {
    let page = DemoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut fleet = TestFleet::start_with(FleetOptions {
        stitch: true,
        ..Default::default()
    })
    .await
    .unwrap();
    fleet.add_worker(1, 2).unwrap();
    fleet.add_worker(2, 2).unwrap();
    fleet.wait_workers(2, 30).await.unwrap();
    let ids: Vec<RecordingId> = (1..=3)
        .map(|i| RecordingId::new(format!("class-{i}")).unwrap())
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let (created, _) = start(
            &mut fleet,
            small_spec(id.as_str(), page.url(&format!("tone={}", 400 + 100 * i)), 6),
        )
        .await;
        assert!(created);
        // Staggered starts: page loads stretch when three start at once.
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let mut workers = std::collections::BTreeSet::new();
    for id in &ids {
        let d = fleet
            .wait_for(id, 90, |d| d.info.state.is_terminal())
            .await
            .unwrap();
        assert_eq!(
            d.info.state,
            RecordingState::Completed,
            "{id}: {:?}",
            d.info
        );
        workers.insert(d.info.worker.clone().unwrap());
        assert_eq!(d.manifest.segments.len(), 1, "{:#?}", d.manifest);
        let manifest_path = fleet.recordings().join(id.as_str()).join("manifest.json");
        let written: recfleet_protocol::Manifest =
            serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
        let mp4 = written.outputs.as_ref().and_then(|o| o.recording.clone());
        let mp4 = mp4.unwrap_or_else(|| panic!("{id}: no recording.mp4: {written:#?}"));
        let file = fleet.recordings().join(id.as_str()).join(&mp4.key);
        let p = media::probe(&file).unwrap();
        assert_eq!(p.video, Some((640, 360)));
        assert!(p.audio && p.duration >= 5.0, "{id}: {p:?}");
    }
    assert_eq!(
        workers.len(),
        2,
        "all three landed on {workers:?}: not spread"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_a_coordinator_restart_loses_and_duplicates_nothing() {
    let page = DemoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut fleet = TestFleet::start().await.unwrap();
    fleet.add_worker(1, 2).unwrap();
    fleet.add_worker(2, 2).unwrap();
    fleet.wait_workers(2, 30).await.unwrap();
    let a = RecordingId::new("survivor-a").unwrap();
    let b = RecordingId::new("survivor-b").unwrap();
    start(&mut fleet, small_spec(a.as_str(), page.url("title=a"), 600)).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    start(&mut fleet, small_spec(b.as_str(), page.url("title=b"), 600)).await;
    let before_a = fleet
        .wait_for(&a, 60, |d| d.info.state == RecordingState::Recording)
        .await
        .unwrap();
    let before_b = fleet
        .wait_for(&b, 60, |d| d.info.state == RecordingState::Recording)
        .await
        .unwrap();

    fleet.kill_coordinator().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    fleet.start_coordinator().unwrap();
    fleet.wait_workers(2, 30).await.unwrap();
    // Past the reconnect grace: anything not reconciled would be placed again now.
    tokio::time::sleep(Duration::from_secs(7)).await;
    for (id, before) in [(&a, &before_a), (&b, &before_b)] {
        let d = fleet.show(id).await.unwrap();
        assert_eq!(
            d.info.state,
            RecordingState::Recording,
            "{id}: {:?}",
            d.info
        );
        assert_eq!(d.info.epoch, before.info.epoch, "{id} was placed again");
        assert_eq!(d.info.worker, before.info.worker, "{id} moved");
    }
    // Exactly one encoder per recording runs in the whole fleet.
    let encoders = procs::tagged("")
        .into_iter()
        .filter(|(_, c)| c == "ffmpeg")
        .count();
    assert_eq!(encoders, 2, "one encoder per recording, no duplicate");
    for id in [&a, &b] {
        fleet
            .request(ConsoleRequest::StopRecording { id: id.clone() })
            .await
            .unwrap();
    }
    for id in [&a, &b] {
        let d = fleet
            .wait_for(id, 60, |d| d.info.state.is_terminal())
            .await
            .unwrap();
        assert_eq!(
            d.info.state,
            RecordingState::Completed,
            "{id}: {:?}",
            d.info
        );
        assert!(
            d.manifest.segments.iter().all(|s| s.epoch == Epoch::FIRST),
            "{:#?}",
            d.manifest.segments
        );
        assert_eq!(d.manifest.segments.len(), 1, "{:#?}", d.manifest.segments);
        assert!(d.manifest.gaps.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_an_id_twice_returns_the_same_recording_and_bad_specs_list_every_problem() {
    let mut fleet = TestFleet::start().await.unwrap();
    let spec = small_spec("same-id", "http://127.0.0.1:1/x".into(), 5);
    assert_eq!(
        start(&mut fleet, spec.clone()).await,
        (true, RecordingState::Pending)
    );
    assert_eq!(
        start(&mut fleet, spec.clone()).await,
        (false, RecordingState::Pending)
    );
    let mut other = spec.clone();
    other.fps = 30;
    match fleet
        .request(ConsoleRequest::StartRecording(other))
        .await
        .unwrap()
    {
        ConsoleResponse::Error(e) => assert_eq!(e.code, ErrorCode::Conflict, "{e:?}"),
        r => panic!("{r:?}"),
    }
    let mut bad = RecordingSpec::new(RecordingId::new("bad").unwrap(), "javascript:alert(1)");
    bad.fps = 0;
    bad.viewport = Viewport {
        width: 1,
        height: 1,
    };
    bad.cost = 0;
    match fleet
        .request(ConsoleRequest::StartRecording(bad))
        .await
        .unwrap()
    {
        ConsoleResponse::Error(e) => {
            assert_eq!(e.code, ErrorCode::InvalidInput);
            let fields: Vec<&str> = e
                .details
                .iter()
                .map(|d| d.split(':').next().unwrap_or(""))
                .collect();
            assert_eq!(
                fields,
                ["url", "viewport.width", "viewport.height", "fps", "cost"],
                "{:?}",
                e.details
            );
        }
        r => panic!("{r:?}"),
    }
    match fleet
        .request(ConsoleRequest::StartRecording(small_spec(
            "meta",
            "http://169.254.169.254/latest".into(),
            5,
        )))
        .await
        .unwrap()
    {
        ConsoleResponse::Error(e) => assert!(e.details[0].contains("link-local"), "{e:?}"),
        r => panic!("{r:?}"),
    }
    match fleet
        .request(ConsoleRequest::ShowRecording {
            id: RecordingId::new("nope").unwrap(),
        })
        .await
        .unwrap()
    {
        ConsoleResponse::Error(e) => assert_eq!(e.code, ErrorCode::NotFound),
        r => panic!("{r:?}"),
    }
    // The request survives a restart of the coordinator.
    fleet.kill_coordinator().await;
    fleet.start_coordinator().unwrap();
    let d = fleet
        .show(&RecordingId::new("same-id").unwrap())
        .await
        .unwrap();
    // As asked, with the coordinator's output filled in as its destination
    // and its media health defaults for what the request left out.
    let expected = RecordingSpec {
        destination: Some(format!("file://{}", fleet.recordings().display())),
        health: Box::new(
            spec.health
                .filled(&recfleet_protocol::HealthPolicy::default()),
        ),
        ..spec
    };
    assert_eq!(d.spec, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_enforced_by_the_coordinator() {
    let mut fleet = TestFleet::start().await.unwrap();
    fleet.request(ConsoleRequest::WhoAmI).await.unwrap();

    // A viewer certificate cannot register a worker.
    let viewer = quic::client_endpoint(
        &fleet.material("viewer").unwrap(),
        TransportSettings::default(),
    )
    .unwrap();
    let conn = quic::connect(&viewer, fleet.addr, "localhost", Duration::from_secs(5))
        .await
        .unwrap();
    let hello = WorkerHello {
        name: WorkerName::new("watcher").unwrap(),
        version: "test".into(),
        capacity: 1,
        labels: Default::default(),
        running: vec![],
        draining: false,
        host: String::new(),
    };
    match quic::request::<_, CoordinatorMessage>(&conn, &OpenStream::Worker(hello.clone()))
        .await
        .unwrap()
    {
        CoordinatorMessage::Refused(e) => {
            assert_eq!(e.code, ErrorCode::Forbidden);
            assert!(
                e.message.contains("only agent certificates"),
                "{}",
                e.message
            );
        }
        other => panic!("{other:?}"),
    }
    // ... and it may watch but not act.
    match quic::request::<_, ConsoleResponse>(
        &conn,
        &OpenStream::Request(ConsoleRequest::ListWorkers),
    )
    .await
    .unwrap()
    {
        ConsoleResponse::Workers(_) => {}
        other => panic!("{other:?}"),
    }
    let stop = ConsoleRequest::StopRecording {
        id: RecordingId::new("x").unwrap(),
    };
    match quic::request::<_, ConsoleResponse>(&conn, &OpenStream::Request(stop))
        .await
        .unwrap()
    {
        ConsoleResponse::Error(e) => assert_eq!(e.code, ErrorCode::Forbidden),
        other => panic!("{other:?}"),
    }

    // An agent certificate cannot use the console protocol, nor register
    // under another worker's name.
    let agent = quic::client_endpoint(
        &fleet.material("agent-w1").unwrap(),
        TransportSettings::default(),
    )
    .unwrap();
    let conn = quic::connect(&agent, fleet.addr, "localhost", Duration::from_secs(5))
        .await
        .unwrap();
    match quic::request::<_, ConsoleResponse>(
        &conn,
        &OpenStream::Request(ConsoleRequest::ListWorkers),
    )
    .await
    .unwrap()
    {
        ConsoleResponse::Error(e) => {
            assert_eq!(e.code, ErrorCode::Forbidden);
            assert!(
                e.message.contains("only speak the worker protocol"),
                "{}",
                e.message
            );
        }
        other => panic!("{other:?}"),
    }
    let mut as_w2 = hello;
    as_w2.name = WorkerName::new("w2").unwrap();
    match quic::request::<_, CoordinatorMessage>(&conn, &OpenStream::Worker(as_w2))
        .await
        .unwrap()
    {
        CoordinatorMessage::Refused(e) => assert!(
            e.message.contains("may not register as worker \"w2\""),
            "{}",
            e.message
        ),
        other => panic!("{other:?}"),
    }

    // A client of another CA does not get in at all.
    let foreign = recfleet_testkit::Pki::temp().unwrap();
    let mut material = foreign
        .issue(recfleet_certs::Role::Operator, "mallory")
        .unwrap();
    material.ca = fleet.material("operator").unwrap().ca;
    let ep = quic::client_endpoint(&material, TransportSettings::default()).unwrap();
    let refused = async {
        let conn = quic::connect(&ep, fleet.addr, "localhost", Duration::from_secs(5)).await?;
        quic::request::<_, ConsoleResponse>(&conn, &OpenStream::Request(ConsoleRequest::WhoAmI))
            .await
    };
    let err = refused.await.unwrap_err().to_string();
    assert!(err.contains("refused"), "{err}");

    // The worker binary itself refuses to start with a viewer certificate.
    let out = std::process::Command::new(procs::workspace_bin("recfleet-agent"))
        .arg("worker")
        .args(["--coordinator", &fleet.addr.to_string()])
        .arg("--ca")
        .arg(fleet.tls().join("ca.pem"))
        .arg("--cert")
        .arg(fleet.tls().join("viewer.pem"))
        .arg("--key")
        .arg(fleet.tls().join("viewer-key.pem"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs an agent certificate"));
}
