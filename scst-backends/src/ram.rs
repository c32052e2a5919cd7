//! RAM: a sparse in-memory store. Memory is taken a chunk at a time on first write; chunks never
//! written read as zeros.

use std::io::{self, IoSlice, IoSliceMut};

use parking_lot::RwLock;
use scst::{BlockStore, Geometry, StoreCaps};

use crate::{OpenError, check_geometry};

/// Smallest chunk; larger stores use larger chunks so the chunk table stays around a million
/// entries.
const MIN_CHUNK: usize = 64 << 10;

/// One chunk of the store: absent until first written.
type Chunk = RwLock<Option<Box<[u8]>>>;

/// An in-memory store. Reads and writes never block (per-chunk locks are held only for a copy),
/// so commands on it complete on the thread that received them.
pub struct RamStore {
    geometry: Geometry,
    chunk: usize,
    chunks: Box<[Chunk]>,
}

impl std::fmt::Debug for RamStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RamStore").field("geometry", &self.geometry).field("resident", &self.resident_bytes()).finish()
    }
}

impl RamStore {
    /// A store of `size` bytes in blocks of `block_size`, initially all zeros and using no
    /// memory for data.
    ///
    /// # Errors
    /// If the block size is not 512 or 4096 or `size` is not a positive multiple of it.
    pub fn new(size: u64, block_size: u32) -> Result<Self, OpenError> {
        check_geometry(size, block_size)?;
        let chunk = usize::try_from(size >> 20).unwrap_or(usize::MAX).next_power_of_two().max(MIN_CHUNK);
        let n = usize::try_from(size.div_ceil(chunk as u64)).map_err(|_| OpenError::Size { size, block_size })?;
        Ok(Self {
            geometry: Geometry { block_size, blocks: size / u64::from(block_size) },
            chunk,
            chunks: (0..n).map(|_| RwLock::new(None)).collect(),
        })
    }

    /// Bytes of memory holding data.
    pub fn resident_bytes(&self) -> usize {
        self.chunks.iter().filter(|c| c.read().is_some()).count() * self.chunk
    }

    /// Calls `f(chunk index, offset in chunk, length)` for each piece of `[off, off + len)`.
    fn pieces(&self, off: u64, len: usize, mut f: impl FnMut(usize, usize, usize)) {
        let mut pos = off;
        let end = off + len as u64;
        while pos < end {
            let idx = (pos / self.chunk as u64) as usize;
            let at = (pos % self.chunk as u64) as usize;
            let n = (self.chunk - at).min((end - pos) as usize);
            f(idx, at, n);
            pos += n as u64;
        }
    }

    fn check(&self, off: u64, len: usize) -> io::Result<()> {
        let size = self.geometry.blocks * u64::from(self.geometry.block_size);
        if off.checked_add(len as u64).is_none_or(|end| end > size) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        Ok(())
    }
}

impl BlockStore for RamStore {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn caps(&self) -> StoreCaps {
        StoreCaps { may_block: false, null: false, rotation_rate: 1, lbppbe: 0, thin: true, async_io: false }
    }

    fn product(&self) -> &str {
        "RAMDISK"
    }

