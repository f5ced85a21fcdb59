//! The detail pane of the selected worker or recording.

use ratatui::layout::Rect;
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

use recfleet_protocol::RecordingInfo;

use super::picture;
use crate::format;
use crate::tui::app::App;
use crate::tui::rows;
use crate::tui::state::Thumb;

/// The pane's lines for the current selection.
pub fn lines(app: &App) -> Vec<String> {
    let s = &app.state;
    if let Some(w) = rows::selected_worker(s, &app.ui) {
        let mut out = vec![
            format!("worker   {}", w.name),
            format!("state    {}", w.state.as_str()),
            format!("address  {}", w.address),
            format!("version  {}", w.version),
            format!("slots    {}/{} used", w.used, w.capacity),
            if w.admission.measured {
                format!(
                    "takes    {} more   {} cores free of {}",
                    w.admission.takes,
                    format::cores(w.admission.cpu_headroom_millicores),
                    format::cores(w.admission.cpu_capacity_millicores)
                )
            } else {
                format!("takes    {} more (slots only)", w.admission.takes)
            },
            format!(
                "cpu      {} cores   mem {}",
                format::cores(w.cpu_millicores),
                format::bytes(w.rss_bytes)
            ),
            format!("rtt      {}", format::rtt(w.rtt_us)),
            format!(
                "up       {}   last seen {} ago",
                format::age(s.now, w.connected_at),
                format::age(s.now, w.last_seen)
            ),
            format!("labels   {}", format::labels(&w.labels)),
        ];
        if !w.admission.limit.is_empty() {
            out.push(format!("limit    {}", w.admission.limit));
        }
        out.extend([
            String::new(),
            format!("recordings ({})", w.recordings.len()),
        ]);
        out.extend(w.recordings.iter().map(|r| {
            let st = s.recordings.get(r).map_or("?", |i| i.state.as_str());
            format!("  {r}  {st}")
        }));
        if let Some(d) = s.drains.get(&w.name) {
            out.push(String::new());
            out.push(format!(
                "drain    {}{}",
                if d.complete { "complete: " } else { "" },
                d.message
            ));
            if !d.remaining.is_empty() {
                let ids: Vec<&str> = d.remaining.iter().map(|r| r.as_str()).collect();
                out.push(format!("  remaining: {}", ids.join(", ")));
            }
        }
        return out;
    }
    if let Some(r) = rows::selected_recording(s, &app.ui) {
        let mut out = vec![
            format!("recording {}", r.id),
            format!("state     {}", r.state),
            format!("url       {}", r.url),
            format!(
                "worker    {} (epoch {})",
                crate::cells::worker_cell(r),
                r.epoch
            ),
            format!("created   {}", format::clock(r.created_at)),
            format!(
                "started   {}",
                r.started_at.map_or("-".to_string(), format::clock)
            ),
            format!(
                "size      {}   fps {}",
                format::bytes(r.bytes),
                format::fps_repeated(r.fps_milli, r.repeated_permille)
            ),
            format!("restarts  {}   segments {}", r.restarts, r.segments),
            format!(
                "health    {}",
                match r.health.state {
                    recfleet_protocol::HealthState::Unknown => "not measured".to_string(),
                    st => {
                        let mut h = format!("{st} for {}", format::age(s.now, r.health.since));
                        if !r.health.detail.is_empty() {
                            h.push_str(&format!(": {}", r.health.detail));
                        }
                        h
                    }
                }
            ),
        ];
        if let Some(reason) = &r.reason {
            out.push(format!("error     {reason}"));
        }
        match s.details.get(&r.id) {
            Some(d) => {
                out.push(String::new());
                out.push(format!("segments ({})", d.manifest.segments.len()));
                for seg in &d.manifest.segments {
                    let end = seg
                        .end_reason
                        .as_ref()
                        .map_or("running".to_string(), |e| e.describe());
                    out.push(format!(
                        "  e{} p{} {} {} {}",
                        seg.epoch,
                        seg.part,
                        seg.worker,
                        format::bytes(seg.bytes),
                        end
                    ));
                }
                for g in &d.manifest.gaps {
                    out.push(format!(
                        "  gap {} ({})",
                        format::clock(g.from),
                        format::span(g.duration_ms)
                    ));
                }
            }
            None => out.push("(enter: load segments)".to_string()),
        }
        if let Some((_, events)) = s.track.as_ref().filter(|(id, _)| *id == r.id) {
            out.push(String::new());
            out.push("latest events".to_string());
            if events.is_empty() {
                out.push("  none yet".to_string());
            }
            for e in events {
                out.push(format!(
                    "  {}  {}  {}",
                    e.media_ms.map_or("-".to_string(), format::media_time),
                    e.kind,
                    format::shorten(&e.data, 60)
                ));
            }
        }
        return out;
    }
    vec!["nothing selected".to_string()]
}

/// Draws the pane: for a recording, its picture and sound meter on top.
pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let block = Block::new()
        .borders(Borders::ALL)
        .title(" detail (esc: close) ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let mut text_area = inner;
    if let Some(r) = rows::selected_recording(&app.state, &app.ui) {
        let top = media(frame, inner, app, r);
        text_area.y += top;
        text_area.height = text_area.height.saturating_sub(top);
    }
    let p = Paragraph::new(lines(app).join("\n")).wrap(Wrap { trim: false });
    frame.render_widget(p, text_area);
}

/// The recording's picture (at most half the pane) and its sound meter;
/// returns the rows used.
fn media(frame: &mut Frame<'_>, area: Rect, app: &App, r: &RecordingInfo) -> u16 {
    let thumb = app.state.thumb.as_ref().filter(|t| t.id == r.id);
    let mut used = 0;
    match thumb {
        Some(Thumb {
            picture: Some(pic), ..
        }) => {
            let room = Rect {
                height: (area.height / 2).max(1),
                ..area
            };
            used += picture::draw(frame, room, pic);
        }
        Some(Thumb {
            missing: Some(why), ..
        }) => {
            frame.render_widget(Paragraph::new(format!("no picture: {why}")), line(area, 0));
            used += 1;
        }
        _ if r.state.holds_capacity() => {
            frame.render_widget(Paragraph::new("picture: loading..."), line(area, 0));
            used += 1;
        }
        _ => return 0,
    }
    let level = thumb.and_then(|t| t.level_db).or(r.level_db);
    frame.render_widget(
        Paragraph::new(picture::meter_line(level, area.width.saturating_sub(20))),
        line(area, used),
    );
    used + 2
}

/// The one-row rectangle `row` rows down `area` (empty past its end).
fn line(area: Rect, row: u16) -> Rect {
    Rect {
        y: area.y + row.min(area.height),
        height: u16::from(row < area.height),
        ..area
    }
}
