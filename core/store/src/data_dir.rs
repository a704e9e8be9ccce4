//! The data directory and the files in it.
//!
//! The directory holds the mail, the password hashes, the generated private key and the
//! control socket, so nothing in it is for anyone but its owner:
//! - [`DataDir::prepare`] runs before anything is written there, in the daemon
//!   (`ServerState::open`) and in the command line: it creates the directory `0700` (parents
//!   too) if missing, and refuses one that group or others may enter, or that belongs to
//!   another user, with the command that fixes it (`chmod 700 …`, `chown …`). The library
//!   functions that may be called on their own (`Store::open_in`, the self-signed pair's
//!   generation) create a missing directory `0700` too ([`create`]), but leave the verdict
//!   to those two: it was the certificate's generation that once made it `0755`.
//! - Root may use a directory that belongs to another user, as `sudo atacama-mail user add`
//!   on the service's `/var/lib/atacama-mail` does: root could read it anyway. The files root
//!   creates there are given to the directory's owner, so that the daemon, which runs as
//!   that user, can still open them.
//! - Every file of the directory is opened with `O_NOFOLLOW` and checked with `fstat`: a
//!   regular file, owned by the directory's owner. A link from `atacama.journal` to another
//!   file once made `user list` grow that file to 16 MiB of zeros.
//! - Who may hold the data ([`DataDir::trusts`]): root, this process's user, and the
//!   directory's owner (the same user, unless this process is root). The control socket
//!   answers only them, and the command line sends to no one else.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Mode bits that must be clear on the data directory: any access by group or others.
const OPEN_TO_OTHERS: u32 = 0o077;

/// A data directory that [`DataDir::prepare`] created or checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    path: PathBuf,
    owner: u32,
}

/// Why a data directory is not used. Each variant names the directory and says the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataDirError {
    /// It could not be created or looked at.
    Io {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        problem: String,
    },
    /// Something other than a directory is there.
    NotADirectory(PathBuf),
    /// It belongs to another user, and this process is not root.
    Owner {
        /// The directory.
        path: PathBuf,
        /// Its owner's uid.
        owner: u32,
        /// This process's effective uid.
        user: u32,
    },
    /// Group or others have some access to it.
    Mode {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

impl fmt::Display for DataDirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataDirError::Io { path, problem } => {
                write!(f, "data directory {}: {problem}", path.display())
            }
            DataDirError::NotADirectory(path) => {
                write!(f, "data directory {} is not a directory", path.display())
            }
            DataDirError::Owner { path, owner, user } => write!(
                f,
                "data directory {} belongs to uid {owner}, not to uid {user} that runs this: run \
                 it as that user (sudo -u), or give the directory to this one: chown -R {user} {}",
                path.display(),
                path.display()
            ),
            DataDirError::Mode { path, mode } => write!(
                f,
                "data directory {} is open to other users (mode {mode:04o}) and holds mail and \
                 password hashes: chmod 700 {}",
                path.display(),
                path.display()
            ),
        }
    }
}

impl std::error::Error for DataDirError {}

