//! The console as a user runs it: the `recfleet` binary spawned with a
//! fleet's certificates (flags or a context file), its output parsed, and
//! the TUI in a tmux pane whose screen a test reads.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use recfleet_console::context::Context;

use recfleet_testkit::{workspace_bin, TestFleet};

/// The connection variables the console reads; cleared for every run so
/// that the test's own environment cannot leak in.
const CONN_VARS: [&str; 6] = [
    "RECFLEET_CONTEXT",
    "RECFLEET_COORDINATOR",
    "RECFLEET_CA",
    "RECFLEET_CERT",
    "RECFLEET_KEY",
    "RECFLEET_SERVER_NAME",
];

/// How a run of `recfleet` ended.
#[derive(Debug, Clone)]
pub struct Run {
    /// The exit code (`None`: killed by a signal or by the time limit).
    pub code: Option<i32>,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

impl Run {
    /// The one JSON document on stdout (the last non-empty line).
    pub fn json(&self) -> serde_json::Value {
        let line = self
            .stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_else(|| panic!("no output on stdout; {self}"));
        serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {line:?}; {self}"))
    }

    /// Every stdout line as JSON (JSON lines).
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("a line is not JSON ({e}): {l:?}; {self}"))
            })
            .collect()
    }

    /// Asserts the exit code, showing the output if it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, Some(code), "unexpected exit code; {self}");
        self
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}---",
            self.code, self.stdout, self.stderr
        )
    }
}

/// The `recfleet` binary with a way to connect.
#[derive(Debug, Clone)]
pub struct Console {
    bin: PathBuf,
    /// Connection flags put before the command.
    conn: Vec<OsString>,
    /// Environment set for each run.
    env: Vec<(String, OsString)>,
    /// An empty config home, so that no default context file is read.
    home: PathBuf,
}

impl Console {
    /// Connects to `fleet` with flags and the certificate `stem`
    /// (`operator`, `viewer`).
    pub fn flags(fleet: &TestFleet, stem: &str) -> Console {
        let tls = fleet.tls();
        // A coordinator listening on every address is reached on loopback.
        let mut addr = fleet.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip([127, 0, 0, 1].into());
        }
        let conn = vec![
            "--coordinator".into(),
            addr.to_string().into(),
            "--ca".into(),
            tls.join("ca.pem").into(),
            "--cert".into(),
            tls.join(format!("{stem}.pem")).into(),
            "--key".into(),
            tls.join(format!("{stem}-key.pem")).into(),
        ];
        Console::bare(fleet.dir()).with_conn(conn)
    }

    /// No connection settings at all; `dir` holds an empty config home.
    pub fn bare(dir: &Path) -> Console {
        let home = dir.join("console-home");
        let _ = std::fs::create_dir_all(&home);
        Console {
            bin: workspace_bin("recfleet"),
            conn: Vec::new(),
            env: Vec::new(),
            home,
        }
    }

    /// Adds connection flags.
    pub fn with_conn(mut self, conn: Vec<OsString>) -> Console {
        self.conn.extend(conn);
        self
    }

    /// Sets an environment variable for each run.
    pub fn with_env(mut self, key: &str, value: impl Into<OsString>) -> Console {
        self.env.push((key.to_string(), value.into()));
        self
    }

    /// The binary.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// A command ready to spawn: `recfleet <conn flags> <args>`.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.bin);
        for v in CONN_VARS {
            c.env_remove(v);
        }
        c.env("XDG_CONFIG_HOME", &self.home)
            .env("HOME", &self.home)
            .env("NO_COLOR", "1");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.args(&self.conn)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// Runs `recfleet <args>` to the end (at most `limit`).
    pub async fn run_for(&self, args: &[&str], limit: Duration) -> Run {
        let child = self.command(args).spawn().expect("spawn recfleet");
        match tokio::time::timeout(limit, child.wait_with_output()).await {
            Ok(Ok(out)) => Run {
                code: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            },
            Ok(Err(e)) => panic!("recfleet {args:?}: {e}"),
            // The child is killed on drop.
            Err(_) => panic!("recfleet {args:?} did not end within {limit:?}"),
        }
    }

    /// Runs `recfleet <args>` (at most 30 s).
    pub async fn run(&self, args: &[&str]) -> Run {
        self.run_for(args, Duration::from_secs(30)).await
    }
}

