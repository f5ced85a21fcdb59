//! Drawing: reads the [`App`], changes nothing. One frame = header, an
//! optional banner, the view (and detail pane), the status bar and the
//! command line; help and dialogs draw on top.

mod bars;
mod detail;
mod overlay;
mod picture;
mod popup;
mod tables;

pub use bars::connection_text;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::Frame;

use super::app::App;
use super::state::ConnStatus;
use super::ui::Mode;

/// Draws the whole screen.
pub fn draw(frame: &mut Frame<'_>, app: &App) {
    let area = frame.area();
    let banner = !matches!(app.state.connection, ConnStatus::Connected { .. });
    let [header, banner_area, main, status, line] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(u16::from(banner)),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    bars::header(frame, header, app);
    if banner {
        bars::banner(frame, banner_area, app);
    }
    if let Some(o) = &app.ui.overlay {
        overlay::draw(frame, main, app, o);
    } else if app.ui.detail {
        let [table, pane] =
            Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)])
                .areas(main);
        tables::draw(frame, table, app);
        detail::draw(frame, pane, app);
    } else {
        tables::draw(frame, main, app);
    }
    bars::status(frame, status, app);
    bars::command_line(frame, line, app);
    match &app.ui.mode {
        Mode::Help => popup::help(frame, area, app),
        Mode::Dialog(d) => popup::dialog(frame, area, d),
        _ => {}
    }
}

/// A rectangle of at most `w` x `h` centred in `area`.
pub(crate) fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}
