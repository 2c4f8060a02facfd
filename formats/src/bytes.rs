//! Little-endian field access at fixed offsets. Callers check lengths first;
//! these panic on out-of-range offsets, which would be a bug in a decoder.

pub(crate) fn u16_at(bytes: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(bytes[off..off + 2].try_into().unwrap())
}
pub(crate) fn u32_at(bytes: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap())
}
pub(crate) fn u64_at(bytes: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap())
}
pub(crate) fn arr_at<const N: usize>(bytes: &[u8], off: usize) -> [u8; N] {
    bytes[off..off + N].try_into().unwrap()
}
pub(crate) fn put_u16(bytes: &mut [u8], off: usize, value: u16) {
    bytes[off..off + 2].copy_from_slice(&value.to_le_bytes());
}
pub(crate) fn put_u32(bytes: &mut [u8], off: usize, value: u32) {
    bytes[off..off + 4].copy_from_slice(&value.to_le_bytes());
}
pub(crate) fn put_u64(bytes: &mut [u8], off: usize, value: u64) {
    bytes[off..off + 8].copy_from_slice(&value.to_le_bytes());
}
pub(crate) fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&x| x == 0)
}

/// The envelope every structure shares: at least `needed` bytes, `magic` at
/// offset 0, major version at 8 (must be ours) and minor at 10, and the
/// CRC-32 of bytes `0..crc_off` stored at `crc_off`. Checked in the order
/// length, magic, CRC, version, so each failure is reported as what it is.
/// Returns the minor version.
pub(crate) fn check_envelope(
    bytes: &[u8],
    what: &'static str,
    magic: [u8; 8],
    needed: usize,
    crc_off: usize,
) -> Result<u16, crate::FormatError> {
    use crate::FormatError;
    debug_assert!(crc_off + 4 <= needed);
    if bytes.len() < needed {
        return Err(FormatError::Truncated {
            what,
            needed,
            got: bytes.len(),
        });
    }
    let found: [u8; 8] = arr_at(bytes, 0);
    if found != magic {
        return Err(FormatError::BadMagic {
            what,
            expected: magic,
            found,
        });
    }
    let stored = u32_at(bytes, crc_off);
    let computed = crate::crc32(&bytes[..crc_off]);
    if stored != computed {
        return Err(FormatError::CrcMismatch {
            what,
            stored,
            computed,
        });
    }
    let (major, minor) = (u16_at(bytes, 8), u16_at(bytes, 10));
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
