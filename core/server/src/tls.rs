//! TLS server configuration shared by both runtimes.
//!
//! - rustls with the ring provider, TLS 1.2 and 1.3 only (RFC 8314 §4.1, T10). The provider
//!   is passed explicitly, so a second provider enabled elsewhere in the dependency graph
//!   cannot make `ServerConfig::builder()` panic.
//! - The certificate and key come from PEM files (`[tls]` in the config), or, when none are
//!   configured, from a self-signed pair generated into the data directory on first start
//!   and reused after: an end-entity certificate (CA:FALSE; rustls clients refuse a CA
//!   certificate as a server certificate) for the host name, `localhost` and `127.0.0.1`.
//!   A missing data directory is created `0700`, and the pair's files there are opened as
//!   every file of it is: never through a link, and only if they are regular files of its
//!   owner ([`atacama_store::data_dir`]).
//! - [`ReloadableTls`] holds the current config; SIGHUP calls [`ReloadableTls::reload`],
//!   which swaps in the new pair for the next handshake, or keeps the old one if the new
//!   pair is bad. Connections already up keep the config they started with.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::crypto::ring;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use atacama_core::config::Config;
use atacama_core::smtp::TlsInfo;
use atacama_store::data_dir;

/// File name of the generated certificate inside the data directory.
pub const SELF_SIGNED_CERT_FILE: &str = "self-signed-cert.pem";
/// File name of the generated private key inside the data directory.
pub const SELF_SIGNED_KEY_FILE: &str = "self-signed-key.pem";

/// Why a TLS configuration could not be built. Each variant names the file it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsError {
    /// A file could not be read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        problem: String,
    },
    /// The certificate file holds no PEM certificate.
    NoCertificate(PathBuf),
    /// The key file holds no PEM private key (PKCS#8, PKCS#1 or SEC1).
    NoKey(PathBuf),
    /// rustls refused the pair, e.g. the key does not match the certificate.
    Rejected(String),
    /// The self-signed certificate could not be generated.
    Generate(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Io { path, problem } => write!(f, "{}: {problem}", path.display()),
            TlsError::NoCertificate(path) => {
                write!(f, "{}: no PEM certificate found", path.display())
            }
            TlsError::NoKey(path) => write!(f, "{}: no PEM private key found", path.display()),
            TlsError::Rejected(problem) => write!(f, "certificate and key refused: {problem}"),
            TlsError::Generate(problem) => {
                write!(f, "cannot generate a self-signed certificate: {problem}")
            }
        }
    }
}

impl std::error::Error for TlsError {}

/// Where the certificate and key come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// PEM files named in the configuration.
    Files {
        /// The certificate chain, leaf first.
        cert: PathBuf,
        /// The private key.
        key: PathBuf,
    },
    /// A pair generated into `dir` for `hostname` if missing, then read from there.
    SelfSigned {
        /// The data directory.
        dir: PathBuf,
        /// The host name the certificate is for (besides `localhost` and `127.0.0.1`).
        hostname: String,
    },
}

impl TlsSource {
    /// The source `config` asks for: its `[tls]` files, else a self-signed pair.
    pub fn from_config(config: &Config) -> TlsSource {
        match &config.tls {
            Some(paths) => TlsSource::Files {
                cert: paths.cert.clone(),
                key: paths.key.clone(),
            },
            None => TlsSource::SelfSigned {
                dir: config.data_dir.clone(),
                hostname: config.hostname.clone(),
            },
        }
    }

    /// The certificate file, e.g. for clients to trust a self-signed one.
    pub fn cert_path(&self) -> PathBuf {
        match self {
            TlsSource::Files { cert, .. } => cert.clone(),
            TlsSource::SelfSigned { dir, .. } => dir.join(SELF_SIGNED_CERT_FILE),
        }
    }

    /// The key file.
    pub fn key_path(&self) -> PathBuf {
        match self {
            TlsSource::Files { key, .. } => key.clone(),
            TlsSource::SelfSigned { dir, .. } => dir.join(SELF_SIGNED_KEY_FILE),
        }
    }

    /// Reads the pair (generating a self-signed one first if it is missing) and builds a
    /// server config from it.
    pub fn load(&self) -> Result<Arc<ServerConfig>, TlsError> {
        match self {
            TlsSource::Files { cert, key } => load_pem(cert, key),
            TlsSource::SelfSigned { dir, hostname } => {
                // A link counts as there: reading it is then refused, rather than replaced.
                let there = |path: &Path| path.symlink_metadata().is_ok();
                if !(there(&self.cert_path()) && there(&self.key_path())) {
                    generate_self_signed(dir, hostname)?;
                    log::info!(
                        "generated a self-signed certificate for {hostname}, localhost and \
                         127.0.0.1 in {}",
                        self.cert_path().display()
                    );
                }
                let cert = data_dir::read_file(&self.cert_path());
                let key = data_dir::read_file(&self.key_path());
                from_pem(&self.cert_path(), cert, &self.key_path(), key)
            }
        }
    }
}

