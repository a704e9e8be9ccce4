//! A set of byte values looked up with one load: the scanners' "may this byte matter" test.

/// A set of bytes, as a table with an entry for every `u8`.
pub(crate) struct ByteSet([bool; 256]);

impl ByteSet {
    /// The bytes in any of the inclusive `ranges`; meant for statics, so it runs at compile
    /// time.
    pub(crate) const fn of(ranges: &[(u8, u8)]) -> ByteSet {
        let mut table = [false; 256];
        let mut rest: &mut [bool] = &mut table;
        let mut byte = 0u8;
        while let Some((slot, tail)) = rest.split_first_mut() {
            *slot = in_any(byte, ranges);
            rest = tail;
            byte = byte.wrapping_add(1);
        }
        ByteSet(table)
    }

    /// Whether `byte` is in the set.
    #[inline]
    pub(crate) fn contains(&self, byte: u8) -> bool {
        // Every u8 has an entry: the `None` arm is never taken, and compiles away.
        self.0.get(usize::from(byte)).copied().unwrap_or(false)
    }
}

const fn in_any(byte: u8, mut ranges: &[(u8, u8)]) -> bool {
    while let Some(((low, high), rest)) = ranges.split_first() {
        if *low <= byte && byte <= *high {
            return true;
        }
        ranges = rest;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_exactly_the_bytes_of_its_ranges() {
        let set = ByteSet::of(&[(b'a', b'c'), (b'x', b'x'), (0xFE, 0xFF)]);
        let members: Vec<u8> = (0..=u8::MAX).filter(|&b| set.contains(b)).collect();
        assert_eq!(members, b"abcx\xFE\xFF");
        assert!(!ByteSet::of(&[]).contains(0));
    }
}
