//! Compressed inputs, read as they are: gzip (several members too), zstd, bzip2 and xz, known
//! by their first bytes, never by their name, and decompressed here on the reader thread. The
//! bytes taken from the source are counted, so that the progress display measures a
//! compressed file against its size on disk.

use std::cell::Cell;
use std::fmt;
use std::io::{self, Cursor, Read};
use std::rc::Rc;

use crate::input::source::is_stopping;

/// How an input is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Plain,
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Plain => "plain",
            Format::Gzip => "gzip",
            Format::Zstd => "zstd",
            Format::Bzip2 => "bzip2",
            Format::Xz => "xz",
        })
    }
}

/// The first bytes of each format.
const MAGIC: [(Format, &[u8]); 4] = [
    (Format::Gzip, &[0x1f, 0x8b]),
    (Format::Zstd, &[0x28, 0xb5, 0x2f, 0xfd]),
    (Format::Bzip2, b"BZh"),
    (Format::Xz, &[0xfd, b'7', b'z', b'X', b'Z', 0x00]),
];
/// Enough bytes to tell every format.
const LONGEST_MAGIC: usize = 6;

/// An input's text, decompressed if it was compressed.
pub struct Decoded<'a> {
    pub text: Box<dyn Read + 'a>,
    pub format: Format,
    /// Bytes taken from the source so far (compressed, when it is).
    pub taken: Rc<Cell<u64>>,
}

/// `raw`, read through the decoder its first bytes call for. Those bytes are read only as far
/// as they may still be a format's: a short first record on a pipe is not held back, and a
/// read that stops the run while they are looked at leaves what was taken as plain text.
pub fn decoded<'a>(raw: impl Read + 'a) -> io::Result<Decoded<'a>> {
    let taken = Rc::new(Cell::new(0));
    let mut raw = Counted {
        inner: raw,
        taken: taken.clone(),
    };
    let mut first = [0; LONGEST_MAGIC];
    let (mut got, mut ended) = (0, false);
    let may_be_one = |first: &[u8]| MAGIC.iter().any(|(_, magic)| magic.starts_with(first));
    while got < first.len() && may_be_one(&first[..got]) {
        match raw.read(&mut first[got..]) {
            Ok(0) => {
                ended = true;
                break;
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_stopping(&e) => break,
            Err(e) => return Err(e),
        }
    }
    let first = &first[..got];
    let format = MAGIC
        .iter()
        .find(|(_, magic)| first.starts_with(magic))
        .map_or(Format::Plain, |(format, _)| *format);
    // At its end already (a terminal's Ctrl-D), the source is not read again.
    let rest: Box<dyn Read + 'a> = if ended {
        Box::new(io::empty())
    } else {
        Box::new(raw)
    };
    let whole = Cursor::new(first.to_vec()).chain(rest);
    let text: Box<dyn Read + 'a> = match format {
        Format::Plain => Box::new(whole),
        Format::Gzip => Box::new(flate2::read::MultiGzDecoder::new(whole)),
        Format::Zstd => Box::new(zstd::stream::read::Decoder::new(whole)?),
        Format::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(whole)),
        Format::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(whole)),
    };
    Ok(Decoded {
        text,
        format,
        taken,
    })
}

/// `raw` as plain text, whatever its first bytes: a slice of a plain file (--shard), whose
/// first line may start with anything.
pub fn plain<'a>(raw: impl Read + 'a) -> Decoded<'a> {
    let taken = Rc::new(Cell::new(0));
    let text = Box::new(Counted {
        inner: raw,
        taken: taken.clone(),
    });
    Decoded {
        text,
        format: Format::Plain,
        taken,
    }
}

/// Whether bytes that start so are compressed in a format abatch reads.
pub fn is_compressed(first: &[u8]) -> bool {
    MAGIC.iter().any(|(_, magic)| first.starts_with(magic))
}

/// A failure to read the source itself, not its data.
#[derive(Debug)]
struct Unreadable(io::Error);

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Unreadable {}

/// Whether a read failed because the source could not be read (not because its data is not
/// what its format says).
pub fn is_unreadable(error: &io::Error) -> bool {
    error.get_ref().is_some_and(|e| e.is::<Unreadable>())
}

