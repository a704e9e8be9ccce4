//! A 10 MB message pushed through a session in 64 KiB chunks: the DATA hot path
//! (end-of-data scan, dot-unstuffing, bare-newline checks). Prints MB/s.

use std::hint::black_box;

use atacama_core::smtp::{Channel, Event, dot_stuff};
use atacama_core::testing::{PASSWORD, ScriptedRuntime, plain, test_config, tls_info};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const MESSAGE_SIZE: usize = 10 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

/// A realistic text body: 78-character lines, every 50th one starting with a dot.
fn body() -> Vec<u8> {
    let mut body = b"Subject: bench\r\nFrom: alice@example.org\r\n\r\n".to_vec();
    let mut n = 0usize;
    while body.len() < MESSAGE_SIZE {
        let lead = if n.is_multiple_of(50) { "." } else { "<red>" };
        body.extend_from_slice(format!("{lead}{:073}\r\n", n).as_bytes());
        n += 1;
    }
    dot_stuff(&body)
}

fn session_data(c: &mut Criterion) {
    let wire = body();
    let mut group = c.benchmark_group("session");
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.sample_size(20);
    group.bench_function("data_10MB_in_64KiB_chunks", |b| {
        b.iter(|| {
            let mut rt = ScriptedRuntime::new(test_config(), Channel::Implicit(tls_info()));
            let setup = format!(
                "EHLO c\r\nAUTH PLAIN {}\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n",
                plain("alice", PASSWORD)
            );
            let _ = rt.feed(setup.as_bytes());
            for chunk in wire.chunks(CHUNK) {
                let _ = rt.feed(chunk);
            }
            let delivered = rt.recording().iter().any(|e| matches!(e, Event::Deliver(d) if d.data.len() > MESSAGE_SIZE - CHUNK));
            assert!(delivered, "the message was not delivered");
            black_box(rt)
        })
    });
    group.finish();
}

criterion_group!(benches, session_data);
criterion_main!(benches);
