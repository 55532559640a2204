//! Compressed answers: what abatch asks for (`Accept-Encoding`) and how an answer's body is
//! decompressed by its `Content-Encoding`, within a limit on the decompressed size, so that a
//! small compressed body cannot grow without bound (a decompression bomb).
//!
//! The decoding is done here rather than by reqwest so that both sizes are known: the bytes
//! that crossed the wire and the bytes they stand for.

use std::io::{self, Read as _};

/// What every request accepts, most preferred first.
pub const ACCEPTED: &str = "gzip, zstd, br";

/// Why a body could not be decompressed.
#[derive(Debug, PartialEq)]
pub enum Undecodable {
    /// It decompresses to more than the limit.
    TooLarge,
    /// Its Content-Encoding is not one abatch knows.
    Unknown(String),
    /// The compressed stream is corrupt or cut short.
    Corrupt(String),
}

/// `wire` decompressed as `encoding` (a Content-Encoding value, possibly a list of codings
/// applied in order), at most `limit` bytes of it. No encoding, or `identity`, is the body as
/// it came.
pub fn decoded(
    encoding: Option<&str>,
    wire: Vec<u8>,
    limit: usize,
) -> Result<Vec<u8>, Undecodable> {
    undone(encoding, wire, limit, Read::Whole)
}

/// At most the first `limit` bytes `wire` decompresses to, whatever follows: for quoting the
/// start of an error's body, which may be cut short. A body that cannot be decompressed is
/// given as it came.
pub fn start(encoding: Option<&str>, wire: Vec<u8>, limit: usize) -> Vec<u8> {
    undone(encoding, wire.clone(), limit, Read::Start).unwrap_or(wire)
}

/// How much of a body to decompress.
#[derive(Clone, Copy, PartialEq)]
enum Read {
    /// All of it, or fail.
    Whole,
    /// What comes first, up to the limit, even from a stream cut short.
    Start,
}

fn undone(
    encoding: Option<&str>,
    wire: Vec<u8>,
    limit: usize,
    how: Read,
) -> Result<Vec<u8>, Undecodable> {
    let Some(encoding) = encoding else {
        return Ok(wire);
    };
    let mut body = wire;
    // Codings are listed in the order they were applied: undo them from the last.
    for coding in encoding.rsplit(',').map(str::trim) {
        let bytes = &body[..];
        let decoder: Box<dyn io::Read + '_> = match coding.to_ascii_lowercase().as_str() {
            "" | "identity" => continue,
            "gzip" | "x-gzip" => Box::new(flate2::read::MultiGzDecoder::new(bytes)),
            "deflate" => Box::new(flate2::read::ZlibDecoder::new(bytes)),
            "zstd" => Box::new(
                zstd::stream::read::Decoder::with_buffer(bytes)
                    .map_err(|e| Undecodable::Corrupt(e.to_string()))?,
            ),
            "br" => Box::new(brotli_decompressor::Decompressor::new(bytes, 4096)),
            _ => return Err(Undecodable::Unknown(coding.to_owned())),
        };
        body = read(decoder, limit, how)?;
    }
    Ok(body)
}

/// What `decoder` gives: all of it, unless it is more than `limit` bytes; or, for the start,
/// at most `limit` bytes, what a stream cut short gave included.
fn read(decoder: impl io::Read, limit: usize, how: Read) -> Result<Vec<u8>, Undecodable> {
    let mut body = Vec::new();
    let room = match how {
        Read::Whole => limit as u64 + 1,
        Read::Start => limit as u64,
    };
    let read = decoder.take(room).read_to_end(&mut body);
    match (read, how) {
        (Err(e), Read::Whole) => Err(Undecodable::Corrupt(e.to_string())),
        (_, Read::Whole) if body.len() > limit => Err(Undecodable::TooLarge),
        _ => Ok(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn each_encoding_decodes_to_the_body() {
        let body = br#"[{"id":1},{"id":2}]"#.repeat(50);
        let zstd = zstd::encode_all(&body[..], 3).unwrap();
        assert_eq!(
            decoded(Some("gzip"), gzip(&body), 1 << 20),
            Ok(body.clone())
        );
        assert_eq!(decoded(Some("zstd"), zstd, 1 << 20), Ok(body.clone()));
        assert_eq!(
            decoded(Some("identity"), body.clone(), 1 << 20),
            Ok(body.clone())
        );
        assert_eq!(decoded(None, body.clone(), 10), Ok(body.clone()));
        // Two members, as a server that compresses in pieces sends them.
        let mut two = gzip(&body[..100]);
        two.extend(gzip(&body[100..]));
        assert_eq!(decoded(Some("GZIP"), two, 1 << 20), Ok(body));
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let zeros = vec![0u8; 8 << 20];
        let bomb = gzip(&zeros);
        assert!(bomb.len() < 128 << 10, "{}", bomb.len());
        assert_eq!(
            decoded(Some("gzip"), bomb.clone(), 1 << 20),
            Err(Undecodable::TooLarge)
        );
        assert_eq!(
            decoded(Some("gzip"), bomb, 8 << 20).map(|b| b.len()),
            Ok(8 << 20)
        );
    }

    #[test]
    fn unknown_and_corrupt_streams_are_told_apart() {
        assert_eq!(
            decoded(Some("compress"), b"x".to_vec(), 10),
            Err(Undecodable::Unknown("compress".into()))
        );
        let mut cut = gzip(b"[1, 2, 3]");
        cut.truncate(cut.len() - 6);
        assert!(matches!(
            decoded(Some("gzip"), cut, 100),
            Err(Undecodable::Corrupt(_))
        ));
    }

    #[test]
    fn the_start_of_a_cut_body_is_quoted() {
        let text = b"server error: the model is not loaded".repeat(20);
        assert_eq!(start(Some("gzip"), gzip(&text), 30), text[..30].to_vec());
        assert_eq!(start(None, b"plain".to_vec(), 3), b"plain".to_vec());
    }
}
