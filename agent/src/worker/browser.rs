//! ChromeDriver and, through it, Chromium on the slot's display, driven with
//! thirtyfour: the page is opened, waited for, and watched.

use std::time::Duration;

use serde::Deserialize;
use thirtyfour::prelude::*;
use thirtyfour::ChromiumLikeCapabilities;
use tokio::process::Command;
use tokio::sync::mpsc;

use super::event_track::PageDrain;
pub use super::part::PageStatus;
use super::part::{PageLocation, PartContext, StartError};
use super::process::SlotProcess;
use recfleet_protocol::spec::{PageSignal, RecordingSpec};

/// Chromium's flags (docs/capture.md says why each is there).
pub fn chromium_args(ctx: &PartContext, profile: &std::path::Path) -> Vec<String> {
    let v = ctx.spec.viewport;
    let mut features =
        String::from("Translate,MediaRouter,OptimizationHints,DialMediaRouteProvider");
    let mut extra = Vec::new();
    for arg in &ctx.bins.chromium_args {
        if is_proxy_flag(arg) {
            // The worker refuses them at start; never around the proxy.
            continue;
        }
        // Chromium takes the last --disable-features: an operator's list
        // is added to ours.
        match arg.strip_prefix("--disable-features=") {
            Some(more) => {
                features.push(',');
                features.push_str(more);
            }
            None => extra.push(arg.clone()),
        }
    }
    let mut args: Vec<String> = [
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        "--autoplay-policy=no-user-gesture-required",
        "--password-store=basic",
        "--use-mock-keychain",
        "--disable-dev-shm-usage",
        "--window-position=0,0",
        "--kiosk",
    ]
    .map(String::from)
    .to_vec();
    args.push(format!("--disable-features={features}"));
    args.push(format!("--window-size={},{}", v.width, v.height));
    // The browser's own log (crashes, GPU, network errors, console lines)
    // in the part's directory: `recfleet logs ID --process chromium`.
    args.push("--enable-logging".into());
    args.push(format!("--log-file={}", ctx.log("chromium").display()));
    args.push(format!("--user-data-dir={}", profile.display()));
    // Every request of the page through the part's egress proxy.
    args.extend(ctx.egress.chromium_args());
    if nix::unistd::geteuid().is_root() {
        // Chromium's sandbox cannot run as root; the slot's isolation is the
        // process group, its own display and sink, and a fresh profile.
        args.push("--no-sandbox".into());
    }
    args.extend(extra);
    args
}

/// Whether a Chromium flag would change where requests go, taking the page
/// around the part's egress proxy.
pub fn is_proxy_flag(arg: &str) -> bool {
    let name = arg.split('=').next().unwrap_or(arg);
    matches!(
        name,
        "--proxy-server"
            | "--proxy-bypass-list"
            | "--proxy-pac-url"
            | "--no-proxy-server"
            | "--proxy-auto-detect"
            | "--winhttp-proxy-resolver"
    )
}

