//! From and To as a reader sees them (the format is documented on [`super::Headers::to`]).

use std::borrow::Cow;

use mail_parser::{Addr, Address};

use super::non_empty;

/// Every mailbox of every header field given, as a reader sees it.
pub(super) fn display<'a, 'x: 'a>(
    fields: impl IntoIterator<Item = &'a Address<'x>>,
) -> Option<String> {
    let mut shown = Vec::new();
    for field in fields {
        match field {
            Address::List(mailboxes) => shown.extend(mailboxes.iter().filter_map(display_mailbox)),
            Address::Group(groups) => {
                for group in groups {
                    let members = group.addresses.iter().filter_map(display_mailbox);
                    // mail-parser puts the mailboxes around a group in groups without a name.
                    match group.name.as_deref().and_then(non_empty) {
                        None => shown.extend(members),
                        Some(name) => {
                            let members: Vec<String> = members.collect();
                            let name = display_name(&name);
                            shown.push(if members.is_empty() {
                                format!("{name}:;")
                            } else {
                                format!("{name}: {};", members.join(", "))
                            });
                        }
                    }
                }
            }
        }
    }
    (!shown.is_empty()).then(|| shown.join(", "))
}

fn display_mailbox(mailbox: &Addr<'_>) -> Option<String> {
    let name = mailbox.name().map(str::trim).filter(|n| !n.is_empty());
    let address = mailbox.address().map(str::trim).filter(|a| !a.is_empty());
    match (name, address) {
        (Some(name), Some(address)) if name != address => {
            Some(format!("{} <{address}>", display_name(name)))
        }
        (_, Some(address)) => Some(address.to_owned()),
        (Some(name), None) => Some(display_name(name).into_owned()),
        (None, None) => None,
    }
}

/// The name as is, or quoted if it holds a character that would make a list ambiguous.
fn display_name(name: &str) -> Cow<'_, str> {
    if !name.contains([',', ';', ':', '<', '>', '@', '"', '\\']) {
        return Cow::Borrowed(name);
    }
    let mut quoted = String::with_capacity(name.len() + 2);
    quoted.push('"');
    for c in name.chars() {
        if matches!(c, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    Cow::Owned(quoted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_quoted_only_when_ambiguous() {
        let cases = [
            ("John Q. Public", "John Q. Public"),
            ("Doe, John", "\"Doe, John\""),
            ("a \"b\" \\c", r#""a \"b\" \\c""#),
            ("x@y", "\"x@y\""),
        ];
        for (name, shown) in cases {
            assert_eq!(display_name(name), shown);
        }
    }
}
