//! Help and action dialogs, drawn over the view.

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::centered;
use crate::tui::app::{readonly_reason, App};
use crate::tui::dialog::{Dialog, Value};

/// Every key, by section. The help screen and docs/console.md list these.
pub const KEYS: &[(&str, &[(&str, &str)])] = &[
    (
        "navigation",
        &[
            (
                ":workers :recordings :events",
                "switch view (also :wo :rec :ev)",
            ),
            (":coordinators  :co", "the coordinators: which leads"),
            ("tab", "next view"),
            ("j k ↑ ↓ pgup pgdn g G", "move the selection"),
            (
                "enter",
                "detail pane: a recording's live picture, sound and segments",
            ),
            ("d", "recordings: describe (health, processes, events)"),
            ("l", "recordings: follow the logs of every process"),
            ("esc", "close pane / clear filter / previous view / cancel"),
            ("/text  /!text", "filter rows (inverted with !)"),
            ("N S A", "sort by name, state, age (again: reverse)"),
            ("> <", "sort by the next / previous column"),
            ("R", "reverse the order"),
            ("a", "recordings: all, or hide finished over 1h ago"),
            ("?", "this help"),
            ("q  :q  ctrl-c", "quit"),
        ],
    ),
    (
        "actions (operator)",
        &[
            ("d", "drain the selected worker (mode, deadline, force)"),
            ("u", "undrain the selected worker"),
            ("r", "reassign the selected recording (target or scheduler)"),
            ("x", "stop the selected recording"),
            ("n", "start a recording (url, id, max duration)"),
        ],
    ),
    (
        "in a dialog",
        &[
            ("tab ↓", "next field"),
            ("← → space", "change a choice"),
            ("enter", "confirm"),
            ("esc", "cancel: nothing is done"),
        ],
    ),
];

/// The help screen.
pub fn help(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let mut lines = Vec::new();
    let readonly = app.state.readonly();
    for (section, keys) in KEYS {
        lines.push(Line::styled(section.to_string(), bold));
        if section.starts_with("actions") {
            if let Some(r) = readonly {
                lines.push(Line::styled(
                    format!("  hidden — {}", readonly_reason(r)),
                    Style::new().fg(Color::Magenta),
                ));
                lines.push(Line::raw(""));
                continue;
            }
        }
        for (k, what) in keys.iter() {
            lines.push(Line::from(vec![
                Span::styled(format!("  {k:<30}"), Style::new().fg(Color::Cyan)),
                Span::raw(what.to_string()),
            ]));
        }
        lines.push(Line::raw(""));
    }
    let h = u16::try_from(lines.len() + 2).unwrap_or(u16::MAX);
    let rect = centered(area, 90, h);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::new()
                .borders(Borders::ALL)
                .title(" keys (esc: close) "),
        ),
        rect,
    );
}

/// An action dialog: target, effect, fields, keys.
pub fn dialog(frame: &mut Frame<'_>, area: Rect, d: &Dialog) {
    let mut lines = vec![
        Line::styled(d.title(), Style::new().add_modifier(Modifier::BOLD)),
        Line::raw(""),
        Line::raw(d.effect()),
        Line::raw(""),
    ];
    for (i, f) in d.fields.iter().enumerate() {
        let shown = match &f.value {
            Value::Text(t) => format!("{t}{}", if i == d.focus { "█" } else { "" }),
            Value::Choice { .. } => format!("‹ {} ›", f.shown()),
        };
        let style = if i == d.focus {
            Style::new().add_modifier(Modifier::REVERSED)
        } else {
            Style::new()
        };
        lines.push(Line::from(vec![
            Span::raw(format!("  {:<14}", f.label)),
            Span::styled(shown, style),
        ]));
    }
    if let Some(e) = &d.error {
        lines.push(Line::raw(""));
        lines.push(Line::styled(e.clone(), Style::new().fg(Color::Red)));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        "enter: confirm   esc: cancel   tab: next field   ←/→: change",
        Style::new().fg(Color::DarkGray),
    ));
    let h = u16::try_from(lines.len() + 4).unwrap_or(u16::MAX);
    let rect = centered(area, 76, h);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::new()
                .borders(Borders::ALL)
                .border_style(Style::new().fg(Color::Yellow)),
        ),
        rect,
    );
}
