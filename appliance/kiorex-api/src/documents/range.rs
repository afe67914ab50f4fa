//! The `Range` request header, for documents: one byte range (`bytes=0-1023`, `bytes=1024-`,
//! `bytes=-500`). Viewers page large PDFs and images with single ranges; a multi-range request
//! is answered with the whole document, which RFC 9110 allows.

/// What to send for a request's `Range` header against a document of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    Whole,
    /// Inclusive first and last byte.
    Part(u64, u64),
    /// 416: the range starts past the end.
    Unsatisfiable,
}

pub fn wanted(header: Option<&str>, size: u64) -> Wanted {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Wanted::Whole;
    };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Wanted::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let parsed = match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => last.parse::<u64>().ok().map(|n| {
            if n == 0 || size == 0 {
                None
            } else {
                Some((size.saturating_sub(n), size - 1))
            }
        }),
        (false, true) => first.parse::<u64>().ok().map(|a| Some((a, u64::MAX))),
        (false, false) => match (first.parse::<u64>(), last.parse::<u64>()) {
            (Ok(a), Ok(b)) if a <= b => Some(Some((a, b))),
            _ => None,
        },
        (true, true) => None,
    };
    match parsed {
        None => Wanted::Whole,
        Some(None) => Wanted::Unsatisfiable,
        Some(Some((a, _))) if a >= size => Wanted::Unsatisfiable,
        Some(Some((a, b))) => Wanted::Part(a, b.min(size - 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges_are_clamped_to_the_document() {
        assert_eq!(wanted(Some("bytes=0-99"), 1000), Wanted::Part(0, 99));
        assert_eq!(wanted(Some("bytes=900-"), 1000), Wanted::Part(900, 999));
        assert_eq!(wanted(Some("bytes=-100"), 1000), Wanted::Part(900, 999));
        assert_eq!(wanted(Some("bytes=990-5000"), 1000), Wanted::Part(990, 999));
        assert_eq!(wanted(Some("bytes=-5000"), 1000), Wanted::Part(0, 999));
    }

    #[test]
    fn odd_ranges_fall_back_or_are_refused() {
        assert_eq!(wanted(None, 10), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=0-1,5-6"), 10), Wanted::Whole);
        assert_eq!(wanted(Some("items=0-1"), 10), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=5-2"), 10), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=10-"), 10), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=-0"), 10), Wanted::Unsatisfiable);
    }
}
