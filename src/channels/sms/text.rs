//! What an SMS costs: GSM-7 and UCS-2 segments, and the text made ready for a gateway
//! (composed, and without diacritics when configured so).

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// The GSM 03.38 default alphabet, in table order, without the escape code (0x1B).
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                         ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// The GSM 03.38 extension table: each costs an escape septet plus its own.
const GSM_EXTENSION: &str = "\u{0C}^{}\\[~]|€";

/// Septets one character takes in GSM 7-bit, or `None` when it needs UCS-2.
fn gsm_septets(c: char) -> Option<usize> {
    if GSM_BASIC.contains(c) {
        Some(1)
    } else if GSM_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// What a text costs as SMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    /// Whether the text needs UCS-2 (any character outside GSM 03.38, such as
    /// Vietnamese letters with diacritics).
    pub ucs2: bool,
    /// Length in the encoding's units: septets for GSM 7-bit (extension characters such
    /// as `€` or `{` count two), UTF-16 code units for UCS-2.
    pub chars: usize,
    /// Messages it is sent as (an empty text still takes one).
    pub segments: usize,
}

/// Counts the SMS segments a text takes: GSM 7-bit fits 160 septets in one message and
/// 153 per part when concatenated; UCS-2 fits 70 code units, 67 per part. A part never
/// splits an escape sequence or a surrogate pair, as handsets do not.
pub fn segments(text: &str) -> Segments {
    let gsm: Option<Vec<usize>> = text.chars().map(gsm_septets).collect();
    match gsm {
        Some(units) => pack(&units, 160, 153, false),
        None => {
            let units: Vec<usize> = text.chars().map(char::len_utf16).collect();
            pack(&units, 70, 67, true)
        }
    }
}

/// Fills parts of `per_part` units with indivisible characters of `units` each.
fn pack(units: &[usize], single: usize, per_part: usize, ucs2: bool) -> Segments {
    let chars = units.iter().sum();
    let segments = if chars <= single {
        1
    } else {
        let (mut parts, mut used) = (1, 0);
        for &u in units {
            if used + u > per_part {
                parts += 1;
                used = 0;
            }
            used += u;
        }
        parts
    };
    Segments {
        ucs2,
        chars,
        segments,
    }
}

/// Removes diacritics: "Công an xã Hoàng Văn Thụ" becomes "Cong an xa Hoang Van Thu",
/// and đ/Đ (a letter of its own, not a combined mark) become d/D. Other text is kept.
pub fn strip_diacritics(s: &str) -> String {
    s.nfd()
        .filter(|&c| !is_combining_mark(c))
        .map(|c| match c {
            'đ' => 'd',
            'Đ' => 'D',
            _ => c,
        })
        .nfc()
        .collect()
}

