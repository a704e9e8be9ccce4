//! What one delivery costs the server beyond the network, on the sample message the load
//! generator sends (10 KB, colour tags): parsing, rendering and compressing it, then storing it durably
//! (one message per transaction, as one lock-step connection does, made durable by a journal
//! record; and twenty per transaction, as group commit does for twenty connections, in a durable
//! redb commit). The store lives in a
//! temporary directory under $TMPDIR (/tmp if unset): point it at the disk you care about.
//! Prints time per message; `cargo bench -p atacama-tests --bench delivery`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::SystemTime;

use atacama_core::{markup, message};
use atacama_server::service::Services;
use atacama_store::{NewMessage, ReceivedTrace, Store};
use atacama_tests::load::sample_delivery;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

fn deliveries(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open_in(dir.path(), 4).expect("a new store");
    let services = Services::new(Arc::new(store), "localhost");
    let delivery = sample_delivery();
    // What a commit writes for this message, before redb rounds it up to whole pages.
    if let Ok(packed) = services.prepare_checked(delivery.clone(), SystemTime::now()) {
        println!(
            "sample message: {} bytes of data, {} bytes packed with its text and HTML",
            packed.data_len(),
            packed.packed_len()
        );
    }

    let mut group = c.benchmark_group("delivery");
    group.throughput(Throughput::Elements(1));
    group.bench_function("prepare: parse, render and pack", |b| {
        b.iter_batched(
            || delivery.clone(),
            |delivery| black_box(services.prepare_checked(delivery, SystemTime::now())),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("pack: compress data, text and HTML", |b| {
        b.iter_batched(
            || {
                let parsed = message::parse(&delivery.data);
                NewMessage {
                    received_at: SystemTime::now(),
                    user: delivery.user.clone(),
                    mail_from: delivery.mail_from.clone(),
                    rcpt_to: delivery.rcpt_to.clone(),
                    trace: ReceivedTrace {
                        helo: delivery.helo.clone(),
                        peer: delivery.peer.ip(),
                        hostname: "localhost".into(),
                        tls: delivery.tls.clone(),
                    },
                    html: markup::render(&parsed.text),
                    parsed,
                    data: delivery.data.clone(),
                    channel: "general".into(),
                }
            },
            |message| black_box(message.pack()),
            BatchSize::SmallInput,
        )
    });
    group.sample_size(30);
    group.bench_function("store: 1 message, journal append + fdatasync", |b| {
        b.iter_batched(
            || vec![services.prepare_checked(delivery.clone(), SystemTime::now())],
            |prepared| black_box(services.store_prepared(prepared)),
            BatchSize::SmallInput,
        )
    });
    group.throughput(Throughput::Elements(20));
    group.bench_function("store: 20 messages per durable redb commit", |b| {
        b.iter_batched(
            || {
                (0..20)
                    .map(|_| services.prepare_checked(delivery.clone(), SystemTime::now()))
                    .collect()
            },
            |prepared| black_box(services.store_prepared(prepared)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, deliveries);
criterion_main!(benches);
