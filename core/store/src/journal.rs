//! The delivery journal: what makes a stored message durable before redb's own commit is.
//!
//! Appending to a file whose blocks are already written and one `fdatasync` costs about a
//! third of a durable redb commit (figures: ARCHITECTURE.md, "The delivery journal"). So a
//! batch of at most [`JOURNAL_BATCH_MAX`] messages commits to redb non-durably, writing the
//! journal sequence number it is given into the same transaction, and is then appended here as
//! one record; `250` waits for that record's `fdatasync`. Now and then ([`CHECKPOINT_AT`],
//! when the committer is idle, and when the store closes) a durable redb commit makes
//! everything so far durable in the database, and the journal starts again from its first byte.
//!
//! After a crash, redb opens at its last durable commit, whose sequence number says which
//! records it already holds; the later ones are applied again, exactly as they were written
//! (the keys and values, not the messages to store anew), in one durable commit.
//!
//! # Records
//! `magic u32 | payload length u32 | sequence u64 | key u64 | crc32 of sequence, key and
//! payload u32 | reserved u32 | payload`, little-endian. A scan from the first byte takes
//! records while each is whole, carries the database's key, has its checksum right and its
//! sequence one more than the last: a record torn by the crash ends it, and so do the older
//! records a restarted journal has not yet written over (their sequence numbers are all lower).
//!
//! The key is a random number kept in the database (`schema::journal_key`) and never shown.
//! A payload holds a sender's bytes almost verbatim (lz4 copies what it cannot shrink), so a
//! message could carry something shaped like a record; after a restart, a shorter new record
//! could end exactly where that sits. Without the key, such a forgery fails the scan.

use std::fs::File;
use std::io;

use redb::StorageBackend;

use super::zeroed::ZeroAhead;

/// The journal file's length: room for [`CHECKPOINT_AT`] and then the largest batch that still
/// goes through the journal (a larger one commits durably in redb instead).
pub const JOURNAL_BYTES: u64 = 16 << 20;

/// The most messages a batch may hold and still go through the journal; a larger batch commits
/// durably in redb, which checkpoints the journal too.
///
/// The journal saves a batch redb's fixed cost of a durable commit, which a batch of many
/// messages already spreads thin, and it writes each message twice (record, then checkpoint).
/// Under 20 busy connections (batches of about five) journaling every batch gave 0.95× the
/// msg/s of durable commits and 1.7× their p99 (the checkpoints' stalls); one lock-step
/// connection, whose batches are single messages, got 1.33× (`compare 20 --pair`).
pub const JOURNAL_BATCH_MAX: usize = 1;

/// Journal bytes after which the batch that reached them checkpoints. A checkpoint's cost
/// grows with what it makes durable: 13.5 ms for 1 000 messages of 6 KB here.
pub const CHECKPOINT_AT: u64 = 4 << 20;

const MAGIC: u32 = u32::from_le_bytes(*b"AJR1");
const HEADER: usize = 32;
/// Marks an entry without a Message-ID to index.
const NO_MESSAGE_ID: u32 = u32::MAX;

/// What one stored message wrote to redb: enough to write it again, key for key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub id: u64,
    /// The `messages` table's value.
    pub value: Vec<u8>,
    /// The `by_user` key's user.
    pub user: String,
    /// The `by_message_id` key, where this message was the first to carry it.
    pub message_id: Option<String>,
}

/// One batch, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    pub seq: u64,
    pub entries: Vec<Entry>,
}

/// The open journal. Its owner serialises appends (the store holds it under a mutex).
#[derive(Debug)]
pub(super) struct Journal {
    /// The file, its blocks zeroed ahead of the appends so each `fdatasync` only overwrites.
    file: ZeroAhead,
    /// The database's journal key: written into every record, required of every record read.
    key: u64,
    /// Where the next record goes.
    end: u64,
}

impl Journal {
    /// Opens (or creates, at its full length) the journal and reads back its records that
    /// carry `key`.
    pub fn open(file: File, key: u64) -> io::Result<(Journal, Vec<Record>)> {
        let file = ZeroAhead::new(file)?;
        if file.len()? < JOURNAL_BYTES {
            file.set_len(JOURNAL_BYTES)?;
        }
        let records = scan(&file, key)?;
        Ok((Journal { file, key, end: 0 }, records))
    }

    /// Whether a record of `payload` bytes fits after the ones written since the last restart.
    pub fn fits(&self, payload: usize) -> bool {
        self.end
            .saturating_add((HEADER + payload) as u64)
            .le(&JOURNAL_BYTES)
            && u32::try_from(payload).is_ok()
    }

