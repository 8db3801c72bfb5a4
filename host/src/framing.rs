//! Cutting a response body into events, incrementally, from raw bytes as they arrive.
//!
//! Server-sent events follow the HTML living standard's parsing rules: lines end in LF, CRLF or
//! a lone CR (also when the CR and LF arrive in different reads); `data:` lines of one event are
//! joined with LF; a single space after the colon is dropped; comments (`:...`) and the `event`,
//! `id` and `retry` fields are ignored; a blank line dispatches the event; `[DONE]` ends the
//! stream. An event still pending when the body ends (no closing blank line) is dispatched by
//! [`Framer::finish`]. Newline-delimited JSON is one event per non-blank line.
//!
//! The framer works on bytes and never decodes text, so a UTF-8 character split across two
//! reads is simply reassembled in the line buffer. Callers timestamp each read before they
//! push it; every event completed by that read carries the read's timestamp.
//!
//! Nothing after `[DONE]` is an event. An event (a line, an SSE event's data, a whole body)
//! longer than the framer's limit ends the framing with [`Event::TooLarge`], so a hostile
//! body without a newline cannot grow memory without bound.

use perf_plugin_api::Framing;

/// One framed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// An event's payload (SSE data, an NDJSON line, or the whole body).
    Data(&'a [u8]),
    /// The SSE `[DONE]` sentinel.
    Done,
    /// An event grew past the framer's limit; nothing follows.
    TooLarge,
}

/// Room on an SSE line for its field name, colon and space besides the data.
const SSE_FIELD_SLACK: usize = 64;

/// An incremental framer for one response body.
#[derive(Debug)]
pub struct Framer {
    framing: Framing,
    /// Bytes of a line not yet terminated (or the whole body without framing).
    line: Vec<u8>,
    /// The data lines of the SSE event being assembled.
    data: Vec<u8>,
    has_data: bool,
    /// The previous read ended in CR: an LF at the start of the next read belongs to it.
    skip_lf: bool,
    /// The longest event, in bytes.
    max_event: usize,
    /// `[DONE]` came, or an event was too large: the rest of the body is not framed.
    ended: bool,
}

impl Framer {
    /// A framer for `framing` whose events are at most `max_event` bytes.
    pub fn new(framing: Framing, max_event: usize) -> Self {
        Framer {
            framing,
            line: Vec::new(),
            data: Vec::new(),
            has_data: false,
            skip_lf: false,
            max_event,
            ended: false,
        }
    }

    /// Whether the framing ended (`[DONE]`, or an event too large).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The longest line: an NDJSON line is an event; an SSE line may also hold its field name
    /// (`data: `) before the event's data, whose own limit `sse_line` checks.
    fn max_line(&self) -> usize {
        match self.framing {
            Framing::Sse => self.max_event.saturating_add(SSE_FIELD_SLACK),
            _ => self.max_event,
        }
    }

