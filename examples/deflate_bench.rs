//! Measures the backup's compression one chunk at a time on one thread:
//! flate2 (zlib-rs) streaming deflate against libdeflate's whole-buffer
//! deflate, at several levels and chunk sizes, alternating the cases run by
//! run, and prints medians of CPU seconds per GiB of input and the output's
//! size relative to the input (gzip member framing included). This is the
//! measurement behind the choice in `src/pipeline/compress.rs`.
//!
//! ```text
//! pg_dump -Fc -Z0 ... > dump
//! cargo run --release --example deflate_bench -- dump [RUNS] [CASES...]
//! ```
//!
//! A case is `zlib:LEVEL:CHUNK_MIB` or `libdeflate:LEVEL:CHUNK_MIB`; by
//! default zlib-rs level 6 and libdeflate levels 1 to 9, all at 2 MiB.

use std::io::Write;
use std::time::Instant;

use flate2::Compression;
use flate2::write::DeflateEncoder;
use libdeflater::{CompressionLvl, Compressor};
use valerix_backup::pipeline::member;

#[derive(Clone, Copy)]
enum Engine {
    Zlib,
    Libdeflate,
}

struct Case {
    name: String,
    engine: Engine,
    level: u32,
    chunk: usize,
    cpu: Vec<f64>,
    wall: Vec<f64>,
    out: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .expect("usage: deflate_bench FILE [RUNS] [CASES...]");
    let runs: usize = args.get(1).map_or(3, |r| r.parse().expect("RUNS"));
    let mut specs: Vec<String> = args.iter().skip(2).cloned().collect();
    if specs.is_empty() {
        specs.push("zlib:6:2".into());
        specs.extend((1..=9).map(|l| format!("libdeflate:{l}:2")));
    }
    let data = std::fs::read(path).expect("reading the input");
    let mut cases: Vec<Case> = specs.iter().map(|s| parse(s)).collect();
    for run in 0..runs {
        for case in &mut cases {
            let (wall0, cpu0) = (Instant::now(), thread_cpu());
            let out = compress_all(&data, case);
            case.cpu.push(thread_cpu() - cpu0);
            case.wall.push(wall0.elapsed().as_secs_f64());
            case.out = out;
            eprintln!("run {run} {}: {:.2} s CPU", case.name, case.cpu[run]);
        }
    }
    let gib = data.len() as f64 / f64::from(1u32 << 30);
    println!(
        "input {} bytes ({:.1} MiB), {runs} runs, medians",
        data.len(),
        data.len() as f64 / 1048576.0
    );
    println!("| case | CPU s/GiB | wall s/GiB | output/input | output bytes |");
    println!("|---|---:|---:|---:|---:|");
    for c in &cases {
        println!(
            "| {} | {:.2} | {:.2} | {:.4} | {} |",
            c.name,
            median(&c.cpu) / gib,
            median(&c.wall) / gib,
            c.out as f64 / data.len() as f64,
            c.out
        );
    }
}

fn parse(spec: &str) -> Case {
    let parts: Vec<&str> = spec.split(':').collect();
    let [engine, level, chunk] = parts[..] else {
        panic!("case {spec}: want ENGINE:LEVEL:CHUNK_MIB");
    };
    Case {
        name: spec.to_string(),
        engine: match engine {
            "zlib" => Engine::Zlib,
            "libdeflate" => Engine::Libdeflate,
            _ => panic!("engine {engine}: zlib or libdeflate"),
        },
        level: level.parse().expect("LEVEL"),
        chunk: chunk.parse::<usize>().expect("CHUNK_MIB") << 20,
        cpu: Vec::new(),
        wall: Vec::new(),
        out: 0,
    }
}

/// The total size of the gzip members, each chunk compressed as the backup
/// does it.
fn compress_all(data: &[u8], case: &Case) -> u64 {
    let mut total = 0u64;
    match case.engine {
        Engine::Zlib => {
            for chunk in data.chunks(case.chunk) {
                let mut enc = DeflateEncoder::new(
                    Vec::with_capacity(chunk.len() / 2),
                    Compression::new(case.level),
                );
                enc.write_all(chunk).unwrap();
                let deflated = enc.finish().unwrap();
                total += member::encode(&deflated, chunk).unwrap().len() as u64;
            }
        }
        Engine::Libdeflate => {
            let lvl = CompressionLvl::new(case.level as i32).expect("libdeflate level 1-12");
            let mut c = Compressor::new(lvl);
            let mut buf = Vec::new();
            for chunk in data.chunks(case.chunk) {
                buf.resize(c.deflate_compress_bound(chunk.len()), 0);
                let n = c.deflate_compress(chunk, &mut buf).unwrap();
                total += member::encode(&buf[..n], chunk).unwrap().len() as u64;
            }
        }
    }
    total
}

/// CPU seconds this thread has used.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into ts.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}
