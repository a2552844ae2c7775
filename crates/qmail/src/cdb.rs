//! Reading constant databases (D. J. Bernstein's cdb format): rules CDBs,
//! morercpthosts.cdb, the user database.
//!
//! Reads are `pread`s of the few words and the one record a lookup needs, so nothing
//! is mapped and no memory limit has to be raised under `softlimit -m`. Every
//! position and length read from the file is checked against the file before it is
//! used: a damaged or truncated file (a disk error, a half-copied file) is an error,
//! which callers turn into a temporary failure. It is never "not found" where the
//! damage can be seen, and never "found" (qmail-smtpd once took an I/O error inside
//! a lookup for a match, and relayed).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The 256 (position, slots) pairs of the header.
const HEADER: u64 = 2048;

pub struct Cdb {
    file: File,
    size: u64,
    /// The header, checked at open: every table lies inside the file.
    tables: Box<[(u64, u64); 256]>,
}

fn damaged(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("damaged cdb: {what}"))
}

/// The little-endian 32-bit word at `i`.
fn word(b: &[u8], i: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]))
}

/// The cdb hash: h = 5381; h = (h << 5) + h ^ c.
pub fn hash(key: &[u8]) -> u32 {
    key.iter()
        .fold(5381u32, |h, &c| (h.wrapping_shl(5).wrapping_add(h)) ^ u32::from(c))
}

impl Cdb {
    /// Opens `path`. `Ok(None)`: the file does not exist (an empty table). A
    /// directory, a file shorter than the header, or a header with a table outside
    /// the file (a truncated copy) is damaged.
    pub fn open(path: &Path) -> io::Result<Option<Cdb>> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::EISDIR));
        }
        if meta.len() < HEADER || meta.len() > u64::from(u32::MAX) {
            return Err(damaged("size"));
        }
        let mut db = Cdb {
            file,
            size: meta.len(),
            tables: Box::new([(0, 0); 256]),
        };
        // Every cdbmake (djb's, tinycdb, tcprules) writes the 256 tables end to end
        // after the data, up to the end of the file: a header that says otherwise
        // belongs to a damaged or truncated file.
        let header = db.read(0, HEADER)?;
        let mut next = None;
        for (i, t) in db.tables.iter_mut().enumerate() {
            let (pos, slots) = (word(&header, i * 8), word(&header, i * 8 + 4));
            if pos < HEADER || next.is_some_and(|n| n != pos) {
                return Err(damaged("hash tables out of place"));
            }
            next = Some(pos + slots * 8);
            *t = (pos, slots);
        }
        if next != Some(db.size) {
            return Err(damaged("hash tables out of place"));
        }
        Ok(Some(db))
    }

    /// `len` bytes at `pos`, which must lie inside the file.
    fn read(&self, pos: u64, len: u64) -> io::Result<Vec<u8>> {
        if pos.checked_add(len).is_none_or(|end| end > self.size) {
            return Err(damaged("a position past the end"));
        }
        let mut buf = vec![0; len as usize];
        self.file.read_exact_at(&mut buf, pos)?;
        Ok(buf)
    }

    fn pair(&self, pos: u64) -> io::Result<(u64, u64)> {
        let b = self.read(pos, 8)?;
        Ok((word(&b, 0), word(&b, 4)))
    }

    /// The first record under `key`.
    pub fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        let h = hash(key);
        let (table, slots) = self.tables[(h & 0xff) as usize];
        if slots == 0 {
            return Ok(None);
        }
        let start = (u64::from(h >> 8)) % slots;
        for i in 0..slots {
            let (slot_hash, pos) = self.pair(table + ((start + i) % slots) * 8)?;
            if pos == 0 {
                return Ok(None);
            }
            if pos < HEADER || pos >= table {
                return Err(damaged("a record outside the data"));
            }
            if slot_hash != u64::from(h) {
                continue;
            }
            let (klen, dlen) = self.pair(pos)?;
            if pos + 8 + klen + dlen > table {
                return Err(damaged("a record past the data"));
            }
            if klen == key.len() as u64 && self.read(pos + 8, klen)? == key {
                return self.read(pos + 8 + klen, dlen).map(Some);
            }
        }
        Ok(None)
    }

    /// True when `key` has a record.
    pub fn contains(&self, key: &[u8]) -> io::Result<bool> {
        Ok(self.get(key)?.is_some())
    }

    /// Every (key, value) in file order. The data ends where the first hash table
    /// begins; a record that crosses that point is damage.
    pub fn records(&self) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let end = self.tables.iter().map(|t| t.0).min().unwrap_or(self.size);
        let mut out = Vec::new();
        let mut pos = HEADER;
        while pos < end {
            let (klen, dlen) = self.pair(pos)?;
            if pos + 8 + klen + dlen > end {
                return Err(damaged("a record past the data"));
            }
            out.push((self.read(pos + 8, klen)?, self.read(pos + 8 + klen, dlen)?));
            pos += 8 + klen + dlen;
        }
        Ok(out)
    }
}

