//! What a file is, judged by its first bytes and never by its name or the client's
//! Content-Type: an executable called `referral.pdf` is still an executable.

/// The kinds of document Kiorex accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocType {
    Pdf,
    Png,
    Jpeg,
    Tiff,
    /// Plain UTF-8 text.
    Text,
    /// XML, such as an HL7 CDA document.
    Xml,
}

impl DocType {
    pub fn mime(self) -> &'static str {
        match self {
            DocType::Pdf => "application/pdf",
            DocType::Png => "image/png",
            DocType::Jpeg => "image/jpeg",
            DocType::Tiff => "image/tiff",
            DocType::Text => "text/plain; charset=utf-8",
            DocType::Xml => "application/xml",
        }
    }
}

/// Why a file is not accepted, in words for the person uploading it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotAllowed(pub String);

pub const ALLOWED: &str = "PDF, PNG, JPEG, TIFF, plain text or XML (CDA)";

/// How many leading bytes [`detect`] looks at.
pub const HEAD_LEN: usize = 8192;

/// Classifies a file from its first [`HEAD_LEN`] bytes (fewer for short files).
pub fn detect(head: &[u8]) -> Result<DocType, NotAllowed> {
    if head.is_empty() {
        return Err(NotAllowed("the file is empty".into()));
    }
    if let Some(kind) = infer::get(head) {
        return match kind.mime_type() {
            "application/pdf" => Ok(DocType::Pdf),
            "image/png" => Ok(DocType::Png),
            "image/jpeg" => Ok(DocType::Jpeg),
            "image/tiff" => Ok(DocType::Tiff),
            "text/xml" | "application/xml" => Ok(DocType::Xml),
            other => Err(NotAllowed(format!(
                "the file's content is {other}, which is not accepted; send {ALLOWED}"
            ))),
        };
    }
    let text = utf8_prefix(head).ok_or_else(|| {
        NotAllowed(format!(
            "the file's content is not a recognised document type; send {ALLOWED}"
        ))
    })?;
    let body = text.trim_start_matches('\u{feff}').trim_start();
    if body.starts_with("<?xml") || body.starts_with("<ClinicalDocument") {
        return Ok(DocType::Xml);
    }
    if body.starts_with('<') && body.to_ascii_lowercase().contains("<html") {
        return Err(NotAllowed(format!(
            "HTML pages are not accepted (they can carry scripts); send {ALLOWED}"
        )));
    }
    Ok(DocType::Text)
}

/// The head as text when it is UTF-8 without control characters other than layout ones; a
/// multi-byte character cut at the end of the head is allowed.
fn utf8_prefix(head: &[u8]) -> Option<&str> {
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(e) if e.error_len().is_none() && head.len() - e.valid_up_to() < 4 => {
            std::str::from_utf8(&head[..e.valid_up_to()]).ok()?
        }
        Err(_) => return None,
    };
    let layout = |c: char| matches!(c, '\t' | '\n' | '\r' | '\x0c');
    (!text.chars().any(|c| c.is_control() && !layout(c))).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_types_are_recognised_by_content() {
        assert_eq!(detect(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"), Ok(DocType::Pdf));
        assert_eq!(detect(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Ok(DocType::Png));
        assert_eq!(detect(b"\xff\xd8\xff\xe0\0\x10JFIF\0"), Ok(DocType::Jpeg));
        assert_eq!(detect(b"II*\0\x08\0\0\0\x10\0\0\0"), Ok(DocType::Tiff));
        assert_eq!(
            detect("Lettre de sortie — Dr Müller\n".as_bytes()),
            Ok(DocType::Text)
        );
        assert_eq!(
            detect(b"\xef\xbb\xbf<?xml version=\"1.0\"?><ClinicalDocument/>"),
            Ok(DocType::Xml)
        );
    }

    #[test]
    fn executables_and_other_binaries_are_refused_whatever_their_name() {
        let mut elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0".to_vec();
        elf.resize(64, 0);
        assert!(detect(&elf).unwrap_err().0.contains("not accepted"));
        assert!(detect(b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff").is_err());
        assert!(detect(b"PK\x03\x04\x14\0\0\0").is_err());
        assert!(detect(b"\0\x01\x02\x03 random").is_err());
        assert!(detect(b"<!DOCTYPE html><html><script>").is_err());
        assert!(detect(b"").is_err());
    }

    #[test]
    fn a_multibyte_character_cut_by_the_head_is_still_text() {
        let mut head = "é".repeat(10).into_bytes();
        head.pop();
        assert_eq!(detect(&head), Ok(DocType::Text));
    }
}
