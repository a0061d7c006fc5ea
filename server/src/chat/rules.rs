//! Contact-sharing detection: phone numbers, WeChat and QQ ids, links. Trades that move to another app lose the
//! platform's protection (and its payment escrow), so a message that shares contact details gets a warning card
//! for the receiver ("keep payment inside the app"); the message itself is still delivered.
//!
//! The rules are rows of `chat_contact_rules` (regular expressions, seeded by the migration) that operators can
//! add, change or switch off. Each instance compiles them once and reloads them every [`RELOAD_AFTER`], so a
//! change reaches every instance within that time (at once on the instance that made it).

use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use regex::Regex;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder,
};

use super::model::contact_rule;
use crate::{
    error::{AppError, AppResult},
    util,
};

/// How long a compiled rule set is used before the table is read again.
pub const RELOAD_AFTER: Duration = Duration::from_secs(10);
/// Longest pattern accepted, in bytes.
pub const PATTERN_MAX: usize = 500;
/// Compiled patterns may not grow beyond this (guards against patterns that explode in size).
const COMPILED_SIZE_LIMIT: usize = 1 << 20;

/// Text as the rules see it: full-width letters, digits and punctuation folded to ASCII (people write
/// `１３８…` to slip past filters), the ideographic space to a space, everything lower-cased.
pub fn normalize(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            _ => c,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(COMPILED_SIZE_LIMIT)
        .build()
}

/// A compiled set of rules.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<(String, Regex)>,
}

impl RuleSet {
    /// Compiles the enabled rules; a pattern that does not compile is skipped with a warning (it was checked
    /// when stored, so this only happens when someone edited the table by hand).
    pub fn compile(rows: &[contact_rule::Model]) -> Self {
        let mut rules = Vec::new();
        for r in rows.iter().filter(|r| r.enabled) {
            match compile(&r.pattern) {
                Ok(re) => rules.push((r.kind.clone(), re)),
                Err(e) => {
                    tracing::warn!(rule = r.id, error = %e, "contact rule does not compile; skipped")
                }
            }
        }
        Self { rules }
    }

    /// The kinds of contact details found in `text`, each once, in rule order.
    pub fn detect(&self, text: &str) -> Vec<String> {
        let normalized = normalize(text);
        let mut kinds: Vec<String> = Vec::new();
        for (kind, re) in &self.rules {
            if !kinds.contains(kind) && re.is_match(&normalized) {
                kinds.push(kind.clone());
            }
        }
        kinds
    }
}

/// The per-instance cache of the compiled rules.
#[derive(Default)]
pub struct ContactRules {
    cached: RwLock<Option<(Instant, Arc<RuleSet>)>>,
}

impl ContactRules {
    /// The current rule set, read from the table when the cached one is older than [`RELOAD_AFTER`].
    pub async fn current(&self, db: &DatabaseConnection) -> AppResult<Arc<RuleSet>> {
        if let Some((at, set)) = self
            .cached
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            && at.elapsed() < RELOAD_AFTER
        {
            return Ok(Arc::clone(set));
        }
        let rows = contact_rule::Entity::find()
            .order_by_asc(contact_rule::Column::Id)
            .all(db)
            .await?;
        let set = Arc::new(RuleSet::compile(&rows));
        *self.cached.write().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), Arc::clone(&set)));
        Ok(set)
    }

    /// Forgets the cached set, so the next message is checked against the table as it is now.
    pub fn invalidate(&self) {
        *self.cached.write().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

fn validate_rule(kind: &str, pattern: &str) -> AppResult<()> {
    let mut problems = std::collections::BTreeMap::new();
    if kind.is_empty()
        || kind.len() > 16
        || !kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        problems.insert(
            "kind".to_string(),
            "must be 1–16 lower-case letters, digits or _".to_string(),
        );
    }
    if pattern.is_empty() || pattern.len() > PATTERN_MAX {
        problems.insert(
            "pattern".to_string(),
            format!("must be 1–{PATTERN_MAX} bytes"),
        );
    } else if let Err(e) = compile(pattern) {
        problems.insert(
            "pattern".to_string(),
            format!("is not a valid regular expression: {e}"),
        );
    } else if compile(pattern).is_ok_and(|re| re.is_match("")) {
        problems.insert(
            "pattern".to_string(),
            "matches the empty text, so it would flag every message".to_string(),
        );
    }
    AppError::check_fields(problems)
}

/// Every rule, enabled or not, oldest first (for operators).
pub async fn list(db: &DatabaseConnection) -> AppResult<Vec<contact_rule::Model>> {
    Ok(contact_rule::Entity::find()
        .order_by_asc(contact_rule::Column::Id)
        .all(db)
        .await?)
}

