//! The TUI: `run` sets up the terminal and the tasks; [`run_loop`] is the
//! one `select!` over keys, connection events and the clock, generic over
//! the ratatui backend so that tests drive it on a `TestBackend`.

pub mod app;
pub mod conn;
pub mod dialog;
pub mod picture;
pub mod rows;
pub mod state;
pub mod ui;
pub mod view;

use std::future::Future;
use std::time::Duration;

use ratatui::backend::Backend;
use ratatui::crossterm::event::{self, Event as TermEvent, KeyEvent, KeyEventKind};
use ratatui::Terminal;
use recfleet_protocol::now_ms;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

use self::app::{App, Command};
use self::conn::ToConn;
use self::state::{ConnEvent, State};
use crate::cli::ConnArgs;
use crate::context;
use crate::error::ConsoleError;

/// Terminal input the loop cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A key press.
    Key(KeyEvent),
    /// The terminal was resized.
    Resize,
}

/// Opens the TUI until the person quits or SIGTERM/SIGHUP arrives.
pub async fn run(conn: &ConnArgs, readonly: bool) -> Result<(), ConsoleError> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(ConsoleError::Invalid(
            "the TUI needs a terminal: run a command instead, such as `recfleet workers` \
             or `recfleet watch` (see `recfleet --help`)"
                .to_string(),
        ));
    }
    let ctx = context::resolve(&conn.overrides())?;
    // Bad certificates are a configuration error: say so before the screen
    // is taken over, not as an endless reconnect.
    let client = recfleet_client::Client::from_context(&ctx)?;
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (key_tx, key_rx) = mpsc::unbounded_channel();
    let app = App::new(State::new(ctx.coordinator.clone(), readonly, now_ms()));
    tokio::spawn(conn::run(client, ev_tx, cmd_rx));
    std::thread::spawn(move || read_input(key_tx));
    // `try_init` enters raw mode and the alternate screen and installs a
    // panic hook that restores the terminal before the panic message.
    let mut terminal = ratatui::try_init()?;
    let _restore = RestoreOnDrop;
    run_loop(&mut terminal, app, ev_rx, key_rx, cmd_tx, shutdown_signal()).await
}

/// Restores the terminal on every way out of `run` (errors included).
struct RestoreOnDrop;

impl Drop for RestoreOnDrop {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Resolves on SIGTERM or SIGHUP (a closed terminal, `kill`, a pod stop).
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = hup.recv() => {}
    }
}

/// Reads terminal events on a thread of its own (crossterm reads block).
fn read_input(keys: UnboundedSender<Input>) {
    loop {
        match event::poll(Duration::from_millis(250)) {
            Ok(true) => {}
            Ok(false) => {
                if keys.is_closed() {
                    return;
                }
                continue;
            }
            Err(_) => return,
        }
        let input = match event::read() {
            Ok(TermEvent::Key(k)) if k.kind != KeyEventKind::Release => Input::Key(k),
            Ok(TermEvent::Resize(..)) => Input::Resize,
            Ok(_) => continue,
            Err(_) => return,
        };
        if keys.send(input).is_err() {
            return;
        }
    }
}

/// The main loop: draw, then wait for a key, a connection event, a clock
/// tick or `shutdown`. Returns when the person quits, `shutdown` resolves,
/// or the key channel closes.
pub async fn run_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    mut app: App,
    mut events: UnboundedReceiver<ConnEvent>,
    mut keys: UnboundedReceiver<Input>,
    cmds: UnboundedSender<ToConn>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ConsoleError>
where
    B::Error: std::fmt::Display,
{
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut ticks = 0u64;
    loop {
        terminal
            .draw(|f| view::draw(f, &app))
            .map_err(|e| ConsoleError::Terminal(e.to_string()))?;
        // Biased: a signal first, then what the connection says (so a key
        // acts on the newest state), then keys, then the clock.
        tokio::select! {
            biased;
            () = &mut shutdown => return Ok(()),
            ev = events.recv() => match ev {
                Some(ev) => app.on_conn(ev),
                None => return Err(ConsoleError::Unexpected("the connection task stopped".into())),
            },
            input = keys.recv() => match input {
                None => return Ok(()),
                Some(Input::Resize) => {
                    terminal.autoresize().map_err(|e| ConsoleError::Terminal(e.to_string()))?;
                }
                Some(Input::Key(k)) => match app.on_key(k) {
                    None => {}
                    Some(Command::Quit) => return Ok(()),
                    Some(Command::Send { what, request }) => {
                        let _ = cmds.send(ToConn::Send { what, request });
                    }
                    Some(Command::Show(id)) => {
                        let _ = cmds.send(ToConn::Thumbnail(id.clone()));
                        let _ = cmds.send(ToConn::Events(id.clone()));
                        let _ = cmds.send(ToConn::Show(id));
                    }
                    Some(Command::Describe(id)) => {
                        let _ = cmds.send(ToConn::Describe(id));
                    }
                    Some(Command::FollowLogs(id)) => {
                        let _ = cmds.send(ToConn::FollowLogs(id));
                    }
                    Some(Command::StopLogs) => {
                        let _ = cmds.send(ToConn::StopLogs);
                    }
                },
            },
            _ = tick.tick() => {
                app.on_conn(ConnEvent::Tick(now_ms()));
                if app.ui.view == ui::View::Coordinators {
                    let _ = cmds.send(ToConn::Coordinators);
                }
                // Every 2 s: the open detail pane's picture (the worker
                // writes one every 2 s) and the open describe page.
                ticks += 1;
                if ticks.is_multiple_of(2) {
                    for cmd in app.refreshes() {
                        let _ = cmds.send(cmd);
                    }
                }
            }
        }
    }
}
