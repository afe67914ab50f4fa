//! Medical record numbers: one sequence per facility, printed with the facility code and a
//! Luhn check digit so that a mistyped digit at the front desk is caught before a lookup.

use std::fmt;

/// A facility's medical record number, e.g. `GEN-0001234-7`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mrn(String);

impl Mrn {
    /// The MRN for the `sequence`-th patient registered at the facility with this code.
    pub fn new(facility_code: &str, sequence: u64) -> Self {
        let body = format!("{sequence:07}");
        Mrn(format!(
            "{facility_code}-{body}-{}",
            luhn_check_digit(&body)
        ))
    }

    /// Parses a typed MRN, refusing one whose check digit does not match.
    pub fn parse(input: &str) -> Result<Self, MrnError> {
        let trimmed = input.trim().to_ascii_uppercase();
        let mut parts = trimmed.rsplitn(3, '-');
        let (Some(check), Some(body), Some(code)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(MrnError::Format);
        };
        if code.is_empty() || body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MrnError::Format);
        }
        if check != luhn_check_digit(body).to_string() {
            return Err(MrnError::CheckDigit);
        }
        Ok(Mrn(trimmed))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Mrn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MrnError {
    #[error("an MRN looks like FACILITY-0000000-C")]
    Format,
    #[error("the MRN's check digit does not match: a digit was probably mistyped")]
    CheckDigit,
}

/// The Luhn (mod 10) check digit of a string of ASCII digits.
fn luhn_check_digit(digits: &str) -> u32 {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_mrn_parses_back() {
        let mrn = Mrn::new("GEN", 1234);
        assert_eq!(mrn.as_str(), "GEN-0001234-4");
        assert_eq!(Mrn::parse("gen-0001234-4"), Ok(mrn));
    }

    #[test]
    fn luhn_matches_the_reference_example() {
        // The classic Luhn example 7992739871 has check digit 3.
        assert_eq!(luhn_check_digit("7992739871"), 3);
    }

    #[test]
    fn mistyped_digit_is_caught() {
        assert_eq!(Mrn::parse("GEN-0001243-4"), Err(MrnError::CheckDigit));
        assert_eq!(Mrn::parse("GEN0001234"), Err(MrnError::Format));
    }
}