/// True when `key` is in the CDB at `path`; a missing file holds nothing.
pub fn contains(path: &Path, key: &[u8]) -> io::Result<bool> {
    match Cdb::open(path)? {
        Some(db) => db.contains(key),
        None => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, records: &[(&[u8], &[u8])]) {
        let mut w = cdb2::CDBWriter::create(path).unwrap();
        for (k, v) in records {
            w.add(k, v).unwrap();
        }
        w.finish().unwrap();
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("rqmail-cdb-{}-{name}", std::process::id()))
    }

    #[test]
    fn lookups_and_records() {
        let p = tmp("ok");
        let many: Vec<(Vec<u8>, Vec<u8>)> = (0..500)
            .map(|i| (format!("key{i}").into_bytes(), format!("value{i}").into_bytes()))
            .collect();
        let mut recs: Vec<(&[u8], &[u8])> = vec![
            (b"example.com", b""),
            (b"", b"empty key"),
            (b"dup", b"first"),
            (b"dup", b"second"),
        ];
        recs.extend(many.iter().map(|(k, v)| (&k[..], &v[..])));
        write(&p, &recs);
        let db = Cdb::open(&p).unwrap().unwrap();
        assert_eq!(db.get(b"example.com").unwrap(), Some(Vec::new()));
        assert_eq!(db.get(b"").unwrap(), Some(b"empty key".to_vec()));
        assert_eq!(db.get(b"dup").unwrap(), Some(b"first".to_vec()));
        assert_eq!(db.get(b"key377").unwrap(), Some(b"value377".to_vec()));
        assert_eq!(db.get(b"example.org").unwrap(), None);
        assert_eq!(db.records().unwrap().len(), recs.len());
        assert!(contains(&p, b"key0").unwrap() && !contains(&tmp("missing"), b"key0").unwrap());
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn damage_is_an_error_never_a_match() {
        let p = tmp("bad");
        // Random bytes, as a disk error leaves them (a fixed LCG, so the test repeats).
        let mut x = 12345u32;
        let junk: Vec<u8> = (0..3000)
            .map(|_| {
                x = x.wrapping_mul(1103515245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect();
        std::fs::write(&p, &junk).unwrap();
        assert!(Cdb::open(&p).is_err());
        // A sound header over damaged tables and records: errors, never a match.
        write(&p, &[(b"example.com", b""), (b"example.org", b"x")]);
        let whole = std::fs::read(&p).unwrap();
        let mut bad = whole.clone();
        for b in &mut bad[2048..] {
            *b ^= 0x5a;
        }
        std::fs::write(&p, &bad).unwrap();
        let db = Cdb::open(&p).unwrap().unwrap();
        assert!(db.get(b"example.com").is_err() && db.get(b"example.org").is_err());
        // Half a file: the header points past the end; bytes after the tables.
        std::fs::write(&p, &whole[..whole.len() - 10]).unwrap();
        assert!(Cdb::open(&p).is_err());
        std::fs::write(&p, [&whole[..], b"junk"].concat()).unwrap();
        assert!(Cdb::open(&p).is_err());
        std::fs::write(&p, &whole[..100]).unwrap();
        assert!(Cdb::open(&p).is_err());
        std::fs::remove_file(&p).unwrap();
        assert!(Cdb::open(&std::env::temp_dir()).is_err());
    }
}