/// Writes a context file for `fleet` and the certificate `stem`; returns
/// its path.
pub fn write_context(fleet: &TestFleet, stem: &str) -> PathBuf {
    let tls = fleet.tls();
    let path = fleet.dir().join("contexts").join(format!("{stem}.toml"));
    Context {
        coordinator: fleet.addr.to_string(),
        server_name: "localhost".to_string(),
        ca: tls.join("ca.pem"),
        cert: tls.join(format!("{stem}.pem")),
        key: tls.join(format!("{stem}-key.pem")),
    }
    .write(&path)
    .expect("write the context file");
    path
}

/// A tmux server of its own with one session running a shell command; the
/// server is killed on drop, also when the test fails.
#[derive(Debug)]
pub struct Tmux {
    socket: String,
    /// The server's socket file, removed on drop.
    socket_path: Option<PathBuf>,
    /// The target for tmux commands.
    pub target: String,
}

impl Tmux {
    /// Starts `command` (run by `sh -c`) in a `width`x`height` pane.
    pub fn start(name: &str, width: u16, height: u16, command: &str) -> Tmux {
        let socket = format!("recfleet-{name}-{}", std::process::id());
        let mut t = Tmux {
            target: name.to_string(),
            socket,
            socket_path: None,
        };
        let out = std::process::Command::new("tmux")
            .args(["-L", &t.socket, "-f", "/dev/null", "new-session", "-d"])
            .args([
                "-s",
                name,
                "-x",
                &width.to_string(),
                "-y",
                &height.to_string(),
            ])
            .arg(command)
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = t.tmux(&["display-message", "-p", "#{socket_path}"]);
        let path = String::from_utf8_lossy(&path.stdout).trim().to_string();
        t.socket_path = (!path.is_empty()).then(|| PathBuf::from(path));
        t
    }

    /// The `-L` name of the tmux server.
    pub fn socket(&self) -> &str {
        &self.socket
    }

    fn tmux(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// Types keys (tmux key names such as `Enter`, `Right`, `Escape`).
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.target];
        args.extend_from_slice(keys);
        let out = self.tmux(&args);
        assert!(
            out.status.success(),
            "tmux send-keys {keys:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Types text literally.
    pub fn type_text(&self, text: &str) {
        let out = self.tmux(&["send-keys", "-t", &self.target, "-l", text]);
        assert!(out.status.success(), "tmux send-keys -l {text:?}");
    }

    /// The screen as text.
    pub fn screen(&self) -> String {
        let out = self.tmux(&["capture-pane", "-p", "-t", &self.target]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen satisfies `pred`; panics with `what` and the
    /// last screen after `secs`.
    pub async fn wait_screen(&self, what: &str, secs: u64, pred: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            if Instant::now() > until {
                panic!("the screen did not show {what} within {secs} s; last screen:\n{s}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
        if let Some(path) = &self.socket_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The first line of `screen` that contains every one of `words` (as
/// whitespace-separated tokens).
pub fn line_with<'a>(screen: &'a str, words: &[&str]) -> Option<&'a str> {
    screen.lines().find(|l| {
        let tokens: Vec<&str> = l
            .split(|c: char| c.is_whitespace() || c == '│')
            .filter(|t| !t.is_empty())
            .collect();
        words.iter().all(|w| tokens.contains(w))
    })
}

/// The shell command that runs the TUI with a context file and an empty
/// config home, then prints how it exited and whether the terminal was
/// left in cooked mode.
pub fn tui_shell(console: &Console, context: &Path, home: &Path) -> String {
    format!(
        "env -u RECFLEET_COORDINATOR -u RECFLEET_CA -u RECFLEET_CERT -u RECFLEET_KEY \
         XDG_CONFIG_HOME='{home}' RECFLEET_CONTEXT='{ctx}' '{bin}'; \
         echo EXIT=$?; \
         if stty -a | grep -q -- '-icanon'; then echo TTY=raw; else echo TTY=cooked; fi; \
         sleep 600",
        home = home.display(),
        ctx = context.display(),
        bin = console.bin().display(),
    )
}
