//! The bots' data: `bots/tip.toml` (steps, commands, SMS keywords) and one text file per
//! language (`bots/vi.toml`, `bots/en.toml`), embedded at build time and checked at start.

use crate::geo::fold;
use serde::Deserialize;
use std::collections::HashMap;

include!(concat!(env!("OUT_DIR"), "/bot_texts.rs"));

const TIP_FILE: &str = include_str!("../../bots/tip.toml");

/// What a step asks for; the engine knows how to check each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Category,
    Commune,
    Text,
    Photos,
    Confirm,
}

/// One step of the tip conversation.
#[derive(Debug, Clone, Deserialize)]
pub struct Step {
    /// The draft field it fills (`category`, `commune`, `village`, `description`, `photos`).
    pub name: String,
    pub kind: StepKind,
    /// Text key of its question.
    pub prompt: String,
    #[serde(default)]
    pub optional: bool,
    #[serde(default)]
    pub min_chars: usize,
    #[serde(default = "default_max_chars")]
    pub max_chars: usize,
    /// Most photos.
    #[serde(default = "default_max")]
    pub max: usize,
    /// Most communes offered when several match.
    #[serde(default = "default_max_choices")]
    pub max_choices: usize,
}

fn default_max_chars() -> usize {
    5000
}
fn default_max() -> usize {
    5
}
fn default_max_choices() -> usize {
    9
}

/// The command words, folded.
#[derive(Debug, Clone, Deserialize)]
pub struct Commands {
    pub new: Vec<String>,
    pub check: Vec<String>,
    pub reply: Vec<String>,
    pub subscribe: Vec<String>,
    pub stop: Vec<String>,
    pub help: Vec<String>,
    pub cancel: Vec<String>,
    pub skip: Vec<String>,
    pub done: Vec<String>,
    pub yes: Vec<String>,
    pub no: Vec<String>,
}

/// SMS keywords (a whole tip in one message).
#[derive(Debug, Clone, Deserialize)]
pub struct SmsWords {
    pub tip_keywords: Vec<String>,
    pub check_keywords: Vec<String>,
    pub stop_keywords: Vec<String>,
    pub subscribe_keywords: Vec<String>,
    pub min_chars: usize,
}

#[derive(Debug, Clone, Deserialize)]
struct TipFile {
    default_language: String,
    idle_expiry_hours: i64,
    commands: Commands,
    languages: HashMap<String, Vec<String>>,
    steps: Vec<Step>,
    sms: SmsWords,
}

/// The loaded bot: steps, words and texts.
#[derive(Debug, Clone)]
pub struct Bot {
    pub default_language: String,
    pub idle_expiry_hours: i64,
    pub commands: Commands,
    pub steps: Vec<Step>,
    pub sms: SmsWords,
    languages: Vec<(String, Vec<String>)>,
    texts: HashMap<String, HashMap<String, String>>,
}

/// A problem in the bots' data files.
#[derive(Debug, thiserror::Error)]
#[error("bots/: {0}")]
pub struct BotError(String);

fn fold_all(words: &mut [String]) {
    for w in words {
        *w = fold(w);
    }
}

impl Bot {
    /// The bot shipped in `bots/`.
    pub fn shipped() -> Result<Bot, BotError> {
        Bot::parse(TIP_FILE, BOT_TEXT_FILES)
    }

