//! A streaming reader of pg_dump's custom archive format (`--format=custom`).
//!
//! The backup stream passes through [`ArchiveScanner::feed`] on its way to the
//! compressor. From it we learn, without a second query to the server and
//! consistently with the dump's own snapshot:
//! - the pg_dump and server versions and the archive version (header),
//! - the exact row count of every table (each COPY row ends in a raw `\n`;
//!   newlines inside values are escaped as `\n` by COPY's text format),
//! - whether the archive is complete: every table-of-contents entry that has
//!   data must be followed by its data block. A pg_dump that dies half-way, or
//!   a file truncated later, fails this check even when gzip's CRC is fine.
//!
//! The layout follows `pg_backup_archiver.c` (`WriteHead`, `WriteToc`) and
//! `pg_backup_custom.c` (`_StartData`, `_WriteData`, `_EndData`): integers are
//! a sign byte plus `intSize` little-endian bytes; strings are an integer
//! length (-1 for NULL) plus bytes; data follows the TOC as blocks of
//! `type byte, dump id, (length, bytes)*, 0`. Archive versions 1.12 to 1.16
//! (PostgreSQL 11 to 17) are understood.

use std::collections::{HashMap, HashSet};

pub(super) const BLK_DATA: u8 = 1;
pub(super) const BLK_BLOBS: u8 = 3;
/// What `dumpTableData_copy` writes after the last row.
const TERMINATOR: &[u8] = b"\\.\n\n\n";
/// The header and TOC are buffered until parsed; a TOC this large is a
/// corrupt length, not a schema.
const MAX_HEAD: usize = 512 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ArchiveError(pub String);

/// What a complete scan learned.
#[derive(Debug, Clone, Default)]
pub struct ArchiveSummary {
    pub archive_version: String,
    pub dbname: String,
    pub server_version: String,
    pub pg_dump_version: String,
    /// Data inside the archive is compressed by pg_dump itself (then rows
    /// cannot be counted; valerix-backup's own dumps never are).
    pub compressed: bool,
    /// Rows per table, sorted by schema and name; empty when `compressed`.
    pub tables: Vec<TableRows>,
    pub toc_entries: usize,
    pub data_blocks: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct TableRows {
    pub schema: String,
    pub name: String,
    pub rows: u64,
}

#[derive(Debug)]
pub(super) struct Toc {
    version: (u8, u8, u8),
    pub(super) int_size: usize,
    pub(super) compressed: bool,
    dbname: String,
    server_version: String,
    pg_dump_version: String,
    entries: usize,
    /// dump id -> (schema, table) of TABLE DATA entries.
    tables: HashMap<i64, (String, String)>,
    /// dump ids of every entry that has data.
    with_data: HashSet<i64>,
    /// Bytes of a data offset in the TOC.
    pub(super) off_size: usize,
    /// Of every entry that has data: its dump id, where its offset flag is
    /// in the file, and that flag.
    pub(super) data_offsets: Vec<(i64, usize, u8)>,
}

#[derive(Debug, Clone, Copy)]
enum IntFor {
    DataId,
    BlobsId,
    ChunkLen,
    BlobOid,
}

#[derive(Debug)]
enum State {
    Head,
    BlockType,
    Int(IntFor),
    Chunk(u64),
}

#[derive(Debug)]
pub struct ArchiveScanner {
    state: State,
    head: Vec<u8>,
    toc: Option<Toc>,
    carry: Vec<u8>,
    current: Option<i64>,
    /// Last bytes of the current table's data, to find COPY's terminator.
    tail: Vec<u8>,
    in_blobs: bool,
    rows: HashMap<i64, u64>,
    seen: HashSet<i64>,
    failed: Option<ArchiveError>,
}

impl Default for ArchiveScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl ArchiveScanner {
    pub fn new() -> Self {
        ArchiveScanner {
            state: State::Head,
            head: Vec::new(),
            toc: None,
            carry: Vec::new(),
            current: None,
            tail: Vec::new(),
            in_blobs: false,
            rows: HashMap::new(),
            seen: HashSet::new(),
            failed: None,
        }
    }

    /// Consumes the next piece of the stream. After the first error every
    /// later call returns it again.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), ArchiveError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.feed_inner(data);
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    /// Ends the scan: the stream must stop between two blocks, after the data
    /// of every TOC entry that has data.
    pub fn finish(mut self) -> Result<ArchiveSummary, ArchiveError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let Some(toc) = self.toc.take() else {
            return Err(if self.head.is_empty() {
                ArchiveError("archive is empty".into())
            } else {
                ArchiveError("archive ends inside its header or table of contents".into())
            });
        };
        if !matches!(self.state, State::BlockType) {
            return Err(ArchiveError("archive ends inside a data block".into()));
        }
        let missing = toc.with_data.difference(&self.seen).count();
        if missing > 0 {
            return Err(ArchiveError(format!(
                "archive is incomplete: {missing} of {} data blocks missing",
                toc.with_data.len()
            )));
        }
        let mut tables = Vec::new();
        if !toc.compressed {
            for (id, (schema, name)) in &toc.tables {
                let rows = self.rows.get(id).copied().unwrap_or(0);
                tables.push(TableRows {
                    schema: schema.clone(),
                    name: name.clone(),
                    rows,
                });
            }
            tables.sort();
        }
        let (a, b, c) = toc.version;
        Ok(ArchiveSummary {
            archive_version: format!("{a}.{b}.{c}"),
            dbname: toc.dbname,
            server_version: toc.server_version,
            pg_dump_version: toc.pg_dump_version,
            compressed: toc.compressed,
            tables,
            toc_entries: toc.entries,
            data_blocks: self.seen.len(),
        })
    }