/// Reads a PEM certificate chain and private key and builds a server config from them.
pub fn load_pem(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    from_pem(cert, std::fs::read(cert), key, std::fs::read(key))
}

/// A server config from the PEM contents of `cert` and `key`, as read (or not).
fn from_pem(
    cert: &Path,
    cert_pem: std::io::Result<Vec<u8>>,
    key: &Path,
    key_pem: std::io::Result<Vec<u8>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_pem = cert_pem.map_err(|e| io_error(cert, &e))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_path_buf()));
    }
    let key_pem = key_pem.map_err(|e| io_error(key, &e))?;
    let key_der =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey(key.to_path_buf()))?;
    server_config(chain, key_der).map(Arc::new)
}

/// A server config for `chain` and `key`: ring, TLS 1.2 and 1.3, no client certificates.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(ring::default_provider());
    ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Rejected(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Rejected(e.to_string()))
}

/// Writes a new self-signed certificate and key for `hostname` into `dir` (created `0700` if
/// missing); the key file is readable by its owner only.
pub fn generate_self_signed(dir: &Path, hostname: &str) -> Result<(), TlsError> {
    let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let mut names = vec![hostname.to_string()];
    for extra in ["localhost", "127.0.0.1"] {
        if !names.iter().any(|n| n == extra) {
            names.push(extra.to_string());
        }
    }
    let mut params = rcgen::CertificateParams::new(names).map_err(generate)?;
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, hostname);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    let key = rcgen::KeyPair::generate().map_err(generate)?;
    let cert = params.self_signed(&key).map_err(generate)?;
    data_dir::create(dir).map_err(|e| io_error(dir, &e))?;
    // Key first: a certificate without its key on disk would be reused and then fail.
    write_file(
        &dir.join(SELF_SIGNED_KEY_FILE),
        key.serialize_pem().as_bytes(),
        true,
    )?;
    write_file(
        &dir.join(SELF_SIGNED_CERT_FILE),
        cert.pem().as_bytes(),
        false,
    )?;
    Ok(())
}

/// The server config in use, swapped on reload. Cheap to share across threads.
#[derive(Debug)]
pub struct ReloadableTls {
    source: TlsSource,
    current: RwLock<Arc<ServerConfig>>,
}

impl ReloadableTls {
    /// Loads (or generates) the pair from `source`.
    pub fn new(source: TlsSource) -> Result<ReloadableTls, TlsError> {
        let config = source.load()?;
        Ok(ReloadableTls {
            source,
            current: RwLock::new(config),
        })
    }

    /// The config for the next handshake.
    pub fn current(&self) -> Arc<ServerConfig> {
        let guard = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(&guard)
    }

    /// Reads the pair again; on success the next handshake uses it, on error the old pair
    /// stays in use and the error is returned for the log.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = self.source.load()?;
        let mut guard = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = config;
        Ok(())
    }

    /// Where the pair is read from.
    pub fn source(&self) -> &TlsSource {
        &self.source
    }
}

/// The protocol version and cipher suite of an established connection.
pub fn tls_info(state: &rustls::CommonState) -> TlsInfo {
    let version = match state.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(other) => format!("{other:?}"),
        None => "unknown".to_string(),
    };
    let cipher = state.negotiated_cipher_suite().map_or_else(
        || "unknown".to_string(),
        |suite| format!("{:?}", suite.suite()),
    );
    TlsInfo { version, cipher }
}

fn io_error(path: &Path, error: &std::io::Error) -> TlsError {
    TlsError::Io {
        path: path.to_path_buf(),
        problem: error.to_string(),
    }
}

