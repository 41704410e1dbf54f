//! The floor of writing a build's output: the same bytes to the same number of files, with the
//! simplest loop (one thread, `create_dir_all` + `fs::write` per file). `bench/run` takes it in
//! the same run as `plinth build` so that the disk's swings do not hide plinth's own cost.
//!
//! Usage: `write_floor FROM TO` — reads every file under FROM into memory (not timed), writes them
//! under TO (timed; TO must not exist) and prints `files=N bytes=B seconds=S`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

fn read_all(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            read_all(root, &p, out);
        } else {
            let rel = p.strip_prefix(root).expect("inside").to_path_buf();
            out.push((rel, std::fs::read(&p).expect("read")));
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, from, to] = args.as_slice() else {
        eprintln!("usage: write_floor FROM TO");
        std::process::exit(2);
    };
    let (from, to) = (Path::new(from), Path::new(to));
    assert!(!to.exists(), "{} exists", to.display());
    let mut files = Vec::new();
    read_all(from, from, &mut files);
    let bytes: usize = files.iter().map(|(_, b)| b.len()).sum();
    let start = std::time::Instant::now();
    for (rel, data) in &files {
        let path = to.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, data).expect("write");
    }
    let seconds = start.elapsed().as_secs_f64();
    println!("files={} bytes={bytes} seconds={seconds:.3}", files.len());
}
