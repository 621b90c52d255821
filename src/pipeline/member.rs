//! The gzip members of a backup file, and the index that lets a restore
//! inflate them on every core.
//!
//! A backup is a concatenation of independent gzip members (RFC 1952), one
//! per input chunk (see [`super::compress`]). Each member written since
//! 2026-12 says its own length in its header, in an extra field (FEXTRA, RFC
//! 1952 section 2.3.1.1) with subfield id `VX`:
//!
//! ```text
//! 1f 8b 08 04 | 00 00 00 00 | 00 ff | 08 00 | 'V' 'X' 04 00 | member length (u32 LE) | deflate ... | CRC32 | ISIZE
//!  id  CM FLG    MTIME        XFL OS  XLEN    SI1 SI2 LEN
//! ```
//!
//! This is the idea of BGZF (the htslib format), with a 32-bit length
//! because members are megabytes, not 64 KiB. Every gzip reader skips the
//! extra field, so `gunzip` and the seed's scripts read the file as before;
//! but a reader that knows the field finds every member's offset by reading
//! a few bytes per member, and each member's inflated size from its ISIZE
//! trailer, without inflating anything: [`index`]. With the offsets, members
//! inflate in parallel straight to their place in a seekable file
//! ([`inflate_into`]). A file without the field (written before, or by
//! another tool) has no index and is read serially, as before.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use libdeflater::{DecompressionError, Decompressor};

/// The header's fixed part: magic, CM = deflate, FLG = FEXTRA, MTIME = 0,
/// XFL = 0, OS = 255 (unknown), then XLEN = 8 and the `VX` subfield of 4
/// bytes. The member length follows.
const HEADER_PREFIX: [u8; 16] = [0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 255, 8, 0, b'V', b'X', 4, 0];
/// The header's whole length: the prefix and the u32 member length.
pub const HEADER_LEN: usize = HEADER_PREFIX.len() + 4;
/// CRC32 and ISIZE.
const TRAILER_LEN: usize = 8;

/// One member of a backup file: where it is, and where its inflated bytes
/// go in the plain dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub offset: u64,
    pub len: u32,
    pub plain_offset: u64,
    pub plain_len: u32,
}

/// A complete gzip member around `deflated` (raw deflate of `plain`), its
/// length in its header.
pub fn encode(deflated: &[u8], plain: &[u8]) -> io::Result<Vec<u8>> {
    let len = HEADER_LEN + deflated.len() + TRAILER_LEN;
    let len32 = u32::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "gzip member over 4 GiB"))?;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&HEADER_PREFIX);
    out.extend_from_slice(&len32.to_le_bytes());
    out.extend_from_slice(deflated);
    out.extend_from_slice(&crc32fast::hash(plain).to_le_bytes());
    // ISIZE is the length modulo 2^32 (RFC 1952); chunks are far smaller.
    out.extend_from_slice(&(plain.len() as u32).to_le_bytes());
    Ok(out)
}

/// The member length a header announces, or `None` when `header` is not a
/// member header of ours (another gzip writer's, or no gzip at all).
pub fn announced_len(header: &[u8]) -> Option<u32> {
    let prefix = header.get(..HEADER_PREFIX.len())?;
    // MTIME, XFL and OS are not ours to insist on.
    let fixed = |i: usize| !(4..10).contains(&i);
    let matches = prefix
        .iter()
        .zip(HEADER_PREFIX)
        .enumerate()
        .all(|(i, (a, b))| !fixed(i) || *a == b);
    if !matches {
        return None;
    }
    let len = u32::from_le_bytes(header.get(16..20)?.try_into().ok()?);
    (len as usize >= HEADER_LEN + TRAILER_LEN).then_some(len)
}

/// Why a file has no usable index, when it claims one.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("reading the file: {0}")]
    Io(#[from] io::Error),
    #[error("gzip member at byte {0} announces a length past the end of the file")]
    PastEnd(u64),
    #[error("no member header of this file's kind at byte {0}")]
    Mixed(u64),
}