    fn feed_inner(&mut self, mut data: &[u8]) -> Result<(), ArchiveError> {
        if matches!(self.state, State::Head) {
            self.head.extend_from_slice(data);
            if self.head.len() >= 5 && &self.head[..5] != b"PGDMP" {
                return Err(ArchiveError(
                    "not a pg_dump custom-format archive (no PGDMP magic)".into(),
                ));
            }
            match parse_head(&self.head) {
                Ok((toc, used)) => {
                    let rest = self.head.split_off(used);
                    self.head = Vec::new();
                    self.toc = Some(toc);
                    self.state = State::BlockType;
                    return self.feed_blocks(&rest);
                }
                Err(Need::More) if self.head.len() < MAX_HEAD => return Ok(()),
                Err(Need::More) => {
                    return Err(ArchiveError(
                        "table of contents is implausibly large".into(),
                    ));
                }
                Err(Need::Bad(m)) => return Err(ArchiveError(m)),
            }
        }
        self.feed_blocks(std::mem::take(&mut data))
    }

    fn feed_blocks(&mut self, mut data: &[u8]) -> Result<(), ArchiveError> {
        while !data.is_empty() {
            match self.state {
                State::Head => unreachable!("head is parsed before blocks"),
                State::BlockType => {
                    let t = data[0];
                    data = &data[1..];
                    self.state = match t {
                        BLK_DATA => State::Int(IntFor::DataId),
                        BLK_BLOBS => State::Int(IntFor::BlobsId),
                        _ => {
                            return Err(ArchiveError(format!("unknown data block type {t}")));
                        }
                    };
                }
                State::Int(what) => {
                    let size = self.toc.as_ref().map_or(4, |t| t.int_size) + 1;
                    let take = (size - self.carry.len()).min(data.len());
                    self.carry.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.carry.len() == size {
                        let v = read_int_bytes(&self.carry);
                        self.carry.clear();
                        self.on_int(what, v)?;
                    }
                }
                State::Chunk(remaining) => {
                    let take = remaining.min(data.len() as u64) as usize;
                    self.count_rows(&data[..take]);
                    data = &data[take..];
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        State::Int(IntFor::ChunkLen)
                    } else {
                        State::Chunk(left)
                    };
                }
            }
        }
        Ok(())
    }

    fn on_int(&mut self, what: IntFor, v: i64) -> Result<(), ArchiveError> {
        let toc = self.toc.as_ref().expect("toc parsed");
        self.state = match what {
            IntFor::DataId | IntFor::BlobsId => {
                if !toc.with_data.contains(&v) {
                    return Err(ArchiveError(format!(
                        "data block for unknown TOC entry {v}"
                    )));
                }
                self.seen.insert(v);
                self.in_blobs = matches!(what, IntFor::BlobsId);
                self.current = toc.tables.contains_key(&v).then_some(v);
                if self.in_blobs {
                    State::Int(IntFor::BlobOid)
                } else {
                    State::Int(IntFor::ChunkLen)
                }
            }
            IntFor::ChunkLen if v < 0 => {
                return Err(ArchiveError(format!("negative data chunk length {v}")));
            }
            IntFor::ChunkLen if v == 0 && self.in_blobs => State::Int(IntFor::BlobOid),
            IntFor::ChunkLen if v == 0 => {
                self.end_table_data();
                State::BlockType
            }
            IntFor::ChunkLen => State::Chunk(v as u64),
            IntFor::BlobOid if v == 0 => {
                self.in_blobs = false;
                State::BlockType
            }
            IntFor::BlobOid => State::Int(IntFor::ChunkLen),
        };
        Ok(())
    }

    fn count_rows(&mut self, bytes: &[u8]) {
        let compressed = self.toc.as_ref().is_some_and(|t| t.compressed);
        if let (Some(id), false, false) = (self.current, self.in_blobs, compressed) {
            let n = memchr::memchr_iter(b'\n', bytes).count() as u64;
            *self.rows.entry(id).or_insert(0) += n;
            self.tail
                .extend_from_slice(&bytes[bytes.len().saturating_sub(TERMINATOR.len())..]);
            let excess = self.tail.len().saturating_sub(TERMINATOR.len());
            self.tail.drain(..excess);
        }
    }

    /// pg_dump ends each table's COPY data with `\.` and two empty lines;
    /// those three newlines are not rows.
    fn end_table_data(&mut self) {
        if let Some(id) = self.current.take()
            && self.tail == TERMINATOR
            && let Some(n) = self.rows.get_mut(&id)
        {
            *n -= 3;
        }
        self.tail.clear();
    }
}

