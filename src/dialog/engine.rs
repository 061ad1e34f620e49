//! The conversation engine: one pure step from (state, message) to (new state, answers,
//! an action for the service to carry out). It knows the step kinds; the steps, words and
//! texts come from `bots/`. No I/O here, so every path is tested directly.

use super::bot::{Bot, Step, StepKind};
use crate::channels::{InboundKind, PhotoRef};
use crate::crypto::Receipt;
use crate::geo::{fold, Geo};
use crate::tips::Category;
use serde::{Deserialize, Serialize};

/// The tip being written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Draft {
    pub category: Option<String>,
    pub commune: Option<i64>,
    /// The commune's name with its province, as the person picked it.
    pub commune_name: Option<String>,
    pub village: Option<String>,
    pub description: Option<String>,
    /// Where to fetch each photo once the tip is sent.
    pub photos: Vec<PhotoRef>,
    /// Latitude, longitude, when the person shared a location.
    pub location: Option<(f64, f64)>,
}

/// Where the conversation stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub enum Mode {
    #[default]
    Idle,
    /// Writing a tip, at this step.
    Tip { step: usize },
    /// Waiting for a receipt to check.
    CheckAsk,
    /// Waiting for the receipt of the tip to add to.
    ReplyAskReceipt,
    /// Waiting for the text to add (to the tip of this receipt, or to the chat's open tip).
    /// The receipt is held only as the reference [`Context::receipt_ref`] makes of it.
    ReplyAskText { receipt_ref: Option<String> },
    /// Waiting for the village to subscribe to.
    SubscribeAsk,
}

/// A conversation's state, sealed at rest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DialogState {
    pub lang: String,
    pub mode: Mode,
    pub draft: Draft,
    /// Commune codes offered as numbered choices.
    pub choices: Vec<i64>,
    /// Whether this person was greeted already.
    pub greeted: bool,
}

/// What the service must do after a step.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send the tip.
    Submit(Draft),
    /// Show the status of the tip with this receipt (16 digits).
    Check(String),
    /// Add to a tip: by receipt (as [`Context::receipt_ref`] refers to it), or the open
    /// tip this chat sent.
    Reply {
        receipt_ref: Option<String>,
        text: String,
        photos: Vec<PhotoRef>,
    },
    /// Free text outside any step: an addition to this chat's open tip if it has one,
    /// otherwise a pointer to the help.
    Idle { text: String, photos: Vec<PhotoRef> },
    /// Subscribe to a village's broadcasts.
    Subscribe(String),
    /// Opt out of everything and forget this person.
    Stop,
}

/// The result of one step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Turn {
    pub replies: Vec<String>,
    pub action: Option<Action>,
}

/// What the engine needs to know about the world.
pub struct Context<'a> {
    pub geo: &'a Geo,
    /// Whether this chat has an open tip to add to.
    pub has_open_tip: bool,
    /// What the conversation keeps of a receipt it must remember (a keyed one-way
    /// reference, never the digits: the state is stored).
    pub receipt_ref: &'a (dyn Fn(&Receipt) -> String + Sync),
}

fn matches(words: &[String], folded: &str) -> bool {
    words.iter().any(|w| w == folded)
}

/// A number typed as an answer, 1-based.
fn choice(folded: &str, len: usize) -> Option<usize> {
    folded
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=len).contains(n))
        .map(|n| n - 1)
}

impl DialogState {
    /// A fresh conversation in `lang`.
    pub fn new(lang: &str) -> DialogState {
        DialogState {
            lang: lang.to_owned(),
            ..DialogState::default()
        }
    }
}

