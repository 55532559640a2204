//! Compressed answers: --compress encodes every answer's body the way the request accepts,
//! and --bomb answers with a small body that decompresses to a huge one.

use std::io::Write;

use bytes::Bytes;
use hyper::header::{ACCEPT_ENCODING, HeaderMap, HeaderValue};

/// A way to compress an answer.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Gzip,
    Zstd,
    Br,
}

impl Encoding {
    fn name(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Zstd => "zstd",
            Encoding::Br => "br",
        }
    }

    /// Whether a request with these headers accepts this encoding.
    pub(crate) fn accepted(self, request: &HeaderMap) -> bool {
        request
            .get_all(ACCEPT_ENCODING)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|coding| coding.split(';').next().map(str::trim) == Some(self.name()))
    }

    /// `body` compressed, and the Content-Encoding that says so.
    pub(crate) fn encode(self, body: &[u8]) -> (Bytes, HeaderValue) {
        let encoded = match self {
            Encoding::Gzip => {
                let mut out =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                let _ = out.write_all(body);
                out.finish().unwrap_or_default()
            }
            Encoding::Zstd => zstd::encode_all(body, 1).unwrap_or_default(),
            Encoding::Br => {
                let mut out = Vec::new();
                let params = brotli::enc::BrotliEncoderParams::default();
                let _ = brotli::BrotliCompress(&mut &body[..], &mut out, &params);
                out
            }
        };
        (Bytes::from(encoded), HeaderValue::from_static(self.name()))
    }
}

/// `size` bytes of spaces, gzip-compressed (about a thousandth of the size), in pieces so
/// that the mock never holds the whole.
pub(crate) fn bomb(size: u64) -> Bytes {
    let mut out = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let piece = vec![b' '; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(piece.len() as u64) as usize;
        let _ = out.write_all(&piece[..n]);
        left -= n as u64;
    }
    Bytes::from(out.finish().unwrap_or_default())
}
