//! Opening recording targets, and refusing the ones that would hurt.
//!
//! A target is a block device (opened O_RDWR|O_DIRECT|O_EXCL) or a regular
//! file (created and preallocated if new). Before a byte is written we
//! refuse, with a message naming the device and the fix: a mounted device or
//! one with a mounted partition, active swap, a device used by another
//! kernel driver (holders), a device holding a filesystem, partition table,
//! LUKS, swap or dmarec signature (unless `--force`), and sizes or alignments
//! that do not fit.

use anyhow::{bail, Context, Result};
use formats::{PayloadSize, Superblock, Uuid, SUPERBLOCK_BYTES};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

pub struct Target {
    pub path: PathBuf,
    pub file: File,
    pub size_bytes: u64,
    pub is_block_device: bool,
    pub logical_block_bytes: u32,
    /// This run created the file (removed again if start-up fails).
    pub created: bool,
}

pub struct OpenOptionsCli {
    pub force: bool,
    /// Appending a scan (`--scan` without `--force`): a dmarec set is
    /// expected on the target (anything else is still refused).
    pub append: bool,
    /// Size of a regular-file target that does not exist yet.
    pub new_file_size_bytes: Option<u64>,
}

/// Opens and checks one target. Nothing is written.
pub fn open_target(
    path: &Path,
    opts: &OpenOptionsCli,
    payload_size: PayloadSize,
) -> Result<Target> {
    let meta = std::fs::metadata(path);
    let is_new = matches!(&meta, Err(e) if e.kind() == std::io::ErrorKind::NotFound);
    if is_new {
        return create_file_target(path, opts, payload_size);
    }
    let meta = meta.with_context(|| format!("target {}: cannot stat", path.display()))?;
    let ft = meta.file_type();
    if ft.is_block_device() {
        check_block_device_unused(path, meta.rdev())?;
    } else if !ft.is_file() {
        bail!(
            "target {}: not a block device or regular file",
            path.display()
        );
    }
    let file = open_exclusive(path, ft.is_block_device()).map_err(|e| match e.raw_os_error() {
            Some(libc::EBUSY) => anyhow::anyhow!(
                "target {}: device is busy: another program holds it open exclusively (it is not mounted in this mount namespace; a mount in another one, e.g. a container's, is possible); stop that program or pick another device",
                path.display()
            ),
            _ => anyhow::Error::new(e).context(format!("target {}: cannot open for O_DIRECT writing", path.display())),
        })?;
    let geometry = blockio::geometry(&file, path)?;
    let (size_bytes, logical_block_bytes) = (geometry.size_bytes, geometry.logical_block_bytes);
    let t = Target {
        path: path.to_path_buf(),
        file,
        size_bytes,
        is_block_device: ft.is_block_device(),
        logical_block_bytes,
        created: false,
    };
    check_geometry(&t, payload_size)?;
    if !opts.force {
        check_signatures(&t, opts.append)?;
    }
    Ok(t)
}

/// Opens O_RDWR|O_DIRECT (|O_EXCL for block devices). The kernel drops the
/// exclusive claim of a just-closed or just-unmounted device a moment after
/// close/umount returns (deferred release), so EBUSY is retried for up to
/// 2 s; mounts were already ruled out by check_block_device_unused.
fn open_exclusive(path: &Path, block: bool) -> std::io::Result<File> {
    const BUSY_RETRIES: u32 = 20;
    let mut attempt = 0;
    loop {
        let r = blockio::open_read_write_direct(path, block);
        match r {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < BUSY_RETRIES => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            r => return r,
        }
    }
}