pub(super) enum Need {
    More,
    Bad(String),
}

pub(super) fn read_int_bytes(b: &[u8]) -> i64 {
    let mut v: i64 = 0;
    for (i, byte) in b[1..].iter().enumerate() {
        v |= (*byte as i64) << (8 * i);
    }
    if b[0] != 0 { -v } else { v }
}

struct Cur<'a> {
    b: &'a [u8],
    pos: usize,
    int_size: usize,
}

impl Cur<'_> {
    fn bytes(&mut self, n: usize) -> Result<&[u8], Need> {
        if self.b.len() - self.pos < n {
            return Err(Need::More);
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn byte(&mut self) -> Result<u8, Need> {
        Ok(self.bytes(1)?[0])
    }
    fn int(&mut self) -> Result<i64, Need> {
        let n = self.int_size + 1;
        Ok(read_int_bytes(self.bytes(n)?))
    }
    fn str(&mut self) -> Result<Option<String>, Need> {
        let len = self.int()?;
        if len < 0 {
            return Ok(None);
        }
        if len as usize > MAX_HEAD {
            return Err(Need::Bad(format!("implausible string length {len} in TOC")));
        }
        Ok(Some(
            String::from_utf8_lossy(self.bytes(len as usize)?).into_owned(),
        ))
    }
}

/// Parses header and TOC; returns them with the number of bytes consumed.
pub(super) fn parse_head(b: &[u8]) -> Result<(Toc, usize), Need> {
    let mut c = Cur {
        b,
        pos: 0,
        int_size: 4,
    };
    c.bytes(5)?; // PGDMP, checked by the caller
    let version = (c.byte()?, c.byte()?, c.byte()?);
    let v = |maj: u8, min: u8| (version.0, version.1) >= (maj, min);
    if version.0 != 1 || !(12..=16).contains(&version.1) {
        return Err(Need::Bad(format!(
            "unsupported archive version {}.{}.{} (PostgreSQL 11-17 are understood)",
            version.0, version.1, version.2
        )));
    }
    c.int_size = c.byte()? as usize;
    let off_size = c.byte()? as usize;
    if !(1..=8).contains(&c.int_size) || !(1..=8).contains(&off_size) {
        return Err(Need::Bad("corrupt archive header (integer sizes)".into()));
    }
    let format = c.byte()?;
    if format != 1 {
        return Err(Need::Bad(format!(
            "archive format {format} is not the custom format"
        )));
    }
    let compressed = if v(1, 15) {
        c.byte()? != 0
    } else {
        c.int()? != 0
    };
    for _ in 0..7 {
        c.int()?; // creation time: sec, min, hour, mday, mon, year, isdst
    }
    let dbname = c.str()?.unwrap_or_default();
    let server_version = c.str()?.unwrap_or_default();
    let pg_dump_version = c.str()?.unwrap_or_default();
    let count = c.int()?;
    if !(0..10_000_000).contains(&count) {
        return Err(Need::Bad(format!("implausible TOC entry count {count}")));
    }
    let mut toc = Toc {
        version,
        int_size: c.int_size,
        compressed,
        dbname,
        server_version,
        pg_dump_version,
        entries: count as usize,
        tables: HashMap::new(),
        with_data: HashSet::new(),
        off_size,
        data_offsets: Vec::new(),
    };
    for _ in 0..count {
        let dump_id = c.int()?;
        let had_dumper = c.int()? != 0;
        c.str()?; // table oid
        c.str()?; // oid
        let tag = c.str()?.unwrap_or_default();
        let desc = c.str()?.unwrap_or_default();
        c.int()?; // section
        c.str()?; // defn
        c.str()?; // drop statement
        c.str()?; // copy statement
        let namespace = c.str()?.unwrap_or_default();
        c.str()?; // tablespace
        if v(1, 14) {
            c.str()?; // table access method
        }
        if v(1, 16) {
            c.int()?; // relkind
        }
        c.str()?; // owner
        c.str()?; // "false" (WITH OIDS, long gone)
        while c.str()?.is_some() {} // dependencies, NULL-terminated
        let flag_at = c.pos;
        let flag = c.byte()?; // offset flag
        c.bytes(off_size)?; // data offset (unset in a streamed archive)
        if had_dumper {
            toc.data_offsets.push((dump_id, flag_at, flag));
            toc.with_data.insert(dump_id);
            if desc == "TABLE DATA" {
                toc.tables.insert(dump_id, (namespace, tag));
            }
        }
    }
    Ok((toc, c.pos))
}
