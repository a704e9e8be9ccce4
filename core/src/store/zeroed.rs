//! The database file, with its free space written as zeros before redb writes pages there.
//!
//! redb grows its file with `set_len`, which leaves a hole: a page written into a hole makes
//! the filesystem allocate blocks, and the commit's `fdatasync` then waits for a journal
//! commit of that allocation too. On this machine's ext4 a 20 KB write + `fdatasync` took
//! 0.35 ms p50 into a hole or a `fallocate`d range (unwritten extents need the same journal
//! entry when first written), and 0.13–0.17 ms into blocks already written. So the first time
//! redb writes past the zeroed part, the zeros are written up to the next [`ZERO_CHUNK`]
//! boundary past that write: one commit pays for the allocation of the chunk, the commits
//! after it only overwrite blocks. redb writes new pages close behind its last one, so the
//! zeros move ahead in steps of a chunk (47 steps of at most 4 MiB, 1–8 ms each, for 20 000
//! messages), never a whole doubling of the file at once.
//!
//! Measured with `tests/bench.sh compare 10` against the same build without it, paired by
//! round: one lock-step connection (a) 1.28× the msg/s (1.05–1.58, faster in 10 of 10
//! rounds), its p99 0.92×; twenty connections (b) 0.97× (faster in 5 of 10), their p99
//! 1.12×. The file takes no more room: redb has already set its length.
//!
//! Safe because nothing past the `zeroed` mark has been written since the file was
//! opened, and nothing past it held data when it was (the end of the file's last data extent,
//! from `SEEK_DATA`/`SEEK_HOLE`): the zeros only land where redb would read zeros anyway.

use std::fs::File;
use std::io;
use std::ops::Bound;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// How far ahead of redb's writes the zeros go, at most, in one step: bounds the one commit
/// that writes them.
pub const ZERO_CHUNK: u64 = 4 << 20;

/// A [`FileBackend`] that writes zeros ahead of redb's writes into the file's free space.
#[derive(Debug)]
pub struct ZeroAhead {
    inner: FileBackend,
    file: File,
    /// Below this offset the file holds data or zeros written by us; past it, since the file
    /// was opened, nothing was written. Read without the lock on the fast path.
    zeroed: AtomicU64,
    /// Held while zeros are written, so two writes past `zeroed` never both zero.
    zeroing: Mutex<()>,
}

impl ZeroAhead {
    /// Wraps `file`; a second handle on the same file writes the zeros.
    pub fn new(file: File) -> io::Result<ZeroAhead> {
        let zeroed = end_of_data(&file)?;
        let zeroing_handle = file.try_clone()?;
        Ok(ZeroAhead {
            inner: FileBackend::new(file).map_err(io::Error::other)?,
            file: zeroing_handle,
            zeroed: AtomicU64::new(zeroed),
            zeroing: Mutex::new(()),
        })
    }

    /// Takes the zeroing lock, which orders the mark's moves.
    fn lock(&self) -> io::Result<std::sync::MutexGuard<'_, ()>> {
        self.zeroing
            .lock()
            .map_err(|_| io::Error::other("zeroing lock poisoned"))
    }

    /// Writes zeros from the zeroed mark up to past `end` (within the file's length).
    fn zero_through(&self, end: u64) -> io::Result<()> {
        let _guard = self.lock()?;
        let start = self.zeroed.load(Ordering::Acquire);
        if end <= start {
            return Ok(()); // another write zeroed it meanwhile
        }
        let len = self.inner.len()?;
        let stop = end.div_ceil(ZERO_CHUNK).saturating_mul(ZERO_CHUNK).min(len);
        let began = std::time::Instant::now();
        write_zeros(&self.file, start, stop)?;
        log::debug!(
            "zeroed {} KiB ahead of a write ending at {end} in {:?}",
            (stop - start) >> 10,
            began.elapsed()
        );
        self.zeroed.store(stop.max(start), Ordering::Release);
        Ok(())
    }
}

