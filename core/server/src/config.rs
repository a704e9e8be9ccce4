//! Reading the configuration: the file, the machine's host name (the default of `hostname`),
//! and whether the TLS files it names exist. The keys, their defaults and the range checks are
//! pure and live in [`atacama_core::config`].

use std::path::Path;

use atacama_core::config::{Config, ConfigError, DEFAULT_HOSTNAME, hostname_problem};

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

/// The checks that look at the file system: the certificate and key of `tls` exist.
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
    Ok(())
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