/// Every member of `file` (of `size` bytes), in order, when its first member
/// announces its length; `None` when it does not (a file written before the
/// index existed: read it serially). A file that starts indexed and then
/// stops being so, or whose lengths do not add up, is damaged.
pub fn index(file: &File, size: u64) -> Result<Option<Vec<Member>>, IndexError> {
    let mut members = Vec::new();
    let (mut offset, mut plain_offset) = (0u64, 0u64);
    let mut header = [0u8; HEADER_LEN];
    while offset < size {
        let Some(len) = read_at(file, &mut header, offset)?
            .then(|| announced_len(&header))
            .flatten()
        else {
            return if offset == 0 {
                Ok(None)
            } else {
                Err(IndexError::Mixed(offset))
            };
        };
        if offset + u64::from(len) > size {
            return Err(IndexError::PastEnd(offset));
        }
        let mut isize = [0u8; 4];
        file.read_exact_at(&mut isize, offset + u64::from(len) - 4)?;
        let plain_len = u32::from_le_bytes(isize);
        members.push(Member {
            offset,
            len,
            plain_offset,
            plain_len,
        });
        offset += u64::from(len);
        plain_offset += u64::from(plain_len);
    }
    Ok(Some(members))
}

/// Fills `buf` from `offset`; false when the file ends first.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<bool> {
    match file.read_exact_at(buf, offset) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Why a parallel inflation stopped.
#[derive(Debug, thiserror::Error)]
pub enum InflateError {
    #[error("reading the file: {0}")]
    Read(#[source] io::Error),
    #[error("gzip member at byte {offset} is corrupt: {reason}")]
    Corrupt { offset: u64, reason: String },
    #[error("writing the inflated dump: {0}")]
    Write(#[source] io::Error),
    #[error("interrupted")]
    Cancelled,
}

/// Inflates every member of `index` from `src` into `dst` at its plain
/// offset, on `threads` threads, each member checked (its CRC32 and ISIZE,
/// and that it ends where its header says). `progress` is called with each
/// member's inflated length, from the worker threads. Returns the inflated
/// size.
pub fn inflate_into(
    src: &File,
    index: &[Member],
    dst: &File,
    threads: usize,
    cancel: &AtomicBool,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<u64, InflateError> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let worker = || -> Result<(), InflateError> {
        let (mut packed, mut plain) = (Vec::new(), Vec::new());
        let mut inflater = Decompressor::new();
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(InflateError::Cancelled);
            }
            if failed.load(Ordering::Relaxed) {
                return Ok(()); // another worker's error is the answer
            }
            let Some(m) = index.get(next.fetch_add(1, Ordering::Relaxed)) else {
                return Ok(());
            };
            inflate_one(src, m, &mut inflater, &mut packed, &mut plain)?;
            dst.write_all_at(&plain, m.plain_offset)
                .map_err(InflateError::Write)?;
            progress(plain.len() as u64);
        }
    };
    let failure = std::thread::scope(|s| first_error(spawn_workers(s, threads, &failed, &worker)));
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(index
        .last()
        .map_or(0, |m| m.plain_offset + u64::from(m.plain_len)))
}

