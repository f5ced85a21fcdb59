//! The TUI's model: the fleet [`State`] (changed by the connection only) and
//! the [`Ui`] (changed by keys only). Keys may produce a [`Command`] for the
//! main loop to carry out.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use recfleet_protocol::{ConsoleRequest, RecordingId, WorkerState};

use super::dialog::{Action, Dialog};
use super::rows;
use super::state::{ConnEvent, Readonly, State};
use super::ui::{Filter, Mode, Overlay, SortKey, Ui, View};

/// What the main loop should do after a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Send an action to the coordinator.
    Send {
        /// What it is, for the result line ("drain w1").
        what: String,
        /// The request (boxed: a recording's spec is large).
        request: Box<ConsoleRequest>,
    },
    /// Fetch a recording's detail for the detail pane.
    Show(RecordingId),
    /// Fetch what `describe` shows of a recording.
    Describe(RecordingId),
    /// Follow a recording's logs (stopping any other).
    FollowLogs(RecordingId),
    /// Stop following logs.
    StopLogs,
    /// Leave the TUI.
    Quit,
}

/// State and UI together.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    /// The fleet and the connection.
    pub state: State,
    /// What the person is doing.
    pub ui: Ui,
    /// A one-line message for the person (unknown command, read-only...).
    pub hint: Option<String>,
}

/// Why actions are hidden, in words.
pub fn readonly_reason(r: Readonly) -> &'static str {
    match r {
        Readonly::Flag => "read-only: started with --readonly",
        Readonly::Role => "read-only: this certificate is a viewer's (actions need an operator)",
    }
}

impl App {
    /// A new app on `state`.
    pub fn new(state: State) -> App {
        App {
            state,
            ui: Ui::default(),
            hint: None,
        }
    }

    /// A connection event: the state changes, nothing else.
    pub fn on_conn(&mut self, ev: ConnEvent) {
        self.state.update(ev);
    }