/// Counts the bytes read through it.
struct Counted<R> {
    inner: R,
    taken: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).map_err(|e| {
            // Marked, so that a decoder passing it on does not make it look like bad data.
            match e.kind() {
                io::ErrorKind::Interrupted => e,
                _ if is_stopping(&e) => e,
                kind => io::Error::new(kind, Unreadable(e)),
            }
        })?;
        self.taken.set(self.taken.get() + n as u64);
        Ok(n)
    }
}

#[cfg(test)]
#[path = "../../tests/shared/compress.rs"]
mod compress;

#[cfg(test)]
pub mod tests {
    use super::*;

    /// `text` compressed as `format`.
    pub fn compressed(text: &[u8], format: Format) -> Vec<u8> {
        match format {
            Format::Plain => text.to_vec(),
            Format::Gzip => compress::gzip(text),
            Format::Zstd => compress::zstd(text),
            Format::Bzip2 => compress::bzip2(text),
            Format::Xz => compress::xz(text),
        }
    }

    const ALL: [Format; 5] = [
        Format::Plain,
        Format::Gzip,
        Format::Zstd,
        Format::Bzip2,
        Format::Xz,
    ];

    #[test]
    fn each_format_is_known_by_its_first_bytes_and_read_whole() {
        let text: Vec<u8> = (0..5000)
            .flat_map(|i| format!("{{\"id\":{i}}}\n").into_bytes())
            .collect();
        for format in ALL {
            let data = compressed(&text, format);
            let mut decoded = decoded(&data[..]).unwrap();
            assert_eq!(decoded.format, format);
            let mut out = Vec::new();
            decoded.text.read_to_end(&mut out).unwrap();
            assert_eq!(out, text, "{format}");
            assert_eq!(decoded.taken.get(), data.len() as u64, "{format}");
        }
    }

    #[test]
    fn members_one_after_another_are_one_text() {
        for format in ALL {
            let mut data = compressed(b"{\"a\":1}\n", format);
            data.extend(compressed(b"{\"b\":2}\n", format));
            let mut out = String::new();
            decoded(&data[..])
                .unwrap()
                .text
                .read_to_string(&mut out)
                .unwrap();
            assert_eq!(out, "{\"a\":1}\n{\"b\":2}\n", "{format}");
        }
    }

    #[test]
    fn a_short_first_record_is_not_held_back_waiting_for_more() {
        // A reader that fails if asked for more than the first record: as a pipe that stays
        // open would block.
        struct OneRecord(Option<&'static [u8]>);
        impl Read for OneRecord {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let bytes = self.0.take().expect("read past what has arrived");
                buf[..bytes.len()].copy_from_slice(bytes);
                Ok(bytes.len())
            }
        }
        let mut decoded = decoded(OneRecord(Some(b"{}\n"))).unwrap();
        assert_eq!(decoded.format, Format::Plain);
        let mut first = [0; 3];
        decoded.text.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"{}\n");
    }

    #[test]
    fn short_and_empty_inputs_are_plain() {
        for text in [&b""[..], b"1", b"\x1f", b"BZ"] {
            let mut decoded = decoded(text).unwrap();
            assert_eq!(decoded.format, Format::Plain);
            let mut out = Vec::new();
            decoded.text.read_to_end(&mut out).unwrap();
            assert_eq!(out, text);
        }
    }

    #[test]
    fn a_truncated_or_corrupt_stream_is_an_error() {
        let text: Vec<u8> = (0..2000)
            .flat_map(|i| format!("{{\"id\":{i},\"pad\":\"{}\"}}\n", i * 7919).into_bytes())
            .collect();
        for format in [Format::Gzip, Format::Zstd, Format::Bzip2, Format::Xz] {
            let data = compressed(&text, format);
            let truncated = &data[..data.len() / 2];
            let mut out = Vec::new();
            let read = decoded(truncated).unwrap().text.read_to_end(&mut out);
            assert!(
                read.is_err(),
                "{format}: truncated read {} bytes",
                out.len()
            );
            let mut corrupt = data.clone();
            let middle = corrupt.len() / 2;
            for byte in &mut corrupt[middle..middle + 16] {
                *byte ^= 0x5a;
            }
            let read = decoded(&corrupt[..]).unwrap().text.read_to_end(&mut out);
            assert!(read.is_err(), "{format}: corrupt stream read whole");
        }
    }
}
