//! The pages shown over the views: a recording's describe text and its
//! followed logs. Describe reads from the top; logs keep the newest line
//! at the bottom. `overlay_scroll` counts lines away from there.

use ratatui::layout::Rect;
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

use crate::tui::app::App;
use crate::tui::ui::Overlay;

/// Draws `o` over `area`.
pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &App, o: &Overlay) {
    let (title, lines): (String, Vec<String>) = match o {
        Overlay::Describe(id) => {
            let text = match &app.state.described {
                Some((d, text)) if d == id => text.clone(),
                _ => "loading...".to_string(),
            };
            (
                format!(" describe {id} (refreshed every 2 s; esc: close) "),
                text.lines().map(str::to_string).collect(),
            )
        }
        Overlay::Logs(id) => {
            let log = &app.state.log;
            let mut lines: Vec<String> = log.lines.iter().cloned().collect();
            match &log.ended {
                Some(why) => lines.push(format!("-- {why}")),
                None if lines.is_empty() => lines.push("waiting for lines...".into()),
                None => {}
            }
            (
                format!(" logs {id} (following; ↑↓ scroll, esc: close) "),
                lines,
            )
        }
    };
    let block = Block::new().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    let rows = usize::from(inner.height);
    let scroll = app.ui.overlay_scroll.min(lines.len());
    let (start, end) = match o {
        // From the top, `overlay_scroll` lines down.
        Overlay::Describe(_) => (scroll, (scroll + rows).min(lines.len())),
        // The newest at the bottom, `overlay_scroll` lines back.
        Overlay::Logs(_) => {
            let end = lines.len() - scroll;
            (end.saturating_sub(rows), end)
        }
    };
    let shown = lines[start..end].join("\n");
    frame.render_widget(Paragraph::new(shown).block(block), area);
}
