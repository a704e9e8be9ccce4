//! Measures what the store's concurrency choice costs (see `core/store/src/lib.rs`).
//!
//! `cargo run --release -p atacama-store --example store_concurrency [COMMITS]`
//!
//! For each redb concurrency mode it times durable single-message commits (4 KiB values,
//! `Durability::Immediate`) and read transactions; for `MultiWriter` it also times them while a
//! second handle, standing in for the command line, has the same file open. It then times a
//! Unix-socket round trip, the fixed cost the control socket adds to every CLI request while a daemon runs.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use redb::{Builder, ConcurrencyMode, Database, Durability, ReadableDatabase, TableDefinition};

const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("messages");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let commits: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 2000,
    };
    let dir = tempfile::tempdir()?;
    for (name, mode, peer) in [
        ("ExclusiveWriter", ConcurrencyMode::ExclusiveWriter, false),
        ("MultiWriter", ConcurrencyMode::MultiWriter, false),
        (
            "MultiWriter + 2nd handle",
            ConcurrencyMode::MultiWriter,
            true,
        ),
    ] {
        let path = dir.path().join(format!("{}.redb", name.replace(' ', "_")));
        let db = open(&path, mode)?;
        let _peer = if peer { Some(open(&path, mode)?) } else { None };
        let value = vec![0x5a_u8; 4096];
        let mut commit_times = Vec::with_capacity(commits);
        for id in 0..commits as u64 {
            let start = Instant::now();
            let mut tx = db.begin_write()?;
            tx.set_durability(Durability::Immediate)?;
            tx.open_table(TABLE)?.insert(id, value.as_slice())?;
            tx.commit()?;
            commit_times.push(start.elapsed());
        }
        let mut read_times = Vec::with_capacity(commits);
        for id in 0..commits as u64 {
            let start = Instant::now();
            let tx = db.begin_read()?;
            let found = tx.open_table(TABLE)?.get(id)?.map(|v| v.value().len());
            read_times.push(start.elapsed());
            assert_eq!(found, Some(4096));
        }
        report(name, "commit", &mut commit_times);
        report(name, "read", &mut read_times);
    }
    let (mut a, mut b) = UnixStream::pair()?;
    let echo = std::thread::spawn(move || {
        let mut buf = [0_u8; 64];
        while let Ok(n @ 1..) = b.read(&mut buf) {
            if b.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let mut times = Vec::with_capacity(commits);
    let mut buf = [0_u8; 64];
    for _ in 0..commits {
        let start = Instant::now();
        a.write_all(b"user add alice\n")?;
        a.read_exact(&mut buf[..15])?;
        times.push(start.elapsed());
    }
    drop(a);
    let _ = echo.join();
    report("unix socket", "round trip", &mut times);
    Ok(())
}

fn open(path: &std::path::Path, mode: ConcurrencyMode) -> Result<Database, redb::DatabaseError> {
    Builder::new().set_concurrency_mode(mode).create(path)
}

fn report(name: &str, what: &str, times: &mut [Duration]) {
    times.sort();
    let total: Duration = times.iter().sum();
    let pick = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!(
        "{name:<26} {what:<10} mean {:>8.1} µs  p50 {:>8.1} µs  p99 {:>8.1} µs",
        total.as_secs_f64() * 1e6 / times.len() as f64,
        pick(0.5).as_secs_f64() * 1e6,
        pick(0.99).as_secs_f64() * 1e6,
    );
}
