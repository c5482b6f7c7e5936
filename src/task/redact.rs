//! Redaction of secret values (docs/secrets.md): every occurrence of a value, of its base64
//! forms and of its URL-encoded forms becomes `[secret:NAME]`.
//!
//! Output arrives in pieces, and a value may be split across two of them; `StreamRedactor`
//! holds back the end of a piece while it could still be the start of a value, and only that
//! (the longest suffix that is a proper prefix of some pattern, at most the longest pattern
//! less one byte), so output that holds no secret passes through undelayed. base64 encodes
//! three bytes as four characters, so a value inside a larger encoded text shows one of three
//! encodings depending on where it starts; each is a pattern (the characters that depend on
//! the value alone).
//!
//! Redaction is a safety net against accidents (a token echoed into a log), not a boundary: a
//! command that has the value can print it in any other encoding.

use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine;

/// The shortest value taskbox redacts: shorter ones would match ordinary output.
pub const MIN_SECRET_BYTES: usize = 8;

/// One secret: its name and its value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    pub name: String,
    pub value: Vec<u8>,
}

impl std::fmt::Debug for Secret {
    /// Never the value, so that no log line can hold it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({})", self.name)
    }
}

/// The patterns of a set of secrets and what replaces each.
pub struct Redactor {
    /// `None` with no secrets: everything passes through untouched.
    matcher: Option<AhoCorasick>,
    /// (pattern, index of the secret's name), in the matcher's pattern order.
    patterns: Vec<(Vec<u8>, usize)>,
    /// `[secret:NAME]` per secret.
    replacements: Vec<Vec<u8>>,
    names: Vec<String>,
    longest: usize,
    /// Which bytes start a pattern: a suffix starting elsewhere is never held back.
    starts: [bool; 256],
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({:?})", self.names)
    }
}

impl Redactor {
    /// Redacts nothing.
    pub fn none() -> Self {
        Self {
            matcher: None,
            patterns: Vec::new(),
            replacements: Vec::new(),
            names: Vec::new(),
            longest: 0,
            starts: [false; 256],
        }
    }

