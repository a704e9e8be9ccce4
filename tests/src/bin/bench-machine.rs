//! `bench-machine`: the state of this machine, measured beside a benchmark run so that its
//! figures can be read against it (`tests/bench.sh` runs it before and after the scenarios).
//!
//! - one bcrypt verify at the benchmark's cost, through the store as a login does it: the bound
//!   of scenario c is the cores ÷ this;
//! - processing the load generator's sample message (parse, render, compress), back to back
//!   and after an idle pause each: a virtual machine whose vCPU halts while idle comes back to
//!   it cold, and a lock-step connection (scenario a) idles between every step;
//! - a journal-sized write and `fdatasync` into blocks already written, in `--dir`: the floor
//!   of one durable acknowledgement on this disk;
//! - a round trip between two threads, through a channel and through a loopback TCP
//!   connection: two wake-ups of a sleeping thread, of which one lock-step message takes about
//!   ten (four commands and their replies, the hand-off to the commit thread and back).
//!
//! Every figure is a median (or p99) of a bounded number of runs; the whole takes about
//! 4 × one verify plus a second. One JSON line on stdout.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime};

use atacama_server::service::Services;
use atacama_store::Store;
use atacama_tests::load::{quantile_ms, sample_delivery};

const USAGE: &str = "\
Usage: bench-machine [--dir DIR] [--cost N]

  --dir DIR    where the scratch database and the fsync file go (default $TMPDIR or /tmp):
               the filesystem the benchmark's data dirs are on
  --cost N     bcrypt cost of the verify measured (default 12, the benchmark's)
";

/// Processings measured each way, and fsyncs.
const RUNS: usize = 200;
/// The pause before each processing of the "after idle" kind.
const IDLE: Duration = Duration::from_micros(200);
/// What one journal record of the sample message takes.
const RECORD_BYTES: usize = 11 * 1024;

fn main() -> ExitCode {
    let (dir, cost) = match parse() {
        Ok(Some(options)) => options,
        Ok(None) => return emit(USAGE),
        Err(e) => {
            eprintln!("bench-machine: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match measure(dir, cost) {
        Ok(line) => emit(&format!("{line}\n")),
        Err(e) => {
            eprintln!("bench-machine: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes `text` to stdout; a reader that went away is its own business (no panic).
fn emit(text: &str) -> ExitCode {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("bench-machine: {e}");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}

fn parse() -> Result<Option<(PathBuf, u32)>, String> {
    use lexopt::prelude::*;
    let mut dir = std::env::temp_dir();
    let mut cost = 12;
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Long("dir") => dir = p.value().map_err(|e| e.to_string())?.into(),
            Long("cost") => {
                cost = p
                    .value()
                    .map_err(|e| e.to_string())?
                    .parse()
                    .map_err(|e| format!("--cost: {e}"))?
            }
            Short('h') | Long("help") => return Ok(None),
            other => return Err(other.unexpected().to_string()),
        }
    }
    Ok(Some((dir, cost)))
}

fn measure(dir: PathBuf, cost: u32) -> Result<serde_json::Value, String> {
    let scratch = tempfile::tempdir_in(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let store = Store::open_in(&scratch.path().join("data"), cost).map_err(|e| e.to_string())?;
    store
        .add_user("alice", "s3cret", SystemTime::now())
        .map_err(|e| e.to_string())?;
    let mut verifies = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        if !store
            .verify_user("alice", "s3cret")
            .map_err(|e| e.to_string())?
        {
            return Err("the password just set did not verify".into());
        }
        verifies.push(started.elapsed());
    }
    let verify = median(&mut verifies);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    let services = Services::new(Arc::new(store), "localhost");
    let delivery = sample_delivery();
    let process = |pause: Option<Duration>| -> Result<Duration, String> {
        let mut times = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            if let Some(pause) = pause {
                std::thread::sleep(pause);
            }
            let delivery = delivery.clone();
            let started = Instant::now();
            let packed = services.prepare_checked(delivery, SystemTime::now());
            times.push(started.elapsed());
            std::hint::black_box(packed).map_err(|e| e.detail)?;
        }
        Ok(median(&mut times))
    };
    process(None)?; // warm up
    let back_to_back = process(None)?;
    let after_idle = process(Some(IDLE))?;

    let (fsync_p50, fsync_p99) = fsync(scratch.path())?;
    let channel = channel_round_trip()?;
    let tcp = tcp_round_trip().map_err(|e| format!("loopback: {e}"))?;
    Ok(serde_json::json!({
        "cores": cores,
        "bcrypt_cost": cost,
        "verify_ms": ms(verify),
        "login_bound_per_s": cores as f64 / verify.as_secs_f64().max(1e-9),
        "process_us": {
            "back_to_back": us(back_to_back),
            "after_idle": us(after_idle),
            "idle_us": us(IDLE),
        },
        "fsync_11k_us": { "p50": us(fsync_p50), "p99": us(fsync_p99) },
        "round_trip_us": { "channel": us(channel), "loopback_tcp": us(tcp) },
    }))
}

/// p50 and p99 of a record-sized write and `fdatasync`, into blocks written and synced first
/// (as the journal's are).
fn fsync(dir: &std::path::Path) -> Result<(Duration, Duration), String> {
    let path = dir.join("fsync-probe");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let io = |e: std::io::Error| format!("{}: {e}", path.display());
    let zeros = vec![0u8; RECORD_BYTES * RUNS];
    file.write_all_at(&zeros, 0).map_err(io)?;
    file.sync_all().map_err(io)?;
    let record = vec![0x5Au8; RECORD_BYTES];
    let mut times = Vec::with_capacity(RUNS);
    for i in 0..RUNS {
        let started = Instant::now();
        file.write_all_at(&record, (i * RECORD_BYTES) as u64)
            .map_err(io)?;
        file.sync_data().map_err(io)?;
        times.push(started.elapsed());
    }
    times.sort_unstable();
    let p99 = Duration::from_secs_f64(quantile_ms(&times, 0.99) / 1000.0);
    Ok((median(&mut times), p99))
}

/// Round trips between two threads.
const ROUND_TRIPS: usize = 1000;

/// Median time for a message to reach a thread blocked on a channel and its answer to come
/// back to this one, blocked in turn.
fn channel_round_trip() -> Result<Duration, String> {
    let (to_echo, echo_in) = mpsc::channel::<Instant>();
    let (echo_out, back) = mpsc::channel::<Instant>();
    let echo = std::thread::spawn(move || {
        for sent in echo_in {
            if echo_out.send(sent).is_err() {
                return;
            }
        }
    });
    let mut times = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        to_echo
            .send(Instant::now())
            .map_err(|_| "the echo thread is gone")?;
        let sent = back.recv().map_err(|_| "the echo thread is gone")?;
        times.push(sent.elapsed());
    }
    drop(to_echo);
    echo.join().map_err(|_| "the echo thread panicked")?;
    Ok(median(&mut times))
}

/// The same through a loopback TCP connection, a byte each way (as a command and its reply).
fn tcp_round_trip() -> std::io::Result<Duration> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    let mut client = TcpStream::connect(listener.local_addr()?)?;
    let (mut server, _) = listener.accept()?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let mut byte = [0u8];
        while server.read(&mut byte)? == 1 {
            server.write_all(&byte)?;
        }
        Ok(())
    });
    let mut times = Vec::with_capacity(ROUND_TRIPS);
    let mut byte = [0u8];
    for _ in 0..ROUND_TRIPS {
        let started = Instant::now();
        client.write_all(b"x")?;
        client.read_exact(&mut byte)?;
        times.push(started.elapsed());
    }
    drop(client);
    echo.join()
        .map_err(|_| std::io::Error::other("the echo thread panicked"))??;
    Ok(median(&mut times))
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn us(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e7).round() / 10.0
}
