use thiserror::Error;

/// Why a structure failed to decode. `what` names the structure
/// ("superblock", "slot header", "index header", "index entry").
#[derive(Debug, Clone, PartialEq, Error)]
pub enum FormatError {
    #[error("{what}: truncated at byte {got} (needs {needed} bytes)")]
    Truncated {
        what: &'static str,
        needed: usize,
        got: usize,
    },
    #[error("{what}: bad magic (expected {:?}, found {:?})", String::from_utf8_lossy(.expected), String::from_utf8_lossy(.found))]
    BadMagic {
        what: &'static str,
        expected: [u8; 8],
        found: [u8; 8],
    },
    #[error("{what}: format version {found_major}.{found_minor} is not supported (this build reads major version {supported_major}); use a newer dmarec")]
    UnknownVersion {
        what: &'static str,
        found_major: u16,
        found_minor: u16,
        supported_major: u16,
    },
    #[error("{what}: CRC mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    CrcMismatch {
        what: &'static str,
        stored: u32,
        computed: u32,
    },
    #[error("{what}: invalid {field}: {detail}")]
    Invalid {
        what: &'static str,
        field: &'static str,
        detail: String,
    },
}

impl FormatError {
    pub(crate) fn invalid(
        what: &'static str,
        field: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        FormatError::Invalid {
            what,
            field,
            detail: detail.into(),
        }
    }
}
