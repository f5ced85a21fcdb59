//! What the person is doing: the view, filter, sort, selection and the open
//! prompt or dialog. Changed by keys only (never by the connection).

use super::dialog::Dialog;

/// The main views.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// The workers table.
    Workers,
    /// The recordings table.
    Recordings,
    /// The live event log.
    Events,
    /// The coordinators: which leads, its term and lease.
    Coordinators,
}

impl View {
    /// The name, as typed after `:`.
    pub fn name(self) -> &'static str {
        match self {
            View::Workers => "workers",
            View::Recordings => "recordings",
            View::Events => "events",
            View::Coordinators => "coordinators",
        }
    }

    /// Parses a `:` command's view name, with k9s-like short forms.
    pub fn parse(s: &str) -> Option<View> {
        match s.trim() {
            "workers" | "worker" | "wo" | "w" | "nodes" | "no" => Some(View::Workers),
            "recordings" | "recording" | "rec" | "r" | "jobs" => Some(View::Recordings),
            "events" | "event" | "ev" | "e" => Some(View::Events),
            "coordinators" | "coordinator" | "coord" | "co" | "c" => Some(View::Coordinators),
            _ => None,
        }
    }

    fn index(self) -> usize {
        match self {
            View::Workers => 0,
            View::Recordings => 1,
            View::Events => 2,
            View::Coordinators => 3,
        }
    }

    /// The next view (tab).
    pub fn next(self) -> View {
        match self {
            View::Workers => View::Recordings,
            View::Recordings => View::Events,
            View::Events => View::Coordinators,
            View::Coordinators => View::Workers,
        }
    }
}

/// The column titles of the events view.
pub const EVENT_COLUMNS: [&str; 4] = ["TIME", "SEQ", "KIND", "WHAT"];

/// The quick sorts of shift+N, shift+S and shift+A.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Name or id.
    Name,
    /// State, in lifecycle order.
    State,
    /// Age: youngest first.
    Age,
}

impl View {
    /// The columns `>` and `<` go through, in table order (none: the view
    /// keeps the coordinator's order).
    pub fn sort_columns(self) -> &'static [&'static str] {
        match self {
            View::Workers => &crate::cells::WORKER_COLUMNS,
            View::Recordings => &crate::cells::RECORDING_COLUMNS,
            View::Events => &EVENT_COLUMNS,
            View::Coordinators => &[],
        }
    }

    /// The column a quick sort key sorts this view by (AGE, of recordings,
    /// is not a column of the view: their age since requested).
    pub fn quick_column(self, key: SortKey) -> Option<&'static str> {
        match (self, key) {
            (View::Coordinators, _) => None,
            (View::Workers, SortKey::Name) => Some("NAME"),
            (View::Recordings, SortKey::Name) => Some("ID"),
            (View::Events, SortKey::Name | SortKey::State) => Some("KIND"),
            (_, SortKey::State) => Some("STATE"),
            (View::Workers, SortKey::Age) => Some("UPTIME"),
            (View::Recordings, SortKey::Age) => Some("AGE"),
            (View::Events, SortKey::Age) => Some("TIME"),
        }
    }
}

/// A `/` filter: a case-insensitive substring, or its inverse with `/!`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The text (lowercase).
    pub needle: String,
    /// Keep rows that do not match.
    pub inverted: bool,
}

impl Filter {
    /// Parses what was typed after `/` (`!text` inverts).
    pub fn parse(input: &str) -> Filter {
        let (inverted, needle) = match input.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, input),
        };
        Filter {
            needle: needle.trim().to_lowercase(),
            inverted,
        }
    }

    /// Whether no filter is set.
    pub fn is_empty(&self) -> bool {
        self.needle.is_empty()
    }

    /// Whether a row with this text is shown.
    pub fn keeps(&self, row_text: &str) -> bool {
        if self.needle.is_empty() {
            return true;
        }
        row_text.to_lowercase().contains(&self.needle) != self.inverted
    }

    /// As typed: `/text` or `/!text`.
    pub fn label(&self) -> String {
        format!("/{}{}", if self.inverted { "!" } else { "" }, self.needle)
    }
}

/// A full-screen page over the views, closed with esc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    /// `describe` of a recording (`d`).
    Describe(recfleet_protocol::RecordingId),
    /// A recording's logs, followed (`l`).
    Logs(recfleet_protocol::RecordingId),
}

/// What has the keyboard.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Tables and navigation.
    Normal,
    /// Typing a `:` command.
    Command(String),
    /// Typing a `/` filter.
    Filter(String),
    /// The help screen.
    Help,
    /// An action dialog.
    Dialog(Dialog),
}

/// Per-view selection and sort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewState {
    /// Selected row.
    pub selected: usize,
    /// Sort column, as in the header (see [`crate::sort`]).
    pub sort: &'static str,
    /// Reverse order.
    pub reverse: bool,
}

impl Default for ViewState {
    /// By NAME (for recordings, an unknown column: by id), ascending.
    fn default() -> Self {
        ViewState::sorted_by("NAME")
    }
}

impl ViewState {
    /// Sorted by `sort`, ascending, the first row selected.
    pub fn sorted_by(sort: &'static str) -> ViewState {
        ViewState {
            selected: 0,
            sort,
            reverse: false,
        }
    }
}