    fn read_at(&self, off: u64, bufs: &mut [IoSliceMut<'_>]) -> io::Result<()> {
        let mut pos = off;
        for b in bufs.iter_mut() {
            self.check(pos, b.len())?;
            let mut done = 0;
            self.pieces(pos, b.len(), |idx, at, n| {
                let dst = &mut b[done..done + n];
                match &*self.chunks[idx].read() {
                    Some(c) => dst.copy_from_slice(&c[at..at + n]),
                    None => dst.fill(0),
                }
                done += n;
            });
            pos += b.len() as u64;
        }
        Ok(())
    }

    fn write_at(&self, off: u64, bufs: &[IoSlice<'_>], _fua: bool) -> io::Result<()> {
        let mut pos = off;
        for b in bufs {
            self.check(pos, b.len())?;
            let mut done = 0;
            self.pieces(pos, b.len(), |idx, at, n| {
                let src = &b[done..done + n];
                let mut g = self.chunks[idx].write();
                let c = g.get_or_insert_with(|| vec![0u8; self.chunk].into_boxed_slice());
                c[at..at + n].copy_from_slice(src);
                done += n;
            });
            pos += b.len() as u64;
        }
        Ok(())
    }

    fn unmap(&self, off: u64, len: u64) -> io::Result<()> {
        self.check(off, usize::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?)?;
        // Whole chunks are freed; the ends of the range are zeroed in place.
        let mut pos = off;
        let end = off + len;
        while pos < end {
            let idx = (pos / self.chunk as u64) as usize;
            let at = (pos % self.chunk as u64) as usize;
            let n = (self.chunk - at).min((end - pos) as usize);
            let mut g = self.chunks[idx].write();
            if n == self.chunk {
                *g = None;
            } else if let Some(c) = g.as_mut() {
                c[at..at + n].fill(0);
            }
            pos += n as u64;
        }
        Ok(())
    }

    fn write_zeroes(&self, off: u64, len: u64, _fua: bool) -> io::Result<()> {
        // Unwritten memory reads as zeros: zeroing is deallocating.
        self.unmap(off, len)
    }

    fn mapped(&self, off: u64, len: u64) -> io::Result<(bool, u64)> {
        let c = self.chunk as u64;
        let first = self.chunks.get((off / c) as usize).is_some_and(|x| x.read().is_some());
        let mut run = (c - off % c).min(len);
        while run < len {
            let idx = ((off + run) / c) as usize;
            if self.chunks.get(idx).is_none_or(|x| x.read().is_some() != first) {
                break;
            }
            run = (run + c).min(len);
        }
        Ok((first, run))
    }

    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_round_trip() {
        let s = RamStore::new(1 << 20, 512).unwrap();
        assert_eq!(s.resident_bytes(), 0);
        let data: Vec<u8> = (0..3 * 512).map(|i| (i % 251) as u8).collect();
        // Straddle the first chunk boundary.
        let off = (MIN_CHUNK - 512) as u64;
        s.write_at(off, &[IoSlice::new(&data[..1000]), IoSlice::new(&data[1000..])], false).unwrap();
        assert_eq!(s.resident_bytes(), 2 * MIN_CHUNK);
        let mut back = vec![0xffu8; 3 * 512];
        s.read_at(off, &mut [IoSliceMut::new(&mut back)]).unwrap();
        assert_eq!(back, data);
        let mut zero = vec![0xffu8; 512];
        s.read_at(0, &mut [IoSliceMut::new(&mut zero)]).unwrap();
        assert!(zero.iter().all(|&b| b == 0), "unwritten blocks read as zeros");
        assert!(s.read_at(1 << 20, &mut [IoSliceMut::new(&mut zero)]).is_err());
    }

    #[test]
    fn unmap_frees_whole_chunks_and_zeroes_partial_ones() {
        let s = RamStore::new(4 << 20, 512).unwrap();
        let c = MIN_CHUNK as u64;
        s.write_at(0, &[IoSlice::new(&vec![0xaa; 3 * MIN_CHUNK])], false).unwrap();
        assert_eq!(s.mapped(0, 4 * c).unwrap(), (true, 3 * c));
        // From the middle of chunk 0 to the middle of chunk 2: chunk 1 is freed.
        s.unmap(c / 2, 2 * c).unwrap();
        assert_eq!(s.resident_bytes(), 2 * MIN_CHUNK);
        assert_eq!(s.mapped(c, c).unwrap(), (false, c));
        let mut b = vec![0xffu8; 3 * MIN_CHUNK];
        s.read_at(0, &mut [IoSliceMut::new(&mut b)]).unwrap();
        let half = MIN_CHUNK / 2;
        assert!(b[..half].iter().all(|&x| x == 0xaa));
        assert!(b[half..half + 2 * MIN_CHUNK].iter().all(|&x| x == 0));
        assert!(b[half + 2 * MIN_CHUNK..].iter().all(|&x| x == 0xaa));
    }
}
