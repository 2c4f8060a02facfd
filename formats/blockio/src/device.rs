//! Opening targets with O_DIRECT, their geometry, and synchronous O_DIRECT
//! reads and writes for set-up (superblocks, signatures): never the hot path.

use crate::{AlignedRegion, ALIGN_BYTES};
use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// include/uapi/linux/fs.h: _IOR(0x12, 114, size_t) and _IO(0x12, 104).
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
const BLKSSZGET: libc::c_ulong = 0x1268;

/// Size and logical block size of an open target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub size_bytes: u64,
    /// BLKSSZGET for a block device; 512 for a regular file.
    pub logical_block_bytes: u32,
    pub is_block_device: bool,
}

/// The geometry of `file` (opened from `path`, named in errors).
pub fn geometry(file: &File, path: &Path) -> Result<Geometry> {
    let meta = file
        .metadata()
        .with_context(|| format!("target {}: cannot stat", path.display()))?;
    if !meta.file_type().is_block_device() {
        return Ok(Geometry {
            size_bytes: meta.len(),
            logical_block_bytes: 512,
            is_block_device: false,
        });
    }
    let mut size_bytes: u64 = 0;
    let mut logical_block_bytes: libc::c_int = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer to our local.
    if unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64 as _, &mut size_bytes) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("target {}: BLKGETSIZE64 failed", path.display()));
    }
    // SAFETY: BLKSSZGET writes one int through the pointer to our local.
    if unsafe { libc::ioctl(file.as_raw_fd(), BLKSSZGET as _, &mut logical_block_bytes) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("target {}: BLKSSZGET failed", path.display()));
    }
    Ok(Geometry {
        size_bytes,
        logical_block_bytes: logical_block_bytes as u32,
        is_block_device: true,
    })
}

/// Opens a block device or regular file O_RDONLY|O_DIRECT (dmaplay never
/// opens a target for writing).
pub fn open_read_only_direct(path: &Path) -> Result<File> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("target {}: cannot stat", path.display()))?;
    let file_type = meta.file_type();
    if !file_type.is_block_device() && !file_type.is_file() {
        bail!(
            "target {}: not a block device or regular file",
            path.display()
        );
    }
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .with_context(|| {
            format!(
                "target {}: cannot open read-only with O_DIRECT",
                path.display()
            )
        })
}

/// Opens O_RDWR|O_DIRECT, with O_EXCL when `exclusive` (a block device:
/// the kernel then refuses a device that is mounted or claimed).
pub fn open_read_write_direct(path: &Path, exclusive: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT | if exclusive { libc::O_EXCL } else { 0 })
        .open(path)
}

/// Reads up to `len_bytes` at `offset_bytes` (both multiples of 4096) with
/// O_DIRECT; fewer only at the end of the file.
pub fn read_direct(file: &File, offset_bytes: u64, len_bytes: usize) -> Result<Vec<u8>> {
    let region = AlignedRegion::map(len_bytes.max(ALIGN_BYTES))?;
    // SAFETY: the region is ours alone and at least len_bytes long.
    let buf = unsafe { std::slice::from_raw_parts_mut(region.as_ptr(), len_bytes) };
    let mut done = 0usize;
    // Bounded: each pass reads at least one byte, or ends the loop.
    while done < len_bytes {
        let n = file
            .read_at(&mut buf[done..], offset_bytes + done as u64)
            .with_context(|| format!("read at offset {}", offset_bytes + done as u64))?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(buf[..done].to_vec())
}

/// Writes `data` (length a multiple of 4096) at `offset_bytes` with O_DIRECT.
pub fn write_direct(file: &File, offset_bytes: u64, data: &[u8]) -> Result<()> {
    let region = AlignedRegion::map(data.len().max(ALIGN_BYTES))?;
    // SAFETY: the region is ours alone and at least data.len() long.
    let buf = unsafe { std::slice::from_raw_parts_mut(region.as_ptr(), data.len()) };
    buf.copy_from_slice(data);
    let mut done = 0usize;
    // Bounded: each pass writes at least one byte or fails.
    while done < data.len() {
        let n = file
            .write_at(&buf[done..], offset_bytes + done as u64)
            .with_context(|| format!("write at offset {}", offset_bytes + done as u64))?;
        if n == 0 {
            bail!(
                "write at offset {}: wrote nothing",
                offset_bytes + done as u64
            );
        }
        done += n;
    }
    Ok(())
}
