//! Line readers with a length cap: one huge line in a bundle (a 2 GiB line in a 100 KB
//! compressed bundle) must not become a 2 GiB allocation, let alone the 3x a parser makes of
//! it. Every line reader of the analyzer keeps at most [`MAX_LINE_BYTES`] of a line; the
//! rest is read and thrown away without being stored, and the line is reported as cut (with
//! its number) so nothing is dropped silently.

use std::io::{self, BufRead, BufReader, Read};

/// Longest line kept: 4 MiB. Real lines are far shorter (an iptables rule is under 4 KiB,
/// a Kubernetes object, one JSON line, is under etcd's 1.5 MiB limit).
pub const MAX_LINE_BYTES: usize = 4 << 20;

/// A line longer than the cap, skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// 1-based line number.
    pub line: u64,
    /// Its length in bytes (without the newline).
    pub bytes: u64,
}

impl Cut {
    /// A note for the fact document or the report: which lines were skipped and why.
    pub fn note(path: &str, cuts: &[Cut]) -> Option<String> {
        let first = cuts.first()?;
        Some(format!(
            "{path}: {} line(s) longer than {} MiB skipped (first: line {}, {} bytes)",
            cuts.len(),
            MAX_LINE_BYTES >> 20,
            first.line,
            first.bytes
        ))
    }
}

/// Calls `f(line_number, line)` for every `\n`-separated line (without its `\n`), keeping at
/// most `max` bytes of each. An over-long line is passed as empty and listed in the result.
/// `f` returns false to stop early.
pub fn for_each_line<R: Read>(
    reader: R,
    max: usize,
    mut f: impl FnMut(u64, &[u8]) -> bool,
) -> io::Result<Vec<Cut>> {
    let mut r = BufReader::with_capacity(64 * 1024, reader);
    let mut cuts = Vec::new();
    let mut line: Vec<u8> = Vec::new();
    let mut over: u64 = 0;
    let mut n: u64 = 1;
    let mut emit = |line: &mut Vec<u8>, over: &mut u64, n: u64| -> bool {
        let go = if *over > 0 {
            cuts.push(Cut {
                line: n,
                bytes: *over,
            });
            f(n, &[])
        } else {
            f(n, line)
        };
        line.clear();
        *over = 0;
        go
    };
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            if !line.is_empty() || over > 0 {
                emit(&mut line, &mut over, n);
            }
            break;
        }
        let (chunk, end_of_line) = match memchr::memchr(b'\n', buf) {
            Some(i) => (&buf[..i], true),
            None => (buf, false),
        };
        if over == 0 {
            if chunk.len() <= max.saturating_sub(line.len()) {
                line.extend_from_slice(chunk);
            } else {
                // Past the cap: count the line's bytes from here on, store none of them.
                over = (line.len() + chunk.len()) as u64;
                line.clear();
            }
        } else {
            over += chunk.len() as u64;
        }
        let used = chunk.len() + usize::from(end_of_line);
        r.consume(used);
        if end_of_line {
            if !emit(&mut line, &mut over, n) {
                break;
            }
            n += 1;
        }
    }
    Ok(cuts)
}

/// Reads a whole text artifact, lines longer than [`MAX_LINE_BYTES`] replaced by empty lines
/// (so line numbers stay right), invalid UTF-8 replaced; returns the cut lines too.
pub fn read_text_capped<R: Read>(reader: R) -> io::Result<(String, Vec<Cut>)> {
    let mut text = String::new();
    let cuts = for_each_line(reader, MAX_LINE_BYTES, |_, l| {
        text.push_str(&String::from_utf8_lossy(l));
        text.push('\n');
        true
    })?;
    Ok((text, cuts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(input: &[u8], max: usize) -> (Vec<(u64, String)>, Vec<Cut>) {
        let mut out = Vec::new();
        let cuts = for_each_line(input, max, |n, l| {
            out.push((n, String::from_utf8_lossy(l).into_owned()));
            true
        })
        .unwrap_or_default();
        (out, cuts)
    }

    #[test]
    fn short_lines_pass_unchanged() {
        let (lines, cuts) = collect(b"a\nbb\n\nccc", 8);
        assert_eq!(
            lines,
            vec![
                (1, "a".into()),
                (2, "bb".into()),
                (3, String::new()),
                (4, "ccc".into())
            ]
        );
        assert!(cuts.is_empty());
    }

    #[test]
    fn an_over_long_line_is_skipped_and_reported() {
        let mut input = b"ok\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 200_000));
        input.extend(b"\nafter\n");
        let (lines, cuts) = collect(&input, 1000);
        assert_eq!(
            lines,
            vec![(1, "ok".into()), (2, String::new()), (3, "after".into())]
        );
        assert_eq!(
            cuts,
            vec![Cut {
                line: 2,
                bytes: 200_000
            }]
        );
        // A line of exactly the cap is kept.
        let (lines, cuts) = collect(b"12345\n", 5);
        assert_eq!(lines, vec![(1, "12345".into())]);
        assert!(cuts.is_empty());
        let (_, cuts) = collect(b"123456", 5);
        assert_eq!(cuts, vec![Cut { line: 1, bytes: 6 }]);
        assert_eq!(
            Cut::note("a.txt", &[Cut { line: 2, bytes: 9 }]).unwrap_or_default(),
            "a.txt: 1 line(s) longer than 4 MiB skipped (first: line 2, 9 bytes)"
        );
    }

    #[test]
    fn stopping_early_reads_no_further() {
        let mut seen = 0;
        let cuts = for_each_line(&b"a\nb\nc\n"[..], 10, |n, _| {
            seen = n;
            n < 2
        });
        assert!(cuts.is_ok());
        assert_eq!(seen, 2);
    }

    #[test]
    fn text_keeps_line_numbers() {
        let mut input = b"a\n".to_vec();
        input.extend(std::iter::repeat_n(b'y', MAX_LINE_BYTES + 1));
        input.extend(b"\nb\n");
        let (text, cuts) = read_text_capped(&input[..]).unwrap_or_default();
        assert_eq!(text, "a\n\nb\n");
        assert_eq!(cuts.len(), 1);
    }
}
