//! The data directory's checks, and the opening of its files, on a real file system.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Whether the tests run as root (CI does): the checks on other users need it.
fn as_root() -> bool {
    euid() == 0
}

#[test]
fn a_missing_data_dir_is_created_0700_with_its_parents() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("a/b/data");
    let dir = DataDir::prepare(&path).unwrap();
    assert_eq!(dir.path(), path);
    assert_eq!(dir.owner(), euid());
    assert_eq!(mode_of(&path), 0o700);
    assert_eq!(mode_of(&tmp.path().join("a")), 0o700);
    // Again: nothing to create, the same verdict.
    assert_eq!(DataDir::prepare(&path).unwrap(), dir);
}

#[test]
fn a_data_dir_open_to_others_is_refused_naming_it_and_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("data");
    std::fs::create_dir(&path).unwrap();
    for mode in [0o755, 0o750, 0o770, 0o701, 0o702, 0o710] {
        set_mode(&path, mode);
        let error = DataDir::prepare(&path).unwrap_err();
        assert_eq!(
            error,
            DataDirError::Mode {
                path: path.clone(),
                mode
            }
        );
        let shown = error.to_string();
        assert!(
            shown.starts_with(&format!("data directory {} is open", path.display())),
            "{shown}"
        );
        assert!(
            shown.ends_with(&format!("chmod 700 {}", path.display())),
            "{shown}"
        );
        // Refused as it was found: the check changes nothing.
        assert_eq!(mode_of(&path), mode);
    }
    set_mode(&path, 0o700);
    assert!(DataDir::prepare(&path).is_ok());
}

#[test]
fn another_users_dir_is_refused_unless_root_runs() {
    let path = Path::new("/srv/mail");
    let error = check(path, 998, 0o700, 1000).unwrap_err();
    assert_eq!(
        error.to_string(),
        "data directory /srv/mail belongs to uid 998, not to uid 1000 that runs this: run it as \
         that user (sudo -u), or give the directory to this one: chown -R 1000 /srv/mail"
    );
    // Root may: it could read the directory anyway. Its mode is still checked.
    assert_eq!(check(path, 998, 0o700, 0), Ok(()));
    assert!(matches!(
        check(path, 998, 0o750, 0),
        Err(DataDirError::Mode { mode: 0o750, .. })
    ));
    assert_eq!(check(path, 1000, 0o700, 1000), Ok(()));
}

#[test]
fn root_may_use_another_users_dir_and_gives_it_the_files_it_creates() {
    if !as_root() {
        return eprintln!("skipped: needs root");
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("data");
    std::fs::create_dir(&path).unwrap();
    set_mode(&path, 0o700);
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    let dir = DataDir::prepare(&path).unwrap();
    assert_eq!(dir.owner(), 65534);
    assert!(dir.trusts(0) && dir.trusts(65534) && !dir.trusts(1234));
    let file = path.join("atacama.journal");
    open_file(&file, Access::ReadWrite).unwrap();
    let metadata = std::fs::metadata(&file).unwrap();
    assert_eq!((metadata.uid(), metadata.gid()), (65534, 65534));
    assert_eq!(metadata.mode() & 0o777, 0o600);
    // Opened again as the owner's: fine. A file of root's own in there is not.
    open_file(&file, Access::ReadWrite).unwrap();
    let planted = path.join("atacama.redb");
    std::fs::write(&planted, b"").unwrap();
    let error = open_file(&planted, Access::ReadWrite).unwrap_err();
    assert_eq!(
        error.to_string(),
        "belongs to uid 0, not to uid 65534 that owns the data directory: chown 65534"
    );
}

#[test]
fn a_file_of_another_user_is_refused() {
    if !as_root() {
        return eprintln!("skipped: needs root");
    }
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("atacama.redb");
    std::fs::write(&file, b"").unwrap();
    std::os::unix::fs::chown(&file, Some(65534), None).unwrap();
    let error = open_file(&file, Access::ReadWrite).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);
    assert!(
        error.to_string().starts_with("belongs to uid 65534"),
        "{error}"
    );
    assert!(read_file(&file).is_err());
}

#[test]
fn this_process_and_root_are_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    set_mode(tmp.path(), 0o700);
    let dir = DataDir::prepare(tmp.path()).unwrap();
    assert!(dir.trusts(0));
    assert!(dir.trusts(euid()));
    assert!(!dir.trusts(65534) || euid() == 65534);
}

