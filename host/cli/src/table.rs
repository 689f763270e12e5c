//! The one way the CLI prints a table: a header row, then the rows, each column as wide as
//! its widest cell (counted in characters), numbers right-aligned. Every cell a plugin, a
//! file or another user wrote goes through [`crate::printable`] first, so a row stays one
//! line.

use std::fmt::Write as _;

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    Right,
}

/// A table being filled, printed with [`Table::print`].
pub(crate) struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
    indent: &'static str,
}

impl Table {
    /// A table with these columns (header text and alignment).
    pub(crate) fn new(columns: &[(&'static str, Align)]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
            indent: "",
        }
    }

    /// Prints every line (header included) after `indent`.
    pub(crate) fn indented(mut self, indent: &'static str) -> Table {
        self.indent = indent;
        self
    }

    /// Adds a row; missing cells print empty, extra cells are ignored.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Whether no row was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The header row and the rows, one line each, without trailing spaces.
    pub(crate) fn render(&self) -> String {
        let width = |i: usize| {
            self.rows
                .iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .chain([self.columns[i].0.chars().count()])
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..self.columns.len()).map(width).collect();
        let mut out = String::new();
        let header: Vec<String> = self.columns.iter().map(|(h, _)| h.to_string()).collect();
        for cells in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::from(self.indent);
            for (i, (_, align)) in self.columns.iter().enumerate() {
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                let pad = widths[i].saturating_sub(cell.chars().count());
                if i > 0 {
                    line.push_str("  ");
                }
                match align {
                    Align::Left => {
                        line.push_str(cell);
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                    Align::Right => {
                        line.extend(std::iter::repeat_n(' ', pad));
                        line.push_str(cell);
                    }
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out
    }

    /// Prints [`Table::render`] to stdout.
    pub(crate) fn print(&self) {
        print!("{}", self.render());
    }
}

#[cfg(test)]
mod tests {
    use super::{Align, Table};

    #[test]
    fn columns_fit_their_widest_cell_and_the_header_comes_first() {
        let mut t = Table::new(&[("name", Align::Left), ("count", Align::Right)]);
        t.row(vec!["trend-follower".into(), "7".into()]);
        t.row(vec!["ë".into(), "12345678".into()]);
        assert_eq!(
            t.render(),
            "name               count\n\
             trend-follower         7\n\
             ë               12345678\n"
        );
    }

    #[test]
    fn an_empty_table_still_has_its_header() {
        let t = Table::new(&[("plugin", Align::Left), ("state", Align::Left)]).indented("  ");
        assert!(t.is_empty());
        assert_eq!(t.render(), "  plugin  state\n");
    }
}
