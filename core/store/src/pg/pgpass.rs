//! The password file libpq reads (`PGPASSFILE`, else `~/.pgpass`), which the `postgres` crate
//! does not: so that a site's existing file works for Atacama Mail too. Used only when neither
//! `store.password_file` nor the URL gives a password.
//!
//! Each line is `hostname:port:database:username:password`, `*` matching anything in the
//! first four fields, `\:` and `\\` standing for `:` and `\`; the first line that matches
//! wins; `#` starts a comment line. As libpq does, a file that its group or others may read is
//! ignored (with a warning), and `localhost` also matches a Unix socket.

use std::path::{Path, PathBuf};

use postgres::config::Host;

/// The file libpq would read: `PGPASSFILE`, else `.pgpass` in `HOME`.
pub(super) fn default_file() -> Option<PathBuf> {
    match std::env::var_os("PGPASSFILE") {
        Some(file) => Some(PathBuf::from(file)),
        None => std::env::var_os("HOME").map(|home| Path::new(&home).join(".pgpass")),
    }
}

/// The password `file` holds for the first host, port, database and user of `config`, if
/// any; a missing or unreadable file holds none.
pub(super) fn lookup(file: &Path, config: &postgres::Config) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(file).ok()?.permissions().mode();
    if mode & 0o077 != 0 {
        log::warn!(
            "store: ignoring the password file {}: it must be readable by its owner only \
             (chmod 0600)",
            file.display()
        );
        return None;
    }
    let text = std::fs::read_to_string(file).ok()?;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_string(),
    };
    let unix = matches!(config.get_hosts().first(), Some(Host::Unix(_)) | None);
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user().unwrap_or_default();
    let database = config.get_dbname().unwrap_or(user);
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let fields = split(line);
            let [h, p, d, u, password] = fields.as_slice() else {
                return None;
            };
            let matches = |field: &str, value: &str| field == "*" || field == value;
            let host_matches = matches(h, &host) || (unix && h == "localhost");
            (host_matches && matches(p, &port) && matches(d, database) && matches(u, user))
                .then(|| password.clone())
        })
}

/// A line's fields, `\:` and `\\` unescaped.
fn split(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(next), Some(field)) = (chars.next(), fields.last_mut()) {
                    field.push(next);
                }
            }
            ':' => fields.push(String::new()),
            c => {
                if let Some(field) = fields.last_mut() {
                    field.push(c);
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;
    use std::str::FromStr as _;

    use super::*;

    fn file(text: &str, mode: u32) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        file
    }

    fn config(url: &str) -> postgres::Config {
        postgres::Config::from_str(url).unwrap()
    }

    #[test]
    fn the_first_matching_line_gives_the_password() {
        let pgpass = file(
            "# comment\n\
             db.test:5432:other:atacama:wrong\n\
             db.test:*:atacama:atacama:right\\:one\n\
             *:*:*:*:fallback\n",
            0o600,
        );
        let cases = [
            ("postgresql://atacama@db.test/atacama", Some("right:one")),
            (
                "postgresql://atacama@db.test:6543/atacama",
                Some("right:one"),
            ),
            ("postgresql://atacama@elsewhere/atacama", Some("fallback")),
            (
                "postgresql://atacama@/atacama?host=/run/postgresql",
                Some("fallback"),
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(
                lookup(pgpass.path(), &config(url)).as_deref(),
                expected,
                "{url}"
            );
        }
    }

    #[test]
    fn localhost_matches_a_unix_socket() {
        let pgpass = file("localhost:5432:atacama:atacama:local\n", 0o600);
        let socket = config("postgresql://atacama@/atacama?host=/run/postgresql");
        assert_eq!(lookup(pgpass.path(), &socket).as_deref(), Some("local"));
        let tcp = config("postgresql://atacama@db.test/atacama");
        assert_eq!(lookup(pgpass.path(), &tcp), None);
    }

    #[test]
    fn a_file_others_may_read_is_ignored() {
        let pgpass = file("*:*:*:*:secret\n", 0o644);
        let any = config("postgresql://atacama@db.test/atacama");
        assert_eq!(lookup(pgpass.path(), &any), None);
        assert_eq!(lookup(Path::new("/nonexistent/pgpass"), &any), None);
    }
}
