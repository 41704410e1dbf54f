//! The floor of checking a build's output before writing over it: one `lstat` per file, with
//! the simplest loop (one thread, a path per call). An incremental build into an existing
//! output must look at every file it does not rewrite (a file edited in place changes only its
//! own stamp), so `bench/run` takes this floor in the same run as `build1`.
//!
//! Usage: `stat_floor DIR` — lists every file under DIR (not timed), then `lstat`s each (timed)
//! and prints `files=N seconds=S`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

fn list(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir") {
        let e = e.expect("entry");
        if e.file_type().expect("file type").is_dir() {
            list(&e.path(), out);
        } else {
            out.push(e.path());
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir] = args.as_slice() else {
        eprintln!("usage: stat_floor DIR");
        std::process::exit(2);
    };
    let mut files = Vec::new();
    list(Path::new(dir), &mut files);
    let start = std::time::Instant::now();
    let mut bytes = 0u64;
    for f in &files {
        bytes += std::fs::symlink_metadata(f).expect("lstat").len();
    }
    let seconds = start.elapsed().as_secs_f64();
    println!("files={} bytes={bytes} seconds={seconds:.3}", files.len());
}
