//! Output for people (aligned tables) and for scripts (`--output json`).

use std::fmt::Display;

use serde::Serialize;

/// Writes one line of data on standard output. A reader that went away (`elock list | head -1`)
/// ends the command quietly, with exit 0, instead of a panic.
pub fn line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|_| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// Writes bytes on standard output as they are, a reader that went away ending the command
/// quietly as in [`line`].
pub fn bytes(data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(data).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => other,
    }
}

/// `println!` for the CLI's data: see [`line`].
macro_rules! say {
    () => { $crate::cli::output::line(format_args!("")) };
    ($($t:tt)*) => { $crate::cli::output::line(format_args!($($t)*)) };
}
pub(crate) use say;

/// Tables for people, JSON for scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns with a header line.
    Table,
    /// One JSON document (JSON lines for streams such as `elock events`).
    Json,
}

/// Any answer as pretty JSON.
pub fn json<T: Serialize + ?Sized>(v: &T) {
    say!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Prints rows under headers, each column as wide as its widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        say!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for row in rows {
        line(row.clone());
    }
}

/// An optional value as a table cell (`-` when absent).
pub fn opt<T: Display>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".into(), T::to_string)
}

/// A value as its JSON text, without quotes for a string: enums as their wire names
/// (`half_open`, `force_released`), maps as JSON.
pub fn text<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Null) => "-".into(),
        Ok(other) => other.to_string(),
        Err(_) => "-".into(),
    }
}
