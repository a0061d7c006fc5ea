//! What a student typed, as a query the index understands. Nothing the user types is passed to the database's
//! query syntax: the query is taken apart here into words, and the FTS5 `MATCH` expression or the PostgreSQL
//! `tsquery` is written from those words with every word quoted, so `*`, `:`, `^`, `(`, `AND`, `NEAR` and the
//! like are only ever text.
//!
//! Syntax (documented in `docs/search.md`):
//! - words separated by spaces must all match (AND); a word jieba cuts into several words means all of them;
//! - `-word` (or `-"a phrase"`) excludes listings that contain it;
//! - `"…"` (also `“…”`, `「…」`, `『…』`) is a phrase: its words next to each other, in order;
//! - a few campus abbreviations also search their full form and back (高数 ↔ 高等数学, see [`ABBREVIATIONS`]).
//!
//! The same parsed query decides whether a new listing matches a saved search ([`Query::matches`]), so a saved
//! search notifies about exactly what a search would show.

use std::collections::HashSet;

use super::segment;
use crate::error::{AppError, AppResult};

/// Longest query, in characters.
pub const QUERY_MAX_CHARS: usize = 100;
/// Most words (included and excluded) one query may hold.
pub const MAX_TERMS: usize = 16;

/// Course-name abbreviations students type, and their full forms: a query for either finds both.
pub const ABBREVIATIONS: &[(&str, &str)] = &[
    ("高数", "高等数学"),
    ("线代", "线性代数"),
    ("大物", "大学物理"),
    ("概统", "概率论与数理统计"),
    ("数电", "数字电路"),
    ("模电", "模拟电路"),
    ("马原", "马克思主义基本原理"),
];

/// A word the listing must (or must not) contain: any one of its alternatives, each a phrase of pieces that
/// must appear next to each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub alternatives: Vec<Vec<String>>,
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub include: Vec<Term>,
    pub exclude: Vec<Term>,
    /// The query as typed, folded and with spaces collapsed: what history, hot queries and saved searches keep.
    pub normalized: String,
}

fn is_quote(c: char) -> bool {
    matches!(
        c,
        '"' | '\u{201C}' | '\u{201D}' | '\u{300C}' | '\u{300D}' | '\u{300E}' | '\u{300F}'
    )
}

/// The pieces of a phrase: every piece of every word, in order.
fn phrase_pieces(text: &str) -> Vec<String> {
    segment::query_words(text).into_iter().flatten().collect()
}

/// The alternatives of a single-word term (its abbreviation or full form, when it has one).
fn alternatives_of(phrase: Vec<String>) -> Vec<Vec<String>> {
    let joined: String = phrase.concat();
    let mut alts = vec![phrase];
    for (short, long) in ABBREVIATIONS {
        let other = if joined == *short {
            long
        } else if joined == *long {
            short
        } else {
            continue;
        };
        let p = phrase_pieces(other);
        if !p.is_empty() && !alts.contains(&p) {
            alts.push(p);
        }
    }
    alts
}

