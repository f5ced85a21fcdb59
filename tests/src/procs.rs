//! Looking for processes a test must not leave behind.

/// Processes whose environment carries the slot tag with this prefix.
pub fn tagged(prefix: &str) -> Vec<(i32, String)> {
    let needle = format!("RECFLEET_SLOT_TAG={prefix}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                env.split(|b| *b == 0)
                    .any(|v| v.starts_with(needle.as_bytes()))
            })
        })
        .filter(|pid| !is_zombie(*pid))
        .map(|pid| (pid, comm(pid)))
        .collect()
}

/// The command name of a process.
pub fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|r| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Waits up to `secs` for no process tagged `prefix` to remain; returns
/// what is left.
pub fn wait_none_tagged(prefix: &str, secs: u64) -> Vec<(i32, String)> {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let left = tagged(prefix);
        if left.is_empty() || std::time::Instant::now() > until {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Path of a workspace binary next to the running test's target directory.
pub fn workspace_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test> -> target/debug/<name>
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    dir.join(name)
}
