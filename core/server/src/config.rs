//! Reading the configuration: the file, the machine's host name (the default of `hostname`),
//! whether the TLS files it names exist, and the database password of
//! `store.password_file`. The keys, their defaults and the range checks are pure and live in
//! [`atacama_core::config`].

use std::io::Read as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use atacama_core::config::{Config, ConfigError, DEFAULT_HOSTNAME, StoreConfig, hostname_problem};
use atacama_store::data_dir;

/// The largest `store.password_file` read: it holds one password.
pub const MAX_PASSWORD_FILE_BYTES: u64 = 4096;

/// Reads and checks the file at `path`; `None` gives the built-in defaults. Either way a
/// missing `hostname` is the machine's ([`machine_hostname`]).
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    let hostname = machine_hostname();
    let Some(path) = path else {
        let config = Config {
            hostname,
            ..Config::default()
        };
        config.validate()?;
        return Ok(config);
    };
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_path_buf(),
        problem: e.to_string(),
    })?;
    let config = Config::parse(&text, &hostname).map_err(|error| match error {
        ConfigError::Syntax { problem, .. } => ConfigError::Syntax {
            path: path.to_path_buf(),
            problem,
        },
        other => other,
    })?;
    check_files(&config)?;
    Ok(config)
}

/// The checks that look at the file system: the certificate and key of `tls` exist, and
/// `store.password_file` is one the server reads ([`store_password`]).
pub fn check_files(config: &Config) -> Result<(), ConfigError> {
    if let Some(tls) = &config.tls {
        for (key, path) in [("tls.cert", &tls.cert), ("tls.key", &tls.key)] {
            if !path.is_file() {
                return Err(ConfigError::MissingFile {
                    key: key.into(),
                    path: path.clone(),
                });
            }
        }
    }
    store_password(&config.store)?;
    Ok(())
}

/// The database password: what `store.password_file` holds, less one trailing newline;
/// `None` without the key.
///
/// The file must be a regular file (a link to one will do: systemd's credentials are links)
/// that neither group nor others may read or write, owned by this process's user or root, at
/// most [`MAX_PASSWORD_FILE_BYTES`], UTF-8 and not empty. The checks look at the file opened,
/// not at its name, so that nothing can be swapped in between.
pub fn store_password(store: &StoreConfig) -> Result<Option<String>, ConfigError> {
    const KEY: &str = "store.password_file";
    let Some(path) = &store.password_file else {
        return Ok(None);
    };
    let refused = |problem: String| ConfigError::Invalid {
        key: KEY.into(),
        problem: format!("{}: {problem}", path.display()),
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        // A FIFO put in its place is refused below instead of waiting for a writer.
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ConfigError::MissingFile {
                key: KEY.into(),
                path: path.clone(),
            },
            _ => refused(e.to_string()),
        })?;
    let metadata = file.metadata().map_err(|e| refused(e.to_string()))?;
    if !metadata.is_file() {
        return Err(refused("is not a regular file".into()));
    }
    let mode = metadata.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(refused(format!(
            "group or others may read or write it (mode {mode:04o}): chmod 600 {}",
            path.display()
        )));
    }
    let (owner, user) = (metadata.uid(), data_dir::euid());
    if owner != user && owner != 0 {
        return Err(refused(format!(
            "belongs to uid {owner}, neither root nor uid {user} that runs this"
        )));
    }
    let mut bytes = Vec::new();
    file.take(MAX_PASSWORD_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| refused(e.to_string()))?;
    if bytes.len() as u64 > MAX_PASSWORD_FILE_BYTES {
        return Err(refused(format!(
            "is longer than {MAX_PASSWORD_FILE_BYTES} bytes: it should hold the password alone"
        )));
    }
    let text = String::from_utf8(bytes).map_err(|_| refused("is not UTF-8".into()))?;
    let password = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if password.is_empty() {
        return Err(refused("is empty".into()));
    }
    Ok(Some(password.to_string()))
}

/// The machine's host name, or [`DEFAULT_HOSTNAME`] if it cannot be read or is not a usable
/// name.
pub fn machine_hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|file| std::fs::read_to_string(file).ok())
        .map(|name| name.trim().to_string())
        .find(|name| hostname_problem(name).is_none())
        .unwrap_or_else(|| DEFAULT_HOSTNAME.to_string())
}

#[cfg(test)]
mod tests;
