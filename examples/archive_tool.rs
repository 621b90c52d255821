//! The two rewrites valerix-backup makes of a pg_dump custom archive, as
//! commands, for measurements (`scripts/bench.sh` builds the restore floor's
//! archive with `fill-offsets`):
//!
//! ```text
//! cargo run --release --example archive_tool -- rechunk IN OUT
//! cargo run --release --example archive_tool -- fill-offsets FILE
//! ```
//!
//! `rechunk` merges the row-sized data chunks as a backup does before
//! compression (`pg::rechunk`); `fill-offsets` writes the data offsets into
//! the table of contents in place, as a restore does to its scratch file
//! (`pg::offsets`).

use std::fs::{File, OpenOptions};
use std::io::BufReader;
use std::process::exit;

use valerix_backup::pg::{offsets, rechunk::Rechunk};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args[..] {
        ["rechunk", input, output] => {
            let file = File::open(input).unwrap_or_else(|e| die(&format!("{input}: {e}")));
            let mut merged = Rechunk::new(BufReader::new(file));
            let mut out = File::create(output).unwrap_or_else(|e| die(&format!("{output}: {e}")));
            let n = std::io::copy(&mut merged, &mut out).unwrap_or_else(|e| die(&e.to_string()));
            eprintln!("{output}: {n} bytes");
        }
        ["fill-offsets", path] => {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .unwrap_or_else(|e| die(&format!("{path}: {e}")));
            let n = offsets::fill(&file).unwrap_or_else(|e| die(&format!("{path}: {e}")));
            eprintln!("{path}: {n} data offsets written");
        }
        _ => die("usage: archive_tool rechunk IN OUT | fill-offsets FILE"),
    }
}

fn die(msg: &str) -> ! {
    eprintln!("archive_tool: {msg}");
    exit(2)
}
