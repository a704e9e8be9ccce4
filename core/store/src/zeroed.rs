//! The database file, with its free space written as zeros before redb writes pages there.
//!
//! redb grows its file with `set_len`, which leaves a hole: a page written into a hole makes
//! the filesystem allocate blocks, and the commit's `fdatasync` then waits for a journal
//! commit of that allocation too. So a thread of its own keeps [`ZERO_AHEAD`] of zeros written
//! (and synced) past redb's furthest write: commits then only overwrite blocks. redb writes new
//! pages close behind its last one; a write that does reach past the zeros zeros the gap before
//! it itself. The file takes no more room: redb has already set its length. The figures that
//! decided it: ARCHITECTURE.md, "Zero-ahead".
//!
//! Safe because nothing past the `zeroed` mark has been written since the file was
//! opened, and nothing past it held data when it was (the end of the file's last data extent,
//! from `SEEK_DATA`/`SEEK_HOLE`): the zeros only land where redb would read zeros anyway. The
//! mark moves only under the zeroing lock, and past a redb write before that write is made.

use std::fs::File;
use std::io;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

use super::StoreError;
use atacama_core::logging::{self, Repeats};

/// How far past redb's furthest write the zeroing thread keeps the zeros.
pub const ZERO_AHEAD: u64 = 8 << 20;

/// Zeros written per hold of the zeroing lock, each followed by an `fdatasync` of its own:
/// a commit's `fdatasync` can meet at most this much of them still in the page cache.
const ZERO_STEP: u64 = 1 << 20;

/// How long the zeroing thread waits after a step failed (a full disk, usually) before it
/// tries again. Meanwhile writes past the mark zero for themselves, and fail as they would.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A [`FileBackend`] that writes zeros ahead of redb's writes into the file's free space.
#[derive(Debug)]
pub struct ZeroAhead {
    inner: FileBackend,
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
    last_error: Arc<LastError>,
}

/// The first I/O error the backend returned to redb. redb latches it and reports what follows
/// as "Previous I/O error" only, sometimes even to the operation that met it; the reply
/// depends on what it was (`452` for a full disk), so the store asks here.
#[derive(Debug, Default)]
pub struct LastError(Mutex<Option<StoreError>>);

impl LastError {
    /// The error, if the backend has returned one.
    pub fn get(&self) -> Option<StoreError> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Passes `result` on, noting its error if it is the first.
    fn note<T>(&self, result: io::Result<T>) -> io::Result<T> {
        if let Err(error) = &result {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert_with(|| StoreError::from_io(error, None));
        }
        result
    }
}

#[derive(Debug)]
struct Shared {
    /// A second handle on the file, for the zeros.
    file: File,
    /// Below this offset the file holds data or zeros written by us; past it, since the file
    /// was opened, nothing was written. Read without the lock on the fast path.
    zeroed: AtomicU64,
    /// Held while zeros are written and while the mark moves, so no write past the mark ever
    /// meets zeros written over it.
    zeroing: Mutex<()>,
    /// What the zeroing thread was asked for; its condvar wakes it.
    wanted: Mutex<Wanted>,
    wake: Condvar,
    /// How many times the thread looked for zeros to write: shows it sleeps when it should.
    looks: AtomicU64,
}

#[derive(Debug, Default)]
struct Wanted {
    through: u64,
    /// Moves on every request and every change of length: the thread sleeps while it has
    /// served the latest, so a request the file's length cut short does not keep it spinning.
    asked: u64,
    stop: bool,
}

impl ZeroAhead {
    /// Wraps `file`; a second handle on the same file writes the zeros, on a thread of its own.
    pub fn new(file: File) -> io::Result<ZeroAhead> {
        let shared = Arc::new(Shared {
            zeroed: AtomicU64::new(end_of_data(&file)?),
            file: file.try_clone()?,
            zeroing: Mutex::new(()),
            wanted: Mutex::new(Wanted::default()),
            wake: Condvar::new(),
            looks: AtomicU64::new(0),
        });
        // The backend before the thread: a file redb cannot have leaves no thread behind.
        let mut backend = ZeroAhead {
            inner: FileBackend::new(file).map_err(io::Error::other)?,
            shared,
            worker: None,
            last_error: Arc::default(),
        };
        let shared = Arc::clone(&backend.shared);
        backend.worker = Some(
            std::thread::Builder::new()
                .name("zero-ahead".into())
                .spawn(move || shared.zero_when_asked())?,
        );
        Ok(backend)
    }

    /// Where the first I/O error returned to redb is kept.
    pub fn last_error(&self) -> Arc<LastError> {
        Arc::clone(&self.last_error)
    }

