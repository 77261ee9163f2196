//! Splitting a byte buffer into records without trusting it.
//!
//! Audit logs arrive as a JSON envelope (`{"Records":[…]}`, `{"records":[…]}`,
//! `{"value":[…]}`), a bare array, one JSON object per line, or one object. This
//! module finds record boundaries with a small scanner that understands strings,
//! escapes and nesting but does not build values, so a broken record costs one dead
//! letter instead of the whole file, and the records before a truncation point are
//! still delivered. `serde_json` cannot do this: its error on a truncated array
//! gives back nothing that was already parsed.

/// One framed piece of input: either a record's bytes or an unusable fragment.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// The bytes of one record (a JSON value), with its 1-based record number.
    Record(u64, &'a [u8]),
    /// Bytes that could not be framed, with the reason and a 1-based record number.
    Broken(u64, &'a [u8], String),
}

/// Splits `bytes` into frames. `envelope_keys` are the top-level object keys whose
/// array value holds the records (the first key present wins). Record numbers run
/// on across documents when several envelopes or arrays follow each other
/// (concatenated delivery files, multi-member gzip).
pub fn frames<'a>(bytes: &'a [u8], envelope_keys: &[&str]) -> Vec<Frame<'a>> {
    let mut out = Vec::new();
    visit_frames(bytes, envelope_keys, &mut out);
    out
}

/// Receives the frames of a buffer in order (see [`visit_frames`]).
pub trait FrameVisitor<'a> {
    /// Offered each element of a record array before it is scanned: `rest` starts
    /// at the element (record number `n`) and runs to the end of the input. A
    /// visitor that can parse the record from there handles it and returns its
    /// length, which saves scanning it twice; `None` (the default) lets the framer
    /// find its end and hand it to [`FrameVisitor::frame`].
    fn array_element(&mut self, n: u64, rest: &'a [u8]) -> Option<usize> {
        let _ = (n, rest);
        None
    }
    /// One frame.
    fn frame(&mut self, frame: Frame<'a>);
    /// Frames handed over so far (record numbers continue from it).
    fn count(&self) -> u64;
}

impl<'a> FrameVisitor<'a> for Vec<Frame<'a>> {
    fn frame(&mut self, frame: Frame<'a>) {
        self.push(frame);
    }
    fn count(&self) -> u64 {
        self.len() as u64
    }
}

/// [`frames`], handing each frame to `out` as it is found.
pub fn visit_frames<'a>(bytes: &'a [u8], envelope_keys: &[&str], out: &mut impl FrameVisitor<'a>) {
    let mut start = skip_bom_and_ws(bytes, 0);
    // After a complete envelope or array, whatever follows is framed too, instead of
    // being silently ignored.
    while start < bytes.len() {
        let next = match bytes[start] {
            b'[' => split_array(bytes, start, out),
            b'{' => match find_envelope_array(bytes, start, envelope_keys) {
                Some(array_at) => {
                    split_array(bytes, array_at, out).and_then(|end| end_of_envelope(bytes, end))
                }
                None if first_line_is_complete_value(bytes, start) => {
                    split_lines(&bytes[start..], out);
                    None
                }
                None => split_document(bytes, start, out),
            },
            _ => {
                split_lines(&bytes[start..], out);
                None
            }
        };
        match next {
            Some(end) => start = skip_bom_and_ws(bytes, end),
            None => break,
        }
    }
}

fn skip_bom_and_ws(bytes: &[u8], mut i: usize) -> usize {
    if bytes[i..].starts_with(b"\xEF\xBB\xBF") {
        i += 3;
    }
    skip_ws(bytes, i)
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && matches!(bytes[i], b' ' | b'\n' | b'\r' | b'\t') {
        i += 1;
    }
    i
}

/// True when the line starting at `start` holds exactly one complete JSON value and
/// more lines follow or the file ends: the signature of JSON-lines input.
fn first_line_is_complete_value(bytes: &[u8], start: usize) -> bool {
    let line_end = memchr::memchr(b'\n', &bytes[start..])
        .map(|p| start + p)
        .unwrap_or(bytes.len());
    match scan_value(&bytes[..line_end], start) {
        Ok(end) => skip_ws(bytes, end) >= line_end || bytes[skip_ws(bytes, end)] == b'\n',
        Err(_) => false,
    }
}

