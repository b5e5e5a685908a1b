//! Text in any encoding, decoded as it is read: a file of any size is turned into UTF-8 a chunk
//! at a time, never held whole. The CSV and NDJSON readers and `csv::decode` all read through it,
//! so a file streamed and a body decoded in memory give the same text and the same errors.

use std::io::{self, Read};
use std::path::Path;

use encoding_rs::DecoderResult;

use crate::connectors::ConnectorError;

/// Bytes taken from the source at a time.
const CHUNK: usize = 64 * 1024;

/// UTF-8 text decoded from `inner` in the encoding `label` names, with its leading byte-order
/// marks dropped (Bologna's population series carries two). Bytes that are not valid in the
/// encoding fail the read with the line they are on (see `read_error`).
pub struct Decoded<R> {
    inner: R,
    decoder: encoding_rs::Decoder,
    label: String,
    /// Bytes read from `inner`; `input[start..end]` are not decoded yet.
    input: Vec<u8>,
    start: usize,
    end: usize,
    /// How many bytes to take from `inner` at a time (small in tests, to split characters).
    chunk: usize,
    eof: bool,
    finished: bool,
    /// Decoded text; `output[position..]` is not handed out yet.
    output: String,
    position: usize,
    /// Whether nothing but byte-order marks has been decoded yet.
    at_start: bool,
    /// Newlines decoded so far: the line of an invalid byte or of a replacement character.
    newlines: usize,
    replacements: usize,
    first_replacement_line: usize,
    failure: Option<String>,
}

/// Bytes that are not valid in the declared encoding: the message says where and what to do.
#[derive(Debug)]
pub struct NotDecodable(pub String);

impl std::fmt::Display for NotDecodable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotDecodable {}

impl<R: Read> Decoded<R> {
    /// `label` is any WHATWG label (`utf-8`, `latin1`, `windows-1252`, …). UTF-8 has its BOM
    /// removed; another encoding sniffs a BOM (as `encoding_rs::Encoding::decode` does).
    pub fn new(path: &Path, inner: R, label: &str) -> Result<Self, ConnectorError> {
        Self::build(path, inner, label, CHUNK)
    }

    /// A reader taking `chunk` bytes at a time from `inner`: tests split characters with it.
    #[cfg(test)]
    pub(super) fn with_chunk(
        path: &Path,
        inner: R,
        label: &str,
        chunk: usize,
    ) -> Result<Self, ConnectorError> {
        Self::build(path, inner, label, chunk)
    }

    fn build(path: &Path, inner: R, label: &str, chunk: usize) -> Result<Self, ConnectorError> {
        let encoding = encoding_rs::Encoding::for_label(label.as_bytes()).ok_or_else(|| {
            ConnectorError::Parse {
                path: path.to_path_buf(),
                message: format!("unknown encoding `{label}`"),
            }
        })?;
        let decoder = if encoding == encoding_rs::UTF_8 {
            encoding.new_decoder_with_bom_removal()
        } else {
            encoding.new_decoder()
        };
        Ok(Self {
            inner,
            decoder,
            label: label.to_string(),
            input: vec![0; chunk],
            start: 0,
            end: 0,
            chunk,
            eof: false,
            finished: false,
            output: String::new(),
            position: 0,
            at_start: true,
            newlines: 0,
            replacements: 0,
            first_replacement_line: 0,
            failure: None,
        })
    }

    /// How many U+FFFD the text read so far holds and the line of the first, if any.
    pub fn replacement_characters(&self) -> Option<(usize, usize)> {
        (self.replacements > 0).then_some((self.replacements, self.first_replacement_line))
    }

