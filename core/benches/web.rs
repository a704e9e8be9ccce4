//! Cost of the read side's bodies per request (issue 26's bench serves them with wrk):
//! one 10 KB message as JSON and as a page, and a feed of twenty of them, ETag included.

use std::hint::black_box;

use atacama_core::markup::render;
use atacama_core::web::{self, Negotiated, Post, Site};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// A post whose text is about 10 KB of ordinary markup.
fn post(id: u64) -> Post {
    let mut text = String::new();
    while text.len() < 10_000 {
        text.push_str(
            "A paragraph of mail text with <red>a colour, a link https://example.com/x?a=1&b=2\n\
             and \"quotes\" & ampersands that need escaping in every form.\n\n",
        );
    }
    Post {
        id,
        subject: Some(format!("Post number {id} & more")),
        processed_content: render(&text),
        content: text,
        created_at: 1_796_591_439 + id,
        parent_id: None,
        channel: "general".into(),
    }
}

fn bodies(c: &mut Criterion) {
    let site = Site::new("Atacama", "https://blog.example.org");
    let one = post(1);
    let twenty: Vec<Post> = (1..=20).rev().map(post).collect();
    let mut group = c.benchmark_group("web");
    group.throughput(Throughput::Elements(1));
    group.bench_function("message_json_10k", |b| {
        b.iter(|| web::message(&site, Negotiated::Json, black_box(&one)))
    });
    group.bench_function("serde_json_strings_only", |b| {
        b.iter(|| serde_json::to_vec(&(black_box(&one.content), black_box(&one.processed_content))))
    });
    group.bench_function("message_html_10k", |b| {
        b.iter(|| web::message(&site, Negotiated::Html, black_box(&one)))
    });
    group.bench_function("rss_20x10k", |b| {
        b.iter(|| web::rss(&site, None, black_box(&twenty)))
    });
    group.bench_function("atom_20x10k", |b| {
        b.iter(|| web::atom(&site, None, black_box(&twenty)))
    });
    group.finish();
}

criterion_group!(benches, bodies);
criterion_main!(benches);
