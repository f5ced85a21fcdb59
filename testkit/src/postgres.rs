//! A real PostgreSQL server for tests: Debian's `postgresql`, initdb into a
//! temp dir, listening on a free loopback port and a socket in that dir.
//! Run as the `postgres` user when the tests run as root (PostgreSQL refuses
//! root). It can be killed (kill -9) and started again on the same data, as
//! an outage of the database.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

use crate::fleet::free_tcp;

/// A running (or stopped) PostgreSQL server.
#[derive(Debug)]
pub struct PgServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// Where it listens, `127.0.0.1:PORT`.
    pub addr: SocketAddr,
    /// The user and group to run as (None: the current ones).
    owner: Option<(u32, u32)>,
    /// Serves TLS with the certificate and key in the server's folder.
    tls: bool,
    child: Option<Child>,
}

/// The folder of PostgreSQL's programs: `$RECFLEET_PG_BIN`, else the newest
/// `/usr/lib/postgresql/N/bin` (Debian keeps them off PATH), else PATH.
pub fn pg_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RECFLEET_PG_BIN") {
        return PathBuf::from(p);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b).unwrap_or_default()
}

impl PgServer {
    /// Creates a database cluster and starts the server on it.
    pub async fn start() -> anyhow::Result<PgServer> {
        Self::start_with(None).await
    }

    /// Like [`Self::start`], serving TLS (`ssl=on`) with the PEM
    /// certificate and key `tls` (e.g. the test PKI's coordinator
    /// certificate: its names are localhost and 127.0.0.1).
    pub async fn start_tls(cert: &Path, key: &Path) -> anyhow::Result<PgServer> {
        Self::start_with(Some((cert, key))).await
    }

    async fn start_with(tls: Option<(&Path, &Path)>) -> anyhow::Result<PgServer> {
        let dir = tempfile::tempdir()?;
        let owner = if nix::unistd::geteuid().is_root() {
            let user = nix::unistd::User::from_name("postgres")?
                .context("running as root needs the `postgres` user (apt install postgresql)")?;
            nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid))?;
            Some((user.uid.as_raw(), user.gid.as_raw()))
        } else {
            None
        };
        if let Some((cert, key)) = tls {
            // PostgreSQL wants its key owned by itself and private.
            for (from, to) in [(cert, "server.crt"), (key, "server.key")] {
                let to = dir.path().join(to);
                std::fs::copy(from, &to)?;
                std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
                if let Some((uid, gid)) = owner {
                    nix::unistd::chown(&to, Some(uid.into()), Some(gid.into()))?;
                }
            }
        }
        let mut s = PgServer {
            bin: pg_bin(),
            addr: free_tcp()?,
            dir,
            owner,
            tls: tls.is_some(),
            child: None,
        };
        let out = s
            .command("initdb")
            .arg("-D")
            .arg(s.data())
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .await
            .with_context(|| {
                format!(
                    "cannot run {} (apt install postgresql)",
                    s.bin.join("initdb").display()
                )
            })?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        s.resume().await?;
        Ok(s)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let mut c = std::process::Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.owner {
            c.uid(uid).gid(gid);
        }
        c.current_dir(self.dir.path());
        Command::from(c)
    }

    /// The connection URL (user `postgres`, database `postgres`, no password).
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@{}:{}/postgres",
            self.addr.ip(),
            self.addr.port()
        )
    }

    /// The URL through another address (a proxy in front of this server).
    pub fn url_via(&self, addr: SocketAddr) -> String {
        format!("postgres://postgres@{}:{}/postgres", addr.ip(), addr.port())
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// Starts the server (again) on the same port and data, and waits until
    /// it accepts connections.
    pub async fn resume(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        if let Some((uid, gid)) = self.owner {
            nix::unistd::chown(&self.log_path(), Some(uid.into()), Some(gid.into()))?;
        }
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .arg("-p")
            .arg(self.addr.port().to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            // Tests need no durability across a power cut; the benchmark
            // says what it runs with.
            .args(["-c", "fsync=off", "-c", "max_connections=200"])
            .args(if self.tls {
                vec![
                    "-c".to_string(),
                    "ssl=on".into(),
                    "-c".into(),
                    format!(
                        "ssl_cert_file={}",
                        self.dir.path().join("server.crt").display()
                    ),
                    "-c".into(),
                    format!(
                        "ssl_key_file={}",
                        self.dir.path().join("server.key").display()
                    ),
                ]
            } else {
                Vec::new()
            })
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()?;
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = self
                .command("pg_isready")
                .args(["-q", "-h", "127.0.0.1", "-p"])
                .arg(self.addr.port().to_string())
                .status()
                .await;
            if ready.is_ok_and(|s| s.success()) {
                return Ok(());
            }
            if let Some(Some(status)) = self.child.as_mut().map(|c| c.try_wait().ok().flatten()) {
                bail!(
                    "postgres exited ({status}); log: {}",
                    self.log_path().display()
                );
            }
            if Instant::now() > until {
                bail!(
                    "postgres did not accept connections within 30 s; log: {}",
                    self.log_path().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the server at once (SIGKILL); its data stays for
    /// [`Self::resume`], which then recovers it as after a crash.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// Runs one SQL statement through `psql` and returns its rows, one per
    /// line, columns separated by `|`: the tests' independent look into the
    /// database.
    pub async fn query(&self, sql: &str) -> anyhow::Result<Vec<String>> {
        let out = self
            .command("psql")
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .arg("-p")
            .arg(self.addr.port().to_string())
            .args(["-U", "postgres", "-d", "postgres", "-c", sql])
            .output()
            .await?;
        if !out.status.success() {
            bail!("psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect())
    }

    /// The data folder's parent (logs, socket).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
