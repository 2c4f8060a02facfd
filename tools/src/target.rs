//! One member of a stripe set opened for reading only: O_RDONLY|O_DIRECT,
//! never writable, and its superblock read from the primary copy, or from
//! the backup copy at the device's end when the primary is damaged.

use anyhow::{bail, Context, Result};
use formats::{Superblock, SUPERBLOCK_BYTES};
use std::fs::File;
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

/// Opens `path` read-only with O_DIRECT, with its size. dmaplay never opens
/// a target for writing.
pub fn open_read_only(path: &Path) -> Result<(File, u64)> {
    let file = blockio::open_read_only_direct(path)?;
    let size_bytes = blockio::geometry(&file, path)?.size_bytes;
    Ok((file, size_bytes))
}

/// Reads `len` bytes at `offset` (both multiples of 4096) with O_DIRECT.
pub fn read_exact_direct(file: &File, offset: u64, len: usize, path: &Path) -> Result<Vec<u8>> {
    let bytes = blockio::read_direct(file, offset, len)
        .with_context(|| format!("{}: read {len} bytes at offset {offset}", path.display()))?;
    if bytes.len() < len {
        bail!(
            "{}: end of device reading {len} bytes at offset {offset}",
            path.display()
        );
    }
    Ok(bytes)
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
