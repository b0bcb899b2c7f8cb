//! Capped serial console logs.
//!
//! A guest can print without end, and its serial log (QEMU's `file` chardev, opened with
//! `append=on`) would fill the data directory. kumod trims it in place from the front: every
//! monitoring round, a log larger than its cap (`kumod --serial-log-max-mib`, default 8) is cut to
//! the newest half of the cap. Offsets stay absolute: the number of bytes discarded so far is kept
//! in `serial.log.discarded` next to the log, and a read from an offset older than the oldest kept
//! byte starts at that byte and says so ([`SerialChunk::start`]).
//!
//! Trimming collapses the front of the file (`fallocate(FALLOC_FL_COLLAPSE_RANGE)`, block-aligned,
//! on ext4/xfs) so QEMU's appends never race a copy; where the filesystem cannot, the kept tail is
//! copied to the front and the file truncated (bytes QEMU appends between the last read and the
//! truncate are lost: a small window, once per trim). The simulated driver keeps its log in memory
//! and uses the same arithmetic ([`discard_amount`], [`locate`]).

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Default cap of a serial log, bytes (8 MiB).
pub const DEFAULT_MAX_BYTES: u64 = 8 << 20;

pub use kumo_host_api::SerialChunk;

/// Where absolute `offset` lies in a log whose first `discarded` bytes are gone: the position in
/// what is kept, and the absolute offset reading starts at.
pub fn locate(offset: u64, discarded: u64) -> (u64, u64) {
    if offset < discarded {
        (0, discarded)
    } else {
        (offset - discarded, offset)
    }
}

/// How many of the oldest bytes of a `len`-byte log to discard under a cap of `max` bytes: none
/// while within the cap, else all but the newest `max / 2` (half the cap, so trims are rare),
/// rounded down to a multiple of `align` (the block size a collapse needs; 1 for none).
pub fn discard_amount(len: u64, max: u64, align: u64) -> u64 {
    if len <= max {
        return 0;
    }
    let d = len - max / 2;
    d - d % align.max(1)
}

/// The file next to `log` that keeps how many bytes were discarded.
pub fn discarded_path(log: &Path) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(".discarded");
    PathBuf::from(p)
}

/// Bytes discarded so far (0 when never trimmed; an unreadable record counts as 0).
pub fn discarded(log: &Path) -> u64 {
    std::fs::read_to_string(discarded_path(log)).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

fn write_discarded(log: &Path, n: u64) -> std::io::Result<()> {
    let path = discarded_path(log);
    let tmp = path.with_extension("discarded.tmp");
    std::fs::write(&tmp, format!("{n}\n"))?;
    std::fs::rename(&tmp, &path)
}

/// Serialises trims and reads in this process: a read never sees the record of one trim with the
/// file of another.
static LOCK: Mutex<()> = Mutex::new(());

/// Reads at most `max` bytes from absolute `offset`; a missing log reads as empty.
pub fn read(log: &Path, offset: u64, max: usize) -> std::io::Result<SerialChunk> {
    let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let d = discarded(log);
    let (pos, _) = locate(offset, d);
    let mut f = match std::fs::File::open(log) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(SerialChunk { bytes: Vec::new(), start: d, next: d })
        }
        Err(e) => return Err(e),
    };
    // An offset past the end reads from the end (like the simulated log).
    let pos = pos.min(f.metadata()?.len());
    let start = d + pos;
    f.seek(SeekFrom::Start(pos))?;
    let mut bytes = Vec::new();
    f.take(max as u64).read_to_end(&mut bytes)?;
    let next = start + bytes.len() as u64;
    Ok(SerialChunk { bytes, start, next })
}

/// Trims `log` to its cap of `max` bytes if it is over it; returns the bytes discarded now.
pub fn trim(log: &Path, max: u64) -> std::io::Result<u64> {
    let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let f = match std::fs::OpenOptions::new().read(true).write(true).open(log) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let meta = f.metadata()?;
    let len = meta.len();
    if len <= max {
        return Ok(0);
    }
    let before = discarded(log);
    let aligned = discard_amount(len, max, meta.blksize());
    // SAFETY: fallocate on a file descriptor we own, with in-range arguments; no memory involved.
    let collapsed = aligned > 0
        && unsafe { libc::fallocate(f.as_raw_fd(), libc::FALLOC_FL_COLLAPSE_RANGE, 0, aligned as libc::off_t) == 0 };
    let d = if collapsed { aligned } else { copy_down(&f, discard_amount(len, max, 1))? };
    write_discarded(log, before + d)?;
    Ok(d)
}