fn split_lines<'a>(bytes: &'a [u8], out: &mut impl FrameVisitor<'a>) {
    let mut record = out.count();
    let mut i = 0;
    while i < bytes.len() {
        let line_end = memchr::memchr(b'\n', &bytes[i..]).map_or(bytes.len(), |p| i + p);
        let mut next = line_end + 1;
        let trimmed = trim_ascii(&bytes[i..line_end]);
        if !trimmed.is_empty() {
            record += 1;
            let mut frame = trimmed;
            // A line that opens an object it does not close may be the first line of
            // a pretty-printed document among the lines: when the object closes at
            // the end of a later line, that is one record. (A line that ends with
            // `}` is taken as it is: no second scan of every ordinary line.)
            if trimmed[0] == b'{' && trimmed.last() != Some(&b'}') {
                let at = trimmed.as_ptr() as usize - bytes.as_ptr() as usize;
                if let Ok(end) = scan_value(bytes, at) {
                    let after = skip_ws_in_line(bytes, end);
                    if end > line_end && (after >= bytes.len() || bytes[after] == b'\n') {
                        frame = &bytes[at..end];
                        next = after + 1;
                    }
                }
            }
            out.frame(Frame::Record(record, frame));
        }
        i = next;
    }
}

fn skip_ws_in_line(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && matches!(bytes[i], b' ' | b'\r' | b'\t') {
        i += 1;
    }
    i
}

fn trim_ascii(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if first.is_ascii_whitespace() || *first == 0 {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if last.is_ascii_whitespace() || *last == 0 {
            s = rest;
        } else {
            break;
        }
    }
    s.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(s)
}

/// A document starting with `{` that is not an envelope (a pretty-printed object,
/// or objects back to back as `jq` and Vault's documentation write them): one
/// record. Returns where it ends, so the documents after it are framed too.
fn split_document<'a>(
    bytes: &'a [u8],
    start: usize,
    out: &mut impl FrameVisitor<'a>,
) -> Option<usize> {
    let record = out.count() + 1;
    match scan_value(bytes, start) {
        Ok(end) => {
            out.frame(Frame::Record(record, &bytes[start..end]));
            Some(end)
        }
        Err(e) => {
            out.frame(Frame::Broken(record, &bytes[start..], e.to_string()));
            None
        }
    }
}

/// Walks the top-level object's keys; returns the offset of the `[` of the first
/// envelope key's array value.
fn find_envelope_array(bytes: &[u8], start: usize, keys: &[&str]) -> Option<usize> {
    let mut i = skip_ws(bytes, start + 1);
    loop {
        if i >= bytes.len() || bytes[i] != b'"' {
            return None;
        }
        let key_end = scan_string(bytes, i).ok()?;
        let key = &bytes[i + 1..key_end - 1];
        i = skip_ws(bytes, key_end);
        if bytes.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(bytes, i + 1);
        if keys.iter().any(|k| k.as_bytes() == key) && bytes.get(i) == Some(&b'[') {
            return Some(i);
        }
        i = skip_ws(bytes, scan_value(bytes, i).ok()?);
        match bytes.get(i) {
            Some(b',') => i = skip_ws(bytes, i + 1),
            _ => return None,
        }
    }
}

/// Frames the records of the array opening at `open`; returns the offset just past
/// its `]` when the array is well-formed to its end.
fn split_array<'a>(bytes: &'a [u8], open: usize, out: &mut impl FrameVisitor<'a>) -> Option<usize> {
    let mut i = skip_ws(bytes, open + 1);
    let mut record = out.count();
    if bytes.get(i) == Some(&b']') {
        return Some(i + 1);
    }
    loop {
        record += 1;
        if i >= bytes.len() {
            out.frame(Frame::Broken(
                record,
                &bytes[bytes.len()..],
                "input ends inside the record array (truncated file?)".into(),
            ));
            return None;
        }
        let scanned = match out.array_element(record, &bytes[i..]) {
            Some(len) => Ok(i + len),
            None => scan_value(bytes, i).inspect(|&end| {
                out.frame(Frame::Record(record, &bytes[i..end]));
            }),
        };
        match scanned {
            Ok(end) => {
                i = skip_ws(bytes, end);
                match bytes.get(i) {
                    Some(b',') => i = skip_ws(bytes, i + 1),
                    Some(b']') => return Some(i + 1),
                    None => {
                        out.frame(Frame::Broken(
                            record + 1,
                            &bytes[i..],
                            "input ends inside the record array (truncated file?)".into(),
                        ));
                        return None;
                    }
                    Some(&c) => {
                        out.frame(Frame::Broken(
                            record + 1,
                            &bytes[i..],
                            format!(
                                "expected `,` or `]` between records at byte {i}, found {:?}",
                                c as char
                            ),
                        ));
                        return None;
                    }
                }
            }
            Err(e) => {
                out.frame(Frame::Broken(record, &bytes[i..], e.to_string()));
                return None;
            }
        }
    }
}

