//! Channels: which one a message goes to, and which ones a reader may see.
//!
//! A channel is a name of `[a-z0-9-]{1,32}` listed in `[channels]` as public (readable by
//! anyone) or private (readable only with a token). A message's channel comes from its
//! recipients: for each, in order, the local part up to the first `+`, then all that follows
//! that `+`, compared without case; the first that names a configured channel wins
//! (`general+travel@` → general, `post+travel@` → travel), otherwise the default.

use std::fmt;

/// The channel of [`Channels::default`]: the only public one.
pub const DEFAULT_CHANNEL: &str = "general";

/// The longest channel name, in bytes.
pub const MAX_CHANNEL_NAME: usize = 32;

/// Why `name` cannot be a channel's name; `None` when it can.
pub fn channel_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.len() > MAX_CHANNEL_NAME {
        Some("is longer than 32 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Some("may hold only a-z, 0-9 and '-'")
    } else {
        None
    }
}

/// The configured channels, checked: valid names, none listed twice, the default listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channels {
    default: String,
    public: Vec<String>,
    private: Vec<String>,
}

/// Why a set of channels was refused: the `[channels]` key, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelsError {
    /// The dotted key: `channels.default`, `channels.public` or `channels.private`.
    pub key: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for ChannelsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config key {}: {}", self.key, self.problem)
    }
}

impl std::error::Error for ChannelsError {}

/// `general`, public, and the default.
impl Default for Channels {
    fn default() -> Self {
        Channels {
            default: DEFAULT_CHANNEL.to_string(),
            public: vec![DEFAULT_CHANNEL.to_string()],
            private: Vec::new(),
        }
    }
}

impl Channels {
    /// Checks the `[channels]` keys; `default` unset means the first public channel.
    pub fn new(
        default: Option<&str>,
        public: &[String],
        private: &[String],
    ) -> Result<Channels, ChannelsError> {
        let mut seen: Vec<&str> = Vec::with_capacity(public.len() + private.len());
        for (key, names) in [("channels.public", public), ("channels.private", private)] {
            for name in names {
                if let Some(problem) = channel_name_problem(name) {
                    return Err(ChannelsError {
                        key,
                        problem: format!("channel name {name:?} {problem}"),
                    });
                }
                if seen.contains(&name.as_str()) {
                    let problem = if public.contains(name) && private.contains(name) {
                        format!("channel {name:?} is listed as both public and private")
                    } else {
                        format!("channel {name:?} is listed twice")
                    };
                    return Err(ChannelsError { key, problem });
                }
                seen.push(name);
            }
        }
        let default = match default {
            Some(name) => name,
            None => public.first().ok_or_else(|| ChannelsError {
                key: "channels.default",
                problem: "is not set and channels.public is empty: name the channel for \
                          messages that name none"
                    .into(),
            })?,
        };
        if !seen.contains(&default) {
            return Err(ChannelsError {
                key: "channels.default",
                problem: format!(
                    "channel {default:?} is listed in neither channels.public nor channels.private"
                ),
            });
        }
        Ok(Channels {
            default: default.to_string(),
            public: public.to_vec(),
            private: private.to_vec(),
        })
    }

    /// Where a message goes when no recipient names a channel.
    pub fn default_channel(&self) -> &str {
        &self.default
    }

    /// The channels anyone may read, in the configured order.
    pub fn public(&self) -> &[String] {
        &self.public
    }

    /// The channels only a token holder may read, in the configured order.
    pub fn private(&self) -> &[String] {
        &self.private
    }

    /// The configured channel of this name, compared without case.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.public
            .iter()
            .chain(&self.private)
            .find(|c| c.eq_ignore_ascii_case(name))
            .map(String::as_str)
    }

    /// Whether `name` is a configured public channel (exactly: stored names are lower case).
    pub fn is_public(&self, name: &str) -> bool {
        self.public.iter().any(|c| c == name)
    }

    /// Whether `name` is a configured private channel.
    pub fn is_private(&self, name: &str) -> bool {
        self.private.iter().any(|c| c == name)
    }

    /// The channels a reader sees: the public ones, and the private ones too with a token.
    pub fn visible(&self, with_token: bool) -> Vec<&str> {
        let private = if with_token { &self.private[..] } else { &[] };
        self.public
            .iter()
            .chain(private)
            .map(String::as_str)
            .collect()
    }

    /// The channel of a message sent to `recipients` (forward-paths without angle brackets;
    /// see the module docs). Always a configured channel.
    pub fn route<S: AsRef<str>>(&self, recipients: &[S]) -> &str {
        recipients
            .iter()
            .find_map(|recipient| {
                let (first, rest) = candidates(recipient.as_ref());
                self.get(first)
                    .or_else(|| rest.and_then(|rest| self.get(rest)))
            })
            .unwrap_or(&self.default)
    }
}