#[cfg(unix)]
fn write_zeros(file: &File, start: u64, stop: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    const BLOCK: usize = 256 << 10;
    let zeros = vec![0u8; BLOCK];
    let mut at = start;
    while at < stop {
        let n = usize::try_from(stop - at).map_or(BLOCK, |left| left.min(BLOCK));
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

#[cfg(not(unix))]
fn write_zeros(_file: &File, _start: u64, _stop: u64) -> io::Result<()> {
    Ok(())
}

/// Where the file's last data extent ends: its length where holes are not reported.
#[cfg(target_os = "linux")]
fn end_of_data(file: &File) -> io::Result<u64> {
    use std::os::fd::AsRawFd;
    let len = file.metadata()?.len();
    let fd = file.as_raw_fd();
    let mut end = 0u64;
    let mut at = 0u64;
    while at < len {
        // SAFETY: lseek takes integers only, on a descriptor `file` keeps open.
        let data = unsafe { libc::lseek(fd, at as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            let error = io::Error::last_os_error();
            return match error.raw_os_error() {
                Some(libc::ENXIO) => Ok(end),  // no data past `at`
                Some(libc::EINVAL) => Ok(len), // holes not supported: all of it is data
                _ => Err(error),
            };
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Ok(len);
        }
        // Both are offsets within the file, so not negative.
        end = hole as u64;
        at = end;
    }
    Ok(end.min(len))
}

#[cfg(not(target_os = "linux"))]
fn end_of_data(file: &File) -> io::Result<u64> {
    Ok(file.metadata()?.len())
}

impl StorageBackend for ZeroAhead {
    fn len(&self) -> Result<u64, io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let _guard = self.lock()?;
        self.inner.set_len(len)?;
        // Space given back and grown again is a hole again.
        self.zeroed.fetch_min(len, Ordering::AcqRel);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let end = offset.saturating_add(data.len() as u64);
        if end > self.zeroed.load(Ordering::Acquire) {
            self.zero_through(end)?;
        }
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), io::Error> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    const MIB: u64 = 1 << 20;

    fn file_in(dir: &tempfile::TempDir) -> File {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.path().join("db"))
            .unwrap()
    }

    fn contents(backend: &ZeroAhead) -> Vec<u8> {
        let mut all = vec![0xEE; backend.len().unwrap() as usize];
        backend.read(0, &mut all).unwrap();
        all
    }

    #[test]
    fn zeros_go_ahead_of_a_write_into_a_hole_and_change_nothing_read() {
        let dir = tempfile::tempdir().unwrap();
        let backend = ZeroAhead::new(file_in(&dir)).unwrap();
        backend.set_len(16 * MIB).unwrap();
        // A length set is a hole: no data yet (this sandbox's ext4 and tmpfs report holes).
        assert_eq!(end_of_data(&backend.file).unwrap(), 0);
        let mut model = vec![0u8; 16 * MIB as usize];
        for (offset, byte) in [(4096u64, 1u8), (MIB + 10, 2), (5 * MIB - 3, 3), (12_288, 4)] {
            let page = vec![byte; 8192];
            backend.write(offset, &page).unwrap();
            model[offset as usize..offset as usize + page.len()].copy_from_slice(&page);
        }
        assert!(
            contents(&backend) == model,
            "what redb reads is what it wrote, else zeros"
        );
        // The zeros were written up to the chunk past the furthest write, no further.
        assert_eq!(end_of_data(&backend.file).unwrap(), 2 * ZERO_CHUNK);
        assert_eq!(
            backend.len().unwrap(),
            16 * MIB,
            "the length is redb's alone"
        );
    }

    #[test]
    fn data_in_the_file_at_open_is_never_zeroed() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_in(&dir);
        file.set_len(8 * MIB).unwrap();
        // Data at the start and after a hole, as a file redb grew may hold.
        file.write_all_at(&[7u8; 4096], 0).unwrap();
        file.write_all_at(&[8u8; 4096], 3 * MIB).unwrap();
        let backend = ZeroAhead::new(file).unwrap();
        assert_eq!(backend.zeroed.load(Ordering::Acquire), 3 * MIB + 4096);
        backend.write(MIB, &[9u8; 4096]).unwrap(); // below the mark: written as it is
        backend.write(5 * MIB, &[10u8; 4096]).unwrap(); // past it: zeros first
        let all = contents(&backend);
        let at = |offset: u64| all[offset as usize];
        assert_eq!((at(0), at(4095), at(4096)), (7, 7, 0));
        assert_eq!((at(MIB), at(3 * MIB), at(3 * MIB + 4095)), (9, 8, 8));
        assert_eq!(
            (at(3 * MIB + 4096), at(5 * MIB), at(5 * MIB + 4096)),
            (0, 10, 0)
        );
        assert_eq!(end_of_data(&backend.file).unwrap(), 8 * MIB);
    }

    #[test]
    fn space_given_back_is_zeroed_again_when_it_is_grown() {
        let dir = tempfile::tempdir().unwrap();
        let backend = ZeroAhead::new(file_in(&dir)).unwrap();
        backend.set_len(8 * MIB).unwrap();
        backend.write(0, &[1u8; 4096]).unwrap();
        assert_eq!(backend.zeroed.load(Ordering::Acquire), ZERO_CHUNK);
        backend.set_len(MIB).unwrap();
        assert_eq!(backend.zeroed.load(Ordering::Acquire), MIB);
        backend.set_len(8 * MIB).unwrap();
        backend.write(6 * MIB, &[2u8; 4096]).unwrap();
        let all = contents(&backend);
        assert_eq!(
            (all[0], all[MIB as usize], all[6 * MIB as usize]),
            (1, 0, 2)
        );
        assert_eq!(end_of_data(&backend.file).unwrap(), 8 * MIB);
    }
}