    /// Parses and checks the bot: every step kind known, every text key present in every
    /// language.
    pub fn parse(tip: &str, text_files: &[(&str, &str)]) -> Result<Bot, BotError> {
        let mut f: TipFile = toml::from_str(tip).map_err(|e| BotError(format!("tip.toml: {e}")))?;
        let c = &mut f.commands;
        for list in [
            &mut c.new,
            &mut c.check,
            &mut c.reply,
            &mut c.subscribe,
            &mut c.stop,
            &mut c.help,
            &mut c.cancel,
            &mut c.skip,
            &mut c.done,
            &mut c.yes,
            &mut c.no,
        ] {
            fold_all(list);
        }
        let s = &mut f.sms;
        for list in [
            &mut s.tip_keywords,
            &mut s.check_keywords,
            &mut s.stop_keywords,
            &mut s.subscribe_keywords,
        ] {
            fold_all(list);
        }
        let mut languages: Vec<(String, Vec<String>)> = f.languages.into_iter().collect();
        for (_, words) in &mut languages {
            fold_all(words);
        }
        languages.sort();
        let mut texts = HashMap::new();
        for (code, text) in text_files {
            let table: toml::Table =
                toml::from_str(text).map_err(|e| BotError(format!("{code}.toml: {e}")))?;
            let map = table
                .into_iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_owned())))
                .collect::<HashMap<_, _>>();
            texts.insert((*code).to_owned(), map);
        }
        let Some(default) = texts.get(&f.default_language) else {
            return Err(BotError(format!(
                "no text file for the default language {}",
                f.default_language
            )));
        };
        for (code, map) in &texts {
            if let Some(missing) = default.keys().find(|k| !map.contains_key(*k)) {
                return Err(BotError(format!("{code}.toml lacks the text {missing}")));
            }
            if let Some(extra) = map.keys().find(|k| !default.contains_key(*k)) {
                return Err(BotError(format!(
                    "{code}.toml has {extra}, which {}.toml lacks",
                    f.default_language
                )));
            }
        }
        for step in &f.steps {
            if !default.contains_key(&step.prompt) {
                return Err(BotError(format!(
                    "step {} asks {}, which has no text",
                    step.name, step.prompt
                )));
            }
        }
        if f.steps.last().map(|s| s.kind) != Some(StepKind::Confirm) {
            return Err(BotError("the last step must be a confirm step".into()));
        }
        Ok(Bot {
            default_language: f.default_language,
            idle_expiry_hours: f.idle_expiry_hours,
            commands: f.commands,
            steps: f.steps,
            sms: f.sms,
            languages,
            texts,
        })
    }

    /// The text `key` in `lang` (the default language when `lang` is unknown).
    pub fn text<'a>(&'a self, lang: &str, key: &'a str) -> &'a str {
        self.texts
            .get(lang)
            .or_else(|| self.texts.get(&self.default_language))
            .and_then(|m| m.get(key))
            .map(String::as_str)
            .unwrap_or(key)
    }

    /// The text `key` with `{name}` placeholders filled.
    pub fn fill(&self, lang: &str, key: &str, args: &[(&str, &str)]) -> String {
        let mut s = self.text(lang, key).to_owned();
        for (name, value) in args {
            s = s.replace(&format!("{{{name}}}"), value);
        }
        s
    }

    /// The language a folded message asks to switch to, if it is a language word.
    pub fn language_word(&self, folded: &str) -> Option<&str> {
        self.languages
            .iter()
            .find(|(code, words)| {
                self.texts.contains_key(code) && words.iter().any(|w| w == folded)
            })
            .map(|(code, _)| code.as_str())
    }

    /// Whether `lang` has texts.
    pub fn has_language(&self, lang: &str) -> bool {
        self.texts.contains_key(lang)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_bot_loads_with_the_same_texts_in_every_language() {
        let bot = Bot::shipped().unwrap();
        assert!(bot.has_language("vi") && bot.has_language("en"));
        assert_eq!(bot.steps.len(), 6);
        assert!(bot.commands.new.contains(&"moi".to_owned()));
        assert_eq!(bot.language_word("english"), Some("en"));
        assert!(bot.text("en", "receipt").contains("{receipt}"));
        assert_eq!(bot.text("xx", "receipt"), bot.text("vi", "receipt"));
    }

    #[test]
    fn a_missing_text_is_refused() {
        let err = Bot::parse(
            TIP_FILE,
            &[("vi", BOT_TEXT_FILES[1].1), ("en", "name = \"x\"")],
        )
        .unwrap_err();
        assert!(err.to_string().contains("lacks"), "{err}");
    }
}
