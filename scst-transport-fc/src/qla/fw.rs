//! Firmware images in the layout of Linux's `ql2400_fw.bin` / `ql2500_fw.bin`.
//!
//! The file is a sequence of big-endian 32-bit words holding code segments. Each segment
//! starts with a header in which word 2 is the RISC load address and word 3 the segment's
//! length in words (the header included: the whole segment is loaded). A 24xx/25xx image has
//! two segments; the first one's address is where EXECUTE FIRMWARE starts the RISC. What follows
//! the segments (dump templates in newer images) is not loaded.

/// One code segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// RISC address of word 0.
    pub risc_addr: u32,
    /// The words.
    pub words: Vec<u32>,
}

/// A parsed image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Firmware {
    /// The code segments, in load order.
    pub segments: Vec<Segment>,
}

/// Segments in a 24xx/25xx image.
pub const SEGMENTS: usize = 2;

/// Why an image was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FwError {
    /// Not a whole number of words, or a segment runs past the end.
    #[error("firmware image truncated: {0}")]
    Truncated(&'static str),
    /// The header words look like erased flash or nothing at all.
    #[error("firmware image invalid: {0}")]
    Invalid(&'static str),
}

impl Firmware {
    /// Parses an image.
    ///
    /// # Errors
    /// [`FwError`] for anything that is not a loadable image.
    pub fn parse(bytes: &[u8]) -> Result<Self, FwError> {
        if bytes.len() % 4 != 0 || bytes.len() < 32 {
            return Err(FwError::Truncated("length is not a multiple of 4 bytes, or under 8 words"));
        }
        let words: Vec<u32> = bytes.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect();
        let mut at = 0usize;
        let mut segments = Vec::new();
        for _ in 0..SEGMENTS {
            let Some(h) = words.get(at..at + 8) else { return Err(FwError::Truncated("segment header")) };
            if h[4..8].iter().all(|&w| w == 0) || h[4..8].iter().all(|&w| w == u32::MAX) {
                return Err(FwError::Invalid("segment header words 4..7 all 0 or all FFFFFFFFh"));
            }
            let (risc_addr, len) = (h[2], h[3] as usize);
            if len < 8 {
                return Err(FwError::Invalid("segment shorter than its header"));
            }
            let Some(seg) = words.get(at..at + len) else { return Err(FwError::Truncated("segment body")) };
            segments.push(Segment { risc_addr, words: seg.to_vec() });
            at += len;
        }
        Ok(Self { segments })
    }

    /// Where the RISC starts (the first segment's address).
    pub fn start_addr(&self) -> u32 {
        self.segments.first().map_or(0, |s| s.risc_addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(addr: u32, len: u32) -> Vec<u32> {
        let mut v = vec![0u32; len as usize];
        v[2] = addr;
        v[3] = len;
        v[4..8].copy_from_slice(&[1, 2, 3, 4]);
        v
    }

    #[test]
    fn two_segments_parse() {
        let mut w = seg(0x10_0000, 10);
        w.extend(seg(0x20_0000, 9));
        w.push(0xabcd);
        let bytes: Vec<u8> = w.iter().flat_map(|x| x.to_be_bytes()).collect();
        let fw = Firmware::parse(&bytes).unwrap();
        assert_eq!(fw.segments.len(), 2);
        assert_eq!(fw.start_addr(), 0x10_0000);
        assert_eq!(fw.segments[1].words.len(), 9);
        assert!(Firmware::parse(&bytes[..40]).is_err());
        assert!(Firmware::parse(&[0u8; 64]).is_err());
    }
}
