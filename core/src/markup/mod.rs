//! Atacama markup to HTML.
//!
//! PLACEHOLDER: the real implementation lands with issue 3.

/// Renders Atacama markup to a safe HTML fragment.
pub fn render(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}
