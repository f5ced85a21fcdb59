//! A ready slot of the warm pool: display, sound, ChromeDriver and a live
//! Chromium session on a blank page, started before any recording asks for
//! it. A start that takes one only loads its page and starts its encoder.
//!
//! A ready slot serves one recording part, then is torn down like any
//! other: its profile is fresh, nothing of one class reaches the next.

use std::sync::Arc;

use recfleet_protocol::egress::UrlPolicy;
use recfleet_protocol::spec::{CaptureMode, RecordingSpec, Viewport};
use recfleet_protocol::{Epoch, RecordingId};
use thirtyfour::WebDriver;
use tokio::sync::mpsc;

use super::browser;
use super::cgroup::Hierarchy;
use super::config::EngineConfig;
use super::display::{self, AudioSink};
use super::egress::EgressProxy;
use super::part::{Frames, PartContext, Running, StartError};
use super::process::{Exit, SlotProcess};
use super::teardown;

/// What a ready slot was started for: a recording fits it when its window
/// size and sound match and it uses the builtin capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// The display's and window's size.
    pub viewport: Viewport,
    /// Whether it has its own sound server.
    pub audio: bool,
}

impl Shape {
    /// The shape a recording needs, if a ready slot can serve it at all (an
    /// external capture command starts its own browser).
    pub fn of(spec: &RecordingSpec) -> Option<Shape> {
        matches!(spec.capture, CaptureMode::Builtin).then_some(Shape {
            viewport: spec.viewport,
            audio: spec.audio,
        })
    }
}

impl Default for Shape {
    /// The default recording's: 1280x720 with sound.
    fn default() -> Self {
        Shape {
            viewport: Viewport::default(),
            audio: true,
        }
    }
}

/// A ready slot, waiting in the pool.
pub struct ReadySlot {
    shape: Shape,
    /// The context it was started with: its directory, tag, exit channel,
    /// proxy gate and control group (its spec is a stand-in for the shape).
    ctx: PartContext,
    exits: mpsc::UnboundedReceiver<Exit>,
    proxy: EgressProxy,
    procs: Vec<SlotProcess>,
    display: String,
    audio: Option<AudioSink>,
    driver: WebDriver,
}

impl std::fmt::Debug for ReadySlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadySlot")
            .field("tag", &self.ctx.tag)
            .field("shape", &self.shape)
            .finish()
    }
}

/// The running pieces a part takes over from a ready slot.
pub struct ReadyParts {
    /// Display, sound server and ChromeDriver.
    pub procs: Vec<SlotProcess>,
    /// The display (":N").
    pub display: String,
    /// The sound server, if the shape has sound.
    pub audio: Option<AudioSink>,
    /// The browser session, on a blank page.
    pub driver: WebDriver,
}

impl std::fmt::Debug for ReadyParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadyParts")
            .field("procs", &self.procs)
            .field("display", &self.display)
            .finish()
    }
}

/// A ready slot handed to a part: its context, its running pieces, the
/// proxy the browser already uses (it lives as long as the part) and the
/// channel its processes report their exits on.
#[allow(missing_debug_implementations)] // the browser session has no Debug
pub struct Taken {
    /// The part's context.
    pub ctx: PartContext,
    /// Its running processes and browser session.
    pub parts: ReadyParts,
    /// Its egress proxy.
    pub proxy: EgressProxy,
    /// Its processes' exits.
    pub exits: mpsc::UnboundedReceiver<Exit>,
}