    /// Whether enough has been written that a checkpoint is due.
    pub fn checkpoint_due(&self) -> bool {
        self.end >= CHECKPOINT_AT
    }

    /// Whether anything was written since the last restart.
    pub fn is_empty(&self) -> bool {
        self.end == 0
    }

    /// Appends a record and syncs it: on `Ok` it survives a crash.
    pub fn append(&mut self, seq: u64, payload: &[u8]) -> io::Result<()> {
        if !self.fits(payload.len()) {
            return Err(io::Error::other("journal record does not fit"));
        }
        let record = frame(seq, self.key, payload);
        self.file.write(self.end, &record)?;
        self.file.sync_data()?;
        self.end += record.len() as u64;
        Ok(())
    }

    /// The records since the last restart, read back from the file as an open reads them:
    /// for a reopen of the database after an I/O error.
    pub fn records(&self) -> io::Result<Vec<Record>> {
        scan(&self.file, self.key)
    }

    /// Starts again from the first byte: call once everything written is durable elsewhere.
    pub fn restart(&mut self) {
        self.end = 0;
    }
}

/// The header and payload of a record, as written.
fn frame(seq: u64, key: u64, payload: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(HEADER + payload.len());
    record.extend_from_slice(&MAGIC.to_le_bytes());
    // Callers check the length fits in u32 (`fits`).
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&seq.to_le_bytes());
    record.extend_from_slice(&key.to_le_bytes());
    record.extend_from_slice(&checksum(seq, key, payload).to_le_bytes());
    record.extend_from_slice(&[0; 4]);
    record.extend_from_slice(payload);
    record
}

fn checksum(seq: u64, key: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(&key.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// The records from the first byte while they are whole, sound, keyed and in sequence.
fn scan(file: &ZeroAhead, key: u64) -> io::Result<Vec<Record>> {
    let len = file.len()?;
    let mut records: Vec<Record> = Vec::new();
    let mut at = 0u64;
    let mut header = [0u8; HEADER];
    while at.saturating_add(HEADER as u64) <= len {
        file.read(at, &mut header)?;
        let word =
            |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let double = |i: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&header[i..i + 8]);
            u64::from_le_bytes(bytes)
        };
        let (magic, payload_len, seq, record_key, crc) =
            (word(0), word(4), double(8), double(16), word(24));
        let end = at
            .saturating_add(HEADER as u64)
            .saturating_add(u64::from(payload_len));
        let in_sequence = records
            .last()
            .is_none_or(|last| last.seq.checked_add(1) == Some(seq));
        if magic != MAGIC || record_key != key || end > len || !in_sequence {
            break;
        }
        let mut payload = vec![0u8; payload_len as usize];
        file.read(at + HEADER as u64, &mut payload)?;
        if checksum(seq, key, &payload) != crc {
            break;
        }
        let Some(entries) = decode(&payload) else {
            break;
        };
        records.push(Record { seq, entries });
        at = end;
    }
    Ok(records)
}