impl DataDir {
    /// Creates `path` (and its missing parents) with mode `0700` if missing, then checks that
    /// it is a directory that only its owner may enter, and that the owner is this process's
    /// user (or this process is root). Call it before writing anything there.
    pub fn prepare(path: &Path) -> Result<DataDir, DataDirError> {
        let io_error = |e: io::Error| DataDirError::Io {
            path: path.to_path_buf(),
            problem: e.to_string(),
        };
        create(path).map_err(|e| match e.kind() {
            // `create` fails on a file in the way: say what is there, not "File exists".
            io::ErrorKind::AlreadyExists => DataDirError::NotADirectory(path.to_path_buf()),
            _ => io_error(e),
        })?;
        // Follows a link: the operator may place the directory elsewhere. What is checked is
        // the directory itself.
        let metadata = std::fs::metadata(path).map_err(io_error)?;
        if !metadata.is_dir() {
            return Err(DataDirError::NotADirectory(path.to_path_buf()));
        }
        check(path, metadata.uid(), metadata.mode(), euid())?;
        Ok(DataDir {
            path: path.to_path_buf(),
            owner: metadata.uid(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its owner's uid: this process's, unless this process is root.
    pub fn owner(&self) -> u32 {
        self.owner
    }

    /// Whether a process running as `uid` may hold the data: root, this process's user, or
    /// the directory's owner. The control socket's peers on both ends are held to it.
    pub fn trusts(&self, uid: u32) -> bool {
        trusted(uid, self.owner)
    }
}

/// Creates `path` and its missing parents with mode `0700`; a directory already there is
/// left as it is (see [`DataDir::prepare`] for the verdict on it).
pub fn create(path: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    // The mode applies to every directory created here, parents included; the umask can only
    // narrow it.
    builder.recursive(true).mode(0o700).create(path)
}

/// Whether a process running as `uid` may hold the data of a directory that `owner` owns:
/// root, this process's user, or the owner.
pub fn trusted(uid: u32, owner: u32) -> bool {
    uid == 0 || uid == euid() || uid == owner
}

/// The verdict on a directory of `owner` and `mode` for a process of effective uid `user`.
fn check(path: &Path, owner: u32, mode: u32, user: u32) -> Result<(), DataDirError> {
    // Root may use another user's directory: it could read it anyway (see the module docs).
    if owner != user && user != 0 {
        return Err(DataDirError::Owner {
            path: path.to_path_buf(),
            owner,
            user,
        });
    }
    if mode & OPEN_TO_OTHERS != 0 {
        return Err(DataDirError::Mode {
            path: path.to_path_buf(),
            mode: mode & 0o7777,
        });
    }
    Ok(())
}

/// How [`open_file`] opens a file of the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only; the file must exist.
    Read,
    /// Read and write; created with mode `0600` if missing.
    ReadWrite,
    /// Write a new file with the given mode; one already there (even a link) is an error.
    CreateNew(u32),
}

/// Opens `path`, a file of the data directory, without following a link: the file must be a
/// regular file owned by the directory's owner (this process's user, unless it is root).
/// A file root creates in another user's directory is given to that user.
///
/// The errors name the problem but not the path: callers say which file it is.
pub fn open_file(path: &Path, access: Access) -> io::Result<File> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let user = euid();
    // Whose the file must be, and for root, the group a file it creates gets.
    let (owner, group) = if user == 0 {
        let dir = std::fs::metadata(dir)?;
        (dir.uid(), Some(dir.gid()))
    } else {
        (user, None)
    };
    let (file, created) = match access {
        Access::Read => (options(false, 0o600).open(path), false),
        Access::CreateNew(mode) => (options(true, mode).create_new(true).open(path), true),
        Access::ReadWrite => match options(true, 0o600).open(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // O_EXCL: a link put there meanwhile is not followed either.
                match options(true, 0o600).create_new(true).open(path) {
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        (options(true, 0o600).open(path), false)
                    }
                    created => (created, true),
                }
            }
            opened => (opened, false),
        },
    };
    let file = file.map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => io::Error::new(
            io::ErrorKind::InvalidInput,
            "is a symbolic link, and files of the data directory are opened only as regular \
             files: remove the link",
        ),
        _ => e,
    })?;
    if created && owner != user {
        std::os::unix::fs::fchown(&file, Some(owner), group)?;
    }
    let metadata = file.metadata()?;
    if !metadata.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is not a regular file, and only regular files are opened in the data directory",
        ));
    }
    if metadata.uid() != owner {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "belongs to uid {}, not to uid {owner} that owns the data directory: chown {owner}",
                metadata.uid()
            ),
        ));
    }
    Ok(file)
}

/// Reads a whole file of the data directory, opened as [`open_file`] does.
pub fn read_file(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut open_file(path, Access::Read)?, &mut bytes)?;
    Ok(bytes)
}

/// The options of [`open_file`]: never through a link; `O_NONBLOCK` so that opening a FIFO
/// put in a file's place returns (and is then refused) instead of waiting for a writer. It
/// changes nothing on a regular file.
fn options(write: bool, mode: u32) -> OpenOptions {
    let mut options = OpenOptions::new();
    options
        .read(true)
        .write(write)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    options
}

/// This process's effective uid.
#[allow(unsafe_code)] // geteuid has no safe wrapper in std
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests;
