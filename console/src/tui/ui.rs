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

/// Sort columns (shift+N, shift+S, shift+A).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Name or id.
    Name,
    /// State, in lifecycle order.
    State,
    /// Age: newest first.
    Age,
}

impl SortKey {
    /// The label on the table title.
    pub fn name(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::State => "state",
            SortKey::Age => "age",
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
    /// Sort column.
    pub sort: SortKey,
    /// Reverse order.
    pub reverse: bool,
}

impl Default for ViewState {
    fn default() -> Self {
        ViewState {
            selected: 0,
            sort: SortKey::Name,
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
}

impl Default for Ui {
    fn default() -> Self {
        // The log shows the newest line first, so that new events stay in
        // sight with the selection at the top.
        let events = ViewState {
            sort: SortKey::Age,
            reverse: true,
            ..ViewState::default()
        };
        Ui {
            view: View::Workers,
            history: Vec::new(),
            views: [
                ViewState::default(),
                ViewState::default(),
                events,
                ViewState::default(),
            ],
            filter: Filter::default(),
            detail: false,
            mode: Mode::Normal,
            quit: false,
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

    /// Sorts by `key`; the same key again reverses.
    pub fn sort_by(&mut self, key: SortKey) {
        let v = self.current_mut();
        if v.sort == key {
            v.reverse = !v.reverse;
        } else {
            v.sort = key;
            v.reverse = false;
        }
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
        assert_eq!(ui.current().sort, SortKey::State);
        assert!(!ui.current().reverse);
        ui.sort_by(SortKey::State);
        assert!(ui.current().reverse);
    }
}