/// Walks the envelope's members after its record array (which ends at `i`); returns
/// the offset just past the envelope's `}`, or `None` when the rest is not well-formed.
fn end_of_envelope(bytes: &[u8], mut i: usize) -> Option<usize> {
    loop {
        i = skip_ws(bytes, i);
        match bytes.get(i)? {
            b'}' => return Some(i + 1),
            b',' => {
                i = skip_ws(bytes, i + 1);
                if bytes.get(i) != Some(&b'"') {
                    return None;
                }
                i = skip_ws(bytes, scan_string(bytes, i).ok()?);
                if bytes.get(i) != Some(&b':') {
                    return None;
                }
                i = scan_value(bytes, skip_ws(bytes, i + 1)).ok()?;
            }
            _ => return None,
        }
    }
}

/// Why a value could not be framed.
#[derive(Debug)]
pub(crate) enum ScanError {
    Truncated(usize),
    Unexpected(usize, u8),
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScanError::Truncated(start) => write!(
                f,
                "JSON value starting at byte {start} is cut off before its end (truncated input?)"
            ),
            ScanError::Unexpected(at, c) => {
                write!(
                    f,
                    "invalid JSON: unexpected byte {:?} at byte {at}",
                    *c as char
                )
            }
        }
    }
}

fn scan_string(bytes: &[u8], start: usize) -> Result<usize, ScanError> {
    let mut i = start + 1;
    loop {
        match memchr::memchr2(b'"', b'\\', &bytes[i.min(bytes.len())..]) {
            None => return Err(ScanError::Truncated(start)),
            Some(p) => {
                i += p;
                if bytes[i] == b'\\' {
                    i += 2;
                } else {
                    return Ok(i + 1);
                }
            }
        }
    }
}