impl ReadySlot {
    /// Starts a ready slot named `name` (its directory under the runtime
    /// root, and the last element of its process tag).
    pub async fn start(
        config: &Arc<EngineConfig>,
        instance: &str,
        name: &str,
        shape: Shape,
        policy: Arc<UrlPolicy>,
        cgroups: Option<&Hierarchy>,
    ) -> Result<ReadySlot, StartError> {
        let proxy = EgressProxy::start(policy)
            .await
            .map_err(|e| StartError::msg("slot", format!("the egress proxy cannot listen: {e}")))?;
        let cgroup = cgroups.and_then(|h| match h.slot(name, &config.slot_limits) {
            Ok(g) => Some(Arc::new(g)),
            Err(e) => {
                tracing::warn!(error = %e, "this ready slot runs without limits: its control group cannot be made");
                None
            }
        });
        let (exits_tx, exits) = mpsc::unbounded_channel();
        let dir = config.runtime_root.join(name);
        let mut stand_in = RecordingSpec::new(
            RecordingId::new("ready").expect("a valid id"),
            "about:blank",
        );
        stand_in.viewport = shape.viewport;
        stand_in.audio = shape.audio;
        let ctx = PartContext {
            spec: Arc::new(stand_in),
            epoch: Epoch(0),
            part: 0,
            tag: format!("{instance}/{name}"),
            chunk_dir: dir.join("chunks"),
            dir,
            stored: Default::default(),
            bins: Arc::new(config.bins.clone()),
            timeouts: config.timeouts,
            exits: exits_tx,
            egress: proxy.gate(),
            cgroup,
        };
        let mut procs = Vec::new();
        let started = tokio::time::timeout(config.timeouts.start, bring_up(&ctx, &mut procs))
            .await
            .unwrap_or_else(|_| {
                Err(StartError::msg(
                    "slot",
                    format!("not ready within {} s", config.timeouts.start.as_secs()),
                ))
            });
        match started {
            Ok((display, audio, driver)) => Ok(ReadySlot {
                shape,
                ctx,
                exits,
                proxy,
                procs,
                display,
                audio,
                driver,
            }),
            Err(e) => {
                let mut exits = exits;
                teardown::kill_group(&ctx, running(procs), &mut exits).await;
                let _ = std::fs::remove_dir_all(&ctx.dir);
                Err(e)
            }
        }
    }

    /// Its shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The tag of its processes.
    pub fn tag(&self) -> &str {
        &self.ctx.tag
    }

    /// Why it is no longer usable, if one of its processes exited.
    pub fn dead(&mut self) -> Option<Exit> {
        self.exits.try_recv().ok()
    }

    /// Hands the slot to a part of a recording: the part's context (its
    /// spec, placement and chunks, in the ready slot's directory, tag,
    /// proxy and control group) and the running pieces.
    pub fn take(
        self,
        spec: Arc<RecordingSpec>,
        epoch: Epoch,
        part: u32,
        chunk_dir: std::path::PathBuf,
        stored: Arc<std::sync::atomic::AtomicU64>,
    ) -> Taken {
        Taken {
            ctx: PartContext {
                spec,
                epoch,
                part,
                chunk_dir,
                stored,
                ..self.ctx
            },
            parts: ReadyParts {
                procs: self.procs,
                display: self.display,
                audio: self.audio,
                driver: self.driver,
            },
            proxy: self.proxy,
            exits: self.exits,
        }
    }

    /// Tears the slot down, unused.
    pub async fn discard(mut self) {
        teardown::quit_driver(self.driver).await;
        teardown::kill_group(&self.ctx, running(self.procs), &mut self.exits).await;
        let _ = std::fs::remove_dir_all(&self.ctx.dir);
        drop(self.proxy);
    }
}

/// Display and sound first (together), then ChromeDriver and the session.
/// Every process started is pushed on `procs` at once, so that a failure
/// half-way still tears everything down.
async fn bring_up(
    ctx: &PartContext,
    procs: &mut Vec<SlotProcess>,
) -> Result<(String, Option<AudioSink>, WebDriver), StartError> {
    std::fs::create_dir_all(&ctx.dir).map_err(|e| StartError::new("slot", e))?;
    // The stand-in spec has the shape's sound.
    let (display, sound) = display::start_display_and_sound(ctx, procs).await?;
    let (drv, port) = browser::start_chromedriver(
        ctx,
        &display,
        sound.as_ref().map(|a| a.server.as_str()),
        sound.as_ref().map(|a| a.sink.as_str()),
    )
    .await?;
    procs.push(drv);
    let driver = browser::open_session(ctx, port).await?;
    Ok((display, sound, driver))
}

fn running(procs: Vec<SlotProcess>) -> Running {
    Running {
        procs,
        encoder_stdin: None,
        capture_pid: None,
        page: None,
        progress: tokio::sync::watch::channel(Frames::default()).1,
    }
}
