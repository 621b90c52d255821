//! The two rewrites valerix-backup makes of a pg_dump custom archive, as
//! commands, for measurements (`scripts/bench.sh` builds the restore floor's
//! archive with `fill-offsets`):
//!
//! ```text
//! cargo run --release --example archive_tool -- rechunk IN OUT
//! cargo run --release --example archive_tool -- fill-offsets FILE
//! cargo run --release --example archive_tool -- encrypt FILE
//! ```
//!
//! `rechunk` merges the row-sized data chunks as a backup does before
//! compression (`pg::rechunk`); `fill-offsets` writes the data offsets into
//! the table of contents in place, as a restore does to its scratch file
//! (`pg::offsets`); `encrypt` times the age layer of an encrypted backup
//! alone (`pipeline::encryption`).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Write};
use std::process::exit;

use valerix_backup::pg::{offsets, rechunk::Rechunk};
use valerix_backup::pipeline::encryption::Sealed;

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
        ["encrypt", input] => {
            // The cost of the backup's age layer alone: FILE (a backup's
            // gzip bytes, say) encrypted to a fresh key, the output dropped.
            let bytes = std::fs::read(input).unwrap_or_else(|e| die(&format!("{input}: {e}")));
            let to = [age::x25519::Identity::generate().to_public()];
            let t = std::time::Instant::now();
            let mut w = Sealed::new(std::io::sink(), &to).unwrap_or_else(|e| die(&e.to_string()));
            w.write_all(&bytes).unwrap_or_else(|e| die(&e.to_string()));
            w.finish().unwrap_or_else(|e| die(&e.to_string()));
            let secs = t.elapsed().as_secs_f64();
            let mib = bytes.len() as f64 / f64::from(1 << 20);
            eprintln!(
                "{input}: {mib:.1} MiB encrypted in {secs:.3} s ({:.0} MiB/s)",
                mib / secs
            );
        }
        _ => die("usage: archive_tool rechunk IN OUT | fill-offsets FILE | encrypt FILE"),
    }
}

fn die(msg: &str) -> ! {
    eprintln!("archive_tool: {msg}");
    exit(2)
}
