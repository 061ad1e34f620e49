//! The texts people read, one TOML file per language in `web/locales` (embedded at build
//! time). Adding a language is adding one file; a missing text falls back to Vietnamese.

use std::collections::HashMap;
use std::sync::OnceLock;

include!(concat!(env!("OUT_DIR"), "/locales.rs"));

/// The default language.
pub const DEFAULT_LANG: &str = "vi";

/// One language's texts.
pub struct Language {
    pub code: &'static str,
    texts: HashMap<String, String>,
}

/// Every language.
pub struct Locales {
    languages: Vec<Language>,
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut HashMap<String, String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out),
            toml::Value::String(s) => {
                out.insert(key, s.clone());
            }
            other => {
                out.insert(key, other.to_string());
            }
        }
    }
}

/// The embedded languages, parsed once.
pub fn locales() -> &'static Locales {
    static LOCALES: OnceLock<Locales> = OnceLock::new();
    LOCALES.get_or_init(|| {
        let languages = LOCALE_FILES
            .iter()
            .map(|(code, text)| {
                let table: toml::Table =
                    toml::from_str(text).unwrap_or_else(|e| panic!("web/locales/{code}.toml: {e}"));
                let mut texts = HashMap::new();
                flatten("", &table, &mut texts);
                Language { code, texts }
            })
            .collect();
        Locales { languages }
    })
}

impl Locales {
    /// The language with this code, if there is one.
    pub fn find(&self, code: &str) -> Option<&Language> {
        self.languages.iter().find(|l| l.code == code)
    }

    /// The texts for a language, falling back to Vietnamese.
    pub fn texts(&'static self, code: &str) -> Texts {
        let lang = self
            .find(code)
            .or_else(|| self.find(DEFAULT_LANG))
            .expect("vi.toml exists");
        Texts {
            lang,
            fallback: self.find(DEFAULT_LANG).expect("vi.toml exists"),
        }
    }

    /// Every language.
    pub fn all(&self) -> &[Language] {
        &self.languages
    }

    /// Picks a language from an `Accept-Language` header, else the default.
    pub fn negotiate(&self, accept_language: &str) -> &'static str {
        for part in accept_language.split(',') {
            let tag = part.split(';').next().unwrap_or("").trim();
            let primary = tag.split('-').next().unwrap_or("").to_ascii_lowercase();
            if let Some(l) = self.find(&primary) {
                return l.code;
            }
        }
        DEFAULT_LANG
    }
}

impl Language {
    /// The language's own name ("Tiếng Việt", "English").
    pub fn name(&self) -> &str {
        self.texts
            .get("language.name")
            .map(String::as_str)
            .unwrap_or(self.code)
    }

    /// Every text key.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.texts.keys()
    }
}

/// The texts of one language, for one response.
#[derive(Clone, Copy)]
pub struct Texts {
    lang: &'static Language,
    fallback: &'static Language,
}

impl Texts {
    /// The language code.
    pub fn lang(&self) -> &'static str {
        self.lang.code
    }

    /// The text for `key` (the key itself when no language has it).
    pub fn get<'a>(&self, key: &'a str) -> &'a str
    where
        'static: 'a,
    {
        self.lang
            .texts
            .get(key)
            .or_else(|| self.fallback.texts.get(key))
            .map(String::as_str)
            .unwrap_or(key)
    }

    /// The text for `key` with `{name}` placeholders filled.
    pub fn fill(&self, key: &str, args: &[(&str, &str)]) -> String {
        let mut s = self.get(key).to_owned();
        for (name, value) in args {
            s = s.replace(&format!("{{{name}}}"), value);
        }
        s
    }
}

/// Vietnam's time (UTC+7, no daylight saving) of Unix milliseconds, as people read it.
pub fn local_time(ms: i64) -> String {
    use chrono::{FixedOffset, TimeZone};
    let tz = FixedOffset::east_opt(7 * 3600).expect("valid offset");
    tz.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%d/%m/%Y %H:%M").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_has_every_vietnamese_text() {
        let all = locales();
        let vi = all.find("vi").unwrap();
        assert!(all.all().len() >= 2);
        for lang in all.all() {
            for key in vi.keys() {
                assert!(
                    lang.texts.contains_key(key),
                    "{} lacks the text {key}",
                    lang.code
                );
            }
        }
    }

    /// The `{name}` placeholders of a text.
    fn placeholders(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else { break };
            out.push(&after[..close]);
            rest = &after[close + 1..];
        }
        out
    }

    /// Every source file a message can be rendered from: the code and the templates.
    fn sources() -> Vec<(String, String)> {
        fn walk(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                let path = e.path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|x| x == "rs" || x == "html") {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    out.push((path.display().to_string(), text));
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut out = Vec::new();
        walk(&root.join("src"), &mut out);
        walk(&root.join("web/templates"), &mut out);
        assert!(out.len() > 20, "the sources are found");
        out
    }

    /// The string literal starting `text` (after spaces), if it starts with one.
    fn literal(text: &str) -> Option<&str> {
        let t = text.trim_start();
        let t = t.strip_prefix('"')?;
        Some(&t[..t.find('"')?])
    }

    #[test]
    fn no_rendered_message_keeps_a_placeholder() {
        let all = locales();
        let vi = all.find("vi").unwrap();
        let mut problems = Vec::new();
        for (path, text) in sources() {
            // A text shown as it is (`get("key")`, a field error's `code: "key"`) must have
            // no placeholder in any language.
            for marker in ["get(", "code: "] {
                for (at, _) in text.match_indices(marker) {
                    // A template a script fills in the browser (the SMS counter).
                    if text[..at].ends_with("data-template=\"{{ t.") {
                        continue;
                    }
                    let Some(key) = literal(&text[at + marker.len()..]) else {
                        continue;
                    };
                    if !vi.texts.contains_key(key) {
                        continue;
                    }
                    for lang in all.all() {
                        let shown = lang.texts.get(key).map_or("", String::as_str);
                        if !placeholders(shown).is_empty() {
                            problems
                                .push(format!("{path}: {key} ({}) is shown unfilled", lang.code));
                        }
                    }
                }
            }
            // A filled text gets every placeholder it has.
            for (at, _) in text.match_indices("fill(") {
                let call = &text[at + 5..];
                let Some(key) = literal(call) else { continue };
                if !vi.texts.contains_key(key) {
                    continue;
                }
                let args = &call[..call.find("])").unwrap_or(call.len())];
                for lang in all.all() {
                    let shown = lang.texts.get(key).map_or("", String::as_str);
                    for name in placeholders(shown) {
                        if !args.contains(&format!("(\"{name}\"")) {
                            problems.push(format!(
                                "{path}: {key} ({}) leaves {{{name}}} unfilled",
                                lang.code
                            ));
                        }
                    }
                }
            }
        }
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn filling_removes_every_placeholder_of_the_limits() {
        for lang in locales().all() {
            let t = locales().texts(lang.code);
            for key in [
                "error.rate_limited",
                "error.rate_limited_check",
                "error.rate_limited_api",
                "console.login_locked",
                "console.totp_locked",
            ] {
                let text = t.fill(key, &[("minutes", "7")]);
                assert!(text.contains('7') && !text.contains('{'), "{key}: {text}");
            }
        }
    }

    #[test]
    fn negotiation_and_fallback() {
        let all = locales();
        assert_eq!(all.negotiate("en-US,en;q=0.9"), "en");
        assert_eq!(all.negotiate("fr"), "vi");
        assert_eq!(all.texts("xx").lang(), "vi");
        assert_eq!(all.texts("en").get("no.such.key"), "no.such.key");
    }
}