/// Moves everything after the first `d` bytes to the front, then truncates: what QEMU appends
/// during the copy is copied too (it reads to the end as it is then).
fn copy_down(f: &std::fs::File, d: u64) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 16];
    let (mut src, mut dst) = (d, 0u64);
    loop {
        let n = f.read_at(&mut buf, src)?;
        if n == 0 {
            break;
        }
        f.write_all_at(&buf[..n], dst)?;
        src += n as u64;
        dst += n as u64;
    }
    f.set_len(dst)?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn offsets_older_than_what_is_kept_start_at_the_oldest_kept_byte() {
        assert_eq!(locate(0, 0), (0, 0));
        assert_eq!(locate(10, 0), (10, 10));
        assert_eq!(locate(3, 100), (0, 100));
        assert_eq!(locate(150, 100), (50, 150));
        assert_eq!(discard_amount(100, 100, 1), 0);
        assert_eq!(discard_amount(101, 100, 1), 51);
        assert_eq!(discard_amount(10_000, 4096, 4096), 4096);
        assert_eq!(discard_amount(5_000, 4096, 4096), 0, "less than a block over: nothing to collapse yet");
    }

    /// Writes like QEMU (append), trims, and reads with absolute offsets across trims.
    #[test]
    fn a_trimmed_log_keeps_its_tail_and_absolute_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serial.log");
        let mut qemu = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        // Line i is "line NNNNNN\n" (12 bytes), so absolute offset 12*i starts line i.
        let line = |i: u64| format!("line {i:06}\n");
        for i in 0..20_000 {
            qemu.write_all(line(i).as_bytes()).unwrap();
        }
        let total = 20_000 * 12;
        let max = 64 * 1024;
        let gone = trim(&log, max).unwrap();
        assert!(gone > 0 && total - gone <= max, "discarded {gone}");
        assert_eq!(discarded(&log), gone);
        assert_eq!(std::fs::metadata(&log).unwrap().len(), total - gone);
        // QEMU keeps appending at the (new) end.
        qemu.write_all(line(20_000).as_bytes()).unwrap();
        // An old offset starts at the oldest kept byte, and says so.
        let c = read(&log, 0, 100).unwrap();
        assert_eq!(c.start, gone);
        assert_eq!(c.next, gone + 100);
        // An offset still kept reads the same bytes as before the trim.
        let off = 19_990 * 12;
        let c = read(&log, off, 24).unwrap();
        assert_eq!((c.start, c.next), (off, off + 24));
        assert_eq!(String::from_utf8(c.bytes).unwrap(), format!("{}{}", line(19_990), line(19_991)));
        let c = read(&log, 20_000 * 12, 1000).unwrap();
        assert_eq!(String::from_utf8(c.bytes).unwrap(), line(20_000));
        // A second trim adds to the record; within the cap nothing changes.
        for i in 20_001..30_000 {
            qemu.write_all(line(i).as_bytes()).unwrap();
        }
        let more = trim(&log, max).unwrap();
        assert_eq!(discarded(&log), gone + more);
        assert_eq!(trim(&log, max).unwrap(), 0);
        let off = 29_999 * 12;
        assert_eq!(String::from_utf8(read(&log, off, 12).unwrap().bytes).unwrap(), line(29_999));
    }

    #[test]
    fn the_copy_fallback_keeps_the_same_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serial.log");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&log, &data).unwrap();
        let f = std::fs::OpenOptions::new().read(true).write(true).open(&log).unwrap();
        copy_down(&f, 70_000).unwrap();
        assert_eq!(std::fs::read(&log).unwrap(), &data[70_000..]);
        let (missing, c) = (dir.path().join("none.log"), read(&dir.path().join("none.log"), 5, 10).unwrap());
        assert_eq!((c.start, c.next, c.bytes.len()), (0, 0, 0));
        let c = read(&log, 1 << 40, 10).unwrap();
        assert_eq!((c.start, c.next, c.bytes.len()), (30_000, 30_000, 0), "past the end reads from the end");
        assert_eq!(trim(&missing, 1).unwrap(), 0);
    }
}