/// As [`inflate_into`], for members that arrive as a stream (the plain
/// bytes of an encrypted file, which has no offsets to seek to): this
/// thread reads each member whole, by the length its header announces, and
/// hands it to `threads` workers that inflate it to its place in `dst`.
/// At most two members per worker wait in memory. `None` when the stream's
/// first member announces no length (not written by us): nothing was
/// written, read it serially.
pub fn inflate_stream(
    src: &mut dyn Read,
    dst: &File,
    threads: usize,
    cancel: &AtomicBool,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Option<u64>, InflateError> {
    let (tx, rx) = crossbeam_channel::bounded::<(Member, Vec<u8>)>(threads.max(1) * 2);
    let failed = AtomicBool::new(false);
    let worker = || -> Result<(), InflateError> {
        let (mut plain, mut inflater) = (Vec::new(), Decompressor::new());
        for (m, packed) in rx.iter() {
            if failed.load(Ordering::Relaxed) {
                return Ok(());
            }
            inflate_packed(&m, &packed, &mut inflater, &mut plain)?;
            dst.write_all_at(&plain, m.plain_offset)
                .map_err(InflateError::Write)?;
            progress(plain.len() as u64);
        }
        Ok(())
    };
    std::thread::scope(|s| {
        let workers = spawn_workers(s, threads, &failed, &worker);
        let read = read_members(src, &tx, cancel, &failed);
        drop(tx);
        // A worker's corrupt member over the reader's view of it.
        match (first_error(workers), read) {
            (Some(e), _) | (None, Err(e)) => Err(e),
            (None, Ok(total)) => Ok(total),
        }
    })
}

type Worker<'scope> = std::thread::ScopedJoinHandle<'scope, Result<(), InflateError>>;

/// Runs `worker` on `threads` threads of scope `s`; the first that fails
/// sets `failed`, which tells the others to stop.
fn spawn_workers<'scope, 'env>(
    s: &'scope std::thread::Scope<'scope, 'env>,
    threads: usize,
    failed: &'env AtomicBool,
    worker: &'env (dyn Fn() -> Result<(), InflateError> + Sync),
) -> Vec<Worker<'scope>> {
    let run = move || {
        let r = worker();
        if r.is_err() {
            failed.store(true, Ordering::Relaxed);
        }
        r
    };
    (0..threads.max(1)).map(|_| s.spawn(run)).collect()
}

/// The error that answers for a run, once every worker ended: a corrupt
/// member over a cancellation caused by it.
fn first_error(workers: Vec<Worker<'_>>) -> Option<InflateError> {
    let mut errors: Vec<InflateError> = workers
        .into_iter()
        .filter_map(|h| h.join().expect("inflate worker panicked").err())
        .collect();
    errors.sort_by_key(|e| matches!(e, InflateError::Cancelled));
    errors.into_iter().next()
}

/// The reading half of [`inflate_stream`]: members in order, each with
/// its place in the plain dump, until the stream ends.
fn read_members(
    src: &mut dyn Read,
    tx: &crossbeam_channel::Sender<(Member, Vec<u8>)>,
    cancel: &AtomicBool,
    failed: &AtomicBool,
) -> Result<Option<u64>, InflateError> {
    let (mut offset, mut plain_offset) = (0u64, 0u64);
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(InflateError::Cancelled);
        }
        let mut header = [0u8; HEADER_LEN];
        let got = read_full(src, &mut header).map_err(InflateError::Read)?;
        if got == 0 {
            return Ok(Some(plain_offset));
        }
        let corrupt = |reason: String| InflateError::Corrupt { offset, reason };
        let Some(len) = (got == HEADER_LEN)
            .then(|| announced_len(&header))
            .flatten()
        else {
            if offset == 0 {
                return Ok(None);
            }
            return Err(corrupt(IndexError::Mixed(offset).to_string()));
        };
        let mut packed = vec![0u8; len as usize];
        packed[..HEADER_LEN].copy_from_slice(&header);
        let rest = read_full(src, &mut packed[HEADER_LEN..]).map_err(InflateError::Read)?;
        if rest < packed.len() - HEADER_LEN {
            return Err(corrupt(IndexError::PastEnd(offset).to_string()));
        }
        let isize = u32::from_le_bytes(packed[packed.len() - 4..].try_into().expect("4 bytes"));
        let m = Member {
            offset,
            len,
            plain_offset,
            plain_len: isize,
        };
        // A worker that failed ended the run: stop reading.
        if failed.load(Ordering::Relaxed) || tx.send((m, packed)).is_err() {
            return Ok(Some(plain_offset));
        }
        offset += u64::from(len);
        plain_offset += u64::from(isize);
    }
}

