//! Receipts: 16 random digits shown as 4-4-4-4, the tipster's only way back to a tip.

use std::fmt;

/// A receipt as typed or generated; holds exactly 16 ASCII digits.
#[derive(Clone, PartialEq, Eq)]
pub struct Receipt(String);

/// A receipt that could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a receipt is 16 digits")]
pub struct ReceiptError;

impl Receipt {
    /// A fresh receipt from the operating system's random source (about 53 bits).
    pub fn generate() -> Self {
        let mut digits = String::with_capacity(16);
        while digits.len() < 16 {
            let bytes: [u8; 32] = super::random_bytes();
            // Rejection sampling keeps every digit uniform.
            for b in bytes.into_iter().filter(|b| *b < 250) {
                if digits.len() == 16 {
                    break;
                }
                digits.push(char::from(b'0' + b % 10));
            }
        }
        Receipt(digits)
    }

    /// Parses what a person typed: spaces, dashes and dots between digits are ignored.
    pub fn parse(input: &str) -> Result<Self, ReceiptError> {
        let mut digits = String::with_capacity(16);
        for c in input.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '\u{a0}' | '\t' => {}
                _ => return Err(ReceiptError),
            }
            if digits.len() > 16 {
                return Err(ReceiptError);
            }
        }
        if digits.len() == 16 {
            Ok(Receipt(digits))
        } else {
            Err(ReceiptError)
        }
    }

    /// The 16 digits without separators.
    pub fn digits(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Receipt {
    /// Shows the receipt as `1234-5678-9012-3456`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.0;
        write!(f, "{}-{}-{}-{}", &d[0..4], &d[4..8], &d[8..12], &d[12..16])
    }
}

impl fmt::Debug for Receipt {
    /// Never prints the digits, so a receipt cannot reach a log by accident.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Receipt(****)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_receipts_are_16_digits_in_groups() {
        let r = Receipt::generate();
        assert_eq!(r.digits().len(), 16);
        let shown = r.to_string();
        assert_eq!(shown.len(), 19);
        assert_eq!(Receipt::parse(&shown).unwrap(), r);
        assert_ne!(Receipt::generate(), r);
    }

    #[test]
    fn parse_accepts_separators_and_refuses_the_rest() {
        assert!(Receipt::parse("1234 5678 9012 3456").is_ok());
        assert!(Receipt::parse(" 1234.5678.9012.3456 ").is_ok());
        assert!(Receipt::parse("1234-5678-9012-345").is_err());
        assert!(Receipt::parse("1234-5678-9012-34567").is_err());
        assert!(Receipt::parse("abcd-5678-9012-3456").is_err());
        assert!(Receipt::parse("").is_err());
        assert_eq!(
            format!("{:?}", Receipt::parse("1234567890123456").unwrap()),
            "Receipt(****)"
        );
    }
}