    /// Fails only when the patterns pass the matcher's size limits (megabytes of patterns).
    pub fn new(secrets: &[Secret]) -> Result<Self, String> {
        let mut patterns: Vec<(Vec<u8>, usize)> = Vec::new();
        for (index, secret) in secrets.iter().enumerate() {
            for form in forms(&secret.value) {
                // A pattern two secrets share is the first one's.
                if !form.is_empty() && !patterns.iter().any(|(p, _)| *p == form) {
                    patterns.push((form, index));
                }
            }
        }
        if patterns.is_empty() {
            return Ok(Self::none());
        }
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(patterns.iter().map(|(p, _)| p))
            .map_err(|e| format!("cannot build the secrets' matcher: {e}"))?;
        let mut starts = [false; 256];
        for (pattern, _) in &patterns {
            starts[usize::from(pattern[0])] = true;
        }
        Ok(Self {
            matcher: Some(matcher),
            longest: patterns.iter().map(|(p, _)| p.len()).max().unwrap_or(0),
            replacements: secrets
                .iter()
                .map(|s| format!("[secret:{}]", s.name).into_bytes())
                .collect(),
            names: secrets.iter().map(|s| s.name.clone()).collect(),
            patterns,
            starts,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The secrets' names, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Every pattern, with the name of its secret.
    pub fn patterns(&self) -> impl Iterator<Item = (&[u8], &str)> {
        self.patterns
            .iter()
            .map(|(p, i)| (p.as_slice(), self.names[*i].as_str()))
    }

    /// The longest pattern, in bytes.
    pub fn longest(&self) -> usize {
        self.longest
    }

    /// `bytes` with every pattern replaced (the whole text at once).
    pub fn redact(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len());
        let end = self.redact_into(bytes, bytes.len(), &mut out);
        out.extend_from_slice(&bytes[end..]);
        out
    }

    /// `String` form of `redact`, for text already decoded.
    pub fn redact_text(&self, text: &str) -> String {
        if self.is_empty() {
            return text.to_string();
        }
        String::from_utf8_lossy(&self.redact(text.as_bytes())).into_owned()
    }

    /// Whether `bytes` holds a pattern.
    pub fn finds(&self, bytes: &[u8]) -> bool {
        self.matcher.as_ref().is_some_and(|m| m.is_match(bytes))
    }

    /// Appends to `out` the redacted bytes of `bytes` before `boundary` (and through the end
    /// of a match that starts before it); returns where it stopped.
    fn redact_into(&self, bytes: &[u8], boundary: usize, out: &mut Vec<u8>) -> usize {
        let Some(matcher) = &self.matcher else {
            out.extend_from_slice(&bytes[..boundary]);
            return boundary;
        };
        let mut at = 0;
        for found in matcher.find_iter(bytes) {
            if found.start() >= boundary {
                break;
            }
            out.extend_from_slice(&bytes[at..found.start()]);
            let secret = self.patterns[found.pattern().as_usize()].1;
            out.extend_from_slice(&self.replacements[secret]);
            at = found.end();
        }
        let end = boundary.max(at);
        out.extend_from_slice(&bytes[at..end]);
        end
    }

    /// How many bytes at the end of `bytes` could be the start of a pattern (the longest
    /// suffix that is a proper prefix of one).
    pub fn held_back(&self, bytes: &[u8]) -> usize {
        let most = self.longest.saturating_sub(1).min(bytes.len());
        for k in (1..=most).rev() {
            let suffix = &bytes[bytes.len() - k..];
            if !self.starts[usize::from(suffix[0])] {
                continue;
            }
            if self.patterns.iter().any(|(p, _)| p.len() > k && p.starts_with(suffix)) {
                return k;
            }
        }
        0
    }
}

/// Redaction of a stream read in pieces.
pub struct StreamRedactor {
    redactor: Arc<Redactor>,
    carry: Vec<u8>,
}

impl StreamRedactor {
    pub fn new(redactor: Arc<Redactor>) -> Self {
        Self {
            redactor,
            carry: Vec::new(),
        }
    }

    /// The redacted output of `chunk` that is certain so far; the rest waits for the next
    /// piece (or `finish`).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.redactor.is_empty() {
            return chunk.to_vec();
        }
        let mut buffer = std::mem::take(&mut self.carry);
        buffer.extend_from_slice(chunk);
        let boundary = buffer.len() - self.redactor.held_back(&buffer);
        let mut out = Vec::with_capacity(buffer.len());
        let end = self.redactor.redact_into(&buffer, boundary, &mut out);
        buffer.drain(..end);
        self.carry = buffer;
        out
    }

    /// What was held back, redacted: the stream ended.
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.carry);
        self.redactor.redact(&rest)
    }
}

