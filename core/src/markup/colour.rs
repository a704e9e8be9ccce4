//! The colour table (spec §4.1) and colour-tag recognition (§4.2).

/// One of the sixteen colour tag names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Colour {
    Xantham,
    Red,
    Orange,
    Yellow,
    Quote,
    Green,
    Acronym,
    Context,
    Resource,
    Teal,
    Blue,
    Violet,
    Music,
    Mogue,
    Gray,
    Hazel,
}

/// Every colour, in the order of the table in §4.1.
pub(crate) const ALL: [Colour; 16] = [
    Colour::Xantham,
    Colour::Red,
    Colour::Orange,
    Colour::Yellow,
    Colour::Quote,
    Colour::Green,
    Colour::Acronym,
    Colour::Context,
    Colour::Resource,
    Colour::Teal,
    Colour::Blue,
    Colour::Violet,
    Colour::Music,
    Colour::Mogue,
    Colour::Gray,
    Colour::Hazel,
];

/// The longest tag, `<resource>`, in bytes: bounds the look-ahead of [`tag_at`].
const MAX_TAG_LEN: usize = "<resource>".len();

impl Colour {
    /// The emoji written in the sigil span, exactly as §4.1 lists it (orange and green carry
    /// VARIATION SELECTOR-16).
    pub(crate) fn sigil(self) -> &'static str {
        match self {
            Colour::Xantham => "\u{1F525}",
            Colour::Red => "\u{1F4A1}",
            Colour::Orange => "\u{2694}\u{FE0F}",
            Colour::Yellow | Colour::Quote => "\u{1F4AC}",
            Colour::Green | Colour::Acronym | Colour::Context | Colour::Resource => {
                "\u{2699}\u{FE0F}"
            }
            Colour::Teal => "\u{1F916}",
            Colour::Blue => "\u{2728}",
            Colour::Violet => "\u{1F4E3}",
            Colour::Music => "\u{1F3B5}",
            Colour::Mogue => "\u{1F30E}",
            Colour::Gray => "\u{1F4AD}",
            Colour::Hazel => "\u{1F3AD}",
        }
    }

    /// The CSS class, `color-…`; the aliases share green's and `music` is `musicnote`.
    pub(crate) fn class(self) -> &'static str {
        match self {
            Colour::Xantham => "color-xantham",
            Colour::Red => "color-red",
            Colour::Orange => "color-orange",
            Colour::Yellow => "color-yellow",
            Colour::Quote => "color-quote",
            Colour::Green | Colour::Acronym | Colour::Context | Colour::Resource => "color-green",
            Colour::Teal => "color-teal",
            Colour::Blue => "color-blue",
            Colour::Violet => "color-violet",
            Colour::Music => "color-musicnote",
            Colour::Mogue => "color-mogue",
            Colour::Gray => "color-gray",
            Colour::Hazel => "color-hazel",
        }
    }

    /// The tag name, without the angle brackets.
    #[cfg(test)]
    pub(crate) fn name(self) -> &'static str {
        match self {
            Colour::Xantham => "xantham",
            Colour::Red => "red",
            Colour::Orange => "orange",
            Colour::Yellow => "yellow",
            Colour::Quote => "quote",
            Colour::Green => "green",
            Colour::Acronym => "acronym",
            Colour::Context => "context",
            Colour::Resource => "resource",
            Colour::Teal => "teal",
            Colour::Blue => "blue",
            Colour::Violet => "violet",
            Colour::Music => "music",
            Colour::Mogue => "mogue",
            Colour::Gray => "gray",
            Colour::Hazel => "hazel",
        }
    }

    fn from_name(name: &[u8]) -> Option<Colour> {
        Some(match name {
            b"xantham" => Colour::Xantham,
            b"red" => Colour::Red,
            b"orange" => Colour::Orange,
            b"yellow" => Colour::Yellow,
            b"quote" => Colour::Quote,
            b"green" => Colour::Green,
            b"acronym" => Colour::Acronym,
            b"context" => Colour::Context,
            b"resource" => Colour::Resource,
            b"teal" => Colour::Teal,
            b"blue" => Colour::Blue,
            b"violet" => Colour::Violet,
            b"music" => Colour::Music,
            b"mogue" => Colour::Mogue,
            b"gray" => Colour::Gray,
            b"hazel" => Colour::Hazel,
            _ => return None,
        })
    }
}

/// The colour tag starting at the beginning of `bytes`, and its length in bytes.
///
/// Exact names only: `<RED>`, `<red >` and `</red>` are not tags. Looks at no more than
/// [`MAX_TAG_LEN`] bytes, so callers may probe at every `<` without losing linearity.
pub(crate) fn tag_at(bytes: &[u8]) -> Option<(Colour, usize)> {
    let rest = bytes.strip_prefix(b"<")?;
    let window = rest.get(..MAX_TAG_LEN - 1).unwrap_or(rest);
    // A plain scan: the window is at most nine bytes, too short for memchr to pay off.
    let close = window.iter().position(|&b| b == b'>')?;
    let colour = Colour::from_name(window.get(..close)?)?;
    Some((colour, close + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_each_of_the_sixteen_tags_once() {
        for (index, colour) in ALL.iter().enumerate() {
            assert_eq!(Colour::from_name(colour.name().as_bytes()), Some(*colour));
            assert!(!ALL[..index].contains(colour), "{colour:?} twice");
        }
        let classes: std::collections::BTreeSet<_> = ALL.iter().map(|c| c.class()).collect();
        assert_eq!(classes.len(), 13, "§4.1: sixteen tags, thirteen classes");
    }

    #[test]
    fn recognises_every_name_and_nothing_else() {
        let table: &[(&str, Option<(Colour, usize)>)] = &[
            ("<xantham>", Some((Colour::Xantham, 9))),
            ("<red>rest", Some((Colour::Red, 5))),
            ("<orange>", Some((Colour::Orange, 8))),
            ("<yellow>", Some((Colour::Yellow, 8))),
            ("<quote>", Some((Colour::Quote, 7))),
            ("<green>", Some((Colour::Green, 7))),
            ("<acronym>", Some((Colour::Acronym, 9))),
            ("<context>", Some((Colour::Context, 9))),
            ("<resource>", Some((Colour::Resource, 10))),
            ("<teal>", Some((Colour::Teal, 6))),
            ("<blue>", Some((Colour::Blue, 6))),
            ("<violet>", Some((Colour::Violet, 8))),
            ("<music>", Some((Colour::Music, 7))),
            ("<mogue>", Some((Colour::Mogue, 7))),
            ("<gray>", Some((Colour::Gray, 6))),
            ("<hazel>", Some((Colour::Hazel, 7))),
            ("<RED>", None),
            ("<red >", None),
            ("</red>", None),
            ("< red>", None),
            ("<red", None),
            ("<reds>", None),
            ("<foo>", None),
            ("<script>", None),
            ("<resources>", None),
            ("red>", None),
            ("<", None),
            ("", None),
        ];
        for (input, expected) in table {
            assert_eq!(tag_at(input.as_bytes()), *expected, "input {input:?}");
        }
    }

    #[test]
    fn aliases_share_green_and_music_is_musicnote() {
        for alias in [Colour::Acronym, Colour::Context, Colour::Resource] {
            assert_eq!(alias.class(), "color-green");
            assert_eq!(alias.sigil(), "\u{2699}\u{FE0F}");
        }
        assert_eq!(Colour::Music.class(), "color-musicnote");
        assert_eq!(Colour::Quote.sigil(), Colour::Yellow.sigil());
        assert_eq!(Colour::Quote.class(), "color-quote");
    }
}