/// Fills `buf` as far as `src` goes; the bytes read (short only at the end).
fn read_full(src: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads and inflates one member into `plain`, checked: its deflate data
/// must inflate to exactly the size its trailer gives, with the trailer's
/// CRC32. libdeflate inflates a whole buffer of known size about twice as
/// fast as a streaming inflater, and the index gives every size up front.
fn inflate_one(
    src: &File,
    m: &Member,
    inflater: &mut Decompressor,
    packed: &mut Vec<u8>,
    plain: &mut Vec<u8>,
) -> Result<(), InflateError> {
    packed.resize(m.len as usize, 0);
    src.read_exact_at(packed, m.offset)
        .map_err(InflateError::Read)?;
    inflate_packed(m, packed, inflater, plain)
}

/// Inflates member `m`, read whole into `packed`, into `plain`, checked as
/// [`inflate_one`] says.
fn inflate_packed(
    m: &Member,
    packed: &[u8],
    inflater: &mut Decompressor,
    plain: &mut Vec<u8>,
) -> Result<(), InflateError> {
    let corrupt = |reason: &str| InflateError::Corrupt {
        offset: m.offset,
        reason: reason.to_string(),
    };
    // The index read the header (ours, of fixed length) and the length.
    let (deflated, trailer) =
        packed[HEADER_LEN..].split_at(packed.len() - HEADER_LEN - TRAILER_LEN);
    let crc = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes"));
    plain.resize(m.plain_len as usize, 0);
    let n = inflater
        .deflate_decompress(deflated, plain)
        .map_err(|e| match e {
            DecompressionError::BadData => corrupt("invalid deflate data"),
            DecompressionError::InsufficientSpace => {
                corrupt("it inflates to more than its trailer's size")
            }
        })?;
    if n != plain.len() {
        return Err(corrupt("its size differs from its trailer's"));
    }
    if libdeflater::crc32(plain) != crc {
        return Err(corrupt("CRC32 mismatch"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, SeekFrom, Write};

    use flate2::Compression;
    use flate2::read::MultiGzDecoder;
    use flate2::write::DeflateEncoder;

    use super::*;

    fn member(plain: &[u8]) -> Vec<u8> {
        let mut enc = DeflateEncoder::new(Vec::new(), Compression::new(6));
        enc.write_all(plain).unwrap();
        encode(&enc.finish().unwrap(), plain).unwrap()
    }

    fn chunks() -> Vec<Vec<u8>> {
        (0..7u32)
            .map(|i| {
                (0..(100_000 + i * 1_000))
                    .map(|j| (j * 7 % 251 + i) as u8)
                    .collect()
            })
            .collect()
    }

    fn file_of(parts: &[Vec<u8>]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        for p in parts {
            f.write_all(p).unwrap();
        }
        f
    }

    #[test]
    fn members_are_plain_gzip_to_any_reader() {
        let chunks = chunks();
        let packed: Vec<u8> = chunks.iter().flat_map(|c| member(c)).collect();
        let mut back = Vec::new();
        MultiGzDecoder::new(&packed[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, chunks.concat());
    }

    #[test]
    fn the_index_finds_every_member_and_inflates_them_in_parallel() {
        let chunks = chunks();
        let packed: Vec<_> = chunks.iter().map(|c| member(c)).collect();
        let src = file_of(&packed);
        let size = packed.iter().map(|p| p.len() as u64).sum();
        let index = index(&src, size).unwrap().expect("an indexed file");
        assert_eq!(index.len(), chunks.len());
        assert_eq!(index[1].offset, packed[0].len() as u64);
        assert_eq!(
            index[2].plain_offset,
            (chunks[0].len() + chunks[1].len()) as u64
        );

        let mut dst = tempfile::tempfile().unwrap();
        let seen = AtomicUsize::new(0);
        let total = inflate_into(&src, &index, &dst, 3, &AtomicBool::new(false), &|n| {
            seen.fetch_add(n as usize, Ordering::Relaxed);
        })
        .unwrap();
        let mut back = Vec::new();
        dst.seek(SeekFrom::Start(0)).unwrap();
        dst.read_to_end(&mut back).unwrap();
        assert_eq!(back, chunks.concat(), "byte for byte");
        assert_eq!(total as usize, back.len());
        assert_eq!(seen.load(Ordering::Relaxed), back.len());
    }

    #[test]
    fn a_stream_of_members_inflates_in_parallel_and_damage_is_named() {
        let chunks = chunks();
        let packed: Vec<u8> = chunks.iter().flat_map(|c| member(c)).collect();
        let no = AtomicBool::new(false);
        let inflate = |bytes: &[u8]| {
            let mut dst = tempfile::tempfile().unwrap();
            let r = inflate_stream(&mut &bytes[..], &dst, 3, &no, &|_| {});
            let mut back = Vec::new();
            dst.seek(SeekFrom::Start(0)).unwrap();
            dst.read_to_end(&mut back).unwrap();
            (r, back)
        };
        let (r, back) = inflate(&packed);
        assert_eq!(r.unwrap(), Some(back.len() as u64));
        assert_eq!(back, chunks.concat(), "byte for byte");

        let cut = &packed[..packed.len() - 3];
        assert!(matches!(inflate(cut).0, Err(InflateError::Corrupt { .. })));
        let mut damaged = packed.clone();
        let second = member(&chunks[0]).len();
        damaged[second + HEADER_LEN + 5] ^= 0xff;
        let (r, _) = inflate(&damaged);
        assert!(
            matches!(r, Err(InflateError::Corrupt { offset, .. }) if offset == second as u64),
            "{r:?}"
        );
        let mut foreign = Vec::new();
        let mut gz = flate2::write::GzEncoder::new(&mut foreign, Compression::default());
        gz.write_all(b"not ours").unwrap();
        gz.finish().unwrap();
        assert!(matches!(inflate(&foreign).0, Ok(None)));
    }

    #[test]
    fn a_file_of_other_gzip_members_has_no_index() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), Compression::new(6));
        enc.write_all(b"written by gzip or an older valerix-backup")
            .unwrap();
        let plain = enc.finish().unwrap();
        let src = file_of(std::slice::from_ref(&plain));
        assert!(index(&src, plain.len() as u64).unwrap().is_none());
    }

    #[test]
    fn a_damaged_member_is_named_by_its_offset() {
        let chunks = chunks();
        let mut packed: Vec<_> = chunks.iter().map(|c| member(c)).collect();
        let at = packed[0].len() as u64 + packed[1].len() as u64;
        let mid = packed[2].len() / 2;
        packed[2][mid] ^= 0x55;
        let src = file_of(&packed);
        let size = packed.iter().map(|p| p.len() as u64).sum();
        let index = index(&src, size).unwrap().unwrap();
        let dst = tempfile::tempfile().unwrap();
        let e = inflate_into(&src, &index, &dst, 2, &AtomicBool::new(false), &|_| {}).unwrap_err();
        assert!(
            matches!(e, InflateError::Corrupt { offset, .. } if offset == at),
            "{e}"
        );
    }

    #[test]
    fn lengths_that_do_not_add_up_are_damage_not_an_index() {
        let chunks = chunks();
        let mut packed: Vec<_> = chunks.iter().map(|c| member(c)).collect();
        let size: u64 = packed.iter().map(|p| p.len() as u64).sum();
        // A length past the end of the file.
        packed[1][16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        let src = file_of(&packed);
        assert!(matches!(index(&src, size), Err(IndexError::PastEnd(_))));
        // An indexed file followed by a member of another writer.
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), Compression::new(6));
        enc.write_all(b"appended").unwrap();
        let mixed = [member(b"first"), enc.finish().unwrap()];
        let size = mixed.iter().map(|p| p.len() as u64).sum();
        assert!(matches!(
            index(&file_of(&mixed), size),
            Err(IndexError::Mixed(_))
        ));
    }

    #[test]
    fn a_cancelled_inflation_stops() {
        let chunks = chunks();
        let packed: Vec<_> = chunks.iter().map(|c| member(c)).collect();
        let src = file_of(&packed);
        let size = packed.iter().map(|p| p.len() as u64).sum();
        let index = index(&src, size).unwrap().unwrap();
        let dst = tempfile::tempfile().unwrap();
        let e = inflate_into(&src, &index, &dst, 2, &AtomicBool::new(true), &|_| {}).unwrap_err();
        assert!(matches!(e, InflateError::Cancelled));
    }
}