impl Query {
    /// Parses a query. 400 `query_empty` for nothing but spaces, `query_too_long` past [`QUERY_MAX_CHARS`],
    /// `query_no_words` when nothing searchable is left (punctuation only, or only exclusions), and
    /// `query_too_many_words` past [`MAX_TERMS`].
    pub fn parse(raw: &str) -> AppResult<Query> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(AppError::bad_request(
                "query_empty",
                "type something to search for",
            ));
        }
        if trimmed.chars().count() > QUERY_MAX_CHARS {
            return Err(AppError::bad_request(
                "query_too_long",
                format!("a search may be at most {QUERY_MAX_CHARS} characters"),
            ));
        }
        let folded = segment::fold(trimmed);
        let normalized = folded.split_whitespace().collect::<Vec<_>>().join(" ");
        let chars: Vec<char> = folded.chars().collect();

        let mut include = Vec::new();
        let mut exclude = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c.is_whitespace() {
                i += 1;
                continue;
            }
            let negated = c == '-';
            if negated {
                i += 1;
                if i >= chars.len() || chars[i].is_whitespace() {
                    continue; // a lone "-" is punctuation
                }
            }
            if is_quote(chars[i]) {
                // A phrase, up to the next quote (or the end of the query).
                let start = i + 1;
                let mut end = start;
                while end < chars.len() && !is_quote(chars[end]) {
                    end += 1;
                }
                let text: String = chars[start..end].iter().collect();
                i = end + 1;
                let pieces = phrase_pieces(&text);
                if pieces.is_empty() {
                    continue;
                }
                let term = Term {
                    alternatives: vec![pieces],
                };
                if negated {
                    exclude.push(term);
                } else {
                    include.push(term);
                }
                continue;
            }
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && !is_quote(chars[i]) {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let words = segment::query_words(&text);
            if negated {
                // `-山地自行车` excludes that word as a whole, not each of its parts.
                let pieces: Vec<String> = words.into_iter().flatten().collect();
                if !pieces.is_empty() {
                    exclude.push(Term {
                        alternatives: alternatives_of(pieces),
                    });
                }
            } else {
                include.extend(words.into_iter().map(|w| Term {
                    alternatives: alternatives_of(w),
                }));
            }
        }
        dedup(&mut include);
        dedup(&mut exclude);
        if include.is_empty() {
            let message = if exclude.is_empty() {
                "the search has no words to look for (only punctuation)"
            } else {
                "a search needs at least one word that is not excluded"
            };
            return Err(AppError::bad_request("query_no_words", message));
        }
        if include.len() + exclude.len() > MAX_TERMS {
            return Err(AppError::bad_request(
                "query_too_many_words",
                format!("a search may have at most {MAX_TERMS} words"),
            ));
        }
        Ok(Query {
            include,
            exclude,
            normalized,
        })
    }

    /// Every piece a matching listing contains (for highlighting).
    pub fn highlight_words(&self) -> HashSet<String> {
        self.include
            .iter()
            .flat_map(|t| t.alternatives.iter().flatten().cloned())
            .collect()
    }

    /// The SQLite FTS5 `MATCH` expression: every phrase a quoted string, included terms joined by `AND`,
    /// alternatives by `OR`, exclusions by `NOT`.
    pub fn fts5_match(&self) -> String {
        fn phrase(p: &[String]) -> String {
            format!("\"{}\"", p.join(" ").replace('"', "\"\""))
        }
        fn term(t: &Term) -> String {
            match t.alternatives.as_slice() {
                [one] => phrase(one),
                alts => format!(
                    "({})",
                    alts.iter()
                        .map(|a| phrase(a))
                        .collect::<Vec<_>>()
                        .join(" OR ")
                ),
            }
        }
        let mut out = format!(
            "({})",
            self.include
                .iter()
                .map(term)
                .collect::<Vec<_>>()
                .join(" AND ")
        );
        for t in &self.exclude {
            out.push_str(" NOT ");
            out.push_str(&term(t));
        }
        out
    }

    /// The PostgreSQL `tsquery` text (cast with `::tsquery`, never parsed by a text search configuration):
    /// lexemes quoted, `&` between terms, `|` between alternatives, `<->` inside phrases, `!` for exclusions.
    pub fn tsquery(&self) -> String {
        fn term(t: &Term) -> String {
            let alts: Vec<String> = t
                .alternatives
                .iter()
                .map(|p| {
                    let lexemes: Vec<String> =
                        p.iter().map(|w| super::index::ts_quote(w)).collect();
                    if lexemes.len() == 1 {
                        lexemes[0].clone()
                    } else {
                        format!("({})", lexemes.join(" <-> "))
                    }
                })
                .collect();
            if alts.len() == 1 {
                alts[0].clone()
            } else {
                format!("({})", alts.join(" | "))
            }
        }
        let mut parts: Vec<String> = self.include.iter().map(term).collect();
        parts.extend(self.exclude.iter().map(|t| format!("!{}", term(t))));
        parts.join(" & ")
    }

    /// Whether a listing whose fields have these index tokens (see [`segment::index_tokens`]) matches, by the
    /// same rules the index applies.
    pub fn matches(&self, fields: &[Vec<String>]) -> bool {
        let has = |t: &Term| {
            t.alternatives.iter().any(|p| {
                fields.iter().any(|f| {
                    f.windows(p.len())
                        .any(|w| w.iter().zip(p).all(|(a, b)| a == b))
                })
            })
        };
        self.include.iter().all(has) && !self.exclude.iter().any(has)
    }
}

