//! Name normalisation shared by search indexing and duplicate matching.

use unicode_normalization::UnicodeNormalization;

/// Folds a name for comparison: Unicode compatibility decomposition, accents removed, lower case,
/// runs of punctuation and white space collapsed to one space. "José  O'Neil" → "jose o neil".
pub fn fold(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending_space = false;
    for c in name.nfkd().filter(|c| !is_combining_mark(*c)) {
        if c.is_alphanumeric() {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.extend(c.to_lowercase());
        } else {
            pending_space = true;
        }
    }
    out
}

/// Combining diacritical marks (the ranges NFKD produces for Latin, Greek, Cyrillic and
/// Vietnamese accents).
fn is_combining_mark(c: char) -> bool {
    matches!(c as u32, 0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
}

/// Keeps only the digits of a phone number, dropping a leading international `00`, so that
/// "+44 20 7946 0958" and "0044-20-7946-0958" compare equal.
pub fn phone_digits(phone: &str) -> String {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    digits
        .strip_prefix("00")
        .map(str::to_owned)
        .unwrap_or(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_accents_case_and_punctuation() {
        assert_eq!(fold("José  O'Neil"), "jose o neil");
        assert_eq!(fold("MÜLLER"), "muller");
        assert_eq!(fold("Nguyễn"), "nguyen");
        assert_eq!(fold("  -Anne-Marie "), "anne marie");
    }

    #[test]
    fn phone_digits_ignore_formatting() {
        assert_eq!(
            phone_digits("+44 20 7946 0958"),
            phone_digits("0044-20-7946-0958")
        );
        assert_eq!(phone_digits("(555) 010-2030"), "5550102030");
    }
}
