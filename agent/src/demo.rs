//! Serves the demo class page (agent/assets/demo/class.html, built into the
//! binary) on loopback, for the local fleet, the tests and benchmarks, and
//! the teacher's camera it plays: a VP8 clip made once per machine by
//! ffmpeg, so that the recorded browser decodes a stream from outside as a
//! student's browser does, instead of encoding one itself.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::OnceCell;

use crate::http::{self, Response};

/// The page itself.
pub const CLASS_HTML: &str = include_str!("../assets/demo/class.html");
/// A page that goes wrong on a schedule, for media health: see its header.
pub const HEALTH_HTML: &str = include_str!("../assets/demo/health.html");
/// A page whose picture and events go together, for the event track: see
/// its header.
pub const EVENTS_HTML: &str = include_str!("../assets/demo/events.html");

/// Where the teacher clip is kept between runs; the name changes with the
/// clip's recipe.
const CLIP_NAME: &str = "teacher-v1-640x360p30.webm";
/// The clip's recipe: 20 s of ffmpeg's moving test pattern at 640x360 and
/// 30 fps, the size a student's browser receives a teacher's camera in
/// (simulcast's lower layer), VP8 at 600 kbit/s, a key frame every 2 s.
const CLIP_ARGS: &[&str] = &[
    "-f",
    "lavfi",
    "-i",
    "testsrc2=size=640x360:rate=30",
    "-t",
    "20",
    "-c:v",
    "libvpx",
    "-b:v",
    "600k",
    "-deadline",
    "realtime",
    "-cpu-used",
    "8",
    "-g",
    "60",
    "-an",
    "-f",
    "webm",
];
/// Making the clip takes about 4 s of one core here.
const CLIP_DEADLINE: Duration = Duration::from_secs(60);

/// A running demo page server.
#[derive(Debug)]
pub struct DemoServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    clip_task: tokio::task::JoinHandle<()>,
}

/// The teacher clip, once made (`None`: it could not be).
type Clip = Arc<OnceCell<Option<Bytes>>>;

impl DemoServer {
    /// Serves on `addr` (use port 0 for any free port). The teacher clip is
    /// made or read in the background; a request for it waits for that.
    pub async fn start(addr: SocketAddr) -> std::io::Result<DemoServer> {
        let clip: Clip = Arc::new(OnceCell::new());
        let clip_task = tokio::spawn({
            let clip = clip.clone();
            async move {
                clip.get_or_init(teacher_clip).await;
            }
        });
        let (addr, task) = http::spawn(addr, move |path: String| {
            let clip = clip.clone();
            async move { page(&path, &clip).await }
        })
        .await?;
        Ok(DemoServer {
            addr,
            task,
            clip_task,
        })
    }

    /// The page's URL with a query string (e.g. `tone=660&bg=red&end=20`).
    pub fn url(&self, query: &str) -> String {
        if query.is_empty() {
            format!("http://{}/class.html", self.addr)
        } else {
            format!("http://{}/class.html?{query}", self.addr)
        }
    }

    /// The media health test page's URL (e.g. `silent=10&frozen=10`).
    pub fn health_url(&self, query: &str) -> String {
        format!("http://{}/health.html?{query}", self.addr)
    }

    /// The event track test page's URL (e.g. `flash=1500&rtc=1`).
    pub fn events_url(&self, query: &str) -> String {
        format!("http://{}/events.html?{query}", self.addr)
    }

    /// The address served on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// What the server answers for `path`.
async fn page(path: &str, clip: &Clip) -> Response {
    const HTML: &str = "text/html; charset=utf-8";
    match path {
        "/" | "/class.html" => Response::ok(HTML, CLASS_HTML),
        "/health.html" => Response::ok(HTML, HEALTH_HTML),
        "/events.html" => Response::ok(HTML, EVENTS_HTML),
        "/teacher.webm" => match clip.get_or_init(teacher_clip).await {
            Some(bytes) => Response::ok("video/webm", bytes.clone()),
            None => Response::text(503, NO_CLIP),
        },
        _ => Response::text(404, "not found\n"),
    }
}

/// Why the camera panel stays empty.
const NO_CLIP: &str =
    "the teacher clip could not be made: is ffmpeg (with libvpx) installed? See the log\n";

impl Drop for DemoServer {
    fn drop(&mut self) {
        self.task.abort();
        self.clip_task.abort();
    }
}

/// The teacher clip: read from the machine's temporary directory, or made
/// there by ffmpeg first. `None` (logged) when it cannot be made; the page
/// then shows its camera panel empty.
async fn teacher_clip() -> Option<Bytes> {
    let dir = std::env::temp_dir().join("recfleet-demo");
    let path = dir.join(CLIP_NAME);
    if let Ok(bytes) = tokio::fs::read(&path).await {
        if !bytes.is_empty() {
            return Some(bytes.into());
        }
    }
    match make_clip(&dir, &path).await {
        Ok(()) => tokio::fs::read(&path).await.ok().map(Bytes::from),
        Err(e) => {
            tracing::warn!(error = %e, "the demo page's teacher clip could not be made");
            None
        }
    }
}

/// Runs ffmpeg into a file of its own and renames it into place, so that
/// processes making the clip at once never read half of one.
async fn make_clip(dir: &Path, path: &Path) -> std::io::Result<()> {
    tokio::fs::create_dir_all(dir).await?;
    // Its own name in this process too: test binaries start several
    // demo servers at once.
    static MAKING: AtomicU64 = AtomicU64::new(0);
    let n = MAKING.fetch_add(1, Ordering::Relaxed);
    let partial: PathBuf = dir.join(format!("{CLIP_NAME}.{}-{n}.part", std::process::id()));
    let mut cmd = tokio::process::Command::new("ffmpeg");
    cmd.args(["-y", "-v", "error", "-nostdin"])
        .args(CLIP_ARGS)
        .arg(&partial)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let run = tokio::time::timeout(CLIP_DEADLINE, cmd.output()).await;
    let result = match run {
        Err(_) => Err(std::io::Error::other(format!(
            "ffmpeg took more than {} s",
            CLIP_DEADLINE.as_secs()
        ))),
        Ok(Err(e)) => Err(std::io::Error::new(e.kind(), format!("ffmpeg: {e}"))),
        Ok(Ok(out)) if !out.status.success() => Err(std::io::Error::other(format!(
            "ffmpeg failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
        Ok(Ok(_)) => tokio::fs::rename(&partial, path).await,
    };
    if result.is_err() {
        let _ = tokio::fs::remove_file(&partial).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> Vec<u8> {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_the_page_and_the_teachers_camera_as_webm() {
        let server = DemoServer::start(([127, 0, 0, 1], 0).into()).await.unwrap();
        let page = get(server.addr(), "/class.html").await;
        let page = String::from_utf8_lossy(&page);
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.contains("/teacher.webm"));
        let clip = get(server.addr(), "/teacher.webm").await;
        let head = clip.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert!(
            clip.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&clip[..head])
        );
        // An EBML (WebM) header, and a clip of some size.
        assert_eq!(&clip[head..head + 4], &[0x1a, 0x45, 0xdf, 0xa3]);
        assert!(clip.len() - head > 100_000, "{} bytes", clip.len() - head);
        let missing = get(server.addr(), "/nothing").await;
        assert!(missing.starts_with(b"HTTP/1.1 404"));
    }
}