    /// A write reaching past the mark: zeros whatever lies between the mark and it, here and
    /// now, and moves the mark past it. Rare while the zeroing thread keeps ahead.
    fn catch_up(&self, offset: u64, end: u64) -> io::Result<()> {
        let _guard = self.shared.lock()?;
        let mark = self.shared.zeroed.load(Ordering::Acquire);
        if end <= mark {
            return Ok(()); // the zeroing thread got there meanwhile
        }
        if offset > mark {
            write_zeros(&self.shared.file, mark, offset)?;
        }
        self.shared.zeroed.store(end, Ordering::Release);
        Ok(())
    }

    /// Asks the zeroing thread to keep the zeros [`ZERO_AHEAD`] past `end`.
    fn ask(&self, end: u64) -> io::Result<()> {
        let mut wanted = self.shared.wanted()?;
        // Whole steps, so the thread's writes after its first are aligned.
        let through = end
            .saturating_add(ZERO_AHEAD)
            .div_ceil(ZERO_STEP)
            .saturating_mul(ZERO_STEP);
        if through > wanted.through {
            wanted.through = through;
            self.shared.nudge(&mut wanted);
        }
        Ok(())
    }
}

/// The error a lock poisoned by a panic elsewhere becomes.
fn poisoned<T>(_: T) -> io::Error {
    io::Error::other("zero-ahead lock poisoned")
}

