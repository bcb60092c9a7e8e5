//! Reading Parquet page headers without the `parquet` crate's page reader: each column chunk's
//! headers, one after the other, in Thrift's compact protocol, each field bounded.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};

use parquet::file::metadata::ColumnChunkMetaData;

use super::{MAX_HEADER_BYTES, PageHeader};

/// The page headers of one column chunk, each read where the one before it ends.
pub(super) fn page_headers(
    reader: &mut BufReader<File>,
    file_len: u64,
    chunk: &ColumnChunkMetaData,
) -> io::Result<Vec<PageHeader>> {
    let start = chunk
        .dictionary_page_offset()
        .unwrap_or(chunk.data_page_offset());
    let len = chunk.compressed_size();
    let (Ok(start), Ok(len)) = (u64::try_from(start), u64::try_from(len)) else {
        return Err(bad("a column chunk has a negative offset or size"));
    };
    let end = start
        .checked_add(len)
        .filter(|end| *end <= file_len)
        .ok_or_else(|| bad("a column chunk ends past the end of the file"))?;
    let mut pages = Vec::new();
    let mut pos = start;
    while pos < end {
        reader.seek(SeekFrom::Start(pos))?;
        let mut thrift = Thrift {
            reader: &mut *reader,
            read: 0,
        };
        let header = page_header(&mut thrift)?;
        if header.compressed < 0 || header.uncompressed < 0 {
            return Err(bad("a page header declares a negative size"));
        }
        pos = pos
            .saturating_add(thrift.read)
            .saturating_add(header.compressed as u64);
        if pos > end {
            return Err(bad("a page ends past the end of its column chunk"));
        }
        pages.push(header);
    }
    Ok(pages)
}

fn bad(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

/// A reader of Thrift's compact protocol, enough to find a few fields and skip the rest
/// without allocating for them.
struct Thrift<'a, R: Read> {
    reader: &'a mut R,
    read: u64,
}

impl<R: Read> Thrift<'_, R> {
    fn count(&mut self, n: u64) -> io::Result<()> {
        self.read = self.read.saturating_add(n);
        if self.read > MAX_HEADER_BYTES {
            return Err(bad("a page header is implausibly long"));
        }
        Ok(())
    }

    fn byte(&mut self) -> io::Result<u8> {
        self.count(1)?;
        let mut b = [0u8; 1];
        self.reader.read_exact(&mut b)?;
        Ok(b[0])
    }

    fn varint(&mut self) -> io::Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(bad("a page header has an overlong number"))
    }

    /// An i16/i32/i64 (zigzag varint).
    fn int(&mut self) -> io::Result<i64> {
        let v = self.varint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    fn skip_bytes(&mut self, n: u64) -> io::Result<()> {
        self.count(n)?;
        let copied = io::copy(&mut (&mut *self.reader).take(n), &mut io::sink())?;
        if copied != n {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    /// Skips a value of compact type `ty` (a field's: booleans are in the type itself).
    fn skip(&mut self, ty: u8, depth: u32) -> io::Result<()> {
        if depth > 32 {
            return Err(bad("a page header is nested too deeply"));
        }
        match ty {
            1 | 2 => Ok(()),
            3 => self.byte().map(drop),
            4..=6 => self.varint().map(drop),
            7 => self.skip_bytes(8),
            8 => {
                let n = self.varint()?;
                self.skip_bytes(n)
            }
            9 | 10 => {
                let head = self.byte()?;
                let mut n = u64::from(head >> 4);
                if n == 15 {
                    n = self.varint()?;
                }
                for _ in 0..n {
                    self.skip_element(head & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            11 => {
                let n = self.varint()?;
                if n > 0 {
                    let types = self.byte()?;
                    for _ in 0..n {
                        self.skip_element(types >> 4, depth + 1)?;
                        self.skip_element(types & 0x0f, depth + 1)?;
                    }
                }
                Ok(())
            }
            12 => self.fields(depth + 1, |_, _, _| Ok(false)),
            _ => Err(bad("a page header has an unknown field type")),
        }
    }

    /// Skips an element of a list, set or map (booleans take a byte there).
    fn skip_element(&mut self, ty: u8, depth: u32) -> io::Result<()> {
        if matches!(ty, 1 | 2) {
            self.byte().map(drop)
        } else {
            self.skip(ty, depth)
        }
    }

    /// Reads a struct's fields: `field` reads the ones it knows (returning true), the others are
    /// skipped.
    fn fields(
        &mut self,
        depth: u32,
        mut field: impl FnMut(&mut Self, i16, u8) -> io::Result<bool>,
    ) -> io::Result<()> {
        let mut last = 0i16;
        loop {
            let head = self.byte()?;
            if head == 0 {
                return Ok(());
            }
            let ty = head & 0x0f;
            let id = match head >> 4 {
                0 => self.int()? as i16,
                delta => last.wrapping_add(i16::from(delta)),
            };
            last = id;
            if !field(self, id, ty)? {
                self.skip(ty, depth)?;
            }
        }
    }
}

/// A `PageHeader`: type (1), sizes (2, 3), and the value count and encoding of its data page
/// (5), dictionary page (7) or data page v2 (8) header.
fn page_header<R: Read>(thrift: &mut Thrift<'_, R>) -> io::Result<PageHeader> {
    let mut h = PageHeader {
        kind: -1,
        uncompressed: -1,
        compressed: -1,
        num_values: 0,
        encoding: 0,
    };
    thrift.fields(0, |t, id, ty| {
        Ok(match (id, ty) {
            (1, 5) => {
                h.kind = t.int()?;
                true
            }
            (2, 5) => {
                h.uncompressed = t.int()?;
                true
            }
            (3, 5) => {
                h.compressed = t.int()?;
                true
            }
            (5 | 7 | 8, 12) => {
                let encoding_field = if id == 8 { 4 } else { 2 };
                t.fields(1, |t, inner, ty| {
                    Ok(match (inner, ty) {
                        (1, 5) => {
                            h.num_values = t.int()?;
                            true
                        }
                        (f, 5) if f == encoding_field => {
                            h.encoding = t.int()?;
                            true
                        }
                        _ => false,
                    })
                })?;
                true
            }
            _ => false,
        })
    })?;
    if h.kind < 0 || h.uncompressed < 0 || h.compressed < 0 {
        return Err(bad("a page header lacks its type or sizes"));
    }
    Ok(h)
}