/// Writes `bytes` to `path` in the data directory through a temporary file and a rename, so
/// a crash never leaves half a file that the next start would try to use. The rename
/// replaces a link at `path` itself, never what it points to.
fn write_file(path: &Path, bytes: &[u8], private: bool) -> Result<(), TlsError> {
    let tmp = path.with_extension("pem.tmp");
    // What a crash left (or a link put there): removing a link removes only the link.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_error(&tmp, &e)),
        _ => {}
    }
    let mode = if private { 0o600 } else { 0o644 };
    let mut file = data_dir::open_file(&tmp, data_dir::Access::CreateNew(mode))
        .map_err(|e| io_error(&tmp, &e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(&tmp, &e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_error(path, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(dir: &Path) -> TlsSource {
        TlsSource::SelfSigned {
            dir: dir.to_path_buf(),
            hostname: "mx.example.test".into(),
        }
    }

    #[test]
    fn self_signed_pair_is_generated_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let source = self_signed(dir.path());
        source.load().unwrap();
        let first = std::fs::read(source.cert_path()).unwrap();
        source.load().unwrap();
        assert_eq!(std::fs::read(source.cert_path()).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(source.key_path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn the_generation_creates_a_missing_data_dir_0700() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        self_signed(&data).load().unwrap();
        let mode = std::fs::metadata(&data).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_linked_pair_is_refused_or_replaced_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let precious = outside.path().join("precious");
        std::fs::write(&precious, "keep me").unwrap();
        let source = self_signed(dir.path());
        source.load().unwrap();
        // A link where the certificate was: refused, naming the file.
        std::fs::remove_file(source.cert_path()).unwrap();
        std::os::unix::fs::symlink(&precious, source.cert_path()).unwrap();
        let error = source.load().unwrap_err();
        let TlsError::Io { path, problem } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(path, &source.cert_path());
        assert!(problem.starts_with("is a symbolic link"), "{problem}");
        // A link where the key was, with no certificate: a new pair replaces the link itself.
        std::fs::remove_file(source.cert_path()).unwrap();
        std::fs::remove_file(source.key_path()).unwrap();
        std::os::unix::fs::symlink(&precious, source.key_path()).unwrap();
        source.load().unwrap();
        assert!(!source.key_path().symlink_metadata().unwrap().is_symlink());
        assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");
    }

    /// Runs a handshake in memory between `server` and a client that trusts only `root`.
    fn handshake(server: Arc<ServerConfig>, root: &Path, name: &str) -> Result<TlsInfo, String> {
        let pem = std::fs::read(root).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(&pem).unwrap())
            .unwrap();
        let client_config =
            rustls::ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(client_config), name).unwrap();
        let mut server = rustls::ServerConnection::new(server).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            server.read_tls(&mut buf.as_slice()).unwrap();
            server.process_new_packets().map_err(|e| e.to_string())?;
            let mut buf = Vec::new();
            server.write_tls(&mut buf).unwrap();
            client.read_tls(&mut buf.as_slice()).unwrap();
            client.process_new_packets().map_err(|e| e.to_string())?;
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(tls_info(&server));
            }
        }
        Err("handshake did not finish".into())
    }

    #[test]
    fn self_signed_cert_is_an_end_entity_for_host_localhost_and_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let source = self_signed(dir.path());
        let config = source.load().unwrap();
        // rustls clients refuse a CA certificate as a server's (CaUsedAsEndEntity), so a
        // handshake that succeeds proves CA:FALSE as well as each name.
        for name in ["mx.example.test", "localhost", "127.0.0.1"] {
            let info = handshake(Arc::clone(&config), &source.cert_path(), name).unwrap();
            assert_eq!(info.version, "TLSv1.3");
            assert!(info.cipher.starts_with("TLS13_"), "{}", info.cipher);
        }
        let other = handshake(config, &source.cert_path(), "other.test");
        let error = other.unwrap_err();
        assert!(error.contains("not valid for name"), "{error}");
    }

    #[test]
    fn reload_swaps_to_a_new_pair_and_keeps_the_old_one_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let tls = ReloadableTls::new(self_signed(dir.path())).unwrap();
        let before = tls.current();
        // A new pair on disk is picked up.
        generate_self_signed(dir.path(), "mx.example.test").unwrap();
        tls.reload().unwrap();
        let after = tls.current();
        assert!(!Arc::ptr_eq(&before, &after));
        // A broken key is refused and the config in use stays.
        std::fs::write(tls.source().key_path(), "not a key").unwrap();
        assert_eq!(tls.reload(), Err(TlsError::NoKey(tls.source().key_path())));
        assert!(Arc::ptr_eq(&after, &tls.current()));
    }

    #[test]
    fn mismatched_key_is_rejected() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        generate_self_signed(a.path(), "a.test").unwrap();
        generate_self_signed(b.path(), "b.test").unwrap();
        let result = load_pem(
            &a.path().join(SELF_SIGNED_CERT_FILE),
            &b.path().join(SELF_SIGNED_KEY_FILE),
        );
        assert!(matches!(result, Err(TlsError::Rejected(_))), "{result:?}");
    }

    #[test]
    fn missing_and_empty_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        assert!(matches!(load_pem(&cert, &key), Err(TlsError::Io { path, .. }) if path == cert));
        std::fs::write(&cert, "").unwrap();
        assert_eq!(
            load_pem(&cert, &key).err(),
            Some(TlsError::NoCertificate(cert))
        );
    }

    #[test]
    fn only_tls_12_and_13_are_offered() {
        let dir = tempfile::tempdir().unwrap();
        let config = self_signed(dir.path()).load().unwrap();
        let versions: Vec<_> = config
            .crypto_provider()
            .cipher_suites
            .iter()
            .map(|s| s.version().version)
            .collect();
        assert!(versions.contains(&rustls::ProtocolVersion::TLSv1_3));
        assert!(versions.contains(&rustls::ProtocolVersion::TLSv1_2));
    }
}