    /// Decode until some text is ready or the source has ended.
    fn fill(&mut self) -> io::Result<()> {
        if let Some(message) = &self.failure {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                NotDecodable(message.clone()),
            ));
        }
        while self.position == self.output.len() && !self.finished {
            self.output.clear();
            self.position = 0;
            if self.start == self.end && !self.eof {
                let read = loop {
                    match self.inner.read(&mut self.input[..self.chunk]) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        other => break other?,
                    }
                };
                (self.start, self.end, self.eof) = (0, read, read == 0);
            }
            let pending = &self.input[self.start..self.end];
            let room = self
                .decoder
                .max_utf8_buffer_length_without_replacement(pending.len())
                .unwrap_or(usize::MAX / 2);
            self.output.reserve(room);
            let (result, read) = self.decoder.decode_to_string_without_replacement(
                pending,
                &mut self.output,
                self.eof,
            );
            self.start += read;
            match result {
                DecoderResult::InputEmpty => self.finished = self.eof,
                DecoderResult::OutputFull => {}
                DecoderResult::Malformed(_, _) => {
                    // `output` holds the text decoded before the bad bytes.
                    let line = self.newlines + self.output.matches('\n').count() + 1;
                    let message = format!(
                        "line {line}: bytes that are not valid {}; set `encoding` (e.g. \"latin1\")",
                        self.label
                    );
                    self.failure = Some(message.clone());
                    self.output.clear();
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        NotDecodable(message),
                    ));
                }
            }
            self.take_decoded();
        }
        Ok(())
    }

    /// Account for newly decoded text: drop the leading byte-order marks, count the newlines and
    /// the replacement characters.
    fn take_decoded(&mut self) {
        if self.at_start {
            let marks = self.output.len() - self.output.trim_start_matches('\u{feff}').len();
            self.output.drain(..marks);
            self.at_start = self.output.is_empty();
        }
        if self.replacements == 0
            && let Some(first) = self.output.find('\u{fffd}')
        {
            self.first_replacement_line =
                self.newlines + self.output[..first].matches('\n').count() + 1;
        }
        self.replacements += self.output.matches('\u{fffd}').count();
        self.newlines += self.output.matches('\n').count();
    }
}

impl<R: Read> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.fill()?;
        let ready = &self.output.as_bytes()[self.position..];
        let n = ready.len().min(buf.len());
        buf[..n].copy_from_slice(&ready[..n]);
        self.position += n;
        Ok(n)
    }
}

/// The error of a read through `Decoded`: bytes not valid in the encoding (a parse error naming
/// the line), or the file itself unreadable.
pub fn read_error(path: &Path, error: io::Error) -> ConnectorError {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<NotDecodable>())
    {
        Some(NotDecodable(message)) => ConnectorError::Parse {
            path: path.to_path_buf(),
            message: message.clone(),
        },
        None => ConnectorError::Read {
            path: path.to_path_buf(),
            source: error,
        },
    }
}

/// Say that the text holds replacement characters, which no one writes on purpose.
pub fn warn_replacements(path: &Path, found: Option<(usize, usize)>) {
    if let Some((count, line)) = found {
        tracing::warn!(
            path = %path.display(),
            count,
            line,
            "the text holds {count} Unicode replacement characters (U+FFFD), the first on line \
             {line}: a sign that the file was converted from the wrong encoding before it was \
             published, or that `encoding` is wrong"
        );
    }
}

/// Text with its first `lines` lines left out (`skip_lines`: titles and notes above a header).
pub struct SkipLines<R> {
    inner: R,
    remaining: usize,
}

