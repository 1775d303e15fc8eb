//! Output helpers: aligned text tables and JSON lines on a buffered stdout, with a closed pipe treated as a
//! normal end (`rill consume ... | head`).

use std::io::{self, Write};

/// Renders rows under a header as left-aligned columns separated by two spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(&format!("{cell:<width$}", width = widths[i]));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// Joins ids as `1,2,3`.
pub fn ids(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// Writes `text` to stdout; a closed pipe is not an error.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    ignore_closed_pipe(stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()))
}

/// Prints `value` as one line of JSON.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut text = serde_json::to_string(value)?;
    text.push('\n');
    print(&text)
}

/// Maps a closed-pipe write error to success: the reader went away, which ends output normally.
pub fn ignore_closed_pipe(result: io::Result<()>) -> anyhow::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// A config after a change: `KEY=VALUE` lines under a heading, or a JSON object.
pub fn print_config(
    what: &str,
    config: &std::collections::BTreeMap<String, String>,
    format: super::Format,
) -> anyhow::Result<()> {
    if format == super::Format::Json {
        return print_json(config);
    }
    let mut text = if config.is_empty() {
        format!("{what}: no overrides (defaults apply)\n")
    } else {
        format!("{what} config now:\n")
    };
    for (key, value) in config {
        text.push_str(&format!("  {key}={value}\n"));
    }
    print(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let text = table(&["NAME", "N"], &[vec!["demo".into(), "3".into()], vec!["a-long-name".into(), "12".into()]]);
        assert_eq!(text, "NAME         N\ndemo         3\na-long-name  12\n");
    }
}
