//! Fewer, larger data chunks in an uncompressed custom archive.
//!
//! pg_dump `--compress=0` writes every COPY row as a chunk of its own: a
//! length (a sign byte and four bytes) before each row. In a dump of short
//! rows those lengths are 3-6 % of the bytes, and noise to the compressor
//! between otherwise similar rows; pg_restore then reads them one by one and
//! hands every row to libpq as one `PQputCopyData` call. [`Rechunk`]
//! rewrites each data block's chunks into chunks of up to [`CHUNK`] bytes on
//! the way to the compressor. The bytes a table's COPY receives are the
//! same: pg_restore concatenates a block's chunks, as it does for the
//! arbitrary chunks of a compressed archive, so the archive restores, lists
//! and scans as before, with pg_restore 11 or newer and with the seed's
//! scripts. The header and table of contents pass through unchanged.
//!
//! Anything that does not parse as expected (a compressed archive, a
//! damaged stream) passes through unchanged from there on: the archive scan
//! after this step then says what is wrong with it.

use std::io::{self, Read};

use crate::pg::archive::{BLK_BLOBS, BLK_DATA, Need, parse_head, read_int_bytes};

/// The largest chunk written: large enough that lengths cost nothing,
/// small enough for pg_restore's buffer (it allocates one chunk at a time).
pub const CHUNK: usize = 64 << 10;

/// Reads pg_dump's output from `inner`, yields it with data chunks merged.
pub struct Rechunk<R> {
    inner: R,
    /// Input read but not yet consumed: `buf[pos..]`.
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
    /// Output produced but not yet read: `out[out_pos..]`.
    out: Vec<u8>,
    out_pos: usize,
    int_size: usize,
    state: State,
    /// Payload of the chunk being merged.
    pending: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    /// Before a block's type byte (or the end of the archive).
    Block,
    /// Inside a table's data: chunks until a zero length.
    Data,
    /// Inside large objects: before an object's oid (0 ends the block).
    BlobOid,
    /// Inside one large object's chunks.
    BlobData,
    /// Inside a large chunk's payload, passed on as it is; `then` is the
    /// state to return to after it (`Data` or `BlobData`).
    Copy {
        left: usize,
        then: Then,
    },
    /// Unchanged from here on.
    Pass,
}

/// Where a large chunk's payload returns to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    Data,
    BlobData,
}

impl<R: Read> Rechunk<R> {
    pub fn new(inner: R) -> Self {
        Rechunk {
            inner,
            buf: Vec::with_capacity(1 << 20),
            pos: 0,
            eof: false,
            out: Vec::with_capacity(CHUNK + 64),
            out_pos: 0,
            int_size: 4,
            state: State::Head,
            pending: Vec::with_capacity(CHUNK),
        }
    }

