use std::fmt;

/// A 128-bit identifier (random, RFC 4122 version 4 when made by dmarec).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    pub const NIL: Uuid = Uuid([0; 16]);

    /// A version-4 UUID from 16 random bytes.
    pub fn from_random_bytes(mut bytes: [u8; 16]) -> Uuid {
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Uuid(bytes)
    }

    pub fn is_nil(&self) -> bool {
        self.0 == [0; 16]
    }

    /// Parses the canonical 8-4-4-4-12 hex form.
    pub fn parse(canonical: &str) -> Option<Uuid> {
        let dashes_at = [8, 13, 18, 23];
        let bytes = canonical.as_bytes();
        if canonical.len() != 36 || dashes_at.iter().any(|&at| bytes[at] != b'-') {
            return None;
        }
        let hex: Vec<u8> = canonical.bytes().filter(|&c| c != b'-').collect();
        if hex.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, pair) in hex.chunks(2).enumerate() {
            let text = std::str::from_utf8(pair).ok()?;
            out[i] = u8::from_str_radix(text, 16).ok()?;
        }
        Some(Uuid(out))
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                formatter.write_str("-")?;
            }
            write!(formatter, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, formatter)
    }
}

#[cfg(test)]
mod tests {
    use super::Uuid;

    #[test]
    fn canonical_text_round_trips_and_malformed_text_is_refused() {
        let u = Uuid([
            0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xf0, 0x0f, 0x10, 0x32, 0x54, 0x76,
            0x98, 0xba,
        ]);
        let text = "01234567-89ab-cdef-f00f-10325476 98ba".replace(' ', "");
        assert_eq!(u.to_string(), text);
        assert_eq!(format!("{u:?}"), text);
        assert_eq!(Uuid::parse(&text), Some(u));
        assert_eq!(Uuid::parse(&text.to_uppercase()), Some(u));
        for bad in [
            &text[..35],                            // short
            &format!("{text}0"),                    // long
            &text.replace('-', ""),                 // 32 digits, no dashes
            &text.replacen('0', "g", 1),            // not hex
            "0123456789abcdeff00f1032547698ba----", // 36 long, dashes at the end
        ] {
            assert_eq!(Uuid::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn random_bytes_become_a_version_4_variant_1_uuid() {
        let u = Uuid::from_random_bytes([0xff; 16]);
        assert_eq!(u.to_string(), "ffffffff-ffff-4fff-bfff-ffffffffffff");
        let u = Uuid::from_random_bytes([0; 16]);
        assert_eq!(u.to_string(), "00000000-0000-4000-8000-000000000000");
        assert!(!u.is_nil());
        assert!(Uuid::NIL.is_nil() && Uuid([0; 16]).is_nil());
        assert!(!Uuid([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]).is_nil());
    }
}
