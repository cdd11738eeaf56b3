//! Makes text from a bundle inert before it is shown: one sanitizer for the terminal, one
//! escaper for Markdown and one for HTML, used by every human-readable renderer.
//!
//! A bundle is untrusted input: pod names, interface names, process names, iptables comments,
//! kernel log lines and the collector's own reasons can all carry bytes chosen by whoever
//! controls a pod (or crafted the bundle). Printed raw they could clear the screen, move the
//! cursor and overwrite a finding, or set the terminal title; pasted into a ticket as Markdown
//! they could add headings, links or raw HTML. JSON output stays exact (serde escapes control
//! characters); only the human formats go through here.
//!
//! The terminal form follows `cat -v`: C0 controls as `^@`..`^_` (`ESC` is `^[`, `\r` is
//! `^M`), DEL as `^?`, C1 controls as `M-^@`..`M-^_`. Unicode bidirectional overrides and
//! line/paragraph separators, which reorder or break what the reader sees without being
//! controls, are shown as `\u{202E}`.

use std::borrow::Cow;

/// True for a character that must never reach a terminal as is. A tab is kept, as `cat -v`
/// keeps it: it moves the cursor forward only.
fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\t') || is_invisible_format(c)
}

/// Bidi embeddings/overrides/isolates, implicit marks and the Unicode line separators.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

fn push_escaped(out: &mut String, c: char) {
    let n = c as u32;
    match n {
        0x00..=0x1F => {
            out.push('^');
            out.push(char::from(n as u8 + 0x40));
        }
        0x7F => out.push_str("^?"),
        0x80..=0x9F => {
            out.push_str("M-^");
            out.push(char::from((n - 0x80) as u8 + 0x40));
        }
        _ => out.push_str(&format!("\\u{{{n:04X}}}")),
    }
}

/// One field for a terminal: every control character but the tab (newlines included) and
/// every bidi override is shown escaped, so a field can neither drive the terminal nor fake
/// a line.
pub fn terminal(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A whole rendered text for a terminal: like [`terminal`] but line breaks (`\n`) are kept.
/// The last line of defence for renderers whose fields were already made inert.
pub fn terminal_lines(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c != '\n' && is_unsafe(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c != '\n' && is_unsafe(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// One inline field for Markdown (a heading, a paragraph, a table cell): made inert for the
/// terminal first, then every character CommonMark or GitHub Flavored Markdown gives a
/// meaning to is backslash-escaped, so the field renders as the literal text: no emphasis,
/// code span, link, image, raw HTML, entity, table cell break, strikethrough, heading, list,
/// block quote or thematic break, and no bare-URL autolink.
pub fn markdown(s: &str) -> String {
    let s = terminal(s);
    let mut out = String::with_capacity(s.len() + 8);
    let chars: Vec<char> = s.chars().collect();
    // Leading digits followed by `.` or `)` would start an ordered list.
    let leading_digits = chars.iter().take_while(|c| c.is_ascii_digit()).count();
    for (i, &c) in chars.iter().enumerate() {
        let at_start = i == 0;
        let escape = match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '|' | '~' | '&' | '!' => true,
            '-' | '+' | '=' => at_start,
            '.' | ')' => {
                i == leading_digits
                    && leading_digits > 0
                    && matches!(chars.get(i + 1), None | Some(' '))
            }
            // `scheme://` and `www.` would become GFM autolinks.
            ':' => chars.get(i + 1) == Some(&'/') && chars.get(i + 2) == Some(&'/'),
            _ => false,
        } || (c == '.'
            && i >= 3
            && chars[i - 3..i].iter().all(|w| w.eq_ignore_ascii_case(&'w')));
        if escape {
            out.push('\\');
        }
        out.push(c);
    }
    // Leading or trailing spaces of a table cell or heading are trimmed by Markdown anyway;
    // four leading spaces would start a code block when the field opens a line.
    out
}

/// A fenced code block holding `lines` verbatim (after [`terminal`]): the fence is longer
/// than any run of backticks inside, so no line can close it early.
pub fn markdown_code_block(info: &str, lines: &[String]) -> String {
    let lines: Vec<Cow<'_, str>> = lines.iter().map(|l| terminal(l)).collect();
    let longest = lines.iter().map(|l| longest_run(l, '`')).max().unwrap_or(0);
    let fence = "`".repeat((longest + 1).max(3));
    let mut out = format!("{fence}{info}\n");
    for l in &lines {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str(&fence);
    out.push('\n');
    out
}

/// One field for HTML text or a quoted attribute value: made inert for the terminal first
/// (a control character shows as `^[`, as in the text report), then `&`, `<`, `>`, `"` and
/// `'` become entities, so no field can open a tag, an attribute or an entity.
pub fn html(s: &str) -> String {
    let s = terminal(s);
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn longest_run(s: &str, c: char) -> usize {
    let mut best = 0;
    let mut run = 0;
    for x in s.chars() {
        if x == c {
            run += 1;
            best = best.max(run);
        } else {
            run = 0;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_like_cat_v() {
        assert_eq!(terminal("a\x1b[2Jb\r\n\t\x7f"), "a^[[2Jb^M^J\t^?");
        assert_eq!(terminal("x\u{9b}31m"), "xM-^[31m");
        assert_eq!(terminal("abc\u{202E}fdp.exe"), "abc\\u{202E}fdp.exe");
        assert!(matches!(terminal("plain-pod-1 10.0.0.1"), Cow::Borrowed(_)));
        assert_eq!(terminal("ünïcode ✓"), "ünïcode ✓");
    }

    #[test]
    fn terminal_lines_keeps_newlines_only() {
        assert_eq!(terminal_lines("a\nb\x1b]0;t\x07\n"), "a\nb^[]0;t^G\n");
    }

    #[test]
    fn markdown_neutralises_structure() {
        assert_eq!(markdown("# h"), "\\# h");
        assert_eq!(markdown("[x](http://e.vil)"), "\\[x\\](http\\://e.vil)");
        assert_eq!(markdown("<img src=x>"), "\\<img src=x\\>");
        assert_eq!(markdown("a|b `c` *d* _e_"), "a\\|b \\`c\\` \\*d\\* \\_e\\_");
        assert_eq!(markdown("- item"), "\\- item");
        assert_eq!(markdown("> quote"), "\\> quote");
        assert_eq!(markdown("12. x"), "12\\. x");
        assert_eq!(markdown("10.244.1.8"), "10.244.1.8");
        assert_eq!(markdown("see www.e.vil"), "see www\\.e.vil");
        assert_eq!(markdown("&lt;"), "\\&lt;");
        assert_eq!(markdown("a\nb"), "a^Jb");
    }

    #[test]
    fn html_escapes_markup_and_controls() {
        assert_eq!(
            html("\"><img src=x onerror=alert(1)>"),
            "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"
        );
        assert_eq!(
            html("<script>a&b</script>"),
            "&lt;script&gt;a&amp;b&lt;/script&gt;"
        );
        assert_eq!(html("it's\x1b[2J\u{202E}"), "it&#39;s^[[2J\\u{202E}");
        assert_eq!(html("10.244.0.0/16"), "10.244.0.0/16");
    }

    #[test]
    fn code_block_fence_outlasts_content() {
        let block = markdown_code_block("text", &["a ``` b".into(), "````".into()]);
        assert!(block.starts_with("`````text\n"));
        assert!(block.ends_with("\n`````\n"));
        assert_eq!(
            markdown_code_block("text", &["x".into()]),
            "```text\nx\n```\n"
        );
    }
}