#[test]
fn a_file_in_the_way_is_not_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("data");
    std::fs::write(&path, b"").unwrap();
    assert_eq!(
        DataDir::prepare(&path),
        Err(DataDirError::NotADirectory(path.clone()))
    );
    assert_eq!(
        DataDirError::NotADirectory(path.clone()).to_string(),
        format!("data directory {} is not a directory", path.display())
    );
}

#[test]
fn a_linked_file_is_refused_and_its_target_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("precious");
    std::fs::write(&target, b"keep me").unwrap();
    let link = tmp.path().join("atacama.journal");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    for access in [Access::ReadWrite, Access::Read, Access::CreateNew(0o600)] {
        let error = open_file(&link, access).unwrap_err();
        let expected = match access {
            // O_EXCL: the name is taken, by the link.
            Access::CreateNew(_) => io::ErrorKind::AlreadyExists,
            _ => io::ErrorKind::InvalidInput,
        };
        assert_eq!(error.kind(), expected, "{access:?}: {error}");
    }
    let error = open_file(&link, Access::ReadWrite).unwrap_err();
    assert!(
        error.to_string().starts_with("is a symbolic link"),
        "{error}"
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
    // A link to nowhere is not followed to create its target either.
    let dangling = tmp.path().join("atacama.redb");
    let nowhere = tmp.path().join("nowhere");
    std::os::unix::fs::symlink(&nowhere, &dangling).unwrap();
    assert!(open_file(&dangling, Access::ReadWrite).is_err());
    assert!(!nowhere.exists());
}

#[test]
fn only_regular_files_are_opened_and_a_fifo_does_not_block() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("self-signed-key.pem");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    // Read only: without O_NONBLOCK this would wait for a writer forever.
    let error = read_file(&fifo).unwrap_err();
    assert!(
        error.to_string().starts_with("is not a regular file"),
        "{error}"
    );
    let error = open_file(&fifo, Access::ReadWrite).unwrap_err();
    assert!(
        error.to_string().starts_with("is not a regular file"),
        "{error}"
    );
    let sub = tmp.path().join("atacama.redb");
    std::fs::create_dir(&sub).unwrap();
    assert!(open_file(&sub, Access::Read).is_err());
}

#[test]
fn new_files_are_private_and_existing_ones_keep_their_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("atacama.redb");
    open_file(&file, Access::ReadWrite).unwrap();
    assert_eq!(mode_of(&file), 0o600);
    std::fs::write(&file, b"data").unwrap();
    open_file(&file, Access::ReadWrite).unwrap();
    assert_eq!(read_file(&file).unwrap(), b"data");
    let cert = tmp.path().join("cert.tmp");
    open_file(&cert, Access::CreateNew(0o644)).unwrap();
    assert_eq!(mode_of(&cert), 0o644);
    assert_eq!(
        open_file(&cert, Access::CreateNew(0o644))
            .unwrap_err()
            .kind(),
        io::ErrorKind::AlreadyExists
    );
}

#[test]
fn the_store_refuses_a_linked_journal_and_leaves_its_target_alone() {
    use crate::{DATABASE_FILE, Store, StoreError};
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("elsewhere");
    std::fs::write(&target, b"twelve bytes").unwrap();
    let data = tmp.path().join("data");
    DataDir::prepare(&data).unwrap();
    let journal = data.join("atacama.journal");
    std::os::unix::fs::symlink(&target, &journal).unwrap();
    let error = Store::open_in(&data, 4).unwrap_err();
    let StoreError::Database(problem) = &error else {
        panic!("{error:?}");
    };
    assert!(
        problem.starts_with(&format!("{}: is a symbolic link", journal.display())),
        "{problem}"
    );
    // Once it grew this file to 16 MiB of zeros.
    assert_eq!(std::fs::read(&target).unwrap(), b"twelve bytes");
    // The database file is held to the same.
    std::fs::remove_file(&journal).unwrap();
    std::fs::remove_file(data.join(DATABASE_FILE)).unwrap();
    std::os::unix::fs::symlink(&target, data.join(DATABASE_FILE)).unwrap();
    assert!(Store::open_in(&data, 4).is_err());
    assert_eq!(std::fs::read(&target).unwrap(), b"twelve bytes");
}

#[test]
fn the_store_creates_a_missing_data_dir_0700() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    drop(crate::Store::open_in(&data, 4).unwrap());
    assert_eq!(mode_of(&data), 0o700);
    assert_eq!(mode_of(&data.join(crate::DATABASE_FILE)), 0o600);
}
