//! CRC32C header and data digests (RFC 7143 §13.1, appendix B.4).
//!
//! The digest is the standard CRC32C (Castagnoli, reflected, initial value and
//! final XOR 0xffffffff; check value 0xe3069283 for "123456789"), sent on the
//! wire least significant byte first: the 32-byte all-zero block of RFC 3720
//! appendix B.4 has CRC 0x8a9136aa and travels as `aa 36 91 8a`. Linux
//! iscsi_tcp and libiscsi (`pdu.c` stores `crc` byte 0 first) do the same.
//!
//! The header digest covers the BHS and the AHS; the data digest covers the
//! data segment and its pad bytes (which are zero when we send).

use super::bhs::DIGEST_LEN;

/// CRC32C of `bytes` as a number.
pub fn crc32c(bytes: &[u8]) -> u32 {
    ::crc32c::crc32c(bytes)
}

/// Header digest wire bytes over the BHS followed by the AHS area.
pub fn header_digest(bhs: &[u8], ahs: &[u8]) -> [u8; DIGEST_LEN] {
    ::crc32c::crc32c_append(::crc32c::crc32c(bhs), ahs).to_le_bytes()
}

/// Data digest wire bytes over a data segment given as consecutive slices,
/// followed by `pad` zero bytes (0..=3, the segment's padding).
pub fn data_digest<'a, I>(segments: I, pad: usize) -> [u8; DIGEST_LEN]
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut crc = segments.into_iter().fold(0, ::crc32c::crc32c_append);
    crc = ::crc32c::crc32c_append(crc, &[0u8; 3][..pad.min(3)]);
    crc.to_le_bytes()
}

/// Data digest over a received data segment and its received pad bytes
/// (which the peer should have zeroed but which are covered either way).
pub fn data_digest_with_pad(data: &[u8], pad: &[u8]) -> [u8; DIGEST_LEN] {
    ::crc32c::crc32c_append(::crc32c::crc32c(data), pad).to_le_bytes()
}

/// Compare a received digest with the computed one.
pub fn verify(received: &[u8; DIGEST_LEN], computed: [u8; DIGEST_LEN]) -> bool {
    *received == computed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    // RFC 3720 appendix B.4 vectors (also in RFC 7143's references): the
    // "CRC" rows list the bytes in transmission order.
    #[test]
    fn rfc3720_b4_vectors() {
        assert_eq!(data_digest([&[0u8; 32][..]], 0), [0xaa, 0x36, 0x91, 0x8a]);
        assert_eq!(data_digest([&[0xffu8; 32][..]], 0), [0x43, 0xab, 0xa8, 0x62]);
        let inc: Vec<u8> = (0..32).collect();
        assert_eq!(data_digest([&inc[..]], 0), [0x4e, 0x79, 0xdd, 0x46]);
        let dec: Vec<u8> = (0..32).rev().collect();
        assert_eq!(data_digest([&dec[..]], 0), [0x5c, 0xdb, 0x3f, 0x11]);
        // An iSCSI SCSI Read (10) command PDU.
        let mut read = [0u8; 48];
        read[0] = 0x01;
        read[1] = 0xc0;
        read[16] = 0x14;
        read[22] = 0x04;
        read[27] = 0x14;
        read[31] = 0x18;
        read[32] = 0x28;
        read[40] = 0x02;
        assert_eq!(header_digest(&read, &[]), [0x56, 0x3a, 0x96, 0xd9]);
    }

    #[test]
    fn split_segments_and_pad() {
        let whole = b"hello world!\0\0\0\0";
        let want = data_digest_with_pad(b"hello world!\0", &[0, 0, 0]);
        assert_eq!(data_digest([&whole[..]], 0), want);
        assert_eq!(data_digest([&b"hello "[..], &b"world!\0"[..]], 3), want);
        assert_eq!(header_digest(&whole[..5], &whole[5..]), data_digest([&whole[..]], 0));
        assert!(verify(&want, want));
        assert!(!verify(&[0; 4], want));
    }
}
