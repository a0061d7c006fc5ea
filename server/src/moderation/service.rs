//! Rules of content security, free of HTTP.
//!
//! Text: the operators' local blocklist first, then WeChat's `msg_sec_check` (v2). When WeChat cannot give an
//! answer the content is neither refused nor let through: it is held for an operator (`Review { "unchecked" }`).
//!
//! Images: submitted to WeChat's `media_check_async`; the verdict arrives later as a `wxa_media_check` push
//! (see [`super::push`]) and is recorded once. Submissions that fail are retried by [`run_due_work`]; a check that
//! cannot be submitted at all is handed to the operators as `review`/`unchecked`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement, sea_query::Expr,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::model::{
    blocked_word::{self, Action},
    media_check::{self, Status},
};
use crate::{
    db::is_unique_violation,
    error::{AppError, AppResult},
    state::AppState,
    util,
    wechat::WechatError,
};

/// Where the content appears; WeChat judges each scene by its own standard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Scene {
    /// 资料: nicknames, bios, profile fields.
    Profile = 1,
    /// 评论: comments and messages.
    Comment = 2,
    /// 论坛: posts such as listings.
    Forum = 3,
    /// 社交日志: social log entries.
    Social = 4,
}

impl Scene {
    /// The number WeChat uses for the scene.
    pub fn code(self) -> i32 {
        self as i32
    }

    pub fn from_code(code: i32) -> Option<Self> {
        match code {
            1 => Some(Self::Profile),
            2 => Some(Self::Comment),
            3 => Some(Self::Forum),
            4 => Some(Self::Social),
            _ => None,
        }
    }
}

/// What to do with a piece of content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Publish it.
    Pass,
    /// Hold it for an operator. `label` names the suspicion, or is `unchecked` when WeChat could not be asked.
    Review { label: String },
    /// Refuse it; `label` names the reason.
    Risky { label: String },
}

impl Verdict {
    fn severity(&self) -> u8 {
        match self {
            Verdict::Pass => 0,
            Verdict::Review { .. } => 1,
            Verdict::Risky { .. } => 2,
        }
    }

    /// The more severe of the two; on a tie, `self`.
    fn or_worse(self, other: Verdict) -> Verdict {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }

    /// The label of a review or risky verdict.
    pub fn label(&self) -> Option<&str> {
        match self {
            Verdict::Pass => None,
            Verdict::Review { label } | Verdict::Risky { label } => Some(label),
        }
    }

    fn review(label: &str) -> Self {
        Verdict::Review {
            label: label.to_string(),
        }
    }
}

/// The label of content held because WeChat could not check it.
pub const UNCHECKED_LABEL: &str = "unchecked";

/// WeChat's label codes and the readable names the service uses for them.
pub const LABELS: &[(i64, &str)] = &[
    (100, "normal"),
    (10001, "advertising"),
    (20001, "politics"),
    (20002, "porn"),
    (20003, "abuse"),
    (20006, "illegal"),
    (20008, "fraud"),
    (20012, "vulgar"),
    (20013, "copyright"),
    (21000, "other"),
];

/// The readable name of a WeChat label code; codes WeChat may add later read as `other`.
pub fn label_name(code: i64) -> &'static str {
    LABELS
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, name)| *name)
        .unwrap_or("other")
}

/// The WeChat label code of a readable name.
pub fn label_code(name: &str) -> Option<i64> {
    LABELS.iter().find(|(_, n)| *n == name).map(|(c, _)| *c)
}