/// Starts ChromeDriver on a free loopback port and waits until it listens.
pub async fn start_chromedriver(
    ctx: &PartContext,
    display: &str,
    pulse_server: Option<&str>,
    pulse_sink: Option<&str>,
) -> Result<(SlotProcess, u16), StartError> {
    let port = free_port().map_err(|e| StartError::new("chromedriver", e))?;
    let home = ctx.dir.join("home");
    let tmp = ctx.dir.join("tmp");
    for d in [&home, &tmp] {
        std::fs::create_dir_all(d).map_err(|e| StartError::new("chromedriver", e))?;
    }
    let mut cmd = Command::new(&ctx.bins.chromedriver);
    cmd.arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .env("DISPLAY", display)
        .env("HOME", &home)
        .env("TMPDIR", &tmp);
    if let (Some(server), Some(sink)) = (pulse_server, pulse_sink) {
        cmd.env("PULSE_SERVER", server).env("PULSE_SINK", sink);
    }
    let spawned = ctx
        .spawn("chromedriver", cmd, "chromedriver", false, false)
        .map_err(|e| StartError::new("chromedriver", e))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if tokio::time::Instant::now() > deadline {
            return Err(StartError::msg(
                "chromedriver",
                "did not listen within 10 s (see chromedriver.log)",
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((spawned.process, port))
}

fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Opens a Chromium session and loads the page. A page that does not load
/// (network error, HTTP error page) is a start failure with the reason.
pub async fn open_page(ctx: &PartContext, port: u16) -> Result<WebDriver, StartError> {
    let driver = open_session(ctx, port).await?;
    load_page(ctx, driver).await
}

/// Starts Chromium through ChromeDriver with a fresh profile in the part's
/// directory; it shows a blank page until [`load_page`]. A ready slot of
/// the warm pool waits here.
pub async fn open_session(ctx: &PartContext, port: u16) -> Result<WebDriver, StartError> {
    let profile = ctx.dir.join("profile");
    std::fs::create_dir_all(&profile).map_err(|e| StartError::new("chromium", e))?;
    let mut caps = DesiredCapabilities::chrome();
    let wd = |e: WebDriverError| StartError::msg("chromium", e.to_string());
    caps.set_binary(&ctx.bins.chromium.display().to_string())
        .map_err(wd)?;
    for arg in chromium_args(ctx, &profile) {
        caps.add_arg(&arg).map_err(wd)?;
    }
    // No "controlled by automated software" bar in the picture.
    caps.add_exclude_switch("enable-automation").map_err(wd)?;
    WebDriver::new(format!("http://127.0.0.1:{port}"), caps)
        .await
        .map_err(|e| StartError::msg("chromium", format!("no browser session: {e}")))
}

/// Loads the recording's page in an open session (closing the session if
/// it does not load).
pub async fn load_page(ctx: &PartContext, driver: WebDriver) -> Result<WebDriver, StartError> {
    // The console hook before any script of the page runs. Without it the
    // probe installs it a second or so later, missing what came first.
    let hook = serde_json::json!({ "source": format!("{CONSOLE_HOOK_INSTALL}\n{}", track_install(&ctx.spec)) });
    if let Err(e) = driver
        .cdp()
        .send_raw("Page.addScriptToEvaluateOnNewDocument", hook)
        .await
    {
        tracing::warn!(error = %e, "the page's console is watched from the first probe on only");
    }
    let load = async {
        driver.set_page_load_timeout(ctx.timeouts.page_load).await?;
        let t = std::time::Instant::now();
        driver.goto(ctx.spec.url.as_str()).await?;
        tracing::debug!(load_ms = t.elapsed().as_millis() as u64, "page loaded");
        Ok::<_, WebDriverError>(())
    };
    match load.await {
        Ok(_) => match load_failure(&driver).await {
            None => Ok(driver),
            Some(why) => {
                let _ = driver.quit().await;
                // Chromium's error page (a refused CONNECT) or the
                // proxy's own 403 are the policy's doing; another HTTP
                // status is the site's.
                let why = match ctx.egress.blocked_reason() {
                    Some(b) if !why.starts_with("HTTP status") || why == "HTTP status 403" => b,
                    _ => why,
                };
                Err(StartError::page(format!(
                    "{} did not load: {why}",
                    ctx.spec.url
                )))
            }
        },
        Err(e) => {
            let _ = driver.quit().await;
            let why = ctx
                .egress
                .blocked_reason()
                .unwrap_or_else(|| first_line(&e.to_string()).to_string());
            Err(StartError::page(format!(
                "{} did not load: {why}",
                ctx.spec.url
            )))
        }
    }
}

/// Chromium "loads" a page that failed too: it shows its own error page
/// under the page's URL. Ask the document what it is.
async fn load_failure(driver: &WebDriver) -> Option<String> {
    const SCRIPT: &str = r#"
        const nav = performance.getEntriesByType('navigation')[0];
        const err = document.querySelector('#main-frame-error, body.neterror');
        const code = document.querySelector('.error-code');
        return {
            status: nav && typeof nav.responseStatus === 'number' ? nav.responseStatus : null,
            neterror: !!err,
            code: code ? code.textContent.trim() : null,
        };"#;
    #[derive(Deserialize)]
    struct Load {
        status: Option<u32>,
        neterror: bool,
        code: Option<String>,
    }
    let load: Load = driver
        .execute(SCRIPT, Vec::new())
        .await
        .ok()?
        .convert()
        .ok()?;
    if load.neterror {
        return Some(
            load.code
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| "network error".into()),
        );
    }
    match load.status {
        Some(status) if status >= 400 => Some(format!("HTTP status {status}")),
        _ => None,
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

#[derive(Deserialize)]
struct Probe {
    /// Null when the page's side of the track is not there (a page that
    /// broke it breaks only its own track, not the probe).
    #[serde(default)]
    track: Option<PageDrain>,
    ended: bool,
    participants: Option<i64>,
    #[serde(default)]
    href: String,
    #[serde(default)]
    error_page: bool,
    #[serde(default)]
    console: Vec<String>,
}

/// Keeps the page's console messages and uncaught errors in a bounded
/// buffer that each probe empties into the part's `page.log`. Given to
/// Chromium before the page loads (DevTools'
/// `Page.addScriptToEvaluateOnNewDocument`, so that it runs before any
/// script of the page, and again in every document it navigates to), and
/// at the start of each probe in case that failed.
const CONSOLE_HOOK_INSTALL: &str = r#"
    if (!window.__recfleetConsole) {
        const buf = []; buf.dropped = 0;
        window.__recfleetConsole = buf;
        const text = (args) => Array.from(args).map((a) => {
            if (typeof a === 'string') return a;
            try { return JSON.stringify(a); } catch (e) { return String(a); }
        }).join(' ').slice(0, 2000);
        const push = (level, args) => {
            if (buf.length < 500) buf.push(level + ': ' + text(args)); else buf.dropped++;
        };
        for (const level of ['log', 'info', 'warn', 'error', 'debug']) {
            const orig = console[level];
            console[level] = function () { push(level, arguments); return orig.apply(console, arguments); };
        }
        window.addEventListener('error', (e) => push('uncaught', [e.message + ' at ' + e.filename + ':' + e.lineno]));
        window.addEventListener('unhandledrejection', (e) => push('unhandled rejection', [String(e.reason)]));
    }
"#;

/// The probe's first half: what the hook kept since the last probe.
const CONSOLE_HOOK: &str = r#"
    const buf = window.__recfleetConsole;
    const console_lines = buf.splice(0);
    if (buf.dropped) { console_lines.push('recfleet: ' + buf.dropped + ' console messages dropped (more than 500 a second)'); buf.dropped = 0; }
"#;

/// The page's side of the event track (assets/events.js) with this
/// recording's settings: given before the page loads, and again by each
/// probe in case that failed (it installs itself once per document).
pub fn track_install(spec: &RecordingSpec) -> String {
    use recfleet_protocol::events::{BURST, DATA_MAX, RATE_PER_SEC};
    let config = serde_json::json!({
        "watch": spec.events.watch_text,
        "rate": RATE_PER_SEC,
        "burst": BURST,
        "dataMax": DATA_MAX,
        "maxEvents": 2000,
        "maxBytes": 1024 * 1024,
    });
    format!("(function (RECFLEET_CONFIG) {{\n{TRACK_JS}\n}})({config});")
}

const TRACK_JS: &str = include_str!("../../assets/events.js");

/// The script asking the page for its end signal and participant count,
/// and draining its event track.
fn probe_script(signal: Option<&PageSignal>, track: &str) -> String {
    let ended = match signal {
        Some(PageSignal::Variable(path)) => {
            // A dotted path, validated by the spec: safe to splice.
            let mut expr = String::from("window");
            let mut guard = String::new();
            for part in path.split('.') {
                expr.push('.');
                expr.push_str(part);
                guard.push_str(&format!("{expr} && "));
            }
            format!("!!({guard}true)")
        }
        Some(PageSignal::Selector(sel)) => {
            let quoted = serde_json::to_string(sel).unwrap_or_else(|_| "\"\"".into());
            format!("!!document.querySelector({quoted})")
        }
        None => "false".into(),
    };
    format!(
        "{CONSOLE_HOOK_INSTALL}\n{CONSOLE_HOOK}\n try {{ {track} }} catch (e) {{}}\n let track = null; try {{ track = window.__recfleetTrack ? window.__recfleetTrack.drain() : null; }} catch (e) {{}}\n return {{ track, ended: {ended}, participants: (typeof window.recfleetParticipants === 'number') ? window.recfleetParticipants : null, \
         href: String(location.href), error_page: !!document.querySelector('#main-frame-error, body.neterror'), console: console_lines }};"
    )
}

/// Asks the page about itself every `every` until the receiver goes away.
pub fn spawn_page_watch(
    driver: WebDriver,
    signal: Option<PageSignal>,
    track: String,
    every: Duration,
    answer_within: Duration,
) -> (
    mpsc::Receiver<PageStatus>,
    tokio::task::JoinHandle<WebDriver>,
) {
    let (tx, rx) = mpsc::channel(4);
    let script = probe_script(signal.as_ref(), &track);
    let handle = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let status = match tokio::time::timeout(
                answer_within,
                driver.execute(script.as_str(), Vec::new()),
            )
            .await
            {
                Err(_) => PageStatus::NoAnswer(format!(
                    "no answer within {} ms",
                    answer_within.as_millis()
                )),
                Ok(Ok(ret)) => match ret.convert::<Probe>() {
                    Ok(p) => PageStatus::Alive {
                        ended: p.ended,
                        participants: p.participants,
                        location: PageLocation {
                            href: p.href,
                            error_page: p.error_page,
                        },
                        console: p.console,
                        track: p.track.unwrap_or_default(),
                    },
                    Err(e) => PageStatus::NoAnswer(e.to_string()),
                },
                Ok(Err(e)) => classify(&e.to_string()),
            };
            if tx.send(status).await.is_err() {
                break;
            }
        }
        driver
    });
    (rx, handle)
}

/// Tells a dead browser from a crashed page from a slow page by
/// ChromeDriver's error text.
fn classify(error: &str) -> PageStatus {
    let lower = error.to_lowercase();
    // ChromeDriver: "tab crashed", "session deleted because of page crash".
    if lower.contains("tab crashed") || lower.contains("page crash") {
        return PageStatus::Crashed(first_line(error).to_string());
    }
    let gone = [
        "invalid session id",
        "session deleted",
        "not reachable",
        "disconnected",
        "no such window",
        "connection refused",
        "target window already closed",
    ];
    if gone.iter().any(|g| lower.contains(g)) {
        PageStatus::BrowserGone(first_line(error).to_string())
    } else {
        PageStatus::NoAnswer(first_line(error).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_whose_track_is_broken_still_answers_the_probe() {
        let p: Probe = serde_json::from_value(serde_json::json!({
            "track": null, "ended": false, "participants": null, "href": "https://x/"
        }))
        .unwrap();
        assert!(p.track.is_none());
        // The track's install and drain are guarded: a page that makes
        // them throw does not make the probe throw.
        let s = probe_script(None, "INSTALL");
        assert!(s.contains("try { INSTALL } catch (e) {}"), "{s}");
        assert!(s.contains("try { track = window.__recfleetTrack"), "{s}");
    }

    #[test]
    fn probe_guards_every_step_of_a_path() {
        let s = probe_script(Some(&PageSignal::Variable("app.state.ended".into())), "");
        assert!(
            s.contains("!!(window.app && window.app.state && window.app.state.ended && true)"),
            "{s}"
        );
        let s = probe_script(Some(&PageSignal::Selector("#end \"x\"".into())), "");
        assert!(
            s.contains(r##"document.querySelector("#end \"x\"")"##),
            "{s}"
        );
    }

    #[test]
    fn a_page_on_another_site_or_an_error_page_is_not_the_page_asked_for() {
        let at = |href: &str, error_page| PageLocation {
            href: href.into(),
            error_page,
        };
        let asked = "https://class.example/room/1?x=2";
        assert_eq!(
            at("https://class.example/room/1/slide/3", false).problem(asked),
            None
        );
        assert!(at("https://evil.example/", false).problem(asked).is_some());
        assert!(at("http://class.example/room/1", false)
            .problem(asked)
            .is_some());
        assert!(at("https://class.example/room/1", true)
            .problem(asked)
            .is_some());
    }

    #[test]
    fn dead_browsers_are_told_from_slow_pages() {
        assert!(matches!(
            classify("invalid session id: session deleted"),
            PageStatus::BrowserGone(_)
        ));
        assert!(matches!(
            classify("chrome not reachable"),
            PageStatus::BrowserGone(_)
        ));
        assert!(matches!(
            classify("script timeout"),
            PageStatus::NoAnswer(_)
        ));
        assert!(matches!(
            classify("unknown error: session deleted because of page crash"),
            PageStatus::Crashed(_)
        ));
        assert!(matches!(
            classify("tab crashed\n  (Session info: chrome=120)"),
            PageStatus::Crashed(_)
        ));
    }
}
