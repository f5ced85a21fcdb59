//! The coordinator's store as a process sees it (no browser): one
//! coordinator per data dir, a store with 100,000 finished recordings paged
//! through with little memory, and a store whose disk fills up (a real
//! tmpfs: this test needs root, as CI runs it).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use recfleet_protocol::spec::RecordingSpec;
use recfleet_protocol::{
    now_ms, ConsoleRequest, ConsoleResponse, ErrorCode, RecordingId, RecordingState,
};
use recfleet_testkit::fleet::{free_tcp, free_udp};
use recfleet_testkit::{http_get, wait_http, FleetOptions, TestFleet};

fn quiet() -> FleetOptions {
    FleetOptions {
        log_filter: "info".into(),
        agent_certs: 0,
        ..Default::default()
    }
}

fn spec(id: &str) -> RecordingSpec {
    RecordingSpec::new(
        RecordingId::new(id).unwrap(),
        "http://127.0.0.1:9/class.html",
    )
}

async fn start(fleet: &mut TestFleet, id: &str) -> ConsoleResponse {
    fleet
        .request(ConsoleRequest::StartRecording(spec(id)))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_second_coordinator_on_the_same_data_dir_exits_69_naming_the_first() {
    let mut fleet = TestFleet::start_with(quiet()).await.unwrap();
    fleet.wait_ready().await.unwrap();
    let first = fleet.coordinator_pid().unwrap();
    // Another port and HTTP address: only the data dir is shared.
    let out = fleet
        .coordinator_command(free_udp().unwrap(), free_tcp().unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), out)
        .await
        .expect("the second coordinator did not exit")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(
        stderr.contains(&format!("process {first}")),
        "stderr does not name the first coordinator ({first}): {stderr}"
    );
    // The first one is undisturbed.
    assert!(fleet.coordinator_exited().is_none());
    fleet.wait_ready().await.unwrap();
}

/// Writes `n` finished recordings ended long before the retention straight
/// into the store (one transaction), `old-000000` first; returns their ids.
fn write_finished(store: &Path, n: usize) -> Vec<String> {
    let mut db = rusqlite::Connection::open(store).unwrap();
    let tx = db.transaction().unwrap();
    // Three days ago, one recording a second, each 10 minutes long.
    let base = now_ms() - 3 * 24 * 3600 * 1000 - n as u64 * 1000;
    let mut ids = Vec::with_capacity(n);
    {
        let mut st = tx
            .prepare(
                "INSERT INTO recordings(id, spec, state, epoch, worker, created_at, started_at, ended_at, reason, restarts, failed_placements)
                 VALUES(?1, ?2, 'completed', 1, 'w1', ?3, ?4, ?5, NULL, 0, 0)",
            )
            .unwrap();
        for i in 0..n {
            let id = format!("old-{i:06}");
            let created = (base + i as u64 * 1000) as i64;
            let json = serde_json::to_string(&spec(&id)).unwrap();
            st.execute(rusqlite::params![
                id,
                json,
                created,
                created + 2_000,
                created + 600_000
            ])
            .unwrap();
            ids.push(id);
        }
    }
    tx.commit().unwrap();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_finished_recordings_page_in_order_in_little_memory() {
    const N: usize = 100_000;
    const RSS_LIMIT: u64 = 200 << 20;
    let mut fleet = TestFleet::start_with(quiet()).await.unwrap();
    // The coordinator creates and migrates the schema; then it is stopped
    // and the rows go straight into its file.
    fleet.wait_ready().await.unwrap();
    let status = fleet.stop_coordinator(15).await.unwrap();
    assert!(status.success(), "{status:?}");
    let t = Instant::now();
    let ids = write_finished(&fleet.data_dir().join("store.db"), N);
    eprintln!(
        "store: {N} rows written in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    fleet.start_coordinator().unwrap();
    fleet.wait_ready().await.unwrap();
    let ready_secs = t.elapsed().as_secs_f64();
    let pid = fleet.coordinator_pid().unwrap();
    let rss_ready = fleet.coordinator_sample().unwrap().rss_bytes;
    // The coordinator's RSS sampled all along the paging.
    let sampler = tokio::spawn(async move {
        let mut max = 0;
        while let Some(s) = recfleet_testkit::procs::proc_sample(pid) {
            max = max.max(s.rss_bytes);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        max
    });
    let t = Instant::now();
    let listed = fleet.recordings_paged(&[]).await.unwrap();
    let paging_secs = t.elapsed().as_secs_f64();
    let listed_ids: Vec<String> = listed.iter().map(|r| r.id.to_string()).collect();
    assert_eq!(listed_ids.len(), N);
    assert!(
        listed_ids == ids,
        "the pages are not the recordings in order"
    );
    assert!(listed.iter().all(|r| r.state == RecordingState::Completed));
    let one = RecordingId::new("old-054321").unwrap();
    let shown = fleet.show(&one).await.unwrap();
    assert_eq!(shown.info.state, RecordingState::Completed);
    assert_eq!(shown.info.id, one);
    let rss_after = fleet.coordinator_sample().unwrap().rss_bytes;
    sampler.abort();
    let rss_max = rss_after.max(rss_ready);
    eprintln!(
        "store: ready {ready_secs:.1} s after start, {N} paged in {paging_secs:.1} s; RSS {} MiB ready, {} MiB after paging",
        rss_ready >> 20,
        rss_after >> 20
    );
    assert!(
        rss_max < RSS_LIMIT,
        "coordinator RSS {} MiB >= 200 MiB",
        rss_max >> 20
    );
    fleet.shutdown().await;
}

/// A tmpfs mounted for the test, unmounted when dropped (even when the
/// test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success(), "mount -t tmpfs on {}: {st}", dir.display());
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: the coordinator killed on drop may still hold its files.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the file system of `path` until it refuses another byte.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 4096];
    let mut n = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(_) => break,
        }
    }
    // The last partial page, byte by byte.
    while f.write(&[0]).is_ok_and(|k| k == 1) {
        n += 1;
    }
    let _ = f.sync_all();
    n
}

