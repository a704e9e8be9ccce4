//! Throughput of `markup::render` on 1 MB documents: a realistic mix of every construct,
//! and inputs built to defeat look-ahead (deep `(<red>` nesting, long lines, unclosed
//! delimiters). Spec §9 asks for linear time; the target is ≥ 100 MB/s on the mix and
//! every pathological input within 10× of it.

use std::hint::black_box;

use atacama_core::markup::render;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const SIZE: usize = 1 << 20;

/// Repeats `unit(i)` for i = 0, 1, … until the document reaches `SIZE` bytes.
fn document(unit: impl Fn(usize) -> String) -> String {
    let mut doc = String::with_capacity(SIZE + 4096);
    let mut i = 0;
    while doc.len() < SIZE {
        doc.push_str(&unit(i));
        i += 1;
    }
    doc
}

/// A mail-like document: prose paragraphs with colours, sections, links, lists, quotes,
/// literals, emphasis and Chinese, varied by index so no two paragraphs are identical.
fn mixed() -> String {
    document(|i| {
        format!(
            "Dear reader {i}, this is a fairly ordinary paragraph of hard-wrapped mail text\n\
             that goes on for a line or two, with *emphasis* and a link to\n\
             https://example.com/path/{i}?q={i}&r=2. (<red>This matters (really)) and\n\
             <blue>a voice from beyond that runs to the end of the line.\n\
             \n\
             * first point {i} with [[Article {i}]]\n\
             * second point with <<literal <b>code</b>>> inside\n\
             # numbered (<green>technical aside, see f(x)) item\n\
             > quoted reply line {i} & more \"quotes\"\n\
             \n\
             <teal> <<< Generated text {i}\n\
             more generated text 你好世界 in a quote\n\
             >>>\n\
             ----\n\
             Plain closing line {i}: nothing special here, just words and numbers 12345.\n\
             \n"
        )
    })
}

/// One line of 1 MB of `(<red>`, never closed: every `(` stays unmatched.
fn nested_unclosed() -> String {
    document(|_| "(<red>".to_owned())
}

/// 1 MB of `(<red>` nesting, all closed: 8 sections, then refused sections as parens.
fn nested_closed() -> String {
    let depth = SIZE / "(<red>)".len();
    format!("{}x{}", "(<red>".repeat(depth), ")".repeat(depth))
}

/// One 1 MB line where every construct starts and none finishes: `<<` without `>>`,
/// `[[` without `]]`, a `*` followed by 40 characters, schemes with only punctuation.
fn long_line_unclosed() -> String {
    document(|i| {
        format!(
            "<<a [[b{i} *cccccccccccccccccccccccccccccccccccccccc (<red>d https://.,; <x> \
             (( <RED> "
        )
    })
}

/// 1 MB of lines that look like quote openers and runs but never close.
fn unclosed_lines() -> String {
    document(|i| format!("<<< opener {i}\n<red> run (<blue>open\n* (<gray>item\n"))
}

fn bench(c: &mut Criterion) {
    let inputs = [
        ("mixed", mixed()),
        ("nested_unclosed", nested_unclosed()),
        ("nested_closed", nested_closed()),
        ("long_line_unclosed", long_line_unclosed()),
        ("unclosed_lines", unclosed_lines()),
    ];
    let mut group = c.benchmark_group("markup");
    for (name, input) in &inputs {
        let out = render(input);
        eprintln!("{name}: {} bytes in, {} bytes out", input.len(), out.len());
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(*name, |b| b.iter(|| render(black_box(input))));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