/// Adds a rule (for operators). The pattern must compile and must not match empty text (422 otherwise).
pub async fn add(
    db: &DatabaseConnection,
    cache: &ContactRules,
    kind: &str,
    pattern: &str,
    description: &str,
) -> AppResult<contact_rule::Model> {
    validate_rule(kind, pattern)?;
    let now = util::now();
    let row = contact_rule::ActiveModel {
        kind: Set(kind.to_string()),
        pattern: Set(pattern.to_string()),
        description: Set(description.chars().take(200).collect()),
        enabled: Set(true),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await?;
    cache.invalidate();
    Ok(row)
}

/// Switches a rule on or off (for operators); 404 when there is no such rule.
pub async fn set_enabled(
    db: &DatabaseConnection,
    cache: &ContactRules,
    id: i64,
    enabled: bool,
) -> AppResult<()> {
    let res = contact_rule::Entity::update_many()
        .col_expr(
            contact_rule::Column::Enabled,
            sea_orm::sea_query::Expr::value(enabled),
        )
        .col_expr(
            contact_rule::Column::UpdatedAt,
            sea_orm::sea_query::Expr::value(util::now()),
        )
        .filter(contact_rule::Column::Id.eq(id))
        .exec(db)
        .await?;
    if res.rows_affected == 0 {
        return Err(AppError::not_found("contact rule"));
    }
    cache.invalidate();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeded() -> RuleSet {
        let now = util::now();
        let rows: Vec<contact_rule::Model> = migrations::SEED_CONTACT_RULES
            .iter()
            .enumerate()
            .map(|(i, (kind, pattern, description))| contact_rule::Model {
                id: i as i64 + 1,
                kind: kind.to_string(),
                pattern: pattern.to_string(),
                description: description.to_string(),
                enabled: true,
                created_at: now,
                updated_at: now,
            })
            .collect();
        RuleSet::compile(&rows)
    }

    #[test]
    fn seeded_rules_find_contact_details() {
        let rules = seeded();
        let cases: [(&str, &[&str]); 14] = [
            ("我的电话 13800138000 随时联系", &["phone"]),
            ("call +86 138-0013-8000", &["phone"]),
            ("１３８ ００１３ ８０００", &["phone"]),
            ("加我微信 abc_12345 面交", &["wechat"]),
            ("VX: Zhang_San88", &["wechat"]),
            ("v信号：tom2024x", &["wechat"]),
            ("qq 123456789", &["qq"]),
            ("看这个 https://example.com/x?y=1", &["link"]),
            ("淘宝店 shop123.taobao.com 有货", &["link"]),
            ("www.example.org", &["link"]),
            ("微信 13800138000", &["phone"]),
            ("电话13800138000 或者 qq:10001", &["phone", "qq"]),
            ("价格 120 元，明天下午 3 点图书馆见", &[]),
            ("学号 2021123456789 不是电话", &[]),
        ];
        for (text, expected) in cases {
            assert_eq!(rules.detect(text), expected, "text: {text}");
        }
    }

    #[test]
    fn ordinary_messages_pass() {
        let rules = seeded();
        for text in [
            "还在吗？",
            "能便宜点吗，100 行不行",
            "1.5 元一本",
            "version2 的那个",
            "明天 18:30 东门",
            "我下午在 3 号楼",
        ] {
            assert!(rules.detect(text).is_empty(), "false positive: {text}");
        }
    }

    #[test]
    fn rules_are_validated_before_they_are_stored() {
        assert!(validate_rule("phone", r"1\d{10}").is_ok());
        assert!(validate_rule("Phone", r"1\d{10}").is_err());
        assert!(validate_rule("phone", "(unclosed").is_err());
        assert!(validate_rule("phone", "a*").is_err(), "matches everything");
        assert!(validate_rule("phone", &"a".repeat(501)).is_err());
    }

    #[test]
    fn broken_rows_are_skipped() {
        let now = util::now();
        let row = |id, pattern: &str, enabled| contact_rule::Model {
            id,
            kind: "x".into(),
            pattern: pattern.into(),
            description: String::new(),
            enabled,
            created_at: now,
            updated_at: now,
        };
        let set = RuleSet::compile(&[row(1, "(", true), row(2, "abc", false), row(3, "xyz", true)]);
        assert_eq!(set.detect("abc xyz"), vec!["x".to_string()]);
        assert!(set.detect("abc").is_empty(), "disabled rules do not apply");
    }
}