/// End offset (exclusive) of the JSON value starting at `start`.
pub(crate) fn scan_value(bytes: &[u8], start: usize) -> Result<usize, ScanError> {
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i = scan_string(bytes, i)?;
                if depth == 0 {
                    return Ok(i);
                }
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                if depth == 0 {
                    return Err(ScanError::Unexpected(i, bytes[i]));
                }
                depth -= 1;
                if depth == 0 {
                    return Ok(i + 1);
                }
            }
            c if depth == 0 => {
                if !(c.is_ascii_alphanumeric() || c == b'-' || c == b'+' || c == b'.') {
                    return Err(ScanError::Unexpected(i, c));
                }
                let mut j = i;
                while j < bytes.len()
                    && (bytes[j].is_ascii_alphanumeric() || matches!(bytes[j], b'-' | b'+' | b'.'))
                {
                    j += 1;
                }
                return Ok(j);
            }
            _ => {}
        }
        i += 1;
    }
    Err(ScanError::Truncated(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(bytes: &[u8]) -> Vec<String> {
        frames(bytes, &["Records"])
            .into_iter()
            .map(|f| match f {
                Frame::Record(n, b) => format!("{n}:{}", String::from_utf8_lossy(b)),
                Frame::Broken(n, _, why) => format!("{n}!{why}"),
            })
            .collect()
    }

    #[test]
    fn envelope_array_is_split() {
        let got = records(br#"{"Records":[{"a":"x]}"},{"b":[1,{"c":"\""}]}, 3]}"#);
        assert_eq!(
            got,
            vec![r#"1:{"a":"x]}"}"#, r#"2:{"b":[1,{"c":"\""}]}"#, "3:3"]
        );
    }

    #[test]
    fn envelope_key_need_not_be_first() {
        let got = records(br#"{"x":{"Records":1},"Records":[{"a":1}]}"#);
        assert_eq!(got, vec![r#"1:{"a":1}"#]);
    }

    #[test]
    fn truncated_envelope_keeps_complete_records() {
        let got = records(br#"{"Records":[{"a":1},{"b":2},{"c":"#);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], r#"1:{"a":1}"#);
        assert!(got[2].starts_with("3!"), "{got:?}");
    }

    #[test]
    fn json_lines_are_split_by_line() {
        let got = records(b"{\"a\":1}\n\n{\"b\":2}\nnot json\n");
        assert_eq!(got, vec![r#"1:{"a":1}"#, r#"2:{"b":2}"#, "3:not json"]);
    }

    #[test]
    fn pretty_single_object_is_one_record() {
        let got = records(b"{\n  \"eventID\": \"x\"\n}\n");
        assert_eq!(got, vec!["1:{\n  \"eventID\": \"x\"\n}"]);
    }

    #[test]
    fn concatenated_envelopes_are_all_split() {
        let got = records(
            b"{\"Records\":[{\"a\":1}],\"x\":2}\n{\"Records\":[{\"b\":2}]}[{\"c\":3}] tail",
        );
        assert_eq!(
            got,
            vec![r#"1:{"a":1}"#, r#"2:{"b":2}"#, r#"3:{"c":3}"#, "4:tail"]
        );
    }

    #[test]
    fn concatenated_documents_are_each_a_record() {
        // Pretty-printed objects one after another (as `jq` writes them), and `}{`.
        let pretty: String = (0..12)
            .map(|i| format!("{{\n  \"n\": {i},\n  \"s\": \"}}{{\"\n}}\n"))
            .collect();
        let got = records(pretty.as_bytes());
        assert_eq!(got.len(), 12, "{got:?}");
        assert!(got.iter().all(|r| !r.contains('!')), "{got:?}");
        assert_eq!(got[11], "12:{\n  \"n\": 11,\n  \"s\": \"}{\"\n}");
        let got = records(br#"{"a":1}{"b":2} {"c":3}"#);
        assert_eq!(got, vec![r#"1:{"a":1}"#, r#"2:{"b":2}"#, r#"3:{"c":3}"#]);
        // A broken document after good ones costs only itself and what follows it.
        let got = records(b"{\n \"a\":1\n}\n{\"b\":\n");
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[1].starts_with("2!"), "{got:?}");
    }

    #[test]
    fn json_lines_may_hold_a_pretty_printed_document() {
        let got = records(b"{\"a\":1}\n{\n  \"b\": 2\n}\n{\"c\":3}\n{\"d\":\n");
        assert_eq!(
            got,
            vec![
                r#"1:{"a":1}"#,
                "2:{\n  \"b\": 2\n}",
                r#"3:{"c":3}"#,
                // A truncated line stays one record (the parser dead-letters it).
                r#"4:{"d":"#
            ]
        );
    }

    /// A record for the property below: a few string fields whose values may hold
    /// JSON's own punctuation and newlines.
    fn object() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        proptest::collection::btree_map("[a-z]{1,6}", "[ -~\n{}\\[\\]\"]{0,12}", 1..4)
            .prop_map(|m| serde_json::to_value(m).unwrap())
    }

    proptest::proptest! {
        /// Any mix of envelopes, bare arrays, pretty-printed objects and objects back
        /// to back, then any mix of JSON lines and pretty-printed objects, is read
        /// record for record, in order.
        #[test]
        fn mixed_documents_are_read_record_for_record(
            head in proptest::collection::vec((0u8..4, proptest::collection::vec(object(), 1..4)), 0..6),
            tail in proptest::collection::vec((0u8..2, object()), 0..6),
        ) {
            let mut text = String::new();
            let mut want = Vec::new();
            for (shape, objects) in &head {
                match shape {
                    0 => text.push_str(&serde_json::json!({ "Records": objects }).to_string()),
                    1 => text.push_str(&serde_json::to_string_pretty(objects).unwrap()),
                    2 => text.push_str(&serde_json::to_string_pretty(&objects[0]).unwrap()),
                    _ => text.push_str(&objects[0].to_string()),
                }
                match shape {
                    0 | 1 => want.extend(objects.iter().cloned()),
                    _ => want.push(objects[0].clone()),
                }
            }
            if !tail.is_empty() {
                text.push('\n');
            }
            for (shape, object) in &tail {
                match shape {
                    0 => text.push_str(&object.to_string()),
                    _ => text.push_str(&serde_json::to_string_pretty(object).unwrap()),
                }
                text.push('\n');
                want.push(object.clone());
            }
            let got: Vec<serde_json::Value> = frames(text.as_bytes(), &["Records"])
                .into_iter()
                .map(|f| match f {
                    Frame::Record(_, b) => serde_json::from_slice(b).unwrap_or_else(|e| {
                        panic!("{e}: {:?} in {text:?}", String::from_utf8_lossy(b))
                    }),
                    Frame::Broken(_, b, why) => {
                        panic!("{why}: {:?} in {text:?}", String::from_utf8_lossy(b))
                    }
                })
                .collect();
            proptest::prop_assert_eq!(got, want, "{}", text);
        }
    }

    #[test]
    fn bare_array_is_split() {
        let got = records(b"[{\"a\":1}, {\"b\":2}]");
        assert_eq!(got.len(), 2);
    }
}
