//! Writing to stdout: exact bytes, terminal-safe text, tables and JSON.

use std::io::Write;

use super::CliError;

/// Writes `bytes` to stdout exactly. A closed pipe (`… | head`) is not an error.
pub(super) fn write_stdout(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::Failed(format!(
            "cannot write to standard output: {e}"
        ))),
        _ => Ok(()),
    }
}

/// Writes `value` as pretty JSON and a newline, as it is formatted: a message's text and
/// HTML are not copied into a second string first.
pub(super) fn write_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = serde_json::to_writer_pretty(&mut out, value)
        .map_err(std::io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::Failed(format!(
            "cannot write JSON to standard output: {e}"
        ))),
        _ => Ok(()),
    }
}

/// Text from a message, safe to print on a terminal: control characters (escape sequences
/// included) become `?`. If `multiline`, newlines and tabs stay and carriage returns go, so
/// CR LF text prints as lines and a lone CR cannot overwrite what came before it.
pub(super) fn terminal_safe(text: &str, multiline: bool) -> String {
    text.chars()
        .filter(|&c| !(multiline && c == '\r'))
        .map(|c| match c {
            '\n' | '\t' if multiline => c,
            c if c.is_control() => '?',
            c => c,
        })
        .collect()
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub(super) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(cell);
                let pad = width.saturating_sub(cell.chars().count()) + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_reach_the_terminal() {
        assert_eq!(
            terminal_safe("a\x1b[31mred\r\n\tb\u{9b}", false),
            "a?[31mred???b?"
        );
        assert_eq!(terminal_safe("a\x1b\r\n\tb\rc", true), "a?\n\tbc");
    }

    #[test]
    fn table_pads_all_but_the_last_column() {
        let rows = vec![
            vec!["1".to_string(), "alice".to_string(), "Hi".to_string()],
            vec![
                "10".to_string(),
                "bo".to_string(),
                "Long subject".to_string(),
            ],
        ];
        assert_eq!(
            table(&["ID", "USER", "SUBJECT"], &rows),
            "ID  USER   SUBJECT\n1   alice  Hi\n10  bo     Long subject\n"
        );
    }
}