/// Starts recordings `<prefix>-NNNN` until one is refused; returns those
/// acknowledged and the refused one with its error.
async fn start_until_refused(
    fleet: &mut TestFleet,
    prefix: &str,
) -> (Vec<String>, String, recfleet_protocol::WireError) {
    let mut acked = Vec::new();
    for i in 0..5_000 {
        let id = format!("{prefix}-{i:04}");
        match start(fleet, &id).await {
            ConsoleResponse::Started { .. } => acked.push(id),
            ConsoleResponse::Error(e) => return (acked, id, e),
            other => panic!("{id}: {other:?}"),
        }
    }
    panic!("5,000 recordings accepted on a full disk")
}

#[tokio::test]
async fn a_full_disk_refuses_clearly_keeps_what_was_acknowledged_and_recovers() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test mounts a tmpfs as the coordinator's data dir: run it as root (CI does)"
    );
    let root = tempfile::tempdir().unwrap();
    let filler = root.path().join("coordinator").join("filler");
    let _tmpfs = Tmpfs::mount(&root.path().join("coordinator"), "2m");
    let mut fleet = TestFleet::start_with(FleetOptions {
        dir: Some(root.path().to_path_buf()),
        ..quiet()
    })
    .await
    .unwrap();
    fleet.wait_ready().await.unwrap();
    wait_http(fleet.coordinator_http, "/readyz", 200, 10)
        .await
        .unwrap();
    let mut acked = Vec::new();
    for i in 0..20 {
        let id = format!("before-{i:02}");
        assert!(matches!(
            start(&mut fleet, &id).await,
            ConsoleResponse::Started { .. }
        ));
        acked.push(id);
    }

    // Full: a clear refusal, not ready, and why.
    let filled = fill(&filler);
    let (a, refused, e) = start_until_refused(&mut fleet, "full").await;
    eprintln!(
        "disk full: filler {} KiB, {} more acknowledged, then refused: {}",
        filled >> 10,
        a.len(),
        e.message
    );
    acked.extend(a);
    assert_eq!(e.code, ErrorCode::Unavailable, "{}", e.message);
    assert!(e.message.contains("store"), "{}", e.message);
    let why = wait_http(fleet.coordinator_http, "/readyz", 503, 5)
        .await
        .unwrap();
    assert!(why.contains("store"), "/readyz: {why}");
    // The refused one left no trace.
    let shown = fleet
        .request(ConsoleRequest::ShowRecording {
            id: RecordingId::new(&refused).unwrap(),
        })
        .await
        .unwrap();
    assert!(
        matches!(shown, ConsoleResponse::Error(ref e) if e.code == ErrorCode::NotFound),
        "{shown:?}"
    );

    // Room again, no restart: ready by itself, requests succeed.
    std::fs::remove_file(&filler).unwrap();
    let t = Instant::now();
    wait_http(fleet.coordinator_http, "/readyz", 200, 10)
        .await
        .unwrap();
    eprintln!(
        "disk full: ready again {:.2} s after the filler was removed",
        t.elapsed().as_secs_f64()
    );
    assert!(matches!(
        start(&mut fleet, &refused).await,
        ConsoleResponse::Started { created: true, .. }
    ));
    acked.push(refused);

    // Full again, then kill -9 while full: after a restart with room,
    // everything acknowledged is there and the refused one is not.
    fill(&filler);
    let (a, refused, e) = start_until_refused(&mut fleet, "again").await;
    acked.extend(a);
    assert_eq!(e.code, ErrorCode::Unavailable, "{}", e.message);
    let (status, _) = http_get(fleet.coordinator_http, "/readyz").unwrap();
    assert_eq!(status, 503);
    fleet.kill_coordinator().await;
    std::fs::remove_file(&filler).unwrap();
    fleet.start_coordinator().unwrap();
    fleet.wait_ready().await.unwrap();
    let listed: Vec<String> = fleet
        .recordings_paged(&[])
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id.to_string())
        .collect();
    let missing: Vec<&String> = acked.iter().filter(|id| !listed.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but lost after kill -9: {missing:?}"
    );
    assert!(
        !listed.contains(&refused),
        "{refused} was refused but is stored"
    );
    assert_eq!(listed.len(), acked.len());
    wait_http(fleet.coordinator_http, "/readyz", 200, 10)
        .await
        .unwrap();
    fleet.shutdown().await;
}
