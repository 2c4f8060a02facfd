//! Little-endian field access at fixed offsets. Callers check lengths first;
//! these panic on out-of-range offsets, which would be a bug in a decoder.

pub(crate) fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(b[off..off + 2].try_into().unwrap())
}
pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
pub(crate) fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}
pub(crate) fn arr_at<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    b[off..off + N].try_into().unwrap()
}
pub(crate) fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
pub(crate) fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
pub(crate) fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}
pub(crate) fn all_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

/// The envelope every structure shares: at least `needed` bytes, `magic` at
/// offset 0, major version at 8 (must be ours) and minor at 10, and the
/// CRC-32 of bytes `0..crc_off` stored at `crc_off`. Checked in the order
/// length, magic, CRC, version, so each failure is reported as what it is.
/// Returns the minor version.
pub(crate) fn check_envelope(
    b: &[u8],
    what: &'static str,
    magic: [u8; 8],
    needed: usize,
    crc_off: usize,
) -> Result<u16, crate::FormatError> {
    use crate::FormatError;
    debug_assert!(crc_off + 4 <= needed);
    if b.len() < needed {
        return Err(FormatError::Truncated {
            what,
            needed,
            got: b.len(),
        });
    }
    let found: [u8; 8] = arr_at(b, 0);
    if found != magic {
        return Err(FormatError::BadMagic {
            what,
            expected: magic,
            found,
        });
    }
    let stored = u32_at(b, crc_off);
    let computed = crate::crc32(&b[..crc_off]);
    if stored != computed {
        return Err(FormatError::CrcMismatch {
            what,
            stored,
            computed,
        });
    }
    let (major, minor) = (u16_at(b, 8), u16_at(b, 10));
    if major != crate::FORMAT_VERSION_MAJOR {
        return Err(FormatError::UnknownVersion {
            what,
            found_major: major,
            found_minor: minor,
            supported_major: crate::FORMAT_VERSION_MAJOR,
        });
    }
    Ok(minor)
}
