//! `recfleet-agent dev` (what `make demo` runs) adds its `dev` context to
//! the console's context file beside the contexts already there, and
//! changes none of them.

use std::process::Stdio;
use std::time::Duration;

use recfleet_testkit::workspace_bin;
use recfleet_tests::console::Console;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_fleet_adds_its_context_beside_an_existing_one_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("context.toml");
    let prod = "current = \"prod\"\n\n[contexts.prod]\ncoordinator = \"coord.example:7800\"\n\
                server_name = \"coord.example\"\nca = \"/etc/recfleet/ca.pem\"\n\
                cert = \"/etc/recfleet/op.pem\"\nkey = \"/etc/recfleet/op-key.pem\"\n";
    std::fs::write(&file, prod).unwrap();

    let dev = dev_fleet(&dir.path().join("fleet"), &file).await;

    let console = Console::bare(dir.path());
    let run = console
        .run(&[
            "--context",
            file.to_str().unwrap(),
            "context",
            "list",
            "-o",
            "json",
        ])
        .await;
    let list = run.expect_code(0).json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(names.contains(&"prod") && names.contains(&"dev"), "{run}");
    let prod_entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "prod")
        .unwrap();
    assert_eq!(prod_entry["coordinator"], "coord.example:7800", "{run}");
    assert_eq!(prod_entry["server_name"], "coord.example", "{run}");
    // Every line of prod's table is still in the file, as it was.
    let now = std::fs::read_to_string(&file).unwrap();
    for line in prod.lines().skip(2) {
        assert!(now.contains(line), "lost {line:?}:\n{now}");
    }
    // And the dev context works: the console reaches the dev fleet with it.
    let run = console
        .run(&[
            "--context",
            file.to_str().unwrap(),
            "--context-name",
            "dev",
            "workers",
            "-o",
            "json",
        ])
        .await;
    assert_eq!(run.expect_code(0).json()[0]["name"], "w1", "{run}");

    stop_dev(dev).await;
}

/// Starts `recfleet-agent dev` in `dir` with the context file `file`;
/// returns it once its context is written, its stderr
/// read in the background.
async fn dev_fleet(dir: &std::path::Path, file: &std::path::Path) -> tokio::process::Child {
    let mut dev = tokio::process::Command::new(workspace_bin("recfleet-agent"))
        .args(["dev", "--workers", "1", "--dir"])
        .arg(dir)
        .arg("--context")
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(dev.stderr.take().unwrap()).lines();
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(until, lines.next_line()).await {
            Ok(Ok(Some(l))) => {
                let done = l.contains("console context \"dev\" written");
                seen.push(l);
                if done {
                    break;
                }
            }
            other => panic!("the dev fleet did not write its context ({other:?}): {seen:?}"),
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    dev
}

/// SIGTERM to the dev fleet: it must exit 0 within 40 s.
async fn stop_dev(mut dev: tokio::process::Child) {
    let pid = nix::unistd::Pid::from_raw(dev.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(40), dev.wait())
        .await
        .expect("the dev fleet did not stop within 40 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_the_demo_leaves_its_event_track_and_chapters_and_the_console_lists_its_slides() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("context.toml");
    let fleet_dir = dir.path().join("fleet");
    // What `make demo` runs, with a shorter class.
    let demo = tokio::process::Command::new(workspace_bin("recfleet-agent"))
        .args(["dev", "--workers", "1", "--record-demo", "13s", "--dir"])
        .arg(&fleet_dir)
        .arg("--context")
        .arg(&file)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), demo)
        .await
        .expect("the demo did not end within 180 s")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stderr}", out.status);
    // It prints the manifest's path; the event track and the chapters are beside it.
    let manifest = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let rec = manifest.parent().unwrap();
    let id = rec.file_name().unwrap().to_str().unwrap().to_string();
    let events = std::fs::read_to_string(rec.join("events.jsonl")).expect("events.jsonl");
    let kinds: Vec<String> = events
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        kinds.iter().filter(|k| *k == "slide").count() >= 3,
        "{kinds:?}"
    );
    assert!(kinds.iter().any(|k| k == "stroke"), "{kinds:?}");
    let vtt = std::fs::read_to_string(rec.join("chapters.vtt")).expect("chapters.vtt");
    assert!(vtt.contains("Slide 2: "), "{vtt}");
    assert!(stderr.contains("chapters.vtt"), "{stderr}");

    // The next day: the dev fleet again, and the console asks for its slides.
    let dev = dev_fleet(&fleet_dir, &file).await;
    let console = Console::bare(dir.path());
    let run = console
        .run(&[
            "--context",
            file.to_str().unwrap(),
            "record",
            "events",
            &id,
            "--type",
            "slide",
            "-o",
            "json",
        ])
        .await;
    let listed = run.expect_code(0).json();
    let slides: Vec<i64> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["n"].as_i64().unwrap())
        .collect();
    assert!(slides.len() >= 3, "{run}");
    assert!(slides.windows(2).all(|w| w[1] == w[0] + 1), "{slides:?}");
    stop_dev(dev).await;
}
