//! One member of a stripe set opened for reading only: O_RDONLY|O_DIRECT,
//! never writable, and its superblock read from the primary copy, or from
//! the backup copy at the device's end when the primary is damaged.

use crate::aligned::BufferPool;
use anyhow::{bail, Context, Result};
use formats::{Superblock, SUPERBLOCK_BYTES};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// A target opened read-only with its superblock.
pub struct Target {
    pub path: PathBuf,
    pub file: File,
    pub size_bytes: u64,
    pub superblock: Superblock,
    /// Set when the primary superblock was unreadable and the backup was used:
    /// what was wrong with the primary.
    pub primary_damage: Option<String>,
}

const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;

/// Opens `path` read-only with O_DIRECT. dmaplay never opens a target for writing.
pub fn open_read_only(path: &Path) -> Result<(File, u64)> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("target {}: cannot stat", path.display()))?;
    let ft = meta.file_type();
    if !ft.is_block_device() && !ft.is_file() {
        bail!(
            "target {}: not a block device or regular file",
            path.display()
        );
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .with_context(|| {
            format!(
                "target {}: cannot open read-only with O_DIRECT",
                path.display()
            )
        })?;
    let size_bytes = if ft.is_block_device() {
        let mut size: u64 = 0;
        // SAFETY: BLKGETSIZE64 writes one u64 through the pointer we pass.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size as *mut u64) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("target {}: BLKGETSIZE64", path.display()));
        }
        size
    } else {
        meta.len()
    };
    Ok((file, size_bytes))
}

/// Reads `len` bytes at `offset` (both multiples of 4096) with O_DIRECT.
pub fn read_exact_direct(file: &File, offset: u64, len: usize, path: &Path) -> Result<Vec<u8>> {
    let pool = BufferPool::new(len, 1)?;
    // SAFETY: the pool has one buffer of `len` bytes, owned here only.
    let buf = unsafe { std::slice::from_raw_parts_mut(pool.ptr(0), len) };
    let mut done = 0usize;
    // Bounded: each pass reads at least one byte or fails.
    while done < len {
        let n = file
            .read_at(&mut buf[done..], offset + done as u64)
            .with_context(|| format!("{}: read {len} bytes at offset {offset}", path.display()))?;
        if n == 0 {
            bail!(
                "{}: end of device reading {len} bytes at offset {offset}",
                path.display()
            );
        }
        done += n;
    }
    Ok(buf.to_vec())
}

impl Target {
    /// Opens a member and identifies it by its superblock (primary, then backup).
    pub fn open(path: &Path) -> Result<Target> {
        let (file, size_bytes) = open_read_only(path)?;
        if size_bytes < 2 * SUPERBLOCK_BYTES as u64 {
            bail!(
                "target {}: {size_bytes} bytes is too small to hold a dmarec recording",
                path.display()
            );
        }
        let primary = read_exact_direct(&file, 0, SUPERBLOCK_BYTES, path)?;
        let primary_err = match Superblock::decode(&primary) {
            Ok(sb) => {
                return Ok(Target {
                    path: path.into(),
                    file,
                    size_bytes,
                    superblock: sb,
                    primary_damage: None,
                })
            }
            Err(e) => e,
        };
        let backup_at = Superblock::backup_offset(size_bytes);
        let backup = read_exact_direct(&file, backup_at, SUPERBLOCK_BYTES, path)?;
        match Superblock::decode(&backup) {
            Ok(sb) => Ok(Target {
                path: path.into(),
                file,
                size_bytes,
                superblock: sb,
                primary_damage: Some(primary_err.to_string()),
            }),
            Err(backup_err) => bail!(
                "target {}: not a dmarec recording member (primary superblock at 0: {primary_err}; \
                 backup superblock at {backup_at}: {backup_err})",
                path.display()
            ),
        }
    }
}
