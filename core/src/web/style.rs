//! `/style.css`: the page layout and a colour for every class the markup renderer writes.
//!
//! Every colour keeps a WCAG 2 contrast ratio of at least 4.5:1 (success criterion 1.4.3,
//! level AA, normal text) on the page background `#fcfcfa`; the tests below compute it
//! from this very text, and check that each class `markup::colour_classes` names has a
//! rule. One column of at most 42rem that shrinks to the screen, so it reads on a phone.
//! Atacama folds coloured text behind its sigil with a script; pages here carry none (CSP),
//! so text stays unfolded and the quote's toggle button is drawn as a plain label.

use super::{Page, content_type};

/// The stylesheet, served as is.
pub const STYLESHEET: &str = r#":root { color-scheme: light; }
*, *::before, *::after { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; text-size-adjust: 100%; }
body {
  margin: 0;
  background: #fcfcfa;
  color: #1f1f1f;
  font: 1.0625rem/1.6 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif;
  overflow-wrap: anywhere;
}
a { color: #0b57d0; }
header.site, main { max-width: 42rem; margin: 0 auto; padding: 0.75rem 1rem; }
header.site {
  display: flex;
  flex-wrap: wrap;
  gap: 0.25rem 1rem;
  align-items: baseline;
  justify-content: space-between;
  border-bottom: 1px solid #6b6b6b;
}
.site-name { font-weight: 700; font-size: 1.25rem; color: #1f1f1f; text-decoration: none; }
h1 { font-size: 1.6rem; line-height: 1.25; margin: 0.5rem 0; }
h2 { font-size: 1.3rem; line-height: 1.3; margin: 0 0 0.25rem; }
h2 a { color: #1f1f1f; text-decoration: none; }
h2 a:hover, h2 a:focus { text-decoration: underline; }
article.post { padding: 1rem 0; border-bottom: 1px solid #6b6b6b; }
article.post.target { border-left: 4px solid #0b57d0; padding-left: 0.75rem; }
.meta { color: #5c5f66; font-size: 0.9rem; margin: 0; }
.meta a { color: #5c5f66; }
.content { margin-top: 0.75rem; }
.content p { margin: 0 0 0.75rem; }
.content img { max-width: 100%; height: auto; }
ol.chain { list-style: none; margin: 0; padding: 0; }
.links { padding: 1rem 0; }
.pager { padding: 1.5rem 0; text-align: center; }
a.older {
  display: inline-block;
  padding: 0.5rem 1.25rem;
  border: 1px solid #0b57d0;
  border-radius: 0.375rem;
  text-decoration: none;
}
.empty { color: #5c5f66; }
hr.section-break { border: 0; border-top: 1px solid #6b6b6b; margin: 1.5rem 0; }
.content ul { margin: 0 0 0.75rem; padding-left: 1.5rem; counter-reset: atacama-item; }
li.bullet-list { list-style: disc; }
li.number-list { list-style: none; counter-increment: atacama-item; }
li.number-list::before { content: counter(atacama-item) ". "; }
li.arrow-list { list-style: none; }
li.arrow-list::before { content: "\2192\00a0"; }
.sigil { margin-right: 0.25em; }
.literal-text {
  font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 0.95em;
}
.mlq { margin: 1rem 0; padding: 0.25rem 0 0.25rem 0.75rem; border-left: 3px solid #6b6b6b; }
.mlq-collapse {
  border: 0;
  padding: 0;
  background: none;
  color: inherit;
  font: inherit;
  cursor: default;
}
.mlq-content > :last-child { margin-bottom: 0; }
.color-xantham { color: #a34700; }
.color-red { color: #c0172b; }
.color-orange { color: #a85200; }
.color-yellow { color: #7a6500; }
.color-quote { color: #6e5a1e; }
.color-green { color: #1e7b34; }
.color-teal { color: #00727a; }
.color-blue { color: #1f5fbf; }
.color-violet { color: #7b3fb5; }
.color-musicnote { color: #a3306b; }
.color-mogue { color: #4f6b2a; }
.color-gray { color: #5f6368; }
.color-hazel { color: #86582b; }
@media (max-width: 30rem) {
  body { font-size: 1rem; }
  h1 { font-size: 1.4rem; }
  header.site, main { padding: 0.5rem 0.75rem; }
}
"#;

/// `/style.css`, with a strong ETag.
pub fn style() -> Page {
    Page::ok(content_type::CSS, STYLESHEET.as_bytes().to_vec(), false)
}

/// The site's icon: a plain shape in the link colour, no script, no external reference.
pub const ICON: &str = concat!(
    r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">"##,
    r##"<path d="M1 14 L6 5 L9 10 L11 7 L15 14 Z" fill="#8a4b08"/></svg>"##,
);

/// `/favicon.svg`, with a strong ETag.
pub fn icon() -> Page {
    Page::ok(content_type::SVG, ICON.as_bytes().to_vec(), false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::markup::colour_classes;

    /// The declarations of the first rule whose selector is exactly `selector`.
    fn declarations(selector: &str) -> Option<&'static str> {
        let at = STYLESHEET.find(&format!("\n{selector} {{"))?;
        let rest = &STYLESHEET[at..];
        let open = rest.find('{')?;
        let close = rest.find('}')?;
        Some(&rest[open + 1..close])
    }

    fn hex_after(declarations: &str, property: &str) -> Option<String> {
        let at = declarations.find(&format!("{property}: #"))?;
        let hex = &declarations[at + property.len() + 2..];
        Some(hex[..7].to_owned())
    }

    fn relative_luminance(hex: &str) -> f64 {
        let channel = |at: usize| {
            let c = f64::from(u8::from_str_radix(&hex[at..at + 2], 16).unwrap()) / 255.0;
            if c <= 0.040_45 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5)
    }

    fn contrast(a: &str, b: &str) -> f64 {
        let (la, lb) = (relative_luminance(a), relative_luminance(b));
        (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
    }

    fn background() -> String {
        hex_after(declarations("body").unwrap(), "background").unwrap()
    }

    #[test]
    fn contrast_formula() {
        assert!((contrast("#000000", "#ffffff") - 21.0).abs() < 1e-9);
        assert!((contrast("#767676", "#ffffff") - 4.54).abs() < 0.01);
    }

    #[test]
    fn every_colour_reads_on_the_background() {
        let background = background();
        assert_eq!(background, "#fcfcfa");
        let mut checked = 0;
        for (at, _) in STYLESHEET.match_indices('#') {
            let candidate = &STYLESHEET[at..];
            let hex_len = candidate[1..]
                .bytes()
                .take_while(u8::is_ascii_hexdigit)
                .count();
            if hex_len == 0 {
                continue; // not a colour: none here, but say so rather than fail obscurely
            }
            assert_eq!(hex_len, 6, "write colours as #rrggbb: {}", &candidate[..8]);
            let colour = &candidate[..7];
            if colour == background {
                continue;
            }
            let ratio = contrast(colour, &background);
            assert!(ratio >= 4.5, "{colour} on {background}: {ratio:.2}");
            checked += 1;
        }
        assert!(checked >= 13 + 3, "only {checked} colours found");
    }

    #[test]
    fn every_class_the_renderer_writes_has_a_readable_colour() {
        let background = background();
        let classes = colour_classes();
        assert_eq!(classes.len(), 13);
        for class in classes {
            let rule = declarations(&format!(".{class}"))
                .unwrap_or_else(|| panic!("no rule for .{class}"));
            let colour = hex_after(rule, "color").unwrap_or_else(|| panic!(".{class}: no color"));
            assert!(contrast(&colour, &background) >= 4.5, ".{class}");
        }
    }

    #[test]
    fn no_two_colour_classes_look_alike() {
        let colours: Vec<String> = colour_classes()
            .iter()
            .map(|class| hex_after(declarations(&format!(".{class}")).unwrap(), "color").unwrap())
            .collect();
        for (index, colour) in colours.iter().enumerate() {
            assert!(!colours[..index].contains(colour), "{colour} twice");
        }
    }
}
