//! Draws a [`Picture`] as half-blocks and a sound level as a meter.

use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::tui::picture::Picture;

/// Below this the worker calls the sound silence (its `silencedetect`).
const SILENCE_DB: i16 = -50;

/// Draws `pic` in `area`, as large as fits with its shape kept, from the
/// top left; returns the rows used.
pub fn draw(frame: &mut Frame<'_>, area: Rect, pic: &Picture) -> u16 {
    let (cols, rows) = pic.fit(area.width, area.height);
    let lines: Vec<Line<'_>> = pic
        .cells(cols, rows)
        .into_iter()
        .map(|row| {
            Line::from(
                row.into_iter()
                    .map(|(top, bottom)| {
                        Span::styled("▀", Style::new().fg(rgb(top)).bg(rgb(bottom)))
                    })
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let used = Rect {
        width: cols,
        height: rows,
        ..area
    };
    frame.render_widget(Paragraph::new(lines), used);
    rows
}

fn rgb([r, g, b]: [u8; 3]) -> Color {
    Color::Rgb(r, g, b)
}

/// A sound level as a line: `sound  ▮▮▮▮▮▮····  -18 dBFS`, green, yellow
/// near full scale, and `silent` below -50 dBFS.
pub fn meter_line(level_db: Option<i16>, width: u16) -> Line<'static> {
    let Some(db) = level_db else {
        return Line::from("sound     no level measured");
    };
    let width = usize::from(width.clamp(4, 40));
    let filled = (((f64::from(db) + 60.0) / 60.0).clamp(0.0, 1.0) * width as f64).round() as usize;
    let color = if db > -6 {
        Color::Yellow
    } else if db < SILENCE_DB {
        Color::DarkGray
    } else {
        Color::Green
    };
    Line::from(vec![
        Span::raw("sound     "),
        Span::styled("▮".repeat(filled), Style::new().fg(color)),
        Span::styled("·".repeat(width - filled), Style::new().fg(Color::DarkGray)),
        Span::raw(format!(" {db} dBFS")),
    ])
}
