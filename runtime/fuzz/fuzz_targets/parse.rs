//! Any bytes: `Model::parse` must return, never panic or read out of bounds; a model it
//! accepts must infer without panicking. The first input byte picks a mode: odd means "fix the
//! checksum first", so that the fuzzer explores the structural checks behind the CRC.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinyconv::format;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 && bytes.len() >= format::CHECKSUM_LEN {
        let body = bytes.len() - format::CHECKSUM_LEN;
        let crc = format::checksum(&bytes[..body]);
        bytes[body..].copy_from_slice(&crc.to_le_bytes());
    }
    if let Ok(model) = tinyconv::Model::parse(&bytes) {
        let mut arena = vec![0i8; model.arena_len()];
        let pixels = vec![128u8; model.input_shape().len()];
        let prediction = model.infer(&pixels, &mut arena).expect("a parsed model infers");
        assert!(prediction.class < model.classes());
    }
});
