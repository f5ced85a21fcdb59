//! The workers, recordings, events and coordinators tables.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Block, Borders, Cell, Row, Table, TableState};
use ratatui::Frame;
use recfleet_protocol::{RecordingState, WorkerState};

use crate::cells;
use crate::format;
use crate::tui::app::App;
use crate::tui::rows;
use crate::tui::ui::View;

fn worker_color(s: WorkerState) -> Color {
    match s {
        WorkerState::Ready => Color::Green,
        WorkerState::Draining | WorkerState::Ineligible => Color::Yellow,
        WorkerState::Lost => Color::Red,
        WorkerState::Gone => Color::DarkGray,
    }
}

fn recording_color(s: RecordingState) -> Color {
    match s {
        RecordingState::Recording => Color::Green,
        RecordingState::Completed => Color::Cyan,
        RecordingState::Failed | RecordingState::Interrupted => Color::Red,
        RecordingState::Cancelled => Color::DarkGray,
        _ => Color::Yellow,
    }
}

/// Column widths from the content; the last column takes what is left.
fn widths(headers: &[String], rows: &[Vec<String>]) -> Vec<Constraint> {
    let n = headers.len();
    (0..n)
        .map(|i| {
            if i + 1 == n {
                return Constraint::Min(0);
            }
            let w = rows
                .iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .chain(std::iter::once(headers[i].chars().count()))
                .max()
                .unwrap_or(0);
            Constraint::Length(u16::try_from(w).unwrap_or(u16::MAX))
        })
        .collect()
}

fn arrow(reverse: bool) -> &'static str {
    if reverse {
        "↓"
    } else {
        "↑"
    }
}

fn title(app: &App, count: usize) -> String {
    let vs = app.ui.current();
    let mut t = format!(" {} ({count}) ", app.ui.view.name());
    if app.ui.view != View::Coordinators {
        t.push_str(&format!(
            "sort:{}{} ",
            vs.sort.to_lowercase(),
            arrow(vs.reverse)
        ));
    }
    if !app.ui.filter.is_empty() {
        t.push_str(&format!("{} ", app.ui.filter.label()));
    }
    if app.ui.view == View::Recordings {
        let hidden = rows::hidden_recordings(&app.state, app.ui.all_recordings);
        if hidden > 0 {
            t.push_str(&format!(
                "+{hidden} finished over {} ago (a: show) ",
                humantime::format_duration(crate::finished::DEFAULT_WINDOW)
            ));
        } else if app.ui.all_recordings {
            t.push_str("all (a: recent only) ");
        }
    }
    t
}

/// The header cells, the sort column marked with its direction as k9s does.
fn header_cells(headers: &[&str], app: &App) -> Vec<String> {
    let vs = app.ui.current();
    headers
        .iter()
        .map(|h| {
            if app.ui.view != View::Coordinators && *h == vs.sort {
                format!("{h}{}", arrow(vs.reverse))
            } else {
                h.to_string()
            }
        })
        .collect()
}

/// Draws the current view's table.
pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let state = &app.state;
    let (headers, cells, colors): (&[&str], Vec<Vec<String>>, Vec<Color>) = match app.ui.view {
        View::Workers => {
            let ws = rows::workers(state, app.ui.current(), &app.ui.filter);
            (
                &cells::WORKER_COLUMNS,
                ws.iter()
                    .map(|w| cells::worker_cells(w, state.now))
                    .collect(),
                ws.iter().map(|w| worker_color(w.state)).collect(),
            )
        }
        View::Recordings => {
            let rs = rows::recordings(
                state,
                app.ui.current(),
                &app.ui.filter,
                app.ui.all_recordings,
            );
            (
                &cells::RECORDING_COLUMNS,
                rs.iter()
                    .map(|r| cells::recording_cells(r, state.now))
                    .collect(),
                rs.iter().map(|r| recording_color(r.state)).collect(),
            )
        }
        View::Coordinators => {
            let cs = rows::coordinators(state, &app.ui.filter);
            (
                &cells::COORDINATOR_COLUMNS,
                cs.iter().map(|c| cells::coordinator_cells(c)).collect(),
                cs.iter()
                    .map(|c| {
                        if c.role == "leader" {
                            Color::Green
                        } else {
                            Color::Reset
                        }
                    })
                    .collect(),
            )
        }
        View::Events => {
            let ls = rows::events(state, app.ui.current(), &app.ui.filter);
            (
                &crate::tui::ui::EVENT_COLUMNS,
                ls.iter()
                    .map(|l| {
                        vec![
                            format::clock(l.at),
                            l.seq.map_or("-".to_string(), |s| s.to_string()),
                            l.kind.to_string(),
                            l.text.clone(),
                        ]
                    })
                    .collect(),
                ls.iter().map(|_| Color::Reset).collect(),
            )
        }
    };
    let headers = header_cells(headers, app);
    let constraints = widths(&headers, &cells);
    let count = cells.len();
    let state_col = usize::from(app.ui.view != View::Events);
    let table_rows = cells.into_iter().zip(colors).map(|(row, color)| {
        Row::new(row.into_iter().enumerate().map(|(i, c)| {
            if state_col == 1 && i == 1 {
                Cell::from(c).style(Style::new().fg(color))
            } else {
                Cell::from(c)
            }
        }))
    });
    let header = Row::new(headers).style(Style::new().add_modifier(Modifier::BOLD));
    let table = Table::new(table_rows, constraints)
        .header(header)
        .block(Block::new().borders(Borders::ALL).title(title(app, count)))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .column_spacing(2);
    let mut ts = TableState::default();
    if count > 0 {
        ts.select(Some(rows::selected(state, &app.ui)));
    }
    frame.render_stateful_widget(table, area, &mut ts);
}