    /// Makes at least `n` unconsumed input bytes available; false when the
    /// input ends first.
    fn want(&mut self, n: usize) -> io::Result<bool> {
        while self.buf.len() - self.pos < n {
            if self.eof {
                return Ok(false);
            }
            if self.pos > 0 && self.pos == self.buf.len() {
                self.buf.clear();
                self.pos = 0;
            } else if self.pos > (1 << 20) {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            let start = self.buf.len();
            let grow = n.max(256 << 10);
            self.buf.resize(start + grow, 0);
            let got = loop {
                match self.inner.read(&mut self.buf[start..]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r,
                }
            };
            let got = match got {
                Ok(got) => got,
                Err(e) => {
                    self.buf.truncate(start);
                    return Err(e);
                }
            };
            self.buf.truncate(start + got);
            self.eof = got == 0;
        }
        Ok(true)
    }

    /// The next integer of the input, consumed; `None` when the input ends
    /// first.
    fn int(&mut self) -> io::Result<Option<i64>> {
        let n = self.int_size + 1;
        if !self.want(n)? {
            return Ok(None);
        }
        let v = read_int_bytes(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(Some(v))
    }

    fn emit_int(&mut self, v: i64) {
        self.out.push(u8::from(v < 0));
        let mut m = v.unsigned_abs();
        for _ in 0..self.int_size {
            self.out.push((m & 0xff) as u8);
            m >>= 8;
        }
    }

    /// Writes the merged chunk, if any.
    fn flush_pending(&mut self) {
        if !self.pending.is_empty() {
            self.emit_int(self.pending.len() as i64);
            self.out.append(&mut self.pending);
        }
    }

    /// From now on, every input byte unchanged (after what was merged).
    fn pass(&mut self) {
        self.flush_pending();
        self.state = State::Pass;
    }

    /// Produces the next piece of output (or finds the end).
    fn step(&mut self) -> io::Result<()> {
        match self.state {
            State::Head => self.head(),
            State::Block => self.block(),
            State::Data | State::BlobData => self.chunk(),
            State::BlobOid => self.blob_oid(),
            State::Copy { left, then } => self.copy(left, then),
            State::Pass => {
                self.want(1)?;
                self.out.extend_from_slice(&self.buf[self.pos..]);
                self.pos = self.buf.len();
                Ok(())
            }
        }
    }

    fn head(&mut self) -> io::Result<()> {
        let mut need = 64 << 10;
        loop {
            let full = self.want(need)?;
            match parse_head(&self.buf[self.pos..]) {
                Ok((toc, len)) if !toc.compressed => {
                    self.int_size = toc.int_size;
                    self.out
                        .extend_from_slice(&self.buf[self.pos..self.pos + len]);
                    self.pos += len;
                    self.state = State::Block;
                    return Ok(());
                }
                Err(Need::More) if full => need *= 2,
                // Compressed, damaged, or cut short: not ours to judge.
                _ => {
                    self.pass();
                    return Ok(());
                }
            }
        }
    }

    fn block(&mut self) -> io::Result<()> {
        if !self.want(1)? {
            return Ok(()); // the end of the archive
        }
        let kind = self.buf[self.pos];
        if kind != BLK_DATA && kind != BLK_BLOBS {
            self.pass();
            return Ok(());
        }
        let n = 1 + self.int_size + 1;
        if !self.want(n)? {
            self.pass();
            return Ok(());
        }
        self.out
            .extend_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        self.state = if kind == BLK_DATA {
            State::Data
        } else {
            State::BlobOid
        };
        Ok(())
    }

    fn blob_oid(&mut self) -> io::Result<()> {
        match self.int()? {
            None => self.pass(),
            Some(0) => {
                self.emit_int(0);
                self.state = State::Block;
            }
            Some(oid) => {
                self.emit_int(oid);
                self.state = State::BlobData;
            }
        }
        Ok(())
    }

    /// One input chunk: merged into the pending one; the zero length ends
    /// the data.
    fn chunk(&mut self) -> io::Result<()> {
        let Some(len) = self.int()? else {
            self.pass(); // cut short inside a length
            return Ok(());
        };
        if len < 0 {
            self.flush_pending();
            self.emit_int(len);
            self.pass();
            return Ok(());
        }
        let len = len as usize;
        if len >= CHUNK {
            // A large value (a long text or bytea row) goes through as it
            // is, a piece at a time: memory stays bounded by CHUNK whatever
            // the row's size.
            self.flush_pending();
            self.emit_int(len as i64);
            let then = match self.state {
                State::BlobData => Then::BlobData,
                _ => Then::Data,
            };
            self.state = State::Copy { left: len, then };
            return Ok(());
        }
        if len == 0 {
            self.flush_pending();
            self.emit_int(0);
            self.state = match self.state {
                State::BlobData => State::BlobOid,
                _ => State::Block,
            };
            return Ok(());
        }
        if !self.want(len)? {
            // Cut short inside a chunk: its length, then what there is.
            self.flush_pending();
            self.emit_int(len as i64);
            self.pass();
            return Ok(());
        }
        if self.pending.len() + len > CHUNK {
            self.flush_pending();
        }
        self.pending
            .extend_from_slice(&self.buf[self.pos..self.pos + len]);
        self.pos += len;
        Ok(())
    }

    /// Up to `left` bytes of a large chunk's payload, unchanged.
    fn copy(&mut self, left: usize, then: Then) -> io::Result<()> {
        if !self.want(1)? {
            self.state = State::Pass; // cut short: nothing more comes
            return Ok(());
        }
        let n = left.min(self.buf.len() - self.pos).min(CHUNK);
        self.out
            .extend_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        self.state = match (left - n, then) {
            (0, Then::Data) => State::Data,
            (0, Then::BlobData) => State::BlobData,
            (left, then) => State::Copy { left, then },
        };
        Ok(())
    }
}

impl<R: Read> Read for Rechunk<R> {
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        while self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            let at_end = self.eof && self.pos == self.buf.len();
            if at_end {
                // What was merged but not yet written (a stream cut inside
                // a block) goes out before the end.
                self.flush_pending();
                if self.out.is_empty() {
                    return Ok(0);
                }
                break;
            }
            self.step()?;
        }
        let n = dst.len().min(self.out.len() - self.out_pos);
        dst[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Read};

    use super::{CHUNK, Rechunk};

    fn int(v: i64) -> Vec<u8> {
        let mut b = vec![u8::from(v < 0)];
        b.extend_from_slice(&(v.unsigned_abs() as u32).to_le_bytes());
        b
    }

    fn text(s: &str) -> Vec<u8> {
        [int(s.len() as i64), s.as_bytes().to_vec()].concat()
    }

    /// A custom archive of version 1.14 with an empty table of contents.
    fn head() -> Vec<u8> {
        let mut h = b"PGDMP".to_vec();
        h.extend_from_slice(&[1, 14, 0, 4, 8, 1]);
        h.extend(int(0)); // not compressed
        for _ in 0..7 {
            h.extend(int(1)); // creation time
        }
        for s in ["db", "15.0", "15.0"] {
            h.extend(text(s));
        }
        h.extend(int(0)); // no TOC entries
        h
    }

    /// One row of 24 MiB passes through a piece at a time: the output is
    /// the input, and the reader never holds the row.
    #[test]
    fn a_large_row_is_passed_on_in_bounded_memory() {
        let row = 24 << 20;
        let before = [
            head(),
            vec![1],
            int(7),
            int(3),
            b"a\n\n".to_vec(),
            int(row as i64),
        ]
        .concat();
        let after = [int(0)].concat();
        let input = Cursor::new(before.clone())
            .chain(std::io::repeat(b'x').take(row as u64))
            .chain(Cursor::new(after.clone()));
        let mut r = Rechunk::new(input);
        let (mut out, mut buf, mut most) = (Vec::new(), vec![0u8; 1 << 16], 0);
        loop {
            let n = r.read(&mut buf).unwrap();
            most = most.max(r.buf.capacity() + r.out.capacity() + r.pending.capacity());
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert!(most < 4 * CHUNK + (1 << 20), "held {most} bytes");
        assert_eq!(out.len(), before.len() + row + after.len());
        assert_eq!(&out[..before.len()], &before[..]);
        assert!(
            out[before.len()..before.len() + row]
                .iter()
                .all(|&b| b == b'x')
        );
        assert_eq!(&out[before.len() + row..], &after[..]);
    }
}
