//! HTTP `Range` requests (RFC 9110 §14) on a body of known length. Pure.
//!
//! One range is served; a header we do not understand, or several ranges,
//! is ignored and the whole body sent (which the RFC allows).

/// Bytes `start..end` (end exclusive) of a body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The `Content-Range` value of this range of a body of `total` bytes.
    pub fn content_range(&self, total: u64) -> String {
        format!("bytes {}-{}/{total}", self.start, self.end - 1)
    }
}

/// What to send for a `Range` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeAnswer {
    /// 200, the whole body.
    Whole,
    /// 206, this part.
    Part(ByteRange),
    /// 416: no byte of the body is in the range.
    Unsatisfiable,
}

/// Answers `header` for a body of `total` bytes.
pub fn answer(header: Option<&str>, total: u64) -> RangeAnswer {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else { return RangeAnswer::Whole };
    if spec.contains(',') {
        return RangeAnswer::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return RangeAnswer::Whole };
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let range = match (first.trim(), last.trim()) {
        // suffix: the last n bytes
        ("", n) => match num(n) {
            Some(0) => return RangeAnswer::Unsatisfiable,
            Some(n) => ByteRange { start: total.saturating_sub(n), end: total },
            None => return RangeAnswer::Whole,
        },
        (a, "") => match num(a) {
            Some(a) => ByteRange { start: a, end: total },
            None => return RangeAnswer::Whole,
        },
        (a, b) => match (num(a), num(b)) {
            (Some(a), Some(b)) if a <= b => ByteRange { start: a, end: total.min(b.saturating_add(1)) },
            _ => return RangeAnswer::Whole,
        },
    };
    if range.start >= total {
        return RangeAnswer::Unsatisfiable;
    }
    RangeAnswer::Part(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(start: u64, end: u64) -> RangeAnswer {
        RangeAnswer::Part(ByteRange { start, end })
    }

    #[test]
    fn ranges() {
        assert_eq!(answer(None, 100), RangeAnswer::Whole);
        assert_eq!(answer(Some("bytes=0-9"), 100), part(0, 10));
        assert_eq!(answer(Some("bytes=90-"), 100), part(90, 100));
        assert_eq!(answer(Some("bytes=-10"), 100), part(90, 100));
        assert_eq!(answer(Some("bytes=-1000"), 100), part(0, 100));
        assert_eq!(answer(Some("bytes=50-1000"), 100), part(50, 100));
        assert_eq!(answer(Some("bytes=100-"), 100), RangeAnswer::Unsatisfiable);
        assert_eq!(answer(Some("bytes=-0"), 100), RangeAnswer::Unsatisfiable);
        assert_eq!(answer(Some("bytes=0-0"), 0), RangeAnswer::Unsatisfiable);
        assert_eq!(part(90, 100), answer(Some("bytes=90-99"), 100));
        assert_eq!(ByteRange { start: 90, end: 100 }.content_range(100), "bytes 90-99/100");
    }

    #[test]
    fn what_we_do_not_understand_gets_the_whole_body() {
        for h in ["bytes=0-1,5-6", "items=0-1", "bytes=9-1", "bytes=a-b", "bytes=", "bytes=--1", "bytes=+1-2"] {
            assert_eq!(answer(Some(h), 100), RangeAnswer::Whole, "{h}");
        }
    }
}