/// Readies a text for SMS. Always composes it (NFC), so a UCS-2 message is as short as
/// it can be. With `strip` (the `sms.strip_diacritics` setting) it also removes
/// diacritics and turns typographic punctuation (curly quotes, dashes, ellipsis,
/// no-break space, tab) into plain GSM characters, so that a Vietnamese text travels in
/// 160-character GSM messages instead of 70-character UCS-2 ones.
pub fn prepare_text(text: &str, strip: bool) -> String {
    let composed: String = text.nfc().collect();
    if !strip {
        return composed;
    }
    let stripped = strip_diacritics(&composed);
    let mut out = String::with_capacity(stripped.len());
    for c in stripped.chars() {
        match c {
            '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' | '\u{2032}' => out.push('\''),
            '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' | '\u{2033}' => out.push('"'),
            '\u{2010}'..='\u{2015}' | '\u{2212}' => out.push('-'),
            '\u{2026}' => out.push_str("..."),
            '\u{00A0}' | '\u{2007}' | '\u{202F}' | '\t' => out.push(' '),
            '\u{2022}' => out.push('*'),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn gsm_segments_at_the_boundaries() {
        for (n, parts) in [
            (0, 1),
            (1, 1),
            (160, 1),
            (161, 2),
            (306, 2),
            (307, 3),
            (459, 3),
            (460, 4),
        ] {
            let s = segments(&"a".repeat(n));
            assert_eq!(
                s,
                Segments {
                    ucs2: false,
                    chars: n,
                    segments: parts
                },
                "{n}"
            );
        }
    }

    #[test]
    fn ucs2_segments_at_the_boundaries() {
        for (n, parts) in [(70, 1), (71, 2), (134, 2), (135, 3)] {
            let s = segments(&"ạ".repeat(n));
            assert_eq!(
                s,
                Segments {
                    ucs2: true,
                    chars: n,
                    segments: parts
                },
                "{n}"
            );
        }
    }

    #[test]
    fn extension_characters_count_two_septets_and_never_split() {
        assert_eq!(segments(&"€".repeat(80)).segments, 1);
        assert_eq!(segments(&"€".repeat(80)).chars, 160);
        assert_eq!(segments(&"€".repeat(81)).segments, 2);
        assert_eq!(segments(&format!("{}{{", "a".repeat(159))).segments, 2);
        // 306 septets, but the escape pair cannot straddle parts one and two.
        let s = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(
            segments(&s),
            Segments {
                ucs2: false,
                chars: 306,
                segments: 3
            }
        );
        assert!(!segments("^{}\\[~]|€\u{0C}").ucs2);
    }

    #[test]
    fn surrogate_pairs_count_two_units_and_never_split() {
        assert_eq!(
            segments(&"😀".repeat(35)),
            Segments {
                ucs2: true,
                chars: 70,
                segments: 1
            }
        );
        assert_eq!(segments(&"😀".repeat(36)).segments, 2);
        let s = format!("{}😀{}", "ạ".repeat(66), "ạ".repeat(66));
        assert_eq!(
            segments(&s),
            Segments {
                ucs2: true,
                chars: 134,
                segments: 3
            }
        );
    }

    #[test]
    fn gsm_alphabet_is_complete_and_vietnamese_needs_ucs2() {
        assert_eq!(GSM_BASIC.chars().count(), 127);
        assert_eq!(GSM_EXTENSION.chars().count(), 10);
        assert!(!segments("Hello @ £5, Ñandù? ¡Sì! Øre, àèéìòù ÄÖÜäöüÇÉÅåÆæß").ucs2);
        assert!(segments("Công an xã").ucs2);
        assert!(!segments("Cong an xa").ucs2);
        assert!(segments("“quoted”").ucs2);
        // Acute accents other than é are not in the alphabet.
        assert!(segments("Sí").ucs2);
    }

    #[test]
    fn strip_diacritics_keeps_vietnamese_readable() {
        assert_eq!(
            strip_diacritics("Công an xã Hoàng Văn Thụ"),
            "Cong an xa Hoang Van Thu"
        );
        assert_eq!(strip_diacritics("Đường đến UBND"), "Duong den UBND");
        assert_eq!(
            strip_diacritics("ĂÂÊÔƠƯ ăâêôơư ỳýỷỹỵ ỜỚỞỠỢ"),
            "AAEOOU aaeoou yyyyy OOOOO"
        );
        // Decomposed input strips the same way.
        assert_eq!(strip_diacritics("Co\u{0302}\u{0301}ng"), "Cong");
        assert_eq!(strip_diacritics("plain text 123"), "plain text 123");
    }

    #[test]
    fn prepare_text_makes_gsm_when_stripping() {
        let text = "Biên nhận: “1234-5678” — cảm ơn…\tđã báo tin.";
        let prepared = prepare_text(text, true);
        assert_eq!(prepared, "Bien nhan: \"1234-5678\" - cam on... da bao tin.");
        assert!(!segments(&prepared).ucs2);
        // Without stripping the text stays as written, composed.
        assert_eq!(prepare_text("Co\u{0302}\u{0301}ng “a”", false), "Cống “a”");
    }

    proptest! {
        #[test]
        fn segments_never_panic_and_fit_their_parts(text in ".{0,400}") {
            let s = segments(&text);
            prop_assert!(s.segments >= 1);
            let per = if s.ucs2 { 67 } else { 153 };
            prop_assert!(s.segments <= 1 || s.chars <= s.segments * per);
            let prepared = prepare_text(&text, true);
            let _ = segments(&prepared);
        }
    }
}
