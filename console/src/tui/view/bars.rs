//! The header (connection), the reconnect banner, the status bar (fleet
//! totals) and the command line.

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::tui::app::{readonly_reason, App};
use crate::tui::state::ConnStatus;
use crate::tui::ui::Mode;

fn secs_until(at: u64, now: u64) -> u64 {
    at.saturating_sub(now).div_ceil(1000)
}

/// The connection in words, and its colour.
pub fn connection_text(c: &ConnStatus, now: u64) -> (String, Color) {
    match c {
        ConnStatus::Connecting { addr } => (format!("connecting to {addr}..."), Color::Yellow),
        ConnStatus::Connected { addr, role, name } => (
            format!("connected to {addr} as {role}/{name}"),
            Color::Green,
        ),
        ConnStatus::Reconnecting { at, reason, .. } => {
            let when = match secs_until(*at, now) {
                0 => "now".to_string(),
                s => format!("in {s}s"),
            };
            (format!("reconnecting {when} ({reason})"), Color::Yellow)
        }
        ConnStatus::Refused { reason, at, .. } => {
            let retry = if *at > now {
                format!(" (retry in {}s)", secs_until(*at, now))
            } else {
                String::new()
            };
            (format!("refused: {reason}{retry}"), Color::Red)
        }
    }
}

/// `recfleet │ connected to ... │ workers │ read-only`
pub fn header(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let (conn, color) = connection_text(&app.state.connection, app.state.now);
    let mut spans = vec![
        Span::styled(" recfleet ", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw("│ "),
        Span::styled(conn, Style::new().fg(color)),
        Span::raw(" │ "),
        Span::styled(
            app.ui.view.name(),
            Style::new().add_modifier(Modifier::BOLD),
        ),
    ];
    if app.state.readonly().is_some() {
        spans.push(Span::raw(" │ "));
        spans.push(Span::styled("READ-ONLY", Style::new().fg(Color::Magenta)));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// Shown while not connected: the data on screen is stale.
pub fn banner(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let (conn, color) = connection_text(&app.state.connection, app.state.now);
    let text = format!(" ⚠ {conn}; what is shown may be out of date ");
    let style = Style::new()
        .fg(Color::Black)
        .bg(color)
        .add_modifier(Modifier::BOLD);
    frame.render_widget(Paragraph::new(text).style(style), area);
}

/// Fleet totals.
pub fn status(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let t = app.state.totals();
    let mut recs: Vec<String> = t.by_state.iter().map(|(s, n)| format!("{n} {s}")).collect();
    if recs.is_empty() {
        recs.push("none".to_string());
    }
    let text = format!(
        " workers: {} ready, {} draining, {} lost │ recordings: {} │ free capacity: {}",
        t.ready,
        t.draining,
        t.lost,
        recs.join(", "),
        t.free
    );
    let style = Style::new().bg(Color::DarkGray).fg(Color::White);
    frame.render_widget(Paragraph::new(text).style(style), area);
}

/// The `:` or `/` prompt, else the last message, else key hints.
pub fn command_line(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let line = match &app.ui.mode {
        Mode::Command(buf) => Line::from(format!(":{buf}█")),
        Mode::Filter(buf) => Line::from(format!("/{buf}█")),
        _ => {
            if let Some(h) = &app.hint {
                Line::styled(h.clone(), Style::new().fg(Color::Yellow))
            } else if let Some(f) = &app.state.flash {
                let color = if f.ok { Color::Green } else { Color::Red };
                Line::styled(f.text.clone(), Style::new().fg(color))
            } else {
                Line::from(key_hints(app))
            }
        }
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn key_hints(app: &App) -> String {
    use crate::tui::ui::View;
    let actions = match (app.state.readonly(), app.ui.view) {
        (Some(r), View::Recordings) => format!("  d describe  l logs  │ {}", readonly_reason(r)),
        (Some(r), _) => format!("  │ {}", readonly_reason(r)),
        (None, View::Workers) => "  d drain  u undrain  n new".to_string(),
        (None, View::Recordings) => "  d describe  l logs  x stop  r reassign  n new".to_string(),
        (None, View::Events | View::Coordinators) => "  n new".to_string(),
    };
    format!("? help  : view  / filter  enter detail  q quit{actions}")
}