    /// A key.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Command> {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Some(Command::Quit);
        }
        self.hint = None;
        if self.ui.overlay.is_some() && self.ui.mode == Mode::Normal {
            return self.overlay_key(key);
        }
        match std::mem::replace(&mut self.ui.mode, Mode::Normal) {
            Mode::Normal => self.normal_key(key),
            Mode::Help => {
                if !matches!(
                    key.code,
                    KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q')
                ) {
                    self.ui.mode = Mode::Help;
                }
                None
            }
            Mode::Command(buf) => self.command_key(key, buf),
            Mode::Filter(buf) => {
                self.filter_key(key, buf);
                None
            }
            Mode::Dialog(d) => self.dialog_key(key, d),
        }
    }

    fn normal_key(&mut self, key: KeyEvent) -> Option<Command> {
        let rows = rows::count(&self.state, &self.ui);
        let sel = rows::selected(&self.state, &self.ui);
        match key.code {
            KeyCode::Char('q') => return Some(Command::Quit),
            KeyCode::Char('?') => self.ui.mode = Mode::Help,
            KeyCode::Char(':') => self.ui.mode = Mode::Command(String::new()),
            KeyCode::Char('/') => self.ui.mode = Mode::Filter(String::new()),
            KeyCode::Esc => self.back(),
            KeyCode::Tab => {
                let next = self.ui.view.next();
                self.ui.switch(next);
            }
            KeyCode::Down | KeyCode::Char('j') => self.select(sel.saturating_add(1), rows),
            KeyCode::Up | KeyCode::Char('k') => self.select(sel.saturating_sub(1), rows),
            KeyCode::PageDown => self.select(sel.saturating_add(10), rows),
            KeyCode::PageUp => self.select(sel.saturating_sub(10), rows),
            KeyCode::Home | KeyCode::Char('g') => self.select(0, rows),
            KeyCode::End | KeyCode::Char('G') => self.select(rows.saturating_sub(1), rows),
            KeyCode::Char('N') => self.sort_by(SortKey::Name),
            KeyCode::Char('S') => self.sort_by(SortKey::State),
            KeyCode::Char('A') => self.sort_by(SortKey::Age),
            KeyCode::Char(c @ ('>' | '<')) if !self.ui.cycle_sort(c == '>') => self.no_sort(),
            KeyCode::Char('R') => self.ui.reverse_sort(),
            KeyCode::Char('a') if self.ui.view == View::Recordings => {
                self.ui.all_recordings = !self.ui.all_recordings;
                self.ui.current_mut().selected = 0;
            }
            KeyCode::Enter => {
                self.ui.detail = true;
                if let Some(r) = rows::selected_recording(&self.state, &self.ui) {
                    return Some(Command::Show(r.id.clone()));
                }
            }
            // Looking needs no operator role: describe and logs first.
            KeyCode::Char(c @ ('d' | 'l')) if self.ui.view == View::Recordings => {
                let Some(r) = rows::selected_recording(&self.state, &self.ui) else {
                    self.hint = Some("no recording selected".into());
                    return None;
                };
                let id = r.id.clone();
                self.ui.overlay_scroll = 0;
                if c == 'd' {
                    self.ui.overlay = Some(Overlay::Describe(id.clone()));
                    return Some(Command::Describe(id));
                }
                self.ui.overlay = Some(Overlay::Logs(id.clone()));
                self.state.log = crate::tui::state::FollowedLog {
                    id: Some(id.clone()),
                    ..Default::default()
                };
                return Some(Command::FollowLogs(id));
            }
            KeyCode::Char(c @ ('d' | 'u' | 'x' | 'r' | 'n')) => self.open_action(c),
            _ => {}
        }
        None
    }

    /// What to fetch again on the clock: the detail pane's picture and
    /// latest events of a running recording, the describe page.
    pub fn refreshes(&self) -> Vec<super::conn::ToConn> {
        use super::conn::ToConn;
        let mut out = Vec::new();
        if let Some(Overlay::Describe(id)) = &self.ui.overlay {
            out.push(ToConn::Describe(id.clone()));
        }
        if self.ui.detail && self.ui.overlay.is_none() {
            if let Some(r) = rows::selected_recording(&self.state, &self.ui) {
                if r.state.holds_capacity() {
                    out.push(ToConn::Thumbnail(r.id.clone()));
                    out.push(ToConn::Events(r.id.clone()));
                }
            }
        }
        out
    }

    /// Keys while describe or logs are shown: esc or q closes, arrows and
    /// page keys scroll.
    fn overlay_key(&mut self, key: KeyEvent) -> Option<Command> {
        match key.code {
            KeyCode::Esc | KeyCode::Char('q') => {
                let was_logs = matches!(self.ui.overlay, Some(Overlay::Logs(_)));
                self.ui.overlay = None;
                self.ui.overlay_scroll = 0;
                if was_logs {
                    return Some(Command::StopLogs);
                }
            }
            // Logs scroll back from the newest line, describe down from
            // its top: ↑ always shows what is above.
            KeyCode::Up | KeyCode::Char('k') => self.scroll_overlay(-1),
            KeyCode::Down | KeyCode::Char('j') => self.scroll_overlay(1),
            KeyCode::PageUp => self.scroll_overlay(-20),
            KeyCode::PageDown => self.scroll_overlay(20),
            KeyCode::Home | KeyCode::End | KeyCode::Char('g' | 'G') => self.ui.overlay_scroll = 0,
            _ => {}
        }
        None
    }

    /// Moves the overlay's text by `down` lines (negative: up).
    fn scroll_overlay(&mut self, down: i32) {
        let away = match self.ui.overlay {
            Some(Overlay::Logs(_)) => -down,
            _ => down,
        };
        let s = self.ui.overlay_scroll as i64 + i64::from(away);
        self.ui.overlay_scroll = s.max(0) as usize;
    }

    fn sort_by(&mut self, key: SortKey) {
        if !self.ui.sort_by(key) {
            self.no_sort();
        }
    }

    fn no_sort(&mut self) {
        self.hint = Some(format!(
            "the {} view keeps the coordinator's order",
            self.ui.view.name()
        ));
    }

    fn select(&mut self, index: usize, rows: usize) {
        self.ui.current_mut().selected = index.min(rows.saturating_sub(1));
    }

    /// `esc`: close the detail pane, else clear the filter, else go back.
    fn back(&mut self) {
        if self.ui.detail {
            self.ui.detail = false;
        } else if !self.ui.filter.is_empty() {
            self.ui.filter = Filter::default();
        } else if let Some(prev) = self.ui.history.pop() {
            self.ui.view = prev;
        }
    }

    fn open_action(&mut self, key: char) {
        if let Some(r) = self.state.readonly() {
            self.hint = Some(readonly_reason(r).to_string());
            return;
        }
        let action = match (self.ui.view, key) {
            (_, 'n') => Some(Action::Start),
            (View::Workers, 'd') => {
                rows::selected_worker(&self.state, &self.ui).map(|w| Action::Drain {
                    worker: w.name.clone(),
                    recordings: w.recordings.len(),
                })
            }
            (View::Workers, 'u') => rows::selected_worker(&self.state, &self.ui)
                .map(|w| Action::Undrain(w.name.clone())),
            (View::Recordings, 'x') => {
                rows::selected_recording(&self.state, &self.ui).map(|r| Action::Stop(r.id.clone()))
            }
            (View::Recordings, 'r') => {
                rows::selected_recording(&self.state, &self.ui).map(|r| Action::Reassign {
                    id: r.id.clone(),
                    from: r.worker.clone(),
                })
            }
            _ => {
                self.hint = Some(format!(
                    "'{key}' does nothing in the {} view (? for keys)",
                    self.ui.view.name()
                ));
                return;
            }
        };
        match action {
            Some(a) => {
                let ready: Vec<_> = self
                    .state
                    .workers
                    .values()
                    .filter(|w| w.state == WorkerState::Ready)
                    .map(|w| w.name.clone())
                    .collect();
                self.ui.mode = Mode::Dialog(Dialog::new(a, &ready));
            }
            None => self.hint = Some("nothing selected".to_string()),
        }
    }

    fn command_key(&mut self, key: KeyEvent, mut buf: String) -> Option<Command> {
        match key.code {
            KeyCode::Esc => {}
            KeyCode::Enter => {
                let cmd = buf.trim();
                match cmd {
                    "q" | "quit" | "q!" => return Some(Command::Quit),
                    "help" | "?" => self.ui.mode = Mode::Help,
                    _ => match View::parse(cmd) {
                        Some(v) => self.ui.switch(v),
                        None => {
                            self.hint = Some(format!(
                            "unknown command \"{cmd}\": try :workers, :recordings, :events, :quit"
                        ))
                        }
                    },
                }
            }
            KeyCode::Backspace => {
                if buf.pop().is_some() {
                    self.ui.mode = Mode::Command(buf);
                }
            }
            KeyCode::Char(c) => {
                buf.push(c);
                self.ui.mode = Mode::Command(buf);
            }
            _ => self.ui.mode = Mode::Command(buf),
        }
        None
    }

    /// Filters as the person types; `enter` keeps it, `esc` clears it.
    fn filter_key(&mut self, key: KeyEvent, mut buf: String) {
        match key.code {
            KeyCode::Esc => self.ui.filter = Filter::default(),
            KeyCode::Enter => self.ui.filter = Filter::parse(&buf),
            KeyCode::Backspace => {
                buf.pop();
                self.ui.filter = Filter::parse(&buf);
                self.ui.mode = Mode::Filter(buf);
            }
            KeyCode::Char(c) => {
                buf.push(c);
                self.ui.filter = Filter::parse(&buf);
                self.ui.mode = Mode::Filter(buf);
            }
            _ => self.ui.mode = Mode::Filter(buf),
        }
        self.ui.current_mut().selected = 0;
    }

    fn dialog_key(&mut self, key: KeyEvent, mut d: Dialog) -> Option<Command> {
        match key.code {
            KeyCode::Esc => {
                self.hint = Some("cancelled: nothing was done".to_string());
                return None;
            }
            KeyCode::Enter => match d.request() {
                Ok(request) => {
                    return Some(Command::Send {
                        what: d.what(),
                        request: Box::new(request),
                    })
                }
                Err(e) => d.error = Some(e),
            },
            KeyCode::Tab | KeyCode::Down => d.next_field(),
            KeyCode::Left => d.cycle(false),
            KeyCode::Right => d.cycle(true),
            KeyCode::Backspace => d.backspace(),
            KeyCode::Char(c) => d.type_char(c),
            _ => {}
        }
        self.ui.mode = Mode::Dialog(d);
        None
    }
}