/// Runs one message through the conversation.
pub fn step(bot: &Bot, state: &mut DialogState, input: &InboundKind, ctx: &Context) -> Turn {
    if !bot.has_language(&state.lang) {
        state.lang = bot.default_language.clone();
    }
    let mut turn = Turn::default();
    let (text, photos, location) = match input {
        InboundKind::Follow => {
            state.greeted = true;
            turn.replies
                .push(bot.text(&state.lang, "welcome").to_owned());
            turn.replies.push(bot.text(&state.lang, "help").to_owned());
            return turn;
        }
        InboundKind::Unfollow => {
            *state = DialogState::new(&state.lang);
            turn.action = Some(Action::Stop);
            return turn;
        }
        InboundKind::Message {
            text,
            photos,
            location,
        } => (text.trim(), photos, *location),
    };
    let folded = fold(text);
    let lang = state.lang.clone();
    let say = |key: &str| bot.text(&lang, key).to_owned();

    if photos.is_empty() {
        if let Some(code) = bot.language_word(&folded) {
            state.lang = code.to_owned();
            state.greeted = true;
            turn.replies.push(bot.text(code, "language_set").to_owned());
            if let Mode::Tip { step } = state.mode {
                turn.replies.push(prompt(bot, state, step));
            }
            return turn;
        }
        if let Some(t) = command(bot, state, &folded, ctx) {
            return t;
        }
    }
    if let Some(loc) = location {
        state.draft.location = Some(loc);
    }
    match state.mode.clone() {
        Mode::Idle => {
            if !state.greeted && text.is_empty() && photos.is_empty() && location.is_none() {
                state.greeted = true;
                turn.replies.push(say("welcome"));
                turn.replies.push(say("help"));
            } else {
                state.greeted = true;
                turn.action = Some(Action::Idle {
                    text: text.to_owned(),
                    photos: photos.to_vec(),
                });
            }
        }
        Mode::Tip { step: i } => return tip_step(bot, state, i, text, &folded, photos, ctx),
        Mode::CheckAsk => match Receipt::parse(text) {
            Ok(r) => {
                state.mode = Mode::Idle;
                turn.action = Some(Action::Check(r.digits().to_owned()));
            }
            Err(_) => turn.replies.push(say("error.receipt")),
        },
        Mode::ReplyAskReceipt => match Receipt::parse(text) {
            Ok(r) => {
                state.mode = Mode::ReplyAskText {
                    receipt_ref: Some((ctx.receipt_ref)(&r)),
                };
                turn.replies.push(say("reply.ask_text"));
            }
            Err(_) => turn.replies.push(say("error.receipt")),
        },
        Mode::ReplyAskText { receipt_ref } => {
            if text.is_empty() && photos.is_empty() {
                turn.replies.push(say("reply.ask_text"));
            } else {
                state.mode = Mode::Idle;
                turn.action = Some(Action::Reply {
                    receipt_ref,
                    text: text.to_owned(),
                    photos: photos.to_vec(),
                });
            }
        }
        Mode::SubscribeAsk => {
            state.mode = Mode::Idle;
            turn.action = Some(Action::Subscribe(text.to_owned()));
        }
    }
    turn
}

/// Runs a command word, if the message is one.
fn command(bot: &Bot, state: &mut DialogState, folded: &str, ctx: &Context) -> Option<Turn> {
    let c = &bot.commands;
    let lang = state.lang.clone();
    let say = |key: &str| bot.text(&lang, key).to_owned();
    let mut turn = Turn::default();
    // "check 1234 5678 9012 3456" in one message.
    let (head, rest) = folded.split_once(' ').unwrap_or((folded, ""));
    if matches(&c.check, head) && !rest.is_empty() {
        if let Ok(r) = Receipt::parse(rest) {
            state.mode = Mode::Idle;
            turn.action = Some(Action::Check(r.digits().to_owned()));
            return Some(turn);
        }
    }
    if matches(&c.new, folded) {
        state.mode = Mode::Tip { step: 0 };
        state.draft = Draft::default();
        state.choices.clear();
        state.greeted = true;
        turn.replies.push(prompt(bot, state, 0));
    } else if matches(&c.check, folded) {
        state.mode = Mode::CheckAsk;
        turn.replies.push(say("check.ask"));
    } else if matches(&c.reply, folded) {
        if ctx.has_open_tip {
            state.mode = Mode::ReplyAskText { receipt_ref: None };
            turn.replies.push(say("reply.ask_text"));
        } else {
            state.mode = Mode::ReplyAskReceipt;
            turn.replies.push(say("reply.ask_receipt"));
        }
    } else if matches(&c.subscribe, folded) {
        state.mode = Mode::SubscribeAsk;
        turn.replies.push(say("subscribe.ask"));
    } else if matches(&c.stop, folded) && !in_tip_answer(bot, state, folded) {
        *state = DialogState::new(&state.lang);
        state.greeted = true;
        turn.action = Some(Action::Stop);
        turn.replies.push(say("stopped"));
    } else if matches(&c.help, folded) {
        // A first "/start" also says what this is.
        if !state.greeted {
            turn.replies.push(say("welcome"));
        }
        state.greeted = true;
        turn.replies.push(say("help"));
        if let Mode::Tip { step } = state.mode {
            turn.replies.push(prompt(bot, state, step));
        }
    } else if matches(&c.cancel, folded) && state.mode != Mode::Idle {
        state.mode = Mode::Idle;
        state.draft = Draft::default();
        state.choices.clear();
        turn.replies.push(say("cancelled"));
    } else {
        return None;
    }
    Some(turn)
}