/// The local part of `address` up to its first `+`, and what follows that `+`, if any.
fn candidates(address: &str) -> (&str, Option<&str>) {
    // The domain cannot hold an '@'; a quoted local part can.
    let local = address.rsplit_once('@').map_or(address, |(local, _)| local);
    match local.split_once('+') {
        Some((first, rest)) => (first, Some(rest)),
        None => (local, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn blog() -> Channels {
        Channels::new(
            None,
            &names(&["general", "travel"]),
            &names(&["family", "post"]),
        )
        .unwrap()
    }

    #[test]
    fn the_first_recipient_naming_a_channel_wins() {
        let c = blog();
        for (rcpt, channel) in [
            (&["general+travel@example.org"][..], "general"),
            (&["post+travel@example.org"], "post"),
            (&["blog+travel@example.org"], "travel"),
            (&["Travel@example.org"], "travel"),
            (&["blog+FAMILY@example.org"], "family"),
            (&["nobody@example.org", "family@example.org"], "family"),
            (&["travel@example.org", "family@example.org"], "travel"),
            (&["nobody@example.org"], "general"),
            (&["blog+travel+x@example.org"], "general"),
            (&["postmaster"], "general"),
            (&["\"travel@x\"@example.org"], "general"),
            (&["travel+@example.org"], "travel"),
            (&["+travel@example.org"], "travel"),
            (&[], "general"),
        ] {
            assert_eq!(c.route(rcpt), channel, "{rcpt:?}");
        }
    }

    #[test]
    fn the_default_is_the_first_public_channel_unless_named() {
        assert_eq!(blog().default_channel(), "general");
        let c = Channels::new(Some("family"), &names(&["general"]), &names(&["family"])).unwrap();
        assert_eq!(c.default_channel(), "family");
        assert_eq!(c.route(&["x@y"]), "family");
        assert_eq!(Channels::default().route(&["a@b"]), DEFAULT_CHANNEL);
    }

    #[test]
    fn bad_channels_are_refused_naming_the_key() {
        let refused = |default: Option<&str>, public: &[&str], private: &[&str]| {
            Channels::new(default, &names(public), &names(private)).unwrap_err()
        };
        let e = refused(Some("nope"), &["general"], &[]);
        assert_eq!(e.key, "channels.default");
        assert!(e.problem.contains("\"nope\""), "{}", e.problem);
        assert_eq!(refused(None, &[], &["x"]).key, "channels.default");
        assert_eq!(refused(None, &["Upper"], &[]).key, "channels.public");
        assert_eq!(refused(None, &[""], &[]).key, "channels.public");
        assert_eq!(
            refused(None, &["a".repeat(33).as_str()], &[]).key,
            "channels.public"
        );
        assert_eq!(refused(None, &["a"], &["b_c"]).key, "channels.private");
        let both = refused(None, &["a"], &["a"]);
        assert_eq!(both.key, "channels.private");
        assert!(both.problem.contains("both public and private"));
        assert!(refused(None, &["a", "a"], &[]).problem.contains("twice"));
        assert!(Channels::new(None, &names(&["a".repeat(32).as_str()]), &[]).is_ok());
    }

    #[test]
    fn visibility() {
        let c = blog();
        assert_eq!(c.visible(false), ["general", "travel"]);
        assert_eq!(c.visible(true), ["general", "travel", "family", "post"]);
        assert!(c.is_public("travel") && !c.is_public("post"));
        assert!(c.is_private("post") && !c.is_private("general"));
        assert_eq!(c.get("POST"), Some("post"));
        assert_eq!(c.get("nope"), None);
    }

    proptest! {
        #[test]
        fn routing_never_panics_and_names_a_configured_channel(
            rcpt in proptest::collection::vec(".{0,40}", 0..5),
            extra in proptest::collection::vec("[a-z0-9-]{1,8}", 0..4),
        ) {
            let mut public = names(&["general"]);
            for name in extra {
                if !public.contains(&name) {
                    public.push(name);
                }
            }
            let c = Channels::new(None, &public, &names(&["x-private"])).unwrap();
            let channel = c.route(&rcpt);
            prop_assert!(c.get(channel) == Some(channel));
        }
    }
}
