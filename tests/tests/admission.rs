//! Admission by measured cost with real browsers: a worker whose measured
//! load leaves no room for another recording takes none, though its slots
//! say it could, and the recording goes to another worker; the console
//! shows why.

use std::time::Duration;

use recfleet_agent::demo::DemoServer;
use recfleet_protocol::spec::{RecordingSpec, Viewport};
use recfleet_protocol::{ConsoleRequest, ConsoleResponse, RecordingId, WorkerInfo};
use recfleet_testkit::{FleetOptions, TestFleet};
use recfleet_tests::console::Console;

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

async fn start(fleet: &mut TestFleet, s: RecordingSpec) {
    match fleet
        .request(ConsoleRequest::StartRecording(s))
        .await
        .unwrap()
    {
        ConsoleResponse::Started { .. } => {}
        other => panic!("start refused: {other:?}"),
    }
}

async fn workers(fleet: &mut TestFleet) -> Vec<WorkerInfo> {
    match fleet.request(ConsoleRequest::ListWorkers).await.unwrap() {
        ConsoleResponse::Workers(w) => w,
        other => panic!("ListWorkers: {other:?}"),
    }
}

async fn worker(fleet: &mut TestFleet, name: &str) -> WorkerInfo {
    workers(fleet)
        .await
        .into_iter()
        .find(|w| w.name.as_str() == name)
        .unwrap_or_else(|| panic!("no worker {name}"))
}

/// Where a recording runs once it captures.
async fn placed_on(fleet: &mut TestFleet, id: &RecordingId) -> String {
    let d = fleet
        .wait_for(id, 90, |d| d.info.started_at.is_some())
        .await
        .unwrap();
    d.info.worker.map(|w| w.to_string()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_a_worker_at_its_measured_limit_takes_nothing_and_the_recording_goes_elsewhere() {
    let page = DemoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    // Admission by measured cost (the coordinator's default; test fleets
    // count slots unless told). Until a recording is measured, one is
    // expected to cost 0.3 cores.
    let mut fleet = TestFleet::start_with(FleetOptions {
        coordinator_env: vec![
            ("RECFLEET_ADMISSION".into(), "measured".into()),
            (
                "RECFLEET_ADMISSION_ESTIMATE_MILLICORES".into(),
                "300".into(),
            ),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    // w1 offers 8 slots but only 0.4 cores: room for one recording by the
    // estimate, and for none once one is measured (a browser, its display,
    // sound and encoder cost more than 0.18 cores here). w2 offers 2 slots
    // and the machine's CPUs.
    fleet
        .add_worker_with(1, 8, &[("RECFLEET_CPU_CAPACITY_MILLICORES", "400")])
        .unwrap();
    fleet.add_worker(2, 2).unwrap();
    fleet.wait_workers(2, 30).await.unwrap();

    // Both empty: the first goes to w1 (by name), the second to w2 (the
    // most free as a fraction).
    let a = RecordingId::new("on-w1").unwrap();
    start(&mut fleet, spec(a.as_str(), page.url("title=a"))).await;
    assert_eq!(placed_on(&mut fleet, &a).await, "w1");
    let c = RecordingId::new("on-w2").unwrap();
    start(&mut fleet, spec(c.as_str(), page.url("title=c"))).await;
    assert_eq!(placed_on(&mut fleet, &c).await, "w2");

    // Once the recording on w1 is measured, w1 takes no more.
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    let w1 = loop {
        let w1 = worker(&mut fleet, "w1").await;
        // Measured: the fleet's estimate is learned (no longer the
        // configured 0.3 cores) from recordings past their start.
        let learned = w1.admission.estimate_millicores != 300;
        if learned
            && w1.admission.measured
            && w1.admission.takes == 0
            && !w1.admission.limit.is_empty()
        {
            break w1;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "w1 never reached its measured limit: {:?}",
            w1.admission
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!("w1 at its limit: {:?}", w1.admission);
    assert_eq!(w1.admission.cpu_capacity_millicores, 400);
    // By slots w1 (1 of 8 used) would come before w2 (1 of 2).
    assert_eq!((w1.used, w1.capacity), (1, 8));

    let b = RecordingId::new("next").unwrap();
    start(&mut fleet, spec(b.as_str(), page.url("title=b"))).await;
    assert_eq!(
        placed_on(&mut fleet, &b).await,
        "w2",
        "the recording went to the worker at its measured limit"
    );

    // What an operator sees: the headroom column, and why in describe.
    let op = Console::flags(&fleet, "operator");
    let table = op.run(&["workers"]).await.expect_code(0).stdout.clone();
    println!("{table}");
    let header = table.lines().next().unwrap_or_default();
    assert!(header.contains("HEADROOM"), "{table}");
    let w1_line = table
        .lines()
        .find(|l| l.starts_with("w1"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(w1_line.contains("+0!"), "{w1_line}");
    let json = op
        .run(&["workers", "-o", "json"])
        .await
        .expect_code(0)
        .json();
    let w1_json = json
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["name"] == "w1"))
        .unwrap_or_else(|| panic!("{json}"));
    assert_eq!(w1_json["admission"]["takes"], 0, "{w1_json}");
    let described = op
        .run(&["describe", "worker", "w1"])
        .await
        .expect_code(0)
        .stdout
        .clone();
    println!("{described}");
    assert!(described.contains("takes 0 more ("), "{described}");

    for id in [&a, &b, &c] {
        fleet
            .request(ConsoleRequest::StopRecording { id: id.clone() })
            .await
            .unwrap();
    }
    for id in [&a, &b, &c] {
        fleet
            .wait_for(id, 60, |d| d.info.state.is_terminal())
            .await
            .unwrap();
    }
}
