//! How much room is left for the store: the free-space floor's measure (Postfix's
//! `queue_minfree`).

use std::io;
use std::path::Path;

/// Bytes an unprivileged process may still write on the file system holding `dir`
/// (`statvfs`: `f_bavail × f_frsize`, so the blocks reserved for root do not count).
#[cfg(unix)]
#[allow(unsafe_code)] // statvfs has no safe wrapper in std
pub fn free_bytes(dir: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string that outlives the call, and `stats` is a
    // buffer of the size statvfs writes.
    if unsafe { libc::statvfs(path.as_ptr(), stats.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled `stats` in.
    let stats = unsafe { stats.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Ok((stats.f_bavail as u64).saturating_mul(stats.f_frsize as u64))
}

/// Where it cannot be measured, there is always room: the floor never refuses mail there.
#[cfg(not(unix))]
pub fn free_bytes(_dir: &Path) -> io::Result<u64> {
    Ok(u64::MAX)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_directory_has_some_room_and_a_missing_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            free_bytes(dir.path()).unwrap() > 0,
            "the temporary directory is not full"
        );
        let missing = free_bytes(&dir.path().join("nowhere")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        assert!(free_bytes(Path::new("a\0b")).is_err());
    }
}