fn create_file_target(
    path: &Path,
    opts: &OpenOptionsCli,
    payload_size: PayloadSize,
) -> Result<Target> {
    let Some(size_bytes) = opts.new_file_size_bytes else {
        bail!("target {} does not exist: to record into a new regular file give its size with --file-size BYTES (or name an existing device)", path.display());
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .with_context(|| format!("target {}: cannot create (O_DIRECT)", path.display()))?;
    // SAFETY: fallocate on a file descriptor we own.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, size_bytes as libc::off_t) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        let _ = std::fs::remove_file(path);
        bail!(
            "target {}: cannot preallocate {size_bytes} bytes: {err}",
            path.display()
        );
    }
    let t = Target {
        path: path.to_path_buf(),
        file,
        size_bytes,
        is_block_device: false,
        logical_block_bytes: 512,
        created: true,
    };
    if let Err(e) = check_geometry(&t, payload_size) {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(t)
}

fn check_geometry(target: &Target, payload_size: PayloadSize) -> Result<()> {
    let payload_bytes = payload_size.bytes();
    if target.logical_block_bytes > 4096 || 4096 % target.logical_block_bytes != 0 {
        bail!(
            "target {}: logical block size {} bytes is not supported (slots are 4096-byte aligned; needs a block size dividing 4096)",
            target.path.display(),
            target.logical_block_bytes
        );
    }
    let slots = Superblock::slots_for_device(target.size_bytes, payload_bytes);
    if slots == 0 {
        let need = formats::DATA_START_BYTES + 4096 + payload_bytes as u64 + 4096;
        bail!(
            "target {}: {} bytes is too small for one slot of {} payload bytes (needs at least {need} bytes: 1 MiB reserved + 4 KiB header + payload + 4 KiB backup superblock)",
            target.path.display(),
            target.size_bytes,
            payload_bytes
        );
    }
    Ok(())
}

/// Refuses a block device that is mounted (itself or a partition), active
/// swap, or held by another driver (device-mapper, md, ...).
fn check_block_device_unused(path: &Path, rdev: u64) -> Result<()> {
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let mut devs = vec![(major, minor, path.display().to_string())];
    // Partitions of this disk: subdirectories of its sysfs node with a `partition` file.
    if let Ok(entries) = std::fs::read_dir(&sys) {
        for e in entries.flatten() {
            let p = e.path();
            if p.join("partition").exists() {
                if let Ok(dev) = std::fs::read_to_string(p.join("dev")) {
                    if let Some((a, b)) = dev.trim().split_once(':') {
                        devs.push((
                            a.parse().unwrap_or(0),
                            b.parse().unwrap_or(0),
                            format!("/dev/{}", e.file_name().to_string_lossy()),
                        ));
                    }
                }
            }
        }
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in mountinfo.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() > 4 {
            for (ma, mi, name) in &devs {
                if f[2] == format!("{ma}:{mi}") {
                    bail!("target {}: {name} is mounted on {}; unmount it first (dmarec never writes a mounted device)", path.display(), f[4]);
                }
            }
        }
    }
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    for line in swaps.lines().skip(1) {
        if let Some(dev) = line.split_whitespace().next() {
            if let Ok(m) = std::fs::metadata(dev) {
                if devs
                    .iter()
                    .any(|(ma, mi, _)| m.rdev() == libc::makedev(*ma, *mi))
                {
                    bail!(
                        "target {}: {dev} is active swap; `swapoff {dev}` first",
                        path.display()
                    );
                }
            }
        }
    }
    for (ma, mi, name) in &devs {
        let holders = PathBuf::from(format!("/sys/dev/block/{ma}:{mi}/holders"));
        if let Ok(mut h) = std::fs::read_dir(&holders) {
            if let Some(Ok(holder)) = h.next() {
                bail!(
                    "target {}: {name} is in use by {} (device-mapper, RAID or similar); remove that first",
                    path.display(),
                    holder.file_name().to_string_lossy()
                );
            }
        }
    }
    Ok(())
}

/// What a device already holds, if it is something a user would miss.
pub fn identify_signature(head: &[u8], tail_superblock: Option<&[u8]>) -> Option<String> {
    let at = |off: usize, magic: &[u8]| {
        head.len() >= off + magic.len() && &head[off..off + magic.len()] == magic
    };
    if let Ok(sb) = Superblock::decode(head) {
        return Some(describe_recording(&sb));
    }
    if let Some(Ok(sb)) = tail_superblock.map(Superblock::decode) {
        return Some(describe_recording(&sb));
    }
    let sigs: &[(usize, &[u8], &str)] = &[
        (1080, &[0x53, 0xEF], "an ext2/3/4 filesystem"),
        (0, b"XFSB", "an XFS filesystem"),
        (65600, b"_BHRfS_M", "a btrfs filesystem"),
        (0, b"LUKS\xba\xbe", "a LUKS encrypted volume"),
        (4086, b"SWAPSPACE2", "a swap area"),
        (512, b"EFI PART", "a GPT partition table"),
        (4096, b"EFI PART", "a GPT partition table"),
        (3, b"NTFS    ", "an NTFS filesystem"),
        (82, b"FAT32   ", "a FAT32 filesystem"),
        (54, b"FAT1", "a FAT filesystem"),
        (32769, b"CD001", "an ISO 9660 filesystem"),
        (0x10040, b"ReIsEr", "a ReiserFS filesystem"),
        (
            0,
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00F2FS",
            "an F2FS filesystem",
        ),
    ];
    for (off, magic, what) in sigs {
        if at(*off, magic) {
            return Some(what.to_string());
        }
    }
    if at(510, &[0x55, 0xAA]) && head[446..510].iter().any(|&b| b != 0) {
        return Some("an MBR partition table".to_string());
    }
    None
}

fn describe_recording(sb: &Superblock) -> String {
    format!(
        "a dmarec recording {} (member {} of {}, created {})",
        sb.recording_uuid,
        sb.device_index,
        sb.members.len(),
        formats::time::rfc3339_utc(sb.created_unix_ns)
    )
}

/// Refuses a target that holds a filesystem, partition table or recording.
fn check_signatures(target: &Target, append: bool) -> Result<()> {
    let head = read_aligned(
        &target.file,
        0,
        (128 << 10).min(target.size_bytes as usize / 4096 * 4096),
    )?;
    let backup = Superblock::backup_offset(target.size_bytes);
    let tail = if backup >= SUPERBLOCK_BYTES as u64 {
        Some(read_aligned(&target.file, backup, SUPERBLOCK_BYTES)?)
    } else {
        None
    };
    if append && Superblock::decode(&head).is_ok() {
        return Ok(()); // the set the scan is appended to (checked by scans::read_existing)
    }
    if let Some(what) = identify_signature(&head, tail.as_deref()) {
        let hint = if what.starts_with("a dmarec") && !append {
            " To append a scan to it, pass --scan NAME; to erase it, --force"
        } else {
            " Pass --force if you are sure (everything on it will be lost)"
        };
        bail!(
            "target {} holds {what}; refusing to overwrite it.{hint}",
            target.path.display()
        );
    }
    Ok(())
}

/// O_DIRECT read of `len` bytes at `offset` (fewer at the end of the file).
pub fn read_aligned(file: &File, offset: u64, len: usize) -> Result<Vec<u8>> {
    blockio::read_direct(file, offset, len)
}

/// O_DIRECT write of `data` (length a multiple of 4096) at `offset`.
pub fn write_aligned(file: &File, offset: u64, data: &[u8]) -> Result<()> {
    blockio::write_direct(file, offset, data)
}

/// Writes the recording's superblocks (primary and backup) to every member,
/// wiping the reserved first MiB so no old signature survives.
pub fn write_superblocks(targets: &[Target], template: &Superblock) -> Result<()> {
    let mut zeros = vec![0u8; formats::DATA_START_BYTES as usize];
    for (i, t) in targets.iter().enumerate() {
        let sb = Superblock {
            device_index: i as u16,
            ..template.clone()
        };
        let bytes = sb.encode();
        zeros[..SUPERBLOCK_BYTES].copy_from_slice(&bytes);
        write_aligned(&t.file, 0, &zeros)
            .with_context(|| format!("target {}: writing superblock", t.path.display()))?;
        write_aligned(&t.file, Superblock::backup_offset(t.size_bytes), &bytes)
            .with_context(|| format!("target {}: writing backup superblock", t.path.display()))?;
        t.file
            .sync_data()
            .with_context(|| format!("target {}: flushing superblocks", t.path.display()))?;
    }
    Ok(())
}

pub fn random_uuid() -> Uuid {
    let mut b = [0u8; 16];
    // SAFETY: getrandom fills our 16-byte buffer.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), 16, 0) };
    assert_eq!(n, 16, "getrandom failed");
    Uuid::from_random_bytes(b)
}