fn dedup(terms: &mut Vec<Term>) {
    let mut seen = Vec::new();
    terms.retain(|t| {
        if seen.contains(t) {
            false
        } else {
            seen.push(t.clone());
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(raw: &str) -> &'static str {
        match Query::parse(raw) {
            Err(AppError::BadRequest { code, .. }) => code,
            other => panic!("{raw:?} parsed: {other:?}"),
        }
    }

    fn alts(q: &Query) -> Vec<Vec<Vec<&str>>> {
        q.include
            .iter()
            .map(|t| {
                t.alternatives
                    .iter()
                    .map(|p| p.iter().map(String::as_str).collect())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn bad_queries_get_stable_codes() {
        assert_eq!(code(""), "query_empty");
        assert_eq!(code("   　 "), "query_empty");
        assert_eq!(code("*:^()-\"!?，。"), "query_no_words");
        assert_eq!(code("-自行车"), "query_no_words");
        assert_eq!(code(&"车".repeat(101)), "query_too_long");
        assert!(Query::parse(&"车".repeat(100)).is_ok());
        let many: Vec<String> = (0..17).map(|i| format!("w{i}x")).collect();
        assert_eq!(code(&many.join(" ")), "query_too_many_words");
    }

    #[test]
    fn words_exclusions_and_phrases() {
        let q = Query::parse("山地自行车 -二手 \"九成新 台灯\" iPhone13").unwrap();
        assert_eq!(
            alts(&q),
            vec![
                vec![vec!["山地"]],
                vec![vec!["自行车"]],
                vec![vec!["九成新", "台灯"]],
                vec![vec!["iphone", "13"]],
            ]
        );
        assert_eq!(q.exclude[0].alternatives, vec![vec!["二手".to_string()]]);
        assert_eq!(q.normalized, "山地自行车 -二手 \"九成新 台灯\" iphone13");
        // Chinese quotes and full-width minus work too; an unclosed quote runs to the end.
        let q = Query::parse("“二手 自行车” －电动 \"台灯").unwrap();
        assert_eq!(
            alts(&q),
            vec![vec![vec!["二手", "自行车"]], vec![vec!["台灯"]]]
        );
        assert_eq!(q.exclude.len(), 1);
    }

    #[test]
    fn syntax_characters_are_only_text() {
        let q = Query::parse("自行车 \"*:^()-").unwrap();
        assert_eq!(alts(&q), vec![vec![vec!["自行车"]]]);
        assert_eq!(q.fts5_match(), "(\"自行车\")");
        let q = Query::parse("NEAR(a b) OR c* AND ^d").unwrap();
        let m = q.fts5_match();
        assert_eq!(
            m,
            "(\"near\" AND \"a\" AND \"b\" AND \"or\" AND \"c\" AND \"and\" AND \"d\")"
        );
    }

    #[test]
    fn abbreviations_search_both_forms() {
        let q = Query::parse("高数").unwrap();
        assert_eq!(alts(&q), vec![vec![vec!["高数"], vec!["高等数学"]]]);
        assert_eq!(q.fts5_match(), "((\"高数\" OR \"高等数学\"))");
        assert_eq!(q.tsquery(), "('高数' | '高等数学')");
        let q = Query::parse("高等数学").unwrap();
        assert_eq!(alts(&q), vec![vec![vec!["高等数学"], vec!["高数"]]]);
    }

    #[test]
    fn match_expressions_for_both_databases() {
        let q = Query::parse("二手 \"山地 自行车\" -电动 -\"公路 车\"").unwrap();
        assert_eq!(
            q.fts5_match(),
            "(\"二手\" AND \"山地 自行车\") NOT \"电动\" NOT \"公路 车\""
        );
        assert_eq!(
            q.tsquery(),
            "'二手' & ('山地' <-> '自行车') & !'电动' & !('公路' <-> '车')"
        );
    }

    #[test]
    fn listings_match_saved_queries_like_the_index() {
        let doc = |title: &str, body: &str| {
            vec![
                segment::index_tokens(title),
                segment::index_tokens("自行车 自行车与出行"),
                segment::index_tokens(body),
            ]
        };
        let bike = doc("九成新 山地自行车", "图书馆面交");
        assert!(Query::parse("自行车").unwrap().matches(&bike));
        assert!(Query::parse("山地 自行车").unwrap().matches(&bike));
        assert!(Query::parse("\"山地自行车\"").unwrap().matches(&bike));
        assert!(Query::parse("自行车 面交").unwrap().matches(&bike));
        assert!(!Query::parse("自行车 -山地").unwrap().matches(&bike));
        assert!(!Query::parse("\"自行车 山地\"").unwrap().matches(&bike));
        assert!(!Query::parse("台灯").unwrap().matches(&bike));
        let ipad = doc("iPad 2021 平板", "");
        assert!(Query::parse("IPAD").unwrap().matches(&ipad));
        assert!(Query::parse("ipad2021").unwrap().matches(&ipad));
        assert!(!Query::parse("ipad2022").unwrap().matches(&ipad));
    }
}
