//! Text compressed in memory as each format's command-line tool would (zstd with its
//! checksum, bzip2 in 100k blocks so that half a file holds whole blocks), for the tests of
//! compressed input: shared by the unit tests (`src/input/decode.rs`) and the integration
//! tests (`tests/abatch/compressed.rs`).

use std::io::Write;

pub fn gzip(text: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(text)
        .and_then(|()| e.finish())
        .expect("gzip in memory")
}

pub fn zstd(text: &[u8]) -> Vec<u8> {
    let written = zstd::stream::write::Encoder::new(Vec::new(), 3).and_then(|mut e| {
        e.include_checksum(true)?;
        e.write_all(text)?;
        e.finish()
    });
    written.expect("zstd in memory")
}

pub fn bzip2(text: &[u8]) -> Vec<u8> {
    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    e.write_all(text)
        .and_then(|()| e.finish())
        .expect("bzip2 in memory")
}

pub fn xz(text: &[u8]) -> Vec<u8> {
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
    e.write_all(text)
        .and_then(|()| e.finish())
        .expect("xz in memory")
}
