//! Micro-benchmarks of the compiler's hot stages on a generated 200-project platform:
//! parse, resolve (schema validation and typing), check, lower, verify, serialise and diff.
//!
//! `cargo bench -p plinth --bench stages` (add `-- --quick` for a short run).

use criterion::{Criterion, criterion_group, criterion_main};
use plinth::load::{Limits, MemSource};
use std::hint::black_box;

fn snapshot(n: usize, seed: u64) -> plinth::load::Snapshot {
    let mut src = MemSource::new();
    for (p, t) in plinth::generate::platform(n, seed) {
        src = src.with(&p, t);
    }
    plinth::load::load(&src, &Limits::default())
        .expect("loads")
        .0
}

fn stages(c: &mut Criterion) {
    let snap = snapshot(200, 1);
    let (docs, _) = plinth::parse::parse(&snap, Default::default());
    let (specs, _) = plinth::resolve::resolve(&docs);
    let (lowered, _) = plinth::lower::lower(&specs, &snap);
    let objects = lowered.object_count();
    let mut other = snapshot(200, 1);
    // A second platform differing in one project's quota, for the diff.
    let first = other
        .files
        .iter()
        .position(|f| f.path.starts_with("projects/"))
        .expect("a project");
    other.files[first].text = other.files[first].text.replace("pods: ", "pods: 1").into();
    let (odocs, _) = plinth::parse::parse(&other, Default::default());
    let (ospecs, _) = plinth::resolve::resolve(&odocs);
    let (olowered, _) = plinth::lower::lower(&ospecs, &other);

    let mut g = c.benchmark_group(format!("200 projects, {objects} objects"));
    g.sample_size(10);
    g.bench_function("parse", |b| {
        b.iter(|| plinth::parse::parse(black_box(&snap), Default::default()))
    });
    g.bench_function("resolve", |b| {
        b.iter(|| plinth::resolve::resolve(black_box(&docs)))
    });
    g.bench_function("check", |b| {
        b.iter(|| plinth::check::check(black_box(&specs), &snap))
    });
    g.bench_function("lower", |b| {
        b.iter(|| plinth::lower::lower(black_box(&specs), &snap))
    });
    g.bench_function("verify", |b| {
        b.iter(|| plinth::verify::verify(black_box(&lowered)))
    });
    g.bench_function("serialise", |b| {
        b.iter(|| plinth::emit::tree(black_box(&lowered), None))
    });
    g.bench_function("diff", |b| {
        b.iter(|| {
            plinth::plan::plan(
                black_box(&lowered),
                black_box(&olowered),
                &Default::default(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