/// A label as WeChat sends it: a number in `msg_sec_check` answers, a string in pushes.
pub fn parse_label(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The form in which text is compared with the blocklist: full-width ASCII folded to half-width, lower case,
/// whitespace and zero-width characters removed. "代 考", "ＶＸ" and "v x" match "代考", "vx" and "vx".
pub fn normalize(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' => None,
            c if c.is_whitespace() => None,
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0),
            c => Some(c),
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// The most a single `msg_sec_check` call may carry; longer text is checked in pieces.
pub const MAX_CONTENT_CHARS: usize = 2500;
/// How long a user waits for WeChat's text verdict before the content is held as `unchecked`.
const TEXT_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest blocklist word, in characters (after normalisation).
pub const MAX_BLOCKED_WORD_CHARS: usize = 50;

/// Errcodes by which WeChat says the request itself was wrong (not that WeChat failed): 40003 invalid openid,
/// 40129 invalid scene, 43104 appid/openid mismatch, 44002 empty content, 47001 malformed body.
fn is_bad_input(errcode: i64) -> bool {
    matches!(errcode, 40003 | 40129 | 43104 | 44002 | 47001)
}

/// Judges a piece of text a user wants to publish: the operators' blocklist first (a `risky` word refuses the
/// text without asking WeChat), then WeChat's `msg_sec_check`; the more severe verdict wins.
///
/// Never fails because WeChat is unreachable or broken: the text is then held for an operator as
/// `Review { label: "unchecked" }`. Fails only when WeChat refuses the request itself (invalid openid, …:
/// `400 content_check_refused`) or the database fails.
pub async fn check_text(
    state: &AppState,
    openid: &str,
    scene: Scene,
    title: Option<&str>,
    text: &str,
) -> AppResult<Verdict> {
    let title = title.filter(|t| !t.trim().is_empty());
    let (title, text) = if text.trim().is_empty() {
        match title {
            None => return Ok(Verdict::Pass),
            Some(t) => (None, t),
        }
    } else {
        (title, text)
    };

    let local = blocklist_verdict(state, title, text).await?;
    if let Verdict::Risky { label } = &local {
        tracing::info!(
            scene = scene.code(),
            label,
            "text refused by the local blocklist"
        );
        return Ok(local);
    }

    let chars: Vec<char> = text.chars().collect();
    let mut verdict = local;
    for (i, piece) in chars.chunks(MAX_CONTENT_CHARS).enumerate() {
        let piece: String = piece.iter().collect();
        let piece_title = if i == 0 { title } else { None };
        let call = wechat_text_verdict(state, openid, scene, piece_title, &piece);
        let answer = match tokio::time::timeout(TEXT_CHECK_TIMEOUT, call).await {
            Ok(answer) => answer,
            Err(_) => Err(WechatError::Transport("timed out".into())),
        };
        match answer {
            Ok(v) => verdict = verdict.or_worse(v),
            Err(WechatError::Api { errcode, .. }) if is_bad_input(errcode) => {
                tracing::warn!(errcode, "WeChat refused to check the text");
                return Err(AppError::bad_request(
                    "content_check_refused",
                    format!("WeChat refused to check this content (errcode {errcode})"),
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "WeChat text check failed; holding the content for an operator");
                // The rest cannot be checked either: the whole text waits for an operator.
                return Ok(verdict.or_worse(Verdict::review(UNCHECKED_LABEL)));
            }
        }
        if matches!(verdict, Verdict::Risky { .. }) {
            break;
        }
    }
    Ok(verdict)
}

/// The verdict of the local blocklist on the title and the text: the most severe word found, `Pass` if none.
async fn blocklist_verdict(
    state: &AppState,
    title: Option<&str>,
    text: &str,
) -> AppResult<Verdict> {
    // Read on every check: the list is short, and a change then applies at once on every instance.
    let words = blocked_word::Entity::find()
        .order_by_asc(blocked_word::Column::Id)
        .all(&state.db)
        .await?;
    if words.is_empty() {
        return Ok(Verdict::Pass);
    }
    let haystacks: Vec<String> = title.into_iter().chain([text]).map(normalize).collect();
    let mut verdict = Verdict::Pass;
    for w in &words {
        if w.word.is_empty() || !haystacks.iter().any(|h| h.contains(&w.word)) {
            continue;
        }
        let hit = match w.action {
            Action::Risky => Verdict::Risky {
                label: w.label.clone(),
            },
            Action::Review => Verdict::review(&w.label),
        };
        verdict = verdict.or_worse(hit);
    }
    Ok(verdict)
}

#[derive(Deserialize)]
struct SecCheckAnswer {
    result: Option<SuggestLabel>,
}

#[derive(Debug, Deserialize)]
struct SuggestLabel {
    suggest: String,
    #[serde(default)]
    label: Value,
}

/// A WeChat `suggest` and label as a verdict (an unknown suggestion is treated as `review`).
fn verdict_of(suggest: &str, label: Option<i64>) -> Verdict {
    let name = label.map(label_name).unwrap_or("other").to_string();
    match suggest {
        "pass" => Verdict::Pass,
        "risky" => Verdict::Risky { label: name },
        _ => Verdict::Review { label: name },
    }
}

/// One `POST /wxa/msg_sec_check` (v2).
async fn wechat_text_verdict(
    state: &AppState,
    openid: &str,
    scene: Scene,
    title: Option<&str>,
    content: &str,
) -> Result<Verdict, WechatError> {
    let mut body = json!({
        "content": content,
        "version": 2,
        "scene": scene.code(),
        "openid": openid,
    });
    if let Some(title) = title {
        body["title"] = title.into();
    }
    let answer: SecCheckAnswer = state
        .wechat
        .call(reqwest::Method::POST, "/wxa/msg_sec_check", Some(&body))
        .await?;
    let result = answer
        .result
        .ok_or_else(|| WechatError::BadResponse("msg_sec_check answer without result".into()))?;
    Ok(verdict_of(&result.suggest, parse_label(&result.label)))
}

/// Adds a word to the operators' blocklist. The word is stored normalised (see [`normalize`]); `label` is one of
/// the readable names of [`LABELS`] other than `normal`. `409 blocked_word_exists` when it is listed already.
pub async fn add_blocked_word(
    state: &AppState,
    word: &str,
    action: Action,
    label: &str,
) -> AppResult<blocked_word::Model> {
    let normalized = normalize(word);
    let len = normalized.chars().count();
    if len == 0 {
        return Err(AppError::invalid_field("word", "must not be empty"));
    }
    if len > MAX_BLOCKED_WORD_CHARS {
        return Err(AppError::invalid_field(
            "word",
            format!("at most {MAX_BLOCKED_WORD_CHARS} characters"),
        ));
    }
    if label == "normal" || label_code(label).is_none() {
        let names: Vec<&str> = LABELS
            .iter()
            .map(|(_, n)| *n)
            .filter(|n| *n != "normal")
            .collect();
        return Err(AppError::invalid_field(
            "label",
            format!("must be one of {}", names.join(", ")),
        ));
    }
    let exists = || AppError::conflict("blocked_word_exists", "this word is already blocked");
    if blocked_word::Entity::find()
        .filter(blocked_word::Column::Word.eq(normalized.as_str()))
        .one(&state.db)
        .await?
        .is_some()
    {
        return Err(exists());
    }
    let row = blocked_word::ActiveModel {
        word: Set(normalized.clone()),
        action: Set(action),
        label: Set(label.to_string()),
        created_at: Set(util::now()),
        ..Default::default()
    };
    match row.insert(&state.db).await {
        Ok(created) => {
            tracing::info!(id = created.id, action = ?action, label, "blocked word added");
            Ok(created)
        }
        Err(e) if is_unique_violation(&e) => Err(exists()),
        Err(e) => Err(e.into()),
    }
}

/// Removes a word from the blocklist; `404 not_found` when there is no such entry.
pub async fn remove_blocked_word(state: &AppState, id: i64) -> AppResult<()> {
    let res = blocked_word::Entity::delete_by_id(id)
        .exec(&state.db)
        .await?;
    if res.rows_affected == 0 {
        return Err(AppError::not_found("blocked word"));
    }
    tracing::info!(id, "blocked word removed");
    Ok(())
}

/// The whole blocklist, in the order the words were added.
pub async fn list_blocked_words(state: &AppState) -> AppResult<Vec<blocked_word::Model>> {
    Ok(blocked_word::Entity::find()
        .order_by_asc(blocked_word::Column::Id)
        .all(&state.db)
        .await?)
}

/// Submissions of one image check before it is handed to the operators as `unchecked`.
const MAX_SUBMIT_ATTEMPTS: i32 = 6;
/// A submitted check without a verdict after this long is submitted again (WeChat promises one within 30 min).
const VERDICT_WAIT: Duration = Duration::from_secs(3600);
/// How long a claimed submission may take before another attempt may claim the row.
const CLAIM_LEASE: Duration = Duration::from_secs(120);

fn after(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero())
}

/// Wait before the next submission after `attempts` failed ones: 1, 2, 4, 8, 16 minutes.
fn backoff(attempts: i32) -> Duration {
    Duration::from_secs(60 << attempts.clamp(1, 5).saturating_sub(1))
}

/// Sends newly attached images of `target` to WeChat's asynchronous image check, after the caller committed.
/// Failures are logged; the verdicts come back through `/wechat/push`.
pub fn check_images_later(
    state: &AppState,
    openid: &str,
    target_type: &'static str,
    target_id: i64,
    images: Vec<crate::images::model::image::Model>,
) {
    if images.is_empty() {
        return;
    }
    let state = state.clone();
    let openid = openid.to_string();
    tokio::spawn(async move {
        for img in images {
            let (url, _) = crate::images::service::urls(&state, &img);
            if let Err(e) = submit_media_check(
                &state,
                &openid,
                Scene::Forum,
                &url,
                target_type,
                target_id,
                Some(img.id),
            )
            .await
            {
                tracing::warn!(target_type, target_id, image_id = img.id, error = %e, "could not submit an image check");
            }
        }
    });
}

/// Sends an image to WeChat's asynchronous check (`POST /wxa/media_check_async`) and records it in
/// `media_checks`; the verdict arrives later through the push endpoint.
///
/// Does not fail when WeChat cannot be reached: the check is recorded as pending and submitted again by the
/// retry job, and after [`MAX_SUBMIT_ATTEMPTS`] it goes to the operators as `review`/`unchecked`. Fails only
/// for invalid arguments (`422`) or when the database fails.
pub async fn submit_media_check(
    state: &AppState,
    openid: &str,
    scene: Scene,
    media_url: &str,
    target_type: &str,
    target_id: i64,
    image_id: Option<i64>,
) -> AppResult<()> {
    if !(media_url.starts_with("https://") || media_url.starts_with("http://"))
        || media_url.len() > 1024
    {
        return Err(AppError::invalid_field(
            "media_url",
            "must be an http(s) URL of at most 1024 bytes",
        ));
    }
    if target_type.is_empty() || target_type.len() > 32 {
        return Err(AppError::invalid_field("target_type", "1 to 32 bytes"));
    }
    if openid.is_empty() || openid.len() > 64 {
        return Err(AppError::invalid_field("openid", "1 to 64 bytes"));
    }
    let now = util::now();
    let row = media_check::ActiveModel {
        trace_id: Set(None),
        target_type: Set(target_type.to_string()),
        target_id: Set(target_id),
        image_id: Set(image_id),
        openid: Set(openid.to_string()),
        scene: Set(scene.code()),
        media_url: Set(media_url.to_string()),
        status: Set(Status::Pending),
        label: Set(None),
        label_code: Set(None),
        // The row is created claimed by this first attempt; if the process dies before it is submitted, the
        // retry job takes it over when the lease ends.
        attempts: Set(1),
        last_error: Set(None),
        next_attempt_at: Set(Some(after(now, CLAIM_LEASE))),
        flag_handled_at: Set(None),
        created_at: Set(now),
        submitted_at: Set(None),
        decided_at: Set(None),
        ..Default::default()
    }
    .insert(&state.db)
    .await?;
    submit(state, &row).await
}

#[derive(Deserialize)]
struct MediaCheckAnswer {
    trace_id: String,
}

/// One submission of a claimed row (its `attempts` already counts this one).
async fn submit(state: &AppState, row: &media_check::Model) -> AppResult<()> {
    let Some(scene) = Scene::from_code(row.scene) else {
        return give_up(state, row.id, &format!("invalid scene {}", row.scene)).await;
    };
    let body = json!({
        "media_url": row.media_url,
        "media_type": 2,
        "version": 2,
        "scene": scene.code(),
        "openid": row.openid,
    });
    let answer: Result<MediaCheckAnswer, WechatError> = state
        .wechat
        .call(reqwest::Method::POST, "/wxa/media_check_async", Some(&body))
        .await;
    let now = util::now();
    match answer {
        Ok(a) if !a.trace_id.is_empty() => {
            media_check::Entity::update_many()
                .col_expr(
                    media_check::Column::TraceId,
                    Expr::value(a.trace_id.clone()),
                )
                .col_expr(media_check::Column::SubmittedAt, Expr::value(now))
                .col_expr(
                    media_check::Column::NextAttemptAt,
                    Expr::value(after(now, VERDICT_WAIT)),
                )
                .col_expr(
                    media_check::Column::LastError,
                    Expr::value(Option::<String>::None),
                )
                .filter(media_check::Column::Id.eq(row.id))
                .filter(media_check::Column::Status.eq(Status::Pending))
                .exec(&state.db)
                .await?;
            tracing::info!(check = row.id, trace_id = %a.trace_id, target_type = %row.target_type, target_id = row.target_id, "image submitted to WeChat");
            Ok(())
        }
        other => {
            let (error, bad_input) = match other {
                Ok(_) => (
                    "media_check_async answered without trace_id".to_string(),
                    false,
                ),
                Err(e) => (e.to_string(), e.errcode().is_some_and(is_bad_input)),
            };
            tracing::warn!(check = row.id, attempt = row.attempts, error = %error, "could not submit the image to WeChat");
            if bad_input || row.attempts >= MAX_SUBMIT_ATTEMPTS {
                return give_up(state, row.id, &error).await;
            }
            media_check::Entity::update_many()
                .col_expr(
                    media_check::Column::LastError,
                    Expr::value(truncate(&error)),
                )
                .col_expr(
                    media_check::Column::NextAttemptAt,
                    Expr::value(after(now, backoff(row.attempts))),
                )
                .filter(media_check::Column::Id.eq(row.id))
                .filter(media_check::Column::Status.eq(Status::Pending))
                .exec(&state.db)
                .await?;
            Ok(())
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(400).collect()
}

/// The check cannot be done by WeChat: hand it to the operators as `review`/`unchecked`.
async fn give_up(state: &AppState, id: i64, error: &str) -> AppResult<()> {
    tracing::warn!(
        check = id,
        error,
        "image check handed to operators unchecked"
    );
    let decided = decide(
        state,
        media_check::Column::Id.eq(id),
        Status::Review,
        UNCHECKED_LABEL,
        None,
        Some(error),
    )
    .await?;
    if let Some(check) = decided {
        run_flag_hook(state, &check).await;
    }
    Ok(())
}

/// The one conditional transition `pending → status`. Returns the decided row, or `None` when the row was not
/// pending (already decided: nothing changes).
async fn decide(
    state: &AppState,
    which: sea_orm::sea_query::SimpleExpr,
    status: Status,
    label: &str,
    label_code: Option<i64>,
    error: Option<&str>,
) -> AppResult<Option<media_check::Model>> {
    let now = util::now();
    let mut update = media_check::Entity::update_many()
        .col_expr(media_check::Column::Status, Expr::value(status))
        .col_expr(media_check::Column::Label, Expr::value(label))
        .col_expr(media_check::Column::LabelCode, Expr::value(label_code))
        .col_expr(media_check::Column::DecidedAt, Expr::value(now))
        .col_expr(
            media_check::Column::NextAttemptAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        );
    if let Some(error) = error {
        update = update.col_expr(media_check::Column::LastError, Expr::value(truncate(error)));
    }
    let res = update
        .filter(which.clone())
        .filter(media_check::Column::Status.eq(Status::Pending))
        .exec(&state.db)
        .await?;
    if res.rows_affected != 1 {
        return Ok(None);
    }
    Ok(media_check::Entity::find()
        .filter(which)
        .one(&state.db)
        .await?)
}

/// Runs the flagged-media hook and remembers that it ran; a failure is logged and retried by [`run_due_work`].
async fn run_flag_hook(state: &AppState, check: &media_check::Model) {
    match super::hooks::media_flagged(state, check).await {
        Ok(()) => {
            let marked = media_check::Entity::update_many()
                .col_expr(media_check::Column::FlagHandledAt, Expr::value(util::now()))
                .filter(media_check::Column::Id.eq(check.id))
                .exec(&state.db)
                .await;
            if let Err(e) = marked {
                tracing::warn!(check = check.id, error = %e, "could not mark the flagged image as handled");
            }
        }
        Err(e) => {
            tracing::error!(check = check.id, error = %e, "flagged-image hook failed; it will be retried")
        }
    }
}

/// What a `wxa_media_check` push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEventOutcome {
    /// The verdict was recorded now.
    Decided(Box<media_check::Model>),
    /// The check was decided before (a repeated push): nothing changed.
    AlreadyDecided,
    /// WeChat could not check the image (e.g. could not download it); it will be submitted again.
    Resubmit,
    /// No check has this `trace_id`.
    Unknown,
}

/// The parts of a `wxa_media_check` event the service uses.
#[derive(Debug, Deserialize)]
struct MediaEvent {
    trace_id: String,
    #[serde(default)]
    errcode: Option<i64>,
    #[serde(default)]
    errmsg: Option<String>,
    #[serde(default)]
    result: Option<SuggestLabel>,
}

/// Records the verdict of a `wxa_media_check` event (plaintext JSON) once. A risky or review verdict runs
/// [`super::hooks::media_flagged`]. `400 invalid_request` when the event lacks `trace_id`.
pub async fn record_media_event(state: &AppState, event: &Value) -> AppResult<MediaEventOutcome> {
    let ev: MediaEvent = serde_json::from_value(event.clone()).map_err(|e| {
        AppError::bad_request(
            "invalid_request",
            format!("not a wxa_media_check event: {e}"),
        )
    })?;
    let Some(existing) = media_check::Entity::find()
        .filter(media_check::Column::TraceId.eq(ev.trace_id.as_str()))
        .one(&state.db)
        .await?
    else {
        tracing::warn!(trace_id = %ev.trace_id, "wxa_media_check for an unknown trace_id");
        return Ok(MediaEventOutcome::Unknown);
    };
    if existing.status != Status::Pending {
        return Ok(MediaEventOutcome::AlreadyDecided);
    }
    let errcode = ev.errcode.unwrap_or(0);
    let Some(result) = ev.result.filter(|_| errcode == 0) else {
        // WeChat could not judge the image: submit it again (or give up after too many attempts).
        let error = format!(
            "wxa_media_check errcode {errcode}: {}",
            ev.errmsg.as_deref().unwrap_or("no result")
        );
        tracing::warn!(check = existing.id, trace_id = %ev.trace_id, error, "WeChat could not check the image");
        if existing.attempts >= MAX_SUBMIT_ATTEMPTS {
            give_up(state, existing.id, &error).await?;
            return Ok(MediaEventOutcome::Resubmit);
        }
        media_check::Entity::update_many()
            .col_expr(
                media_check::Column::LastError,
                Expr::value(truncate(&error)),
            )
            .col_expr(
                media_check::Column::NextAttemptAt,
                Expr::value(after(util::now(), backoff(existing.attempts))),
            )
            .filter(media_check::Column::Id.eq(existing.id))
            .filter(media_check::Column::TraceId.eq(ev.trace_id.as_str()))
            .filter(media_check::Column::Status.eq(Status::Pending))
            .exec(&state.db)
            .await?;
        return Ok(MediaEventOutcome::Resubmit);
    };
    let code = parse_label(&result.label);
    let (status, label) = match verdict_of(&result.suggest, code) {
        Verdict::Pass => (Status::Pass, label_name(code.unwrap_or(100)).to_string()),
        Verdict::Review { label } => (Status::Review, label),
        Verdict::Risky { label } => (Status::Risky, label),
    };
    let decided = decide(
        state,
        media_check::Column::TraceId.eq(ev.trace_id.as_str()),
        status,
        &label,
        code,
        None,
    )
    .await?;
    let Some(check) = decided else {
        return Ok(MediaEventOutcome::AlreadyDecided);
    };
    tracing::info!(check = check.id, trace_id = %ev.trace_id, status = ?check.status, label, "image verdict recorded");
    if check.status != Status::Pass {
        run_flag_hook(state, &check).await;
    }
    Ok(MediaEventOutcome::Decided(Box::new(check)))
}

/// The image checks of one target (e.g. a listing), oldest first.
pub async fn media_checks_for_target(
    state: &AppState,
    target_type: &str,
    target_id: i64,
) -> AppResult<Vec<media_check::Model>> {
    Ok(media_check::Entity::find()
        .filter(media_check::Column::TargetType.eq(target_type))
        .filter(media_check::Column::TargetId.eq(target_id))
        .order_by_asc(media_check::Column::Id)
        .all(&state.db)
        .await?)
}

/// How long after an image is attached its check must exist: the submission runs right after the commit, so a
/// missing row older than this means the process died in between.
const UNSUBMITTED_GRACE: chrono::Duration = chrono::Duration::minutes(5);

/// Images of listings and posts attached in the last two days that have no check at all — the process stopped
/// between committing the attachment and recording the check — are checked now. Two instances may both find
/// the same image in the same minute and submit it twice; verdict handling is idempotent, so that only costs a
/// call.
async fn recover_unsubmitted_image_checks(state: &AppState) -> AppResult<usize> {
    let now = util::now();
    let rows = state
        .db
        .query_all_raw(Statement::from_sql_and_values(
            state.db.get_database_backend(),
            "SELECT i.id AS id, u.openid AS openid FROM images i JOIN users u ON u.id = i.owner_id \
             WHERE i.target_type IN ('listing', 'post') AND i.attached_at > $1 AND i.attached_at < $2 \
             AND NOT EXISTS (SELECT 1 FROM media_checks m WHERE m.image_id = i.id \
                             AND m.target_type = i.target_type AND m.target_id = i.target_id) \
             ORDER BY i.id LIMIT 100",
            [
                (now - chrono::Duration::days(2)).into(),
                (now - UNSUBMITTED_GRACE).into(),
            ],
        ))
        .await?;
    let mut done = 0;
    for row in rows {
        let id: i64 = row.try_get("", "id")?;
        let openid: String = row.try_get("", "openid")?;
        let Some(img) = crate::images::model::image::Entity::find_by_id(id)
            .one(&state.db)
            .await?
        else {
            continue;
        };
        let (Some(target_type), Some(target_id)) = (img.target_type.clone(), img.target_id) else {
            continue;
        };
        let (url, _) = crate::images::service::urls(state, &img);
        tracing::warn!(image_id = id, %target_type, target_id, "image was attached but never submitted for a check; submitting now");
        submit_media_check(
            state,
            &openid,
            Scene::Forum,
            &url,
            &target_type,
            target_id,
            Some(id),
        )
        .await?;
        done += 1;
    }
    Ok(done)
}

/// Periodic work, safe on every instance at once: (re)submits image checks that are due (failed submissions,
/// and submissions WeChat never answered), and re-runs the flagged-image hook where it failed. Returns how many
/// rows it acted on.
pub async fn run_due_work(state: &AppState) -> AppResult<usize> {
    let now = util::now();
    let due = media_check::Entity::find()
        .filter(media_check::Column::Status.eq(Status::Pending))
        .filter(media_check::Column::NextAttemptAt.lte(now))
        .order_by_asc(media_check::Column::NextAttemptAt)
        .limit(100)
        .all(&state.db)
        .await?;
    let mut done = 0;
    for row in due {
        if row.attempts >= MAX_SUBMIT_ATTEMPTS {
            give_up(state, row.id, "no verdict from WeChat after every attempt").await?;
            done += 1;
            continue;
        }
        // Claim the row: only the instance whose update sees the old attempt count submits.
        let claimed = media_check::Entity::update_many()
            .col_expr(media_check::Column::Attempts, Expr::value(row.attempts + 1))
            .col_expr(
                media_check::Column::NextAttemptAt,
                Expr::value(after(now, CLAIM_LEASE)),
            )
            .filter(media_check::Column::Id.eq(row.id))
            .filter(media_check::Column::Status.eq(Status::Pending))
            .filter(media_check::Column::Attempts.eq(row.attempts))
            .exec(&state.db)
            .await?;
        if claimed.rows_affected != 1 {
            continue;
        }
        let row = media_check::Model {
            attempts: row.attempts + 1,
            ..row
        };
        submit(state, &row).await?;
        done += 1;
    }

    done += recover_unsubmitted_image_checks(state).await?;

    // Flagged verdicts whose hook failed (a minute's grace for the push handler that is running it now).
    let unhandled = media_check::Entity::find()
        .filter(media_check::Column::Status.is_in([Status::Review, Status::Risky]))
        .filter(media_check::Column::FlagHandledAt.is_null())
        .filter(media_check::Column::DecidedAt.lte(now - chrono::Duration::minutes(1)))
        .limit(100)
        .all(&state.db)
        .await?;
    for check in unhandled {
        run_flag_hook(state, &check).await;
        done += 1;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_codes_have_names() {
        assert_eq!(label_name(10001), "advertising");
        assert_eq!(label_name(20001), "politics");
        assert_eq!(label_name(20002), "porn");
        assert_eq!(label_name(20003), "abuse");
        assert_eq!(label_name(20006), "illegal");
        assert_eq!(label_name(20008), "fraud");
        assert_eq!(label_name(20012), "vulgar");
        assert_eq!(label_name(20013), "copyright");
        assert_eq!(label_name(21000), "other");
        assert_eq!(label_name(100), "normal");
        assert_eq!(label_name(29999), "other", "codes WeChat adds later");
        assert_eq!(label_code("fraud"), Some(20008));
        assert_eq!(label_code("nonsense"), None);
    }

    #[test]
    fn labels_parse_as_numbers_or_strings() {
        assert_eq!(parse_label(&json!(20002)), Some(20002));
        assert_eq!(parse_label(&json!("20002")), Some(20002));
        assert_eq!(parse_label(&json!(" 100 ")), Some(100));
        assert_eq!(parse_label(&json!("porn")), None);
        assert_eq!(parse_label(&Value::Null), None);
    }

    #[test]
    fn suggestions_become_verdicts() {
        assert_eq!(verdict_of("pass", Some(100)), Verdict::Pass);
        assert_eq!(
            verdict_of("risky", Some(20006)),
            Verdict::Risky {
                label: "illegal".into()
            }
        );
        assert_eq!(
            verdict_of("review", Some(10001)),
            Verdict::review("advertising")
        );
        assert_eq!(verdict_of("shrug", None), Verdict::review("other"));
    }

    #[test]
    fn normalisation_folds_width_case_and_spaces() {
        assert_eq!(normalize("代 考"), "代考");
        assert_eq!(normalize("代\u{3000}考\t\n"), "代考");
        assert_eq!(normalize("ＶＸ：ａｂｃ１２３"), "vx:abc123");
        assert_eq!(normalize("加 Wei\u{200B}Xin"), "加weixin");
        assert!(normalize("帮忙 代 考 四六级").contains(&normalize("代考")));
        assert_eq!(normalize("   "), "");
    }

    #[test]
    fn the_worse_verdict_wins_and_ties_keep_the_first() {
        let review = Verdict::review("advertising");
        assert_eq!(review.clone().or_worse(Verdict::Pass), review);
        assert_eq!(
            review.clone().or_worse(Verdict::review(UNCHECKED_LABEL)),
            review
        );
        let risky = Verdict::Risky {
            label: "fraud".into(),
        };
        assert_eq!(review.or_worse(risky.clone()), risky);
    }

    #[test]
    fn scenes_and_backoff() {
        assert_eq!(Scene::Forum.code(), 3);
        assert_eq!(Scene::from_code(4), Some(Scene::Social));
        assert_eq!(Scene::from_code(5), None);
        assert_eq!(backoff(1), Duration::from_secs(60));
        assert_eq!(backoff(3), Duration::from_secs(240));
        assert_eq!(backoff(40), Duration::from_secs(960));
    }
}
