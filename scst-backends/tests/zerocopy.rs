//! FILEIO offers a READ's bytes as a file range (zero-copy) only when they are in the page cache,
//! only in buffered mode, and only when the option is on; the range names the file's own bytes.

use std::io::IoSlice;
use std::os::fd::AsRawFd;

use scst::BlockStore;
use scst_backends::{FileOptions, FileStore};

const MIB: u64 = 1 << 20;

fn store(opts: FileOptions) -> (tempfile::NamedTempFile, FileStore) {
    // On the disk file system of the target directory: a tmpfs file is never offered.
    let file = tempfile::NamedTempFile::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let s = FileStore::open(file.path(), FileOptions { size: Some(4 * MIB), block_size: 512, ..opts }).unwrap();
    (file, s)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
}

fn pread(fd: std::os::fd::BorrowedFd<'_>, off: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    // SAFETY: `v` is a live buffer of `len` bytes and `fd` is open.
    let n = unsafe { libc::pread(fd.as_raw_fd(), v.as_mut_ptr().cast(), len, off as libc::off_t) };
    assert_eq!(n, len as isize);
    v
}

#[test]
fn cached_bytes_are_offered_as_the_files_own_range() {
    let (_f, s) = store(FileOptions::default());
    let data = pattern(MIB as usize);
    s.write_at(MIB, &[IoSlice::new(&data)], false).unwrap();
    let fd = s.file_range(MIB, MIB).expect("just-written bytes are in the page cache");
    assert_eq!(pread(fd, MIB, MIB as usize), data);
}

#[test]
fn evicted_bytes_are_not_offered() {
    let (f, s) = store(FileOptions::default());
    let data = pattern(MIB as usize);
    s.write_at(0, &[IoSlice::new(&data)], true).unwrap();
    assert!(s.file_range(0, MIB).is_some());
    // Clean (written through) pages can be dropped from the cache.
    let file = std::fs::File::open(f.path()).unwrap();
    file.sync_all().unwrap();
    // SAFETY: plain advice on an open descriptor.
    let r = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(r, 0);
    assert!(s.file_range(0, MIB).is_none(), "a range with evicted pages would make sendfile wait for the disk");
    // A range never written (a hole) has no pages either.
    assert!(s.file_range(2 * MIB, MIB).is_none());
}

#[test]
fn off_and_direct_never_offer() {
    let data = pattern(MIB as usize);
    let (_f, off) = store(FileOptions { zerocopy: false, ..Default::default() });
    off.write_at(0, &[IoSlice::new(&data)], false).unwrap();
    assert!(off.file_range(0, MIB).is_none(), "zerocopy=off");
    // Cached bytes (written around the store), still not offered with direct I/O.
    let g = tempfile::NamedTempFile::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::write(g.path(), &data).unwrap();
    let direct =
        FileStore::open(g.path(), FileOptions { direct: true, block_size: 512, ..Default::default() }).unwrap();
    assert!(direct.file_range(0, MIB).is_none(), "direct I/O bypasses the page cache");
}
