//! Stream adapters: parallel gzip compression and hashing in one pass, and
//! the matching verified decompression.

pub mod compress;
pub mod encryption;
pub mod hash;
pub mod member;

pub use compress::{CompressOptions, CompressStats, compress_parallel};
pub use hash::{HashingReader, HashingWriter};