/// The texts a value shows as: itself, its base64 encodings (standard and URL-safe alphabets,
/// at each of the three alignments), and its URL encoding (upper- and lower-case hex).
pub fn forms(value: &[u8]) -> Vec<Vec<u8>> {
    let mut forms = vec![value.to_vec()];
    if value.is_empty() {
        return forms;
    }
    let n = value.len();
    for engine in [
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        for k in 0..3usize {
            let mut data = vec![0u8; k];
            data.extend_from_slice(value);
            let encoded = engine.encode(&data).into_bytes();
            // Character i covers bits 6i..6i+6 of `data`; keep those within the value's bits.
            let start = (8 * k).div_ceil(6);
            let end = (8 * (k + n)) / 6;
            if start < end {
                forms.push(encoded[start..end].to_vec());
            }
        }
    }
    for hex in [b"0123456789ABCDEF", b"0123456789abcdef"] {
        let mut encoded = Vec::with_capacity(n * 3);
        for &b in value {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                encoded.push(b);
            } else {
                encoded.extend_from_slice(&[b'%', hex[usize::from(b >> 4)], hex[usize::from(b & 15)]]);
            }
        }
        forms.push(encoded);
    }
    forms.sort();
    forms.dedup();
    forms
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    fn redactor(pairs: &[(&str, &str)]) -> Arc<Redactor> {
        Arc::new(
            Redactor::new(
                &pairs
                    .iter()
                    .map(|(n, v)| Secret {
                        name: n.to_string(),
                        value: v.as_bytes().to_vec(),
                    })
                    .collect::<Vec<_>>(),
            )
            .unwrap(),
        )
    }

    fn streamed(r: &Arc<Redactor>, pieces: &[&[u8]]) -> String {
        let mut stream = StreamRedactor::new(r.clone());
        let mut out = Vec::new();
        for piece in pieces {
            out.extend(stream.push(piece));
        }
        out.extend(stream.finish());
        String::from_utf8(out).unwrap()
    }

    const VALUE: &str = "tok-3xAmPle/v@lue+42";

    #[test]
    fn the_value_and_its_encodings_are_replaced() {
        let r = redactor(&[("TOKEN", VALUE)]);
        assert_eq!(r.redact_text(&format!("a {VALUE} b")), "a [secret:TOKEN] b");
        // `echo $TOKEN | base64`: the value and a newline, at every alignment.
        for prefix in ["", "x", "xy", "xyz"] {
            let encoded = STANDARD.encode(format!("{prefix}{VALUE}\n"));
            let out = r.redact_text(&encoded);
            assert!(out.contains("[secret:TOKEN]"), "{prefix:?}: {encoded} -> {out}");
            assert!(out.len() < encoded.len(), "{out}");
        }
        let url = "tok-3xAmPle%2Fv%40lue%2B42";
        assert_eq!(r.redact_text(&format!("?t={url}&")), "?t=[secret:TOKEN]&");
        assert_eq!(r.redact_text("?t=tok-3xAmPle%2fv%40lue%2b42&"), "?t=[secret:TOKEN]&");
        assert_eq!(r.redact_text("nothing here"), "nothing here");
    }

    #[test]
    fn a_value_split_across_pieces_is_replaced_and_other_output_is_not_held() {
        let r = redactor(&[("TOKEN", VALUE)]);
        let text = format!("before {VALUE} after");
        let bytes = text.as_bytes();
        // Every split point, and every split into single bytes.
        for cut in 0..=bytes.len() {
            assert_eq!(
                streamed(&r, &[&bytes[..cut], &bytes[cut..]]),
                "before [secret:TOKEN] after",
                "cut at {cut}"
            );
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(streamed(&r, &singles), "before [secret:TOKEN] after");
        // base64 split across pieces.
        let encoded = STANDARD.encode(format!("{VALUE}\n"));
        let (a, b) = encoded.split_at(9);
        assert!(streamed(&r, &[a.as_bytes(), b.as_bytes()]).contains("[secret:TOKEN]"));
        // Output that cannot start the value passes at once; a possible start waits.
        let mut stream = StreamRedactor::new(r.clone());
        assert_eq!(stream.push(b"prompt> "), b"prompt> ");
        assert_eq!(stream.push(b"x tok-3x"), b"x ");
        assert_eq!(stream.push(b"yz"), b"tok-3xyz");
        assert_eq!(stream.finish(), b"");
    }

    #[test]
    fn several_secrets_get_their_own_names_and_nothing_redacts_nothing() {
        let r = redactor(&[("A", "first-secret-1"), ("B", "second-secret-2")]);
        assert_eq!(r.redact_text("first-secret-1 second-secret-2"), "[secret:A] [secret:B]");
        let none = Arc::new(Redactor::none());
        assert!(none.is_empty());
        assert_eq!(streamed(&none, &[b"abc", b"def"]), "abcdef");
    }

    #[test]
    fn held_back_is_the_longest_possible_start() {
        let r = redactor(&[("T", "abcdefgh")]);
        assert_eq!(r.held_back(b"zzzabc"), 3);
        assert_eq!(r.held_back(b"zzz"), 0);
        // A whole value is no start (a suffix of it may be the start of an encoded form).
        assert!(r.held_back(b"abcdefgh") < 8);
        assert!(r.longest() >= 8);
    }

    #[test]
    fn a_secrets_debug_form_has_no_value() {
        let s = Secret {
            name: "T".into(),
            value: b"hunter2hunter2".to_vec(),
        };
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
