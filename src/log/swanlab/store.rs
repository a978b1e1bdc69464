//! The run file's framing, mirroring `swanlab/sdk/internal/core_python/store/__init__.py`
//! (swanlab==0.10.3), itself LevelDB's log format: a 7-byte file header (`":SWL"`, u16 magic
//! `0xE1D6`, u8 version 2), then 32 KiB blocks of chunks `u32 crc | u16 len | u8 type | data`
//! (little-endian), where `crc` is zlib's CRC-32 over `[type] ++ data`. A record that does not fit
//! in the rest of a block is split into FIRST/MIDDLE/LAST chunks; fewer than 7 bytes left in a
//! block are zero-filled.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

pub const HEADER_LEN: usize = 7;
pub const BLOCK_LEN: usize = 32768;
const DATA_LEN: usize = BLOCK_LEN - HEADER_LEN;
const FULL: u8 = 1;
const FIRST: u8 = 2;
const MIDDLE: u8 = 3;
const LAST: u8 = 4;
const IDENT: &[u8; 4] = b":SWL";
const MAGIC: u16 = 0xE1D6;
const VERSION: u8 = 2;

fn checksum(kind: u8, data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind]);
    h.update(data);
    h.finalize()
}

/// Appends framed records to any byte sink (a file, or a `Vec` in tests).
pub struct StoreWriter<W: Write> {
    out: W,
    index: usize,
}

impl StoreWriter<BufWriter<File>> {
    /// Creates `path` (failing if it exists, as the SDK's `open(.., "xb")`) and writes the header.
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(path)
            .with_context(|| format!("creating run file {}", path.display()))?;
        StoreWriter::new(BufWriter::with_capacity(64 * 1024, file))
            .with_context(|| format!("writing header of {}", path.display()))
    }

    /// Pushes buffered bytes to the OS (survives a killed process) and, if `durable`, to disk.
    pub fn flush(&mut self, durable: bool) -> Result<()> {
        self.out.flush().context("flushing run file")?;
        if durable {
            self.out.get_ref().sync_data().context("syncing run file")?;
        }
        Ok(())
    }
}

impl<W: Write> StoreWriter<W> {
    pub fn new(mut out: W) -> std::io::Result<Self> {
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(IDENT);
        header.extend_from_slice(&MAGIC.to_le_bytes());
        header.push(VERSION);
        out.write_all(&header)?;
        Ok(StoreWriter {
            out,
            index: HEADER_LEN,
        })
    }