/// Whether a word that is also a command is, here, an answer to the current step ("huy"
/// is STOP, but nothing in a step takes it, so this only guards future word lists).
fn in_tip_answer(bot: &Bot, state: &DialogState, folded: &str) -> bool {
    match state.mode {
        Mode::Tip { step } => bot.steps.get(step).is_some_and(|s| match s.kind {
            StepKind::Confirm => matches(&bot.commands.no, folded),
            _ => s.optional && matches(&bot.commands.skip, folded),
        }),
        _ => false,
    }
}

fn category_list(bot: &Bot, lang: &str) -> String {
    Category::ALL
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "{}. {}",
                i + 1,
                bot.text(lang, &format!("category.{}", c.as_str()))
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The question of step `i`.
pub fn prompt(bot: &Bot, state: &DialogState, i: usize) -> String {
    let lang = &state.lang;
    let Some(step) = bot.steps.get(i) else {
        return bot.text(lang, "help").to_owned();
    };
    match step.kind {
        StepKind::Category => bot.fill(
            lang,
            &step.prompt,
            &[("choices", &category_list(bot, lang))],
        ),
        StepKind::Photos => bot.fill(lang, &step.prompt, &[("max", &step.max.to_string())]),
        StepKind::Confirm => bot.fill(lang, &step.prompt, &[("summary", &summary(bot, state))]),
        _ => bot.text(lang, &step.prompt).to_owned(),
    }
}

/// The draft as the person will check it before sending.
fn summary(bot: &Bot, state: &DialogState) -> String {
    let lang = &state.lang;
    let d = &state.draft;
    let unknown = bot.text(lang, "summary.unknown_place");
    let category = d
        .category
        .as_deref()
        .map(|c| bot.text(lang, &format!("category.{c}")).to_owned())
        .unwrap_or_default();
    let mut lines = vec![bot.fill(lang, "summary.category", &[("value", &category)])];
    lines.push(bot.fill(
        lang,
        "summary.commune",
        &[("value", d.commune_name.as_deref().unwrap_or(unknown))],
    ));
    if let Some(v) = &d.village {
        lines.push(bot.fill(lang, "summary.village", &[("value", v)]));
    }
    if let Some(desc) = &d.description {
        lines.push(bot.fill(lang, "summary.description", &[("value", desc)]));
    }
    if !d.photos.is_empty() {
        lines.push(bot.fill(
            lang,
            "summary.photos",
            &[("value", &d.photos.len().to_string())],
        ));
    }
    lines.join("\n")
}

/// Moves to the step after `i` and asks it.
fn advance(bot: &Bot, state: &mut DialogState, i: usize, turn: &mut Turn) {
    let next = i + 1;
    state.mode = Mode::Tip { step: next };
    state.choices.clear();
    turn.replies.push(prompt(bot, state, next));
}

fn tip_step(
    bot: &Bot,
    state: &mut DialogState,
    i: usize,
    text: &str,
    folded: &str,
    photos: &[PhotoRef],
    ctx: &Context,
) -> Turn {
    let mut turn = Turn::default();
    let Some(step) = bot.steps.get(i).cloned() else {
        state.mode = Mode::Idle;
        return turn;
    };
    let lang = state.lang.clone();
    let say = |key: &str| bot.text(&lang, key).to_owned();
    let skip = step.optional && matches(&bot.commands.skip, folded) && photos.is_empty();
    match step.kind {
        StepKind::Category => {
            let picked = choice(folded, Category::ALL.len()).map(|n| Category::ALL[n]);
            match picked {
                Some(c) => {
                    state.draft.category = Some(c.as_str().to_owned());
                    advance(bot, state, i, &mut turn);
                }
                None => {
                    turn.replies.push(say("error.choose_number"));
                    turn.replies.push(prompt(bot, state, i));
                }
            }
        }
        StepKind::Commune => commune_step(bot, state, &step, i, text, folded, skip, ctx, &mut turn),
        StepKind::Text => {
            if skip {
                advance(bot, state, i, &mut turn);
            } else if text.is_empty() {
                turn.replies.push(prompt(bot, state, i));
            } else {
                let n = text.chars().count();
                if n < step.min_chars {
                    turn.replies.push(bot.fill(
                        &lang,
                        "error.too_short",
                        &[("min", &step.min_chars.to_string())],
                    ));
                } else if n > step.max_chars {
                    turn.replies.push(bot.fill(
                        &lang,
                        "error.too_long",
                        &[("max", &step.max_chars.to_string())],
                    ));
                } else {
                    let value = Some(text.to_owned());
                    match step.name.as_str() {
                        "village" => state.draft.village = value,
                        _ => state.draft.description = value,
                    }
                    advance(bot, state, i, &mut turn);
                }
            }
        }
        StepKind::Photos => {
            if !photos.is_empty() {
                let room = step.max.saturating_sub(state.draft.photos.len());
                if room == 0 || photos.len() > room {
                    turn.replies.push(bot.fill(
                        &lang,
                        "error.too_many_photos",
                        &[("max", &step.max.to_string())],
                    ));
                }
                state.draft.photos.extend(photos.iter().take(room).cloned());
                if !text.is_empty() && state.draft.description.is_some() {
                    // A caption adds to the description.
                    if let Some(d) = &mut state.draft.description {
                        d.push('\n');
                        d.push_str(text);
                    }
                }
                if room > 0 {
                    turn.replies.push(bot.fill(
                        &lang,
                        "step.photo_received",
                        &[("count", &state.draft.photos.len().to_string())],
                    ));
                }
            } else if skip || matches(&bot.commands.done, folded) {
                advance(bot, state, i, &mut turn);
            } else {
                turn.replies.push(say("error.photo_expected"));
            }
        }
        StepKind::Confirm => {
            if matches(&bot.commands.yes, folded) {
                turn.action = Some(Action::Submit(std::mem::take(&mut state.draft)));
                state.mode = Mode::Idle;
                state.choices.clear();
            } else if matches(&bot.commands.no, folded) {
                state.draft = Draft::default();
                state.mode = Mode::Tip { step: 0 };
                turn.replies.push(prompt(bot, state, 0));
            } else {
                turn.replies.push(say("error.yes_no"));
            }
        }
    }
    turn
}

#[allow(clippy::too_many_arguments)]
fn commune_step(
    bot: &Bot,
    state: &mut DialogState,
    step: &Step,
    i: usize,
    text: &str,
    folded: &str,
    skip: bool,
    ctx: &Context,
    turn: &mut Turn,
) {
    let lang = state.lang.clone();
    if skip {
        state.draft.commune = None;
        state.draft.commune_name = None;
        advance(bot, state, i, turn);
        return;
    }
    let place_name = |code: i64| {
        ctx.geo.commune(code).map(|c| {
            let province = ctx
                .geo
                .province(c.province_code)
                .map(|p| p.name.as_str())
                .unwrap_or_default();
            format!("{} ({province})", c.name)
        })
    };
    if let Some(n) = choice(folded, state.choices.len()) {
        let code = state.choices[n];
        state.draft.commune = Some(code);
        state.draft.commune_name = place_name(code);
        advance(bot, state, i, turn);
        return;
    }
    if text.is_empty() {
        turn.replies.push(prompt(bot, state, i));
        return;
    }
    let found = ctx.geo.search_communes(text, step.max_choices);
    match found.len() {
        0 => turn.replies.push(bot.fill(
            &lang,
            "error.commune_not_found",
            &[("query", &text.chars().take(60).collect::<String>())],
        )),
        1 => {
            let code = found[0].code;
            state.draft.commune = Some(code);
            state.draft.commune_name = place_name(code);
            advance(bot, state, i, turn);
        }
        _ => {
            let shown: Vec<_> = found.iter().take(step.max_choices).collect();
            state.choices = shown.iter().map(|c| c.code).collect();
            let list = shown
                .iter()
                .enumerate()
                .map(|(n, c)| {
                    format!(
                        "{}. {}",
                        n + 1,
                        place_name(c.code).unwrap_or_else(|| c.name.clone())
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            turn.replies
                .push(bot.fill(&lang, "step.commune_choose", &[("choices", &list)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Commune, Province};

    fn geo() -> Geo {
        let units = crate::geo::shipped_units();
        let mut provinces: Vec<Province> = units
            .iter()
            .map(|u| Province {
                code: u.province_code,
                name: u.province_name.clone(),
            })
            .collect();
        provinces.dedup_by_key(|p| p.code);
        let communes = units
            .iter()
            .map(|u| Commune {
                code: u.commune_code,
                province_code: u.province_code,
                name: u.commune_name.clone(),
            })
            .collect();
        Geo::new(provinces, communes)
    }

    fn text(s: &str) -> InboundKind {
        InboundKind::Message {
            text: s.into(),
            photos: vec![],
            location: None,
        }
    }

    struct Talk {
        bot: Bot,
        geo: Geo,
        state: DialogState,
        open_tip: bool,
    }

    impl Talk {
        fn new() -> Talk {
            let bot = Bot::shipped().unwrap();
            Talk {
                state: DialogState::new(&bot.default_language),
                bot,
                geo: geo(),
                open_tip: false,
            }
        }
        fn say(&mut self, input: InboundKind) -> Turn {
            let receipt_ref = |r: &Receipt| format!("ref-of-{}", r.digits());
            let ctx = Context {
                geo: &self.geo,
                has_open_tip: self.open_tip,
                receipt_ref: &receipt_ref,
            };
            step(&self.bot, &mut self.state, &input, &ctx)
        }
        fn text(&mut self, s: &str) -> Turn {
            self.say(text(s))
        }
    }

    #[test]
    fn a_whole_tip_from_new_to_submit() {
        let mut t = Talk::new();
        let first = t.text("/Mới");
        assert!(first.replies[0].contains("1. Mua bán ma túy"), "{first:?}");
        assert!(t.text("xyz").replies[0].contains("số"));
        t.text("4");
        // Accents optional: "hoang van thu" finds Xã Hoàng Văn Thụ.
        let village_q = t.text("hoang van thu");
        assert!(village_q.replies[0].contains("thôn"), "{village_q:?}");
        assert_eq!(t.state.draft.commune, Some(6172));
        t.text("Thôn Nà Sla");
        assert!(t.text("ngắn").replies[0].contains("ít nhất"));
        t.text("Có người ngáo đá cầm dao ở chợ, đang la hét");
        let photo = t.say(InboundKind::Message {
            text: String::new(),
            photos: vec![PhotoRef::TelegramFile("f1".into())],
            location: None,
        });
        assert!(photo.replies[0].contains("1 ảnh"), "{photo:?}");
        let confirm = t.text("xong");
        assert!(
            confirm.replies[0].contains("Xã Hoàng Văn Thụ (Lạng Sơn)"),
            "{confirm:?}"
        );
        assert!(confirm.replies[0].contains("Ngáo đá"));
        let done = t.text("có");
        match done.action {
            Some(Action::Submit(d)) => {
                assert_eq!(d.category.as_deref(), Some("psychosis"));
                assert_eq!(d.commune, Some(6172));
                assert_eq!(d.village.as_deref(), Some("Thôn Nà Sla"));
                assert_eq!(d.photos, vec![PhotoRef::TelegramFile("f1".into())]);
            }
            other => panic!("expected a submit, got {other:?}"),
        }
        assert_eq!(t.state.mode, Mode::Idle);
        assert_eq!(t.state.draft, Draft::default());
    }

    #[test]
    fn several_matching_communes_are_offered_as_numbers() {
        let mut t = Talk::new();
        t.text("new");
        t.text("1");
        let choose = t.text("tan lap");
        assert!(choose.replies[0].contains("1. "), "{choose:?}");
        assert!(t.state.choices.len() > 1);
        let second = t.state.choices[1];
        t.text("2");
        assert_eq!(t.state.draft.commune, Some(second));
        assert!(t.text("zzqq").replies.iter().all(|r| !r.is_empty()));
    }

    #[test]
    fn an_unknown_commune_asks_again_and_skip_leaves_it_unplaced() {
        let mut t = Talk::new();
        t.text("new");
        t.text("9");
        let again = t.text("khong co xa nay dau");
        assert!(again.replies[0].contains("Không tìm thấy"), "{again:?}");
        assert_eq!(t.state.mode, Mode::Tip { step: 1 });
        t.text("bỏ qua");
        assert_eq!(t.state.draft.commune, None);
        assert_eq!(t.state.mode, Mode::Tip { step: 2 });
    }

    #[test]
    fn commands_work_in_english_and_vietnamese() {
        let mut t = Talk::new();
        assert!(t.text("ENGLISH").replies[0].contains("English"));
        assert_eq!(t.state.lang, "en");
        assert!(t.text("help").replies[0].contains("NEW"));
        t.text("check");
        assert_eq!(t.state.mode, Mode::CheckAsk);
        assert!(t.text("12").replies[0].contains("16 digits"));
        let checked = t.text("1234 5678 9012 3456");
        assert_eq!(
            checked.action,
            Some(Action::Check("1234567890123456".into()))
        );
        let inline = t.text("kt 1234-5678-9012-3456");
        assert_eq!(
            inline.action,
            Some(Action::Check("1234567890123456".into()))
        );
        t.text("tieng viet");
        assert_eq!(t.state.lang, "vi");
        assert_eq!(t.text("HUỶ").action, Some(Action::Stop));
    }

    #[test]
    fn reply_uses_the_open_tip_or_asks_for_a_receipt() {
        let mut t = Talk::new();
        t.text("tl");
        assert_eq!(t.state.mode, Mode::ReplyAskReceipt);
        t.text("1234567890123456");
        let sent = t.text("thêm: xe máy biển 12A");
        assert_eq!(
            sent.action,
            Some(Action::Reply {
                receipt_ref: Some("ref-of-1234567890123456".into()),
                text: "thêm: xe máy biển 12A".into(),
                photos: vec![]
            })
        );
        t.open_tip = true;
        t.text("reply");
        assert_eq!(t.state.mode, Mode::ReplyAskText { receipt_ref: None });
        // Free text with an open tip is handed to the service as an addition.
        t.text("cancel");
        let idle = t.text("họ lại đến rồi");
        assert!(matches!(idle.action, Some(Action::Idle { .. })));
    }

    #[test]
    fn cancel_and_no_start_over() {
        let mut t = Talk::new();
        t.text("new");
        t.text("2");
        assert_eq!(t.text("thoi").replies[0], t.bot.text("vi", "cancelled"));
        assert_eq!(t.state.mode, Mode::Idle);
        t.text("new");
        t.text("2");
        t.text("bo qua");
        t.text("bo qua");
        t.text("Nhóm thanh niên tụ tập hút ở nhà hoang cuối xóm");
        t.text("bo qua");
        assert!(t.text("maybe").replies[0].contains("CO"));
        t.text("không");
        assert_eq!(t.state.mode, Mode::Tip { step: 0 });
        assert_eq!(t.state.draft, Draft::default());
    }

    #[test]
    fn follow_greets_and_unfollow_stops() {
        let mut t = Talk::new();
        let hello = t.say(InboundKind::Follow);
        assert_eq!(hello.replies.len(), 2);
        assert_eq!(t.say(InboundKind::Unfollow).action, Some(Action::Stop));
    }

    #[test]
    fn too_many_photos_are_refused() {
        let mut t = Talk::new();
        t.text("new");
        t.text("1");
        t.text("bo qua");
        t.text("bo qua");
        t.text("Bán ma túy ở quán nước đầu cầu");
        let many = InboundKind::Message {
            text: String::new(),
            photos: (0..7).map(|i| PhotoRef::Url(format!("u{i}"))).collect(),
            location: None,
        };
        let turn = t.say(many);
        assert!(turn.replies[0].contains("5 ảnh"), "{turn:?}");
        assert_eq!(t.state.draft.photos.len(), 5);
    }
}