    fn overflow(&mut self, on_event: &mut dyn FnMut(Event<'_>)) {
        self.ended = true;
        self.line = Vec::new();
        self.data = Vec::new();
        self.has_data = false;
        on_event(Event::TooLarge);
    }

    /// Feeds one read; calls `on_event` for every event it completes.
    pub fn push(&mut self, bytes: &[u8], on_event: &mut dyn FnMut(Event<'_>)) {
        if self.ended {
            return;
        }
        if self.line.len() + bytes.len() > self.max_event && self.framing == Framing::None {
            return self.overflow(on_event);
        }
        if self.framing == Framing::None {
            self.line.extend_from_slice(bytes);
            return;
        }
        self.push_lines(bytes, on_event);
        if !self.ended && (self.line.len() > self.max_line() || self.data.len() > self.max_event) {
            self.overflow(on_event);
        }
    }

    fn push_lines(&mut self, mut bytes: &[u8], on_event: &mut dyn FnMut(Event<'_>)) {
        if self.skip_lf {
            self.skip_lf = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        while let Some(pos) = memchr::memchr2(b'\n', b'\r', bytes) {
            let (head, rest) = bytes.split_at(pos);
            let terminator = rest[0];
            bytes = &rest[1..];
            if terminator == b'\r' {
                match bytes.first() {
                    Some(b'\n') => bytes = &bytes[1..],
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
            if self.ended {
                return;
            }
            // A line past the limit, even one that a single read completes.
            if self.line.len() + head.len() > self.max_line() {
                return self.overflow(on_event);
            }
            if self.line.is_empty() {
                self.line_complete(head, on_event);
            } else {
                self.line.extend_from_slice(head);
                let line = std::mem::take(&mut self.line);
                self.line_complete(&line, on_event);
                self.line = line;
                self.line.clear();
            }
        }
        self.line.extend_from_slice(bytes);
    }

    /// The body ended: dispatches whatever is pending.
    pub fn finish(&mut self, on_event: &mut dyn FnMut(Event<'_>)) {
        if self.ended {
            return;
        }
        let line = std::mem::take(&mut self.line);
        match self.framing {
            Framing::None => {
                if !line.is_empty() {
                    on_event(Event::Data(&line));
                }
            }
            _ => {
                if line.len() > self.max_line() {
                    return self.overflow(on_event);
                }
                if !line.is_empty() {
                    self.line_complete(&line, on_event);
                }
                // The last line may have ended the framing (its data past the limit).
                if self.framing == Framing::Sse && !self.ended {
                    self.dispatch(on_event);
                }
            }
        }
    }

    fn line_complete(&mut self, line: &[u8], on_event: &mut dyn FnMut(Event<'_>)) {
        match self.framing {
            Framing::NdJson if !line.iter().all(u8::is_ascii_whitespace) => {
                on_event(Event::Data(line));
            }
            Framing::Sse => self.sse_line(line, on_event),
            // `None`, and framings the worker refuses before sending.
            _ => {}
        }
    }

    fn sse_line(&mut self, line: &[u8], on_event: &mut dyn FnMut(Event<'_>)) {
        if line.is_empty() {
            self.dispatch(on_event);
            return;
        }
        if line[0] == b':' {
            return; // comment
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        if field == b"data" {
            // The event's data lines together past the limit.
            if self.data.len() + usize::from(self.has_data) + value.len() > self.max_event {
                return self.overflow(on_event);
            }
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
    }

    fn dispatch(&mut self, on_event: &mut dyn FnMut(Event<'_>)) {
        if !self.has_data {
            return;
        }
        self.has_data = false;
        if self.data.trim_ascii() == b"[DONE]" {
            self.ended = true;
            on_event(Event::Done);
        } else {
            on_event(Event::Data(&self.data));
        }
        self.data.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(framing: Framing, reads: &[&[u8]]) -> Vec<String> {
        frame_limited(framing, usize::MAX, reads)
    }

    fn frame_limited(framing: Framing, max: usize, reads: &[&[u8]]) -> Vec<String> {
        let mut f = Framer::new(framing, max);
        let mut out = Vec::new();
        let mut push = |e: Event<'_>| {
            out.push(match e {
                Event::Data(d) => String::from_utf8(d.to_vec()).expect("utf-8"),
                Event::Done => "<DONE>".into(),
                Event::TooLarge => "<TOO LARGE>".into(),
            })
        };
        for r in reads {
            f.push(r, &mut push);
        }
        f.finish(&mut push);
        out
    }

    #[test]
    fn several_events_in_one_read() {
        let got = frame(
            Framing::Sse,
            &[b"data: {\"a\":1}\n\ndata: {\"a\":2}\n\ndata: [DONE]\n\n"],
        );
        assert_eq!(got, vec!["{\"a\":1}", "{\"a\":2}", "<DONE>"]);
    }

    #[test]
    fn an_event_split_across_every_byte() {
        let body = b"data: {\"t\":\"x\"}\r\n\r\ndata: [DONE]\r\n\r\n";
        let reads: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(frame(Framing::Sse, &reads), vec!["{\"t\":\"x\"}", "<DONE>"]);
    }

    #[test]
    fn utf8_split_across_reads_is_reassembled() {
        let body = "data: {\"t\":\"héllo 世界\"}\n\n".as_bytes();
        let cut = body.iter().position(|&b| b >= 0x80).expect("multibyte") + 1;
        let got = frame(Framing::Sse, &[&body[..cut], &body[cut..]]);
        assert_eq!(got, vec!["{\"t\":\"héllo 世界\"}"]);
    }

    #[test]
    fn multi_line_data_comments_and_other_fields() {
        let got = frame(
            Framing::Sse,
            &[b": keep-alive\nevent: message\nid: 7\nretry: 100\ndata: line1\ndata:line2\n\n"],
        );
        assert_eq!(got, vec!["line1\nline2"]);
    }

    #[test]
    fn lone_cr_line_endings_and_cr_lf_split_between_reads() {
        assert_eq!(
            frame(Framing::Sse, &[b"data: a\r\rdata: b\r", b"\n\r\n"]),
            vec!["a", "b"]
        );
    }

    #[test]
    fn last_event_without_a_closing_blank_line() {
        assert_eq!(
            frame(Framing::Sse, &[b"data: {\"x\":1}\n\ndata: {\"x\":2}"]),
            vec!["{\"x\":1}", "{\"x\":2}"]
        );
    }

    #[test]
    fn events_without_data_dispatch_nothing() {
        assert!(frame(Framing::Sse, &[b"event: ping\n\n: only a comment\n\n"]).is_empty());
    }

    #[test]
    fn ndjson_lines_with_crlf_blank_lines_and_a_missing_final_newline() {
        let got = frame(
            Framing::NdJson,
            &[b"{\"a\":1}\r\n\n  \n{\"a\"", b":2}\n{\"a\":3}"],
        );
        assert_eq!(got, vec!["{\"a\":1}", "{\"a\":2}", "{\"a\":3}"]);
    }

    #[test]
    fn unframed_bodies_are_one_event() {
        assert_eq!(
            frame(Framing::None, &[b"{\"a\":", b"1}\n"]),
            vec!["{\"a\":1}\n"]
        );
    }

    #[test]
    fn nothing_after_done_is_an_event() {
        assert_eq!(
            frame(
                Framing::Sse,
                &[
                    b"data: a\n\ndata: [DONE]\n\ndata: late\n\n",
                    b"data: later\n\n"
                ]
            ),
            ["a", "<DONE>"]
        );
    }

    #[test]
    fn an_event_past_the_limit_ends_the_framing() {
        assert_eq!(
            frame_limited(Framing::Sse, 8, &[b"data: ok\n\ndata: 0123", b"456789"]),
            ["ok", "<TOO LARGE>"]
        );
        assert_eq!(
            frame_limited(Framing::NdJson, 8, &[b"{}\n", b"0123456789", b"\n{}\n"]),
            ["{}", "<TOO LARGE>"]
        );
        assert_eq!(
            frame_limited(Framing::None, 8, &[b"01234", b"56789"]),
            ["<TOO LARGE>"]
        );
        assert_eq!(
            frame_limited(Framing::None, 8, &[b"0123", b"4567"]),
            ["01234567"]
        );
    }

    /// Found by the fuzz target: events past the limit that one read completes.
    #[test]
    fn an_event_past_the_limit_within_one_read() {
        // Data lines that together pass the limit, dispatched by the same read.
        assert_eq!(
            frame_limited(
                Framing::Sse,
                8,
                &[b"data: 01234
data: 56789

data: x

"]
            ),
            ["<TOO LARGE>"]
        );
        // An NDJSON line past the limit with its newline in the same read.
        assert_eq!(
            frame_limited(
                Framing::NdJson,
                8,
                &[b"{}
0123456789
{}
"]
            ),
            ["{}", "<TOO LARGE>"]
        );
        // Data of exactly the limit after its field name is fine.
        assert_eq!(
            frame_limited(
                Framing::Sse,
                8,
                &[b"data: 01234567

"]
            ),
            ["01234567"]
        );
    }

    /// Found by the fuzz target: the body's last line, without its newline, passes the limit
    /// while an earlier data line of the same event waits; nothing may follow `TooLarge`.
    #[test]
    fn a_last_line_past_the_limit_ends_the_framing() {
        assert_eq!(
            frame_limited(Framing::Sse, 8, &[b"data: 0123\ndata: 456789"]),
            ["<TOO LARGE>"]
        );
    }
}