    /// Appends one record, split across blocks exactly as `DataStoreWriter.write` does.
    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        let mut space_left = BLOCK_LEN - self.index % BLOCK_LEN;
        if space_left < HEADER_LEN {
            self.out.write_all(&[0u8; HEADER_LEN][..space_left])?;
            self.index += space_left;
            space_left = BLOCK_LEN;
        }
        if data.len() + HEADER_LEN <= space_left {
            return self.chunk(data, FULL);
        }
        let room = space_left - HEADER_LEN;
        self.chunk(&data[..room], FIRST)?;
        let mut used = room;
        while data.len() - used > DATA_LEN {
            self.chunk(&data[used..used + DATA_LEN], MIDDLE)?;
            used += DATA_LEN;
        }
        self.chunk(&data[used..], LAST)
    }

    fn chunk(&mut self, data: &[u8], kind: u8) -> std::io::Result<()> {
        debug_assert!(data.len() + HEADER_LEN <= BLOCK_LEN - self.index % BLOCK_LEN);
        let mut head = [0u8; HEADER_LEN];
        head[..4].copy_from_slice(&checksum(kind, data).to_le_bytes());
        head[4..6].copy_from_slice(&(data.len() as u16).to_le_bytes());
        head[6] = kind;
        self.out.write_all(&head)?;
        self.out.write_all(data)?;
        self.index += HEADER_LEN + data.len();
        Ok(())
    }

    /// Zero-fills a block tail shorter than a chunk header. The SDK's writer leaves it for the next
    /// write, but its reader then trips on the missing padding at end of file and logs an error;
    /// padding after the last record (the finish) keeps `swanlab sync` quiet.
    pub fn pad_block_tail(&mut self) -> std::io::Result<()> {
        let space_left = BLOCK_LEN - self.index % BLOCK_LEN;
        if space_left < HEADER_LEN {
            self.out.write_all(&[0u8; HEADER_LEN][..space_left])?;
            self.index += space_left;
        }
        Ok(())
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Sequential reader over a whole run file held in memory. Unlike the SDK's reader, which stops
/// silently at damage, it reports where and why it stopped so callers can tell a clean end from
/// a truncated or corrupt tail.
pub struct StoreReader {
    bytes: Vec<u8>,
    index: usize,
}

impl StoreReader {
    pub fn open(path: &Path) -> Result<Self> {
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .with_context(|| format!("reading run file {}", path.display()))?;
        Self::from_bytes(bytes).with_context(|| format!("in run file {}", path.display()))
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        ensure!(
            bytes.len() >= HEADER_LEN,
            "file is shorter than the 7-byte header"
        );
        ensure!(&bytes[..4] == IDENT, "not a SwanLab run file (bad ident)");
        ensure!(
            u16::from_le_bytes([bytes[4], bytes[5]]) == MAGIC,
            "bad header magic"
        );
        ensure!(
            bytes[6] == VERSION,
            "unsupported run file version {}",
            bytes[6]
        );
        Ok(StoreReader {
            bytes,
            index: HEADER_LEN,
        })
    }

    /// Bytes consumed so far; equals the file size after a clean end.
    pub fn consumed(&self) -> usize {
        self.index
    }

    /// Next record, `Ok(None)` at a clean end, `Err` at a truncated or corrupt chunk.
    pub fn next_record(&mut self) -> Result<Option<Vec<u8>>> {
        let space_left = BLOCK_LEN - self.index % BLOCK_LEN;
        if space_left < HEADER_LEN && self.index < self.bytes.len() {
            let end = (self.index + space_left).min(self.bytes.len());
            ensure!(
                self.bytes[self.index..end].iter().all(|b| *b == 0),
                "invalid block padding"
            );
            self.index = end;
        }
        let Some((kind, data)) = self.chunk()? else {
            return Ok(None);
        };
        if kind == FULL {
            return Ok(Some(data));
        }
        ensure!(
            kind == FIRST,
            "expected a FULL or FIRST chunk at byte {}, got type {kind}",
            self.index
        );
        let mut record = data;
        loop {
            let Some((kind, data)) = self.chunk()? else {
                bail!("record truncated after a FIRST chunk")
            };
            record.extend_from_slice(&data);
            match kind {
                LAST => return Ok(Some(record)),
                MIDDLE => {}
                other => bail!("expected a MIDDLE or LAST chunk, got type {other}"),
            }
        }
    }

    fn chunk(&mut self) -> Result<Option<(u8, Vec<u8>)>> {
        let rest = &self.bytes[self.index..];
        if rest.is_empty() {
            return Ok(None);
        }
        ensure!(
            rest.len() >= HEADER_LEN,
            "chunk header truncated at byte {}",
            self.index
        );
        let crc = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let len = u16::from_le_bytes([rest[4], rest[5]]) as usize;
        let kind = rest[6];
        ensure!(
            rest.len() >= HEADER_LEN + len,
            "chunk data truncated at byte {}",
            self.index
        );
        let data = &rest[HEADER_LEN..HEADER_LEN + len];
        ensure!(
            checksum(kind, data) == crc,
            "bad checksum at byte {}",
            self.index
        );
        let out = (kind, data.to_vec());
        self.index += HEADER_LEN + len;
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_across_blocks() {
        let sizes = [10usize, 32_700, 5, 70_000, 0, 32_761, 1, 100_000];
        let mut w = StoreWriter::new(Vec::new()).unwrap();
        let records: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| (0..*n).map(|j| (i * 7 + j) as u8).collect())
            .collect();
        for r in &records {
            w.write(r).unwrap();
        }
        let bytes = w.into_inner();
        let len = bytes.len();
        let mut r = StoreReader::from_bytes(bytes).unwrap();
        for want in &records {
            assert_eq!(&r.next_record().unwrap().unwrap(), want);
        }
        assert!(r.next_record().unwrap().is_none());
        assert_eq!(r.consumed(), len);
    }

    #[test]
    fn corrupt_and_truncated_tails_are_reported() {
        let mut w = StoreWriter::new(Vec::new()).unwrap();
        w.write(b"hello").unwrap();
        w.write(b"world").unwrap();
        let bytes = w.into_inner();
        let mut bad = bytes.clone();
        *bad.last_mut().unwrap() ^= 1;
        let mut r = StoreReader::from_bytes(bad).unwrap();
        assert_eq!(r.next_record().unwrap().unwrap(), b"hello");
        assert!(r
            .next_record()
            .unwrap_err()
            .to_string()
            .contains("checksum"));
        let mut r = StoreReader::from_bytes(bytes[..bytes.len() - 2].to_vec()).unwrap();
        r.next_record().unwrap();
        assert!(r
            .next_record()
            .unwrap_err()
            .to_string()
            .contains("truncated"));
    }
}
