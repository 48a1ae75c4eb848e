//! The model files' CRC-32 (`tinyconv::format::checksum`): crc32fast on hosts, the `crc` crate
//! with a 1 KB table on the microcontroller — the same CRC-32/ISO-HDLC, checked here on the
//! standard check value, random buffers of every length up to 4 KB and every alignment, and a
//! model file; a different CRC (CRC-32C) is caught.

use tinyconv::testing::SplitMix64;

const MCU: crc::Crc<u32, crc::Table<1>> =
    crc::Crc::<u32, crc::Table<1>>::new(&crc::CRC_32_ISO_HDLC);
const OTHER: crc::Crc<u32, crc::Table<1>> = crc::Crc::<u32, crc::Table<1>>::new(&crc::CRC_32_ISCSI);

#[test]
fn the_microcontrollers_crc_is_the_hosts() {
    assert_eq!(tinyconv::format::checksum(b"123456789"), 0xCBF4_3926);
    assert_eq!(MCU.checksum(b"123456789"), 0xCBF4_3926);
    let bytes = SplitMix64(0xc4c).bytes(4096 + 16);
    let mut differs = 0;
    for len in 0..=4096 {
        for offset in [0, 1, 3] {
            let b = &bytes[offset..offset + len];
            assert_eq!(
                MCU.checksum(b),
                tinyconv::format::checksum(b),
                "{len} at {offset}"
            );
            differs += (OTHER.checksum(b) != tinyconv::format::checksum(b)) as usize;
        }
    }
    // Negative control: another CRC differs on every non-empty buffer.
    assert!(differs >= 3 * 4096, "{differs}");
    let model = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/mnist-cnn.tcm"
    ))
    .unwrap();
    assert_eq!(MCU.checksum(&model), tinyconv::format::checksum(&model));
}
