//! A network partition between one worker and the coordinator, made with a
//! network namespace of the test's own: the worker runs inside it, behind a
//! veth pair that the test takes down for 10 s. Needs root and iproute2.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use recfleet_agent::demo::DemoServer;
use recfleet_protocol::spec::{RecordingSpec, Viewport};
use recfleet_protocol::{
    ConsoleRequest, Epoch, RecordingId, RecordingState, SegmentEndReason, WorkerName,
};
use recfleet_testkit::netns::Netns;
use recfleet_testkit::{procs, TestFleet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_a_10_s_partition_fences_the_old_segment_and_loses_nothing() {
    let net = Netns::create(7);
    let host: IpAddr = "10.231.7.1".parse().unwrap();
    let page = DemoServer::start((IpAddr::from([0, 0, 0, 0]), 0).into())
        .await
        .unwrap();
    let url = format!(
        "http://{host}:{}/class.html?title=partition",
        page.addr().port()
    );
    let mut fleet = TestFleet::start_on([0, 0, 0, 0].into()).await.unwrap();
    let coordinator = SocketAddr::new(host, fleet.addr.port());
    fleet
        .add_worker_in_netns(1, 2, &net.name, coordinator)
        .unwrap();
    fleet.wait_workers(1, 30).await.unwrap();
    let w1_prefix = format!("{}-", fleet.worker_pid("w1").unwrap());

    let id = RecordingId::new("split").unwrap();
    let mut spec = RecordingSpec::new(id.clone(), url);
    spec.viewport = Viewport {
        width: 640,
        height: 360,
    };
    spec.fps = 10;
    spec.stop.max_duration_secs = Some(600);
    fleet
        .request(ConsoleRequest::StartRecording(spec))
        .await
        .unwrap();
    fleet
        .wait_for(&id, 60, |d| d.info.state == RecordingState::Recording)
        .await
        .unwrap();
    fleet.add_worker(2, 2).unwrap();
    fleet.wait_workers(2, 30).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    net.link(false);
    let cut = std::time::Instant::now();
    let moved = fleet
        .wait_for(&id, 30, |d| {
            d.info.worker == Some(WorkerName::new("w2").unwrap())
                && d.info.state == RecordingState::Recording
        })
        .await
        .unwrap();
    println!(
        "partition: recording again on w2 after {:.1} s (epoch {})",
        cut.elapsed().as_secs_f64(),
        moved.info.epoch
    );
    // w1 does not know: it keeps recording its epoch behind the partition.
    assert!(
        procs::tagged(&w1_prefix).iter().any(|(_, c)| c == "ffmpeg"),
        "w1 stopped on its own"
    );
    let remaining = Duration::from_secs(10).saturating_sub(cut.elapsed());
    tokio::time::sleep(remaining).await;
    net.link(true);

    // After the heal w1 reconnects, reports its epoch-1 segment, is fenced.
    let fenced = fleet
        .wait_for(&id, 60, |d| {
            d.manifest.segments.iter().any(|s| {
                s.epoch == Epoch::FIRST && s.end_reason == Some(SegmentEndReason::Superseded)
            })
        })
        .await
        .unwrap();
    let left = procs::wait_none_tagged(&w1_prefix, 10);
    assert!(
        left.is_empty(),
        "the superseded slot still runs on w1: {left:?}"
    );
    assert_eq!(
        fenced.info.state,
        RecordingState::Recording,
        "{:?}",
        fenced.info
    );
    assert_eq!(fenced.info.worker, Some(WorkerName::new("w2").unwrap()));
    let current_epoch = fenced.info.epoch;
    tokio::time::sleep(Duration::from_secs(2)).await;
    fleet
        .request(ConsoleRequest::StopRecording { id: id.clone() })
        .await
        .unwrap();
    let done = fleet
        .wait_for(&id, 60, |d| d.info.state.is_terminal())
        .await
        .unwrap();
    assert_eq!(done.info.state, RecordingState::Completed);
    let m = done.manifest;
    for epoch in [Epoch::FIRST, current_epoch] {
        let current = m
            .segments
            .iter()
            .filter(|s| s.epoch == epoch && s.current)
            .count();
        assert_eq!(
            current, 1,
            "epoch {epoch}: {current} current segments in {:#?}",
            m.segments
        );
    }
    assert!(
        !m.overlaps.is_empty(),
        "the fenced worker's extra time is an overlap: {m:#?}"
    );
    println!(
        "partition: {} segments, gaps {:?}, overlap {} ms, captured {} ms",
        m.segments.len(),
        m.gaps.iter().map(|g| g.duration_ms).collect::<Vec<_>>(),
        m.overlaps.iter().map(|o| o.duration_ms).sum::<u64>(),
        m.total_captured_ms
    );
}