impl Shared {
    /// Takes the zeroing lock, which orders the mark's moves.
    fn lock(&self) -> io::Result<MutexGuard<'_, ()>> {
        self.zeroing.lock().map_err(poisoned)
    }

    fn wanted(&self) -> io::Result<MutexGuard<'_, Wanted>> {
        self.wanted.lock().map_err(poisoned)
    }

    /// Marks a new request in `wanted` (its guard held) and wakes the thread for it.
    fn nudge(&self, wanted: &mut Wanted) {
        wanted.asked = wanted.asked.wrapping_add(1);
        self.wake.notify_one();
    }

    /// The zeroing thread. Where it stops (a lock poisoned by a panic), the writes past the
    /// mark still zero for themselves.
    fn zero_when_asked(&self) {
        if let Err(error) = self.serve_requests() {
            log::warn!("zero-ahead stopped: {error}");
        }
    }

    /// Waits to be asked, then zeros a step at a time up to what was asked (within the
    /// file's length), syncing each step so no commit has to. A step that fails (`ENOSPC`)
    /// is tried again after [`RETRY_AFTER`], never at once: the thread must neither spin on
    /// a full disk nor give up for good once there is room again.
    fn serve_requests(&self) -> io::Result<()> {
        let mut served = 0;
        let mut failures = Repeats::new();
        while let Some(mut through) = self.next_request(&mut served)? {
            loop {
                match self.zero_step(through) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(error) => {
                        if let Some(held) = failures.admit(Instant::now()) {
                            logging::zero_ahead_failed(&error, RETRY_AFTER, held);
                        }
                        match self.pause(RETRY_AFTER, &mut served)? {
                            Some(latest) => through = latest,
                            None => return Ok(()),
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Sleeps for `pause`, or until the backend is dropped (`None`); then what is wanted now,
    /// which counts as served.
    fn pause(&self, pause: Duration, served: &mut u64) -> io::Result<Option<u64>> {
        let wanted = self.wanted()?;
        let (wanted, _) = self
            .wake
            .wait_timeout_while(wanted, pause, |wanted| !wanted.stop)
            .map_err(poisoned)?;
        *served = wanted.asked;
        Ok((!wanted.stop).then_some(wanted.through))
    }

    /// Waits for a request newer than `served`: `None` once the backend is dropped.
    fn next_request(&self, served: &mut u64) -> io::Result<Option<u64>> {
        let mut wanted = self.wanted()?;
        loop {
            if wanted.stop {
                return Ok(None);
            }
            if wanted.asked != *served {
                *served = wanted.asked;
                return Ok(Some(wanted.through));
            }
            wanted = self.wake.wait(wanted).map_err(poisoned)?;
        }
    }

    /// Zeros one step from the mark towards `through`: false when there is nothing to zero.
    fn zero_step(&self, through: u64) -> io::Result<bool> {
        self.looks.fetch_add(1, Ordering::Relaxed);
        {
            let _guard = self.lock()?;
            let start = self.zeroed.load(Ordering::Acquire);
            let len = self.file.metadata()?.len();
            let stop = through.min(len).min(start.saturating_add(ZERO_STEP));
            if stop <= start {
                return Ok(false);
            }
            write_zeros(&self.file, start, stop)?;
            self.zeroed.store(stop, Ordering::Release);
        }
        self.file.sync_data()?;
        Ok(true)
    }
}

impl Drop for ZeroAhead {
    fn drop(&mut self) {
        if let Ok(mut wanted) = self.shared.wanted() {
            wanted.stop = true;
            self.shared.nudge(&mut wanted);
        }
        if let Some(worker) = self.worker.take() {
            // A step is at most ZERO_STEP: the join waits for that much.
            let _ = worker.join();
        }
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
#[allow(unsafe_code)] // lseek(SEEK_DATA/SEEK_HOLE) has no safe wrapper in std
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

impl ZeroAhead {
    /// [`StorageBackend::set_len`]: a hole given back and grown again is zeroed again.
    fn grow_or_shrink(&self, len: u64) -> io::Result<()> {
        {
            let _guard = self.shared.lock()?;
            self.inner.set_len(len)?;
            // Space given back and grown again is a hole again.
            self.shared.zeroed.fetch_min(len, Ordering::AcqRel);
        }
        // A longer file may let the thread go further towards what it was asked.
        self.shared.nudge(&mut *self.shared.wanted()?);
        Ok(())
    }

    /// [`StorageBackend::write`]: zeros up to `offset` first if it lies past the mark.
    fn write_zeroed(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = offset.saturating_add(data.len() as u64);
        let mark = self.shared.zeroed.load(Ordering::Acquire);
        if end > mark {
            self.catch_up(offset, end)?;
        }
        if end.saturating_add(ZERO_AHEAD / 2) > mark {
            self.ask(end)?;
        }
        self.inner.write(offset, data)
    }
}

impl StorageBackend for ZeroAhead {
    fn len(&self) -> Result<u64, io::Error> {
        self.last_error.note(self.inner.len())
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.last_error.note(self.inner.read(offset, out))
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.last_error.note(self.grow_or_shrink(len))
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.last_error.note(self.inner.sync_data())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.last_error.note(self.write_zeroed(offset, data))
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

    /// A backend on a new file that redb has grown to `len`: all of it a hole.
    fn grown(dir: &tempfile::TempDir, len: u64) -> ZeroAhead {
        let backend = ZeroAhead::new(file_in(dir)).unwrap();
        backend.set_len(len).unwrap();
        backend
    }

    fn contents(backend: &ZeroAhead) -> Vec<u8> {
        let mut all = vec![0xEE; backend.len().unwrap() as usize];
        backend.read(0, &mut all).unwrap();
        all
    }

    /// Waits for the zeroing thread to finish what it was asked.
    fn settle(backend: &ZeroAhead) -> u64 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let through = backend.shared.wanted().unwrap().through;
            let stop = through.min(backend.len().unwrap());
            let mark = backend.shared.zeroed.load(Ordering::Acquire);
            if mark >= stop {
                return mark;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "zeroing stalled at {mark}"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[test]
    fn zeros_go_ahead_of_the_writes_into_the_holes_and_change_nothing_read() {
        let dir = tempfile::tempdir().unwrap();
        let backend = grown(&dir, 32 * MIB);
        // A length set is a hole: no data yet (this sandbox's ext4 and tmpfs report holes).
        assert_eq!(end_of_data(&backend.shared.file).unwrap(), 0);
        let mut model = vec![0u8; 32 * MIB as usize];
        for (offset, byte) in [(4096u64, 1u8), (MIB + 10, 2), (5 * MIB - 3, 3), (12_288, 4)] {
            let page = vec![byte; 8192];
            backend.write(offset, &page).unwrap();
            model[offset as usize..offset as usize + page.len()].copy_from_slice(&page);
        }
        // The thread keeps ZERO_AHEAD past the furthest write (5 MiB + 8189), in whole steps.
        assert_eq!(settle(&backend), 14 * MIB);
        assert_eq!(end_of_data(&backend.shared.file).unwrap(), 14 * MIB);
        assert!(
            contents(&backend) == model,
            "what redb reads is what it wrote, else zeros"
        );
        assert_eq!(
            backend.len().unwrap(),
            32 * MIB,
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
        assert_eq!(
            backend.shared.zeroed.load(Ordering::Acquire),
            3 * MIB + 4096
        );
        backend.write(MIB, &[9u8; 4096]).unwrap(); // below the mark: written as it is
        backend.write(5 * MIB, &[10u8; 4096]).unwrap(); // past it: zeros up to it first
        assert_eq!(settle(&backend), 8 * MIB, "no zeros past the file's length");
        let all = contents(&backend);
        let at = |offset: u64| all[offset as usize];
        assert_eq!((at(0), at(4095), at(4096)), (7, 7, 0));
        assert_eq!((at(MIB), at(3 * MIB), at(3 * MIB + 4095)), (9, 8, 8));
        assert_eq!(
            (at(3 * MIB + 4096), at(5 * MIB), at(5 * MIB + 4096)),
            (0, 10, 0)
        );
        assert_eq!(end_of_data(&backend.shared.file).unwrap(), 8 * MIB);
    }

    #[test]
    fn space_given_back_is_zeroed_again_when_it_is_grown() {
        let dir = tempfile::tempdir().unwrap();
        let backend = grown(&dir, 8 * MIB);
        backend.write(0, &[1u8; 4096]).unwrap();
        assert_eq!(settle(&backend), 8 * MIB);
        backend.set_len(MIB).unwrap();
        assert_eq!(backend.shared.zeroed.load(Ordering::Acquire), MIB);
        backend.set_len(8 * MIB).unwrap();
        backend.write(6 * MIB, &[2u8; 4096]).unwrap();
        let all = contents(&backend);
        assert_eq!(
            (all[0], all[MIB as usize], all[6 * MIB as usize]),
            (1, 0, 2)
        );
        settle(&backend);
        assert_eq!(end_of_data(&backend.shared.file).unwrap(), 8 * MIB);
    }

    #[test]
    fn the_thread_sleeps_when_the_file_ends_before_what_it_was_asked() {
        let dir = tempfile::tempdir().unwrap();
        let backend = grown(&dir, 2 * MIB);
        backend.write(0, &[1u8; 4096]).unwrap(); // asks for 9 MiB of a 2 MiB file
        assert_eq!(settle(&backend), 2 * MIB);
        let looks = backend.shared.looks.load(Ordering::Relaxed);
        std::thread::sleep(std::time::Duration::from_millis(200));
        // One more look may follow the step settle saw (it finds nothing); a spin makes many.
        let more = backend.shared.looks.load(Ordering::Relaxed) - looks;
        assert!(more <= 1, "it spins: {more} looks in 200 ms");
        backend.set_len(4 * MIB).unwrap(); // grown: it goes on
        assert_eq!(settle(&backend), 4 * MIB);
        assert_eq!(end_of_data(&backend.shared.file).unwrap(), 4 * MIB);
    }

    #[test]
    fn on_a_full_disk_the_thread_tries_again_each_second_and_goes_on_once_there_is_room() {
        let fs = crate::testing::Tmpfs::mount(4);
        let file = fs.file("db");
        let backend = ZeroAhead::new(file).unwrap();
        backend.set_len(32 * MIB).unwrap();
        backend.write(0, &[1u8; 4096]).unwrap(); // asks for zeros through 9 MiB: 4 fit
        std::thread::sleep(std::time::Duration::from_millis(300));
        let looks = backend.shared.looks.load(Ordering::Relaxed);
        std::thread::sleep(std::time::Duration::from_millis(2500));
        // One look a second (a spin makes thousands).
        let more = backend.shared.looks.load(Ordering::Relaxed) - looks;
        assert!((1..=4).contains(&more), "{more} looks in 2.5 s");
        assert!(backend.shared.zeroed.load(Ordering::Acquire) < 4 * MIB);
        fs.resize(16);
        assert_eq!(settle(&backend), 9 * MIB, "it went on once there was room");
        assert_eq!(contents(&backend)[..4096], [1u8; 4096]);
    }

    #[test]
    fn writes_racing_the_zeroing_thread_all_survive() {
        // redb's pattern, sped up: new pages just past the last, rewrites of old ones, and
        // now and then a jump, while the thread zeros ahead.
        let dir = tempfile::tempdir().unwrap();
        let len = 96 * MIB;
        let backend = grown(&dir, len);
        let mut model = vec![0u8; len as usize];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut furthest = 0u64;
        for round in 0..6000u64 {
            let roll = next();
            let offset = match roll % 10 {
                0 if furthest > 0 => (roll >> 8) % furthest, // a rewrite
                1 => furthest + (roll >> 8) % (3 * MIB),     // a jump
                _ => furthest + (roll >> 8) % 8192,          // the next page
            }
            .min(len - 16_384);
            let page = vec![(round % 251 + 1) as u8; 4096 + (roll >> 40) as usize % 8192];
            backend.write(offset, &page).unwrap();
            model[offset as usize..offset as usize + page.len()].copy_from_slice(&page);
            furthest = furthest.max(offset + page.len() as u64);
        }
        settle(&backend);
        assert!(contents(&backend) == model, "a write was zeroed over");
    }
}