/// A batch's entries as a record's payload.
pub(super) fn encode(entries: &[Entry]) -> Vec<u8> {
    let size = entries
        .iter()
        .map(|e| 24 + e.value.len() + e.user.len() + e.message_id.as_ref().map_or(0, String::len))
        .sum::<usize>();
    let mut out = Vec::with_capacity(4 + size);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for entry in entries {
        out.extend_from_slice(&entry.id.to_le_bytes());
        put_bytes(&mut out, &entry.value);
        put_bytes(&mut out, entry.user.as_bytes());
        match &entry.message_id {
            Some(message_id) => put_bytes(&mut out, message_id.as_bytes()),
            None => out.extend_from_slice(&NO_MESSAGE_ID.to_le_bytes()),
        }
    }
    out
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // A field of 4 GiB cannot reach here: the journal refuses records that large (`fits`).
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// The entries of a payload; `None` if it is not one `encode` wrote.
fn decode(payload: &[u8]) -> Option<Vec<Entry>> {
    let mut reader = Reader(payload);
    let count = reader.u32()?;
    let mut entries = Vec::new();
    for _ in 0..count {
        let id = reader.u64()?;
        let value = reader.bytes()?.to_vec();
        let user = String::from_utf8(reader.bytes()?.to_vec()).ok()?;
        let message_id = match reader.peek_u32()? {
            NO_MESSAGE_ID => {
                reader.u32()?;
                None
            }
            _ => Some(String::from_utf8(reader.bytes()?.to_vec()).ok()?),
        };
        entries.push(Entry {
            id,
            value,
            user,
            message_id,
        });
    }
    reader.0.is_empty().then_some(entries)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn peek_u32(&self) -> Option<u32> {
        let bytes = self.0.get(..4)?;
        Some(u32::from_le_bytes(bytes.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u32()?).ok()?;
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64, message_id: Option<&str>) -> Entry {
        Entry {
            id,
            value: vec![id as u8; 100 + id as usize],
            user: "alice".into(),
            message_id: message_id.map(Into::into),
        }
    }

    const KEY: u64 = 0x0123_4567_89AB_CDEF;

    fn open(dir: &tempfile::TempDir) -> (Journal, Vec<Record>) {
        open_with(dir, KEY)
    }

    fn open_with(dir: &tempfile::TempDir, key: u64) -> (Journal, Vec<Record>) {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.path().join("journal"))
            .unwrap();
        Journal::open(file, key).unwrap()
    }

    #[test]
    fn payloads_round_trip_and_garbage_is_refused() {
        let entries = vec![entry(1, Some("a@b")), entry(2, None), entry(3, Some(""))];
        let payload = encode(&entries);
        assert_eq!(decode(&payload), Some(entries));
        assert_eq!(decode(&payload[..payload.len() - 1]), None, "truncated");
        let mut longer = payload.clone();
        longer.push(0);
        assert_eq!(decode(&longer), None, "trailing bytes");
        assert_eq!(decode(&[0xFF; 4]), None, "a count with nothing behind it");
        assert_eq!(decode(&encode(&[])), Some(vec![]));
    }

    #[test]
    fn records_written_are_read_back_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, records) = open(&dir);
        assert!(records.is_empty() && journal.is_empty());
        journal.append(7, &encode(&[entry(1, Some("x"))])).unwrap();
        journal
            .append(8, &encode(&[entry(2, None), entry(3, None)]))
            .unwrap();
        drop(journal);
        let (_, records) = open(&dir);
        assert_eq!(
            records,
            vec![
                Record {
                    seq: 7,
                    entries: vec![entry(1, Some("x"))]
                },
                Record {
                    seq: 8,
                    entries: vec![entry(2, None), entry(3, None)]
                },
            ]
        );
    }

    #[test]
    fn a_torn_or_damaged_record_ends_the_scan() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = open(&dir);
        journal.append(1, &encode(&[entry(1, None)])).unwrap();
        let second_at = journal.end;
        journal.append(2, &encode(&[entry(2, None)])).unwrap();
        journal.append(3, &encode(&[entry(3, None)])).unwrap();
        // One byte of the second record's payload flipped: it and all after it are dropped.
        let mut byte = [0u8];
        journal
            .file
            .read(second_at + HEADER as u64 + 10, &mut byte)
            .unwrap();
        journal
            .file
            .write(second_at + HEADER as u64 + 10, &[byte[0] ^ 1])
            .unwrap();
        drop(journal);
        let (_, records) = open(&dir);
        assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn after_a_restart_the_older_records_behind_the_new_ones_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = open(&dir);
        for seq in 1..=5 {
            journal.append(seq, &encode(&[entry(seq, None)])).unwrap();
        }
        journal.restart();
        // Bigger entries, so the new records end inside the old ones' bytes.
        journal
            .append(6, &encode(&[entry(6, None), entry(7, None)]))
            .unwrap();
        drop(journal);
        let (_, records) = open(&dir);
        assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![6]);
    }

    #[test]
    fn a_record_too_large_does_not_fit_and_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = open(&dir);
        assert!(journal.fits((CHECKPOINT_AT) as usize));
        assert!(!journal.fits(JOURNAL_BYTES as usize));
        assert!(journal.append(1, &vec![0; JOURNAL_BYTES as usize]).is_err());
        assert!(journal.is_empty(), "nothing was written");
    }

    #[test]
    fn records_under_another_key_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = open(&dir);
        journal.append(1, &encode(&[entry(1, None)])).unwrap();
        drop(journal);
        assert!(open_with(&dir, KEY ^ 1).1.is_empty());
        assert_eq!(open(&dir).1.len(), 1);
    }

    /// Journals, under `key`, a record whose payload carries a forged record (sequence 3, key
    /// 0, a right checksum) exactly where a scan looks for the next header once the journal
    /// has restarted and written a shorter record 2; returns what a scan under `key` reads.
    fn forgery_after_restart(dir: &tempfile::TempDir, key: u64) -> Vec<u64> {
        let (mut journal, _) = open_with(dir, key);
        let short = encode(&[entry(1, None)]);
        let boundary = HEADER + short.len();
        let value_at = HEADER + 4 + 8 + 4; // header, count, id, value length
        let mut carrier = entry(1, None);
        carrier.value = vec![0; boundary - value_at];
        carrier
            .value
            .extend_from_slice(&frame(3, 0, &encode(&[entry(9, Some("forged"))])));
        journal.append(1, &encode(&[carrier])).unwrap();
        journal.restart();
        journal.append(2, &short).unwrap();
        drop(journal);
        open_with(dir, key).1.iter().map(|r| r.seq).collect()
    }

    /// A payload holds a sender's bytes almost verbatim: shaped as a record, they are not
    /// read as one without the database's key.
    #[test]
    fn a_record_forged_inside_a_payload_is_not_read() {
        assert_eq!(
            forgery_after_restart(&tempfile::tempdir().unwrap(), KEY),
            [2]
        );
        // Had the forger known the key (0 here), it would have been read: the key stops it.
        assert_eq!(
            forgery_after_restart(&tempfile::tempdir().unwrap(), 0),
            [2, 3]
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn on_a_full_disk_an_append_fails_keeps_what_came_before_and_works_once_there_is_room() {
        let fs = crate::testing::Tmpfs::mount(4);
        let file = fs.file("journal");
        // 16 MiB long on a 4 MiB file system: its length takes no room, only what is written.
        let (mut journal, _) = Journal::open(file, KEY).unwrap();
        let big = |id: u64| Entry {
            id,
            value: vec![id as u8; 256 << 10],
            user: "alice".into(),
            message_id: None,
        };
        let mut seq = 0;
        let error = loop {
            seq += 1;
            assert!(seq < 64, "16 MiB of records fitted in 4 MiB");
            if let Err(error) = journal.append(seq, &encode(&[big(seq)])) {
                break error;
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::StorageFull, "{error}");
        let written: Vec<u64> = journal.records().unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(
            written,
            (1..seq).collect::<Vec<_>>(),
            "the failed one is not read"
        );
        fs.resize(32);
        journal.append(seq, &encode(&[big(seq)])).unwrap();
        journal.append(seq + 1, &encode(&[big(seq + 1)])).unwrap();
        let records = journal.records().unwrap();
        assert_eq!(records.len() as u64, seq + 1);
        assert_eq!(records.last().unwrap().entries, [big(seq + 1)]);
    }

    mod properties {
        use super::*;
        use proptest::collection::vec;
        use proptest::prelude::*;

        fn entries() -> impl Strategy<Value = Vec<Entry>> {
            let entry = (
                any::<u64>(),
                vec(any::<u8>(), 0..300),
                "[a-z@.]{0,12}",
                proptest::option::of("[ -~]{0,20}"),
            )
                .prop_map(|(id, value, user, message_id)| Entry {
                    id,
                    value,
                    user,
                    message_id,
                });
            vec(entry, 0..5)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            #[test]
            fn payloads_round_trip(entries in entries()) {
                prop_assert_eq!(decode(&encode(&entries)), Some(entries));
            }

            /// The journal file is input too (a disk can hand back anything): no bytes make
            /// the decoder panic.
            #[test]
            fn any_payload_decodes_without_panicking(bytes in vec(any::<u8>(), 0..512)) {
                let _ = decode(&bytes);
            }
        }

        proptest! {
            // Each case opens a 16 MiB journal.
            #![proptest_config(ProptestConfig::with_cases(12))]

            /// Records followed by anything (a torn append, old bytes, noise) read back as
            /// exactly those records, and the scan does not panic on the rest.
            #[test]
            fn records_then_any_bytes_read_back_as_the_records(
                batches in vec(entries(), 0..4),
                tail in vec(any::<u8>(), 0..2048),
            ) {
                let dir = tempfile::tempdir().unwrap();
                let (mut journal, _) = open(&dir);
                for (seq, entries) in (1..).zip(&batches) {
                    journal.append(seq, &encode(entries)).unwrap();
                }
                journal.file.write(journal.end, &tail).unwrap();
                drop(journal);
                let (_, records) = open(&dir);
                let expected: Vec<Record> = (1..)
                    .zip(batches)
                    .map(|(seq, entries)| Record { seq, entries })
                    .collect();
                prop_assert_eq!(records, expected);
            }
        }
    }
}