/// The whole UI state.
#[derive(Debug, Clone, PartialEq)]
pub struct Ui {
    /// The current view.
    pub view: View,
    /// Views visited before (`esc` goes back).
    pub history: Vec<View>,
    /// Selection and sort per view.
    pub views: [ViewState; 4],
    /// The filter of the current view.
    pub filter: Filter,
    /// The detail pane is open.
    pub detail: bool,
    /// Who has the keyboard.
    pub mode: Mode,
    /// Set by `q`.
    pub quit: bool,
    /// The recordings view shows every finished recording (`a`), not only
    /// those that ended within [`crate::finished::DEFAULT_WINDOW`].
    pub all_recordings: bool,
    /// The page shown over the views, if any.
    pub overlay: Option<Overlay>,
    /// Lines scrolled up from the bottom of the overlay's text.
    pub overlay_scroll: usize,
}

impl Default for Ui {
    fn default() -> Self {
        // The log shows the newest line first, so that new events stay in
        // sight with the selection at the top.
        let events = ViewState {
            reverse: true,
            ..ViewState::sorted_by("TIME")
        };
        Ui {
            view: View::Workers,
            history: Vec::new(),
            views: [
                ViewState::sorted_by("NAME"),
                ViewState::sorted_by("ID"),
                events,
                ViewState::sorted_by("NAME"),
            ],
            filter: Filter::default(),
            detail: false,
            mode: Mode::Normal,
            quit: false,
            all_recordings: false,
            overlay: None,
            overlay_scroll: 0,
        }
    }
}

impl Ui {
    /// Selection and sort of the current view.
    pub fn current(&self) -> &ViewState {
        &self.views[self.view.index()]
    }

    /// The same, to change.
    pub fn current_mut(&mut self) -> &mut ViewState {
        &mut self.views[self.view.index()]
    }

    /// Switches view, remembering where we were.
    pub fn switch(&mut self, view: View) {
        if view != self.view {
            self.history.push(self.view);
            self.view = view;
            self.filter = Filter::default();
            self.detail = false;
        }
    }

    /// Sorts by `key`'s column; the same key again reverses. Whether the
    /// view sorts at all.
    pub fn sort_by(&mut self, key: SortKey) -> bool {
        let Some(column) = self.view.quick_column(key) else {
            return false;
        };
        let v = self.current_mut();
        if v.sort == column {
            v.reverse = !v.reverse;
        } else {
            v.sort = column;
            v.reverse = false;
        }
        true
    }

    /// Sorts by the next column of the view (`>`), or the previous (`<`),
    /// ascending, round the end; whether the view sorts at all.
    pub fn cycle_sort(&mut self, forward: bool) -> bool {
        let columns = self.view.sort_columns();
        if columns.is_empty() {
            return false;
        }
        let v = self.current_mut();
        let n = columns.len();
        let next = match columns.iter().position(|c| *c == v.sort) {
            Some(i) if forward => (i + 1) % n,
            Some(i) => (i + n - 1) % n,
            None if forward => 0,
            None => n - 1,
        };
        v.sort = columns[next];
        v.reverse = false;
        true
    }

    /// Reverses the order of the view (`R`).
    pub fn reverse_sort(&mut self) {
        let v = self.current_mut();
        v.reverse = !v.reverse;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_and_invert() {
        let f = Filter::parse("W1");
        assert!(f.keeps("w1 ready"));
        assert!(!f.keeps("w2 ready"));
        let f = Filter::parse("!ready");
        assert!(f.inverted);
        assert!(!f.keeps("w1 ready"));
        assert!(f.keeps("w2 lost"));
        assert!(Filter::parse("").keeps("anything"));
        assert_eq!(Filter::parse("!lost").label(), "/!lost");
    }

    #[test]
    fn views_parse_short_forms() {
        assert_eq!(View::parse("wo"), Some(View::Workers));
        assert_eq!(View::parse(" recordings "), Some(View::Recordings));
        assert_eq!(View::parse("ev"), Some(View::Events));
        assert_eq!(View::parse("pods"), None);
    }

    #[test]
    fn sorting_twice_reverses() {
        let mut ui = Ui::default();
        ui.sort_by(SortKey::State);
        assert_eq!(ui.current().sort, "STATE");
        assert!(!ui.current().reverse);
        ui.sort_by(SortKey::State);
        assert!(ui.current().reverse);
    }

    #[test]
    fn cycling_goes_through_the_columns_and_round() {
        let mut ui = Ui::default();
        assert!(ui.cycle_sort(true));
        assert_eq!(ui.current().sort, "STATE");
        ui.reverse_sort();
        assert!(ui.current().reverse);
        assert!(ui.cycle_sort(false));
        assert_eq!(ui.current().sort, "NAME");
        assert!(!ui.current().reverse, "a new column sorts ascending");
        ui.cycle_sort(false);
        assert_eq!(ui.current().sort, "LABELS");
        ui.cycle_sort(true);
        assert_eq!(ui.current().sort, "NAME");
        // Recordings: A sorts by age, which `>` leaves for the first column.
        ui.switch(View::Recordings);
        ui.sort_by(SortKey::Age);
        assert_eq!(ui.current().sort, "AGE");
        ui.cycle_sort(true);
        assert_eq!(ui.current().sort, "ID");
        ui.switch(View::Coordinators);
        assert!(!ui.cycle_sort(true));
        assert!(!ui.sort_by(SortKey::Name));
    }
}