impl<R> SkipLines<R> {
    pub fn new(inner: R, lines: usize) -> Self {
        Self {
            inner,
            remaining: lines,
        }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for SkipLines<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.inner.read(buf)?;
            if n == 0 || self.remaining == 0 {
                return Ok(n);
            }
            let mut start = 0;
            while self.remaining > 0 {
                match buf[start..n].iter().position(|b| *b == b'\n') {
                    Some(i) => {
                        start += i + 1;
                        self.remaining -= 1;
                    }
                    None => {
                        start = n;
                        break;
                    }
                }
            }
            if start < n {
                buf.copy_within(start..n, 0);
                return Ok(n - start);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of `bytes` read `chunk` bytes at a time, or the error's message.
    fn read_in_chunks(bytes: &[u8], label: &str, chunk: usize) -> Result<String, String> {
        let mut decoded = Decoded::with_chunk(Path::new("t.csv"), bytes, label, chunk).unwrap();
        let mut text = String::new();
        decoded
            .read_to_string(&mut text)
            .map_err(|e| read_error(Path::new("t.csv"), e).to_string())?;
        Ok(text)
    }

    #[test]
    fn characters_split_across_chunks_decode_whole() {
        // "à" is two bytes in UTF-8, "€" three, "𝄞" four: every chunk size splits some of them.
        let utf8 = "città;€;𝄞\nPiù;1\n";
        let latin1 = b"citt\xe0;et\xe0\n";
        let windows_1252 = b"\x80 5;\x93virgolette\x94\n";
        for chunk in 1..=8 {
            assert_eq!(
                read_in_chunks(utf8.as_bytes(), "utf-8", chunk).unwrap(),
                utf8
            );
            assert_eq!(
                read_in_chunks(latin1, "latin1", chunk).unwrap(),
                "città;età\n"
            );
            assert_eq!(
                read_in_chunks(windows_1252, "windows-1252", chunk).unwrap(),
                "€ 5;\u{201c}virgolette\u{201d}\n"
            );
        }
    }

    #[test]
    fn leading_boms_are_dropped_even_split_across_chunks() {
        let two_boms = "\u{feff}\u{feff}Quartiere;Zona\n";
        let later_bom = "a;b\n\u{feff}x;y\n";
        for chunk in 1..=8 {
            assert_eq!(
                read_in_chunks(two_boms.as_bytes(), "utf-8", chunk).unwrap(),
                "Quartiere;Zona\n"
            );
            assert_eq!(
                read_in_chunks(later_bom.as_bytes(), "utf-8", chunk).unwrap(),
                later_bom,
                "only leading marks are dropped"
            );
            // A UTF-8 BOM on a file declared Latin-1 says the file is UTF-8, as
            // `Encoding::decode` has it.
            assert_eq!(
                read_in_chunks("\u{feff}città\n".as_bytes(), "latin1", chunk).unwrap(),
                "città\n"
            );
        }
    }

    #[test]
    fn invalid_bytes_name_their_line_whatever_the_chunks() {
        let bytes = b"a;b\n1;2\n3;citt\xe0\n4;5\n";
        for chunk in 1..=8 {
            assert_eq!(
                read_in_chunks(bytes, "utf-8", chunk).unwrap_err(),
                "t.csv: line 3: bytes that are not valid utf-8; set `encoding` (e.g. \"latin1\")"
            );
        }
        // A sequence cut short by the end of the file.
        assert_eq!(
            read_in_chunks("a\nb\u{e0}".as_bytes().split_last().unwrap().1, "utf-8", 1)
                .unwrap_err(),
            "t.csv: line 2: bytes that are not valid utf-8; set `encoding` (e.g. \"latin1\")"
        );
    }

    #[test]
    fn replacement_characters_are_counted_across_chunks() {
        let text = "a;b\nCitt\u{fffd};1\nPi\u{fffd}\u{fffd};2\n";
        for chunk in 1..=8 {
            let mut decoded =
                Decoded::with_chunk(Path::new("t"), text.as_bytes(), "utf-8", chunk).unwrap();
            std::io::copy(&mut decoded, &mut std::io::sink()).unwrap();
            assert_eq!(decoded.replacement_characters(), Some((3, 2)));
        }
    }

    #[test]
    fn skipped_lines_end_at_their_newlines_whatever_the_reads() {
        let text = "Titolo\nNote: dati 2023\nanno;valore\n2023;1\n";
        for chunk in 1..=8 {
            let decoded =
                Decoded::with_chunk(Path::new("t"), text.as_bytes(), "utf-8", chunk).unwrap();
            let mut rest = String::new();
            SkipLines::new(decoded, 2)
                .read_to_string(&mut rest)
                .unwrap();
            assert_eq!(rest, "anno;valore\n2023;1\n");
        }
        let mut rest = String::new();
        SkipLines::new("one line".as_bytes(), 3)
            .read_to_string(&mut rest)
            .unwrap();
        assert_eq!(rest, "");
    }
}
