//! Text for search, from PDFs (lopdf: pure Rust, maintained, no system libraries, reads the
//! text operators page by page) and from plain text. Scanned PDFs without a text layer give
//! nothing; that is expected, not an error.

use crate::sniff::DocType;
use std::path::Path;

/// The most text kept per document; past it the index would not get better.
pub const MAX_TEXT_BYTES: usize = 256 * 1024;
/// PDFs larger than this are not parsed for text (lopdf loads the whole file).
pub const MAX_PDF_BYTES: u64 = 64 * 1024 * 1024;

/// The searchable text of a document, if it has any. Blocking: run it off the async threads.
pub fn extract_text(path: &Path, doc_type: DocType, size: u64) -> Option<String> {
    let text = match doc_type {
        DocType::Text => {
            let mut bytes = Vec::new();
            use std::io::Read;
            std::fs::File::open(path)
                .ok()?
                .take(MAX_TEXT_BYTES as u64)
                .read_to_end(&mut bytes)
                .ok()?;
            String::from_utf8_lossy(&bytes).into_owned()
        }
        DocType::Pdf if size <= MAX_PDF_BYTES => pdf_text(path)?,
        _ => return None,
    };
    let text = normalise(&text);
    (!text.is_empty()).then_some(text)
}

fn pdf_text(path: &Path) -> Option<String> {
    let document = lopdf::Document::load(path).ok()?;
    let pages: Vec<u32> = document.get_pages().keys().copied().collect();
    document.extract_text(&pages).ok()
}

/// Collapses runs of whitespace and cuts at [`MAX_TEXT_BYTES`] on a character boundary.
fn normalise(text: &str) -> String {
    let mut out = String::new();
    for word in text.split_whitespace() {
        if out.len() + word.len() + 1 > MAX_TEXT_BYTES {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_kept_with_whitespace_collapsed() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            file.path(),
            "Discharge  letter\n\nDiagnosis:\tappendicitis\n",
        )
        .unwrap();
        assert_eq!(
            extract_text(file.path(), DocType::Text, 40).as_deref(),
            Some("Discharge letter Diagnosis: appendicitis")
        );
    }

    #[test]
    fn images_have_no_text_and_broken_pdfs_give_none() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), b"%PDF-1.4 broken").unwrap();
        assert_eq!(extract_text(file.path(), DocType::Pdf, 15), None);
        assert_eq!(extract_text(file.path(), DocType::Png, 15), None);
    }
}
