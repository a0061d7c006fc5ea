//! Text → search tokens. Every piece of text that is indexed or searched goes through here, so the index and
//! the queries always agree on what a "word" is.
//!
//! 1. **Folding**, one character to one character (so positions in the folded text are positions in the
//!    original, which highlighting relies on): full-width ASCII to half-width (`ｉＰａｄ` → `iPad`), the ideographic
//!    space to a space, upper case to lower case, and a table of common traditional characters to their
//!    simplified forms (`自行車` → `自行车`, `電腦` → `电脑`).
//! 2. **Segmentation** with jieba (one shared dictionary, loaded once per process). Indexed text is cut in
//!    search-engine mode, which adds the dictionary words inside a long word (`自行车` also gives `自行` and
//!    `行车`); queries are cut in precise mode.
//! 3. **Pieces**: each jieba word is reduced to runs of letters and digits (punctuation and symbols are never
//!    searchable), and a run of ASCII letters and digits is split where letters meet digits (`iPhone13` →
//!    `iphone` `13`, like `iPhone 13`). Pieces longer than [`PIECE_MAX_CHARS`] are dropped.

use std::{
    collections::{HashMap, HashSet},
    sync::LazyLock,
};

/// The one jieba instance of the process: loading the dictionary takes a while, so it is done once.
static JIEBA: LazyLock<jieba_rs::Jieba> = LazyLock::new(jieba_rs::Jieba::new);

/// Longest searchable piece, in characters; longer ones (serial numbers, keyboard mashing) are not indexed.
pub const PIECE_MAX_CHARS: usize = 32;

/// Loads the dictionary now rather than on the first request (called at start-up, off the async threads).
pub fn warm_up() {
    LazyLock::force(&JIEBA);
}

/// Common traditional characters and their simplified forms, as pairs. Only characters whose traditional form is
/// never itself a simplified character with another meaning are listed (so `著`, `乾`, `藉` are not), which keeps
/// folding safe to apply to simplified text.
const TRADITIONAL_SIMPLIFIED: &str = "\
車车腦脑電电機机書书學学數数習习燈灯筆笔記记鍵键盤盘螢萤顯显錶表鐘钟運运動动籃篮網网線线寶宝風风鍋锅櫃柜褲裤\
襪袜錢钱價价賣卖買买舊旧轉转讓让貨货點点當当單单雙双號号碼码類类級级課课題题試试驗验圖图館馆藝艺術术體体醫医\
藥药樂乐彈弹鋼钢們们個个這这邊边來来時时間间會会發发現现實实際际門门開开關关長长廣广東东專专業业與与為为從从\
後后裡里裏里麼么還还樣样種种過过對对說说話话語语讀读寫写聽听見见視视覺觉親亲愛爱頭头臉脸髮发歲岁無无紅红綠绿\
藍蓝黃黄銀银鐵铁鋁铝膠胶紙纸張张帶带擔担戶户廚厨廳厅樓楼層层區区園园場场寢寝飯饭麵面雞鸡魚鱼湯汤飲饮攝摄鏡镜\
輛辆騎骑輪轮鎖锁護护檯台臺台傘伞壺壶潔洁淨净濕湿熱热氣气溫温蓋盖墊垫帳帐簾帘鏈链遊游戲戏員员證证貼贴優优禮礼\
約约標标準准備备復复複复製制裝装飾饰齊齐隨随貴贵賤贱漲涨減减滿满歡欢謝谢請请問问聯联繫系係系統统計计設设訊讯\
誌志雜杂報报歷历國国經经濟济財财務务範范圍围嚴严懷怀壞坏處处虛虚練练絲丝綫线細细織织給给結结絕绝續续總总綜综\
維维緊紧訂订評评論论詢询認认識识調调談谈謎谜講讲譯译議议變变貓猫豬猪鳥鸟龍龙馬马驢驴蝦虾蟲虫閱阅闆板隊队陽阳\
陰阴陳陈陸陆險险隱隐難难離离雲云靈灵韓韩頁页項项順顺須须預预領领頻频額额顏颜願愿飛飞饅馒髒脏鬆松魯鲁鮮鲜鳳凤\
鴨鸭鵝鹅麗丽麥麦黨党齒齿龜龟億亿儀仪兒儿內内兩两冊册凍冻劃划劇剧勞劳勝胜勢势協协卻却廠厂參参吳吴啟启喚唤囑嘱\
圓圆團团壓压壇坛牆墙聲声夠够夢梦奪夺奮奋婦妇媽妈孫孙審审尋寻導导將将屆届屬属島岛峽峡幣币帥帅師师幫帮幹干庫库\
廢废強强彎弯錄录徑径徵征恆恒惡恶態态慘惨慣惯憶忆應应戀恋戰战擊击擇择據据擁拥擬拟攜携擴扩擺摆攤摊敗败敵敌斷断\
於于晝昼暫暂曆历條条極极檢检橋桥權权歐欧歸归殺杀殼壳漢汉淚泪滅灭滬沪澤泽灣湾災灾烏乌煙烟煉炼營营爭争爾尔獎奖\
獨独獲获環环瑪玛產产畢毕畫画異异療疗盡尽監监眾众確确磚砖禍祸穩稳積积窮穷竊窃競竞節节築筑簡简簽签籠笼糧粮紀纪\
紛纷紮扎綁绑緣缘編编縣县縮缩繩绳繪绘繼继罰罚罷罢義义聖圣聞闻聰聪職职肅肃腳脚膚肤興兴舉举艦舰華华萬万葉叶蘋苹\
蘭兰虧亏衛卫衝冲補补襯衬規规覽览觀观觸触訓训託托訪访許许診诊詞词詩诗該该詳详誠诚誤误誰谁諸诸謀谋貝贝負负貢贡\
貧贫販贩貪贪責责費费賀贺資资賓宾賞赏賠赔賴赖購购賽赛贈赠贏赢趕赶趙赵跡迹踐践蹤踪躍跃軌轨軍军軟软較较載载輔辅\
輕轻輸输辦办農农連连週周進进達达違违遠远適适遲迟選选遺遗郵邮鄉乡醬酱釋释針针釣钓鈕钮鉛铅銅铜銷销鋪铺鋒锋錯错\
鑰钥閃闪閉闭閒闲閣阁闊阔陣阵階阶隻只雖虽靜静響响頂顶顆颗顧顾飄飘養养餅饼駕驾騰腾鬥斗鬧闹鹽盐穀谷餘余匯汇彙汇\
";

static TO_SIMPLIFIED: LazyLock<HashMap<char, char>> = LazyLock::new(|| {
    let chars: Vec<char> = TRADITIONAL_SIMPLIFIED.chars().collect();
    chars.chunks_exact(2).map(|p| (p[0], p[1])).collect()
});

/// The search form of one character (see the module documentation). Always exactly one character.
pub fn fold_char(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0)
            .unwrap_or(c)
            .to_ascii_lowercase(),
        '\u{3000}' => ' ',
        c if c.is_ascii() => c.to_ascii_lowercase(),
        c => {
            if let Some(s) = TO_SIMPLIFIED.get(&c) {
                return *s;
            }
            let mut lower = c.to_lowercase();
            match (lower.next(), lower.next()) {
                (Some(l), None) => l,
                _ => c,
            }
        }
    }
}

/// `text` with every character folded.
pub fn fold(text: &str) -> String {
    text.chars().map(fold_char).collect()
}

/// A searchable piece of folded text and where it lies, in characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub text: String,
    pub start: usize,
    pub end: usize,
}

fn is_piece_char(c: char) -> bool {
    c.is_alphanumeric()
}

/// The pieces of one jieba word that starts at character `start` of the text.
fn pieces_of(word: &str, start: usize, out: &mut Vec<Piece>) {
    let chars: Vec<char> = word.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if !is_piece_char(chars[i]) {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < chars.len() && is_piece_char(chars[j]) {
            // Inside an ASCII run, letters and digits part ways.
            let (a, b) = (chars[j - 1], chars[j]);
            if a.is_ascii_alphanumeric()
                && b.is_ascii_alphanumeric()
                && a.is_ascii_digit() != b.is_ascii_digit()
            {
                break;
            }
            j += 1;
        }
        if j - i <= PIECE_MAX_CHARS {
            out.push(Piece {
                text: chars[i..j].iter().collect(),
                start: start + i,
                end: start + j,
            });
        }
        i = j;
    }
}

/// What indexing a field yields: the pieces of the precise segmentation in order (phrases match against these),
/// and the extra pieces search-engine mode finds inside longer words.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Segmented {
    pub words: Vec<Piece>,
    pub extras: Vec<Piece>,
}

/// Segments already folded text for the index.
pub fn segment_folded(folded: &str) -> Segmented {
    // Search mode emits, for every word of the precise cut, the dictionary words inside it and then the word
    // itself; walking backwards, a token inside the span of the word that follows it is such an inner word.
    let tokens = JIEBA.cut_for_search(folded, true);
    let mut precise = Vec::new();
    let mut inner = Vec::new();
    let mut parent: Option<(usize, usize)> = None;
    for t in tokens.iter().rev() {
        match parent {
            Some((s, e)) if t.start >= s && t.end <= e && t.end - t.start < e - s => inner.push(t),
            _ => {
                parent = Some((t.start, t.end));
                precise.push(t);
            }
        }
    }
    let mut out = Segmented::default();
    for t in precise.iter().rev() {
        pieces_of(t.word, t.start, &mut out.words);
    }
    let mut seen: HashSet<String> = out.words.iter().map(|p| p.text.clone()).collect();
    let mut extras = Vec::new();
    for t in inner.iter().rev() {
        pieces_of(t.word, t.start, &mut extras);
    }
    out.extras = extras
        .into_iter()
        .filter(|p| seen.insert(p.text.clone()))
        .collect();
    out
}

/// The index tokens of a field: its words in order, then the extra inner words.
pub fn index_tokens(text: &str) -> Vec<String> {
    let s = segment_folded(&fold(text));
    s.words
        .into_iter()
        .chain(s.extras)
        .map(|p| p.text)
        .collect()
}

/// The words of folded query text (precise mode). Each jieba word becomes one entry holding its pieces, which
/// must appear next to each other (`iphone13` → `["iphone", "13"]`).
pub fn query_words(folded: &str) -> Vec<Vec<String>> {
    JIEBA
        .cut(folded, true)
        .into_iter()
        .filter_map(|t| {
            let mut pieces = Vec::new();
            pieces_of(t.word, t.start, &mut pieces);
            (!pieces.is_empty()).then(|| pieces.into_iter().map(|p| p.text).collect())
        })
        .collect()
}

/// `title`, HTML-escaped, with every run of characters that belongs to one of `words` wrapped in `<em>`…`</em>`.
pub fn highlight(title: &str, words: &HashSet<String>) -> String {
    let original: Vec<char> = title.chars().collect();
    let mut marked = vec![false; original.len()];
    if !words.is_empty() {
        let s = segment_folded(&fold(title));
        for p in s.words.iter().chain(s.extras.iter()) {
            if words.contains(&p.text) {
                for m in &mut marked[p.start.min(original.len())..p.end.min(original.len())] {
                    *m = true;
                }
            }
        }
    }
    let mut out = String::with_capacity(title.len() + 16);
    let mut open = false;
    for (c, m) in original.iter().zip(marked) {
        if m != open {
            out.push_str(if m { "<em>" } else { "</em>" });
            open = m;
        }
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(*c),
        }
    }
    if open {
        out.push_str("</em>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        segment_folded(&fold(text))
            .words
            .into_iter()
            .map(|p| p.text)
            .collect()
    }

    #[test]
    fn folding_is_one_to_one_and_idempotent() {
        assert_eq!(fold("ｉＰａｄ　２０２１"), "ipad 2021");
        assert_eq!(fold("自行車 電腦"), "自行车 电脑");
        assert_eq!(fold("AirPods Pro"), "airpods pro");
        let table: Vec<char> = TRADITIONAL_SIMPLIFIED.chars().collect();
        assert_eq!(table.len() % 2, 0, "the table is pairs");
        let mut keys = HashSet::new();
        for p in table.chunks_exact(2) {
            assert_ne!(p[0], p[1], "{} maps to itself", p[0]);
            assert!(keys.insert(p[0]), "{} listed twice", p[0]);
        }
        for p in table.chunks_exact(2) {
            assert!(
                !keys.contains(&p[1]),
                "{} is a simplified form and a key",
                p[1]
            );
        }
        for text in ["İstanbul ＡＢＣ 車", "ß ǅ"] {
            assert_eq!(fold(text).chars().count(), text.chars().count());
            assert_eq!(fold(&fold(text)), fold(text));
        }
    }

    #[test]
    fn search_mode_indexes_words_inside_longer_words() {
        let s = segment_folded(&fold("九成新 山地自行车 送配件"));
        let w: Vec<&str> = s.words.iter().map(|p| p.text.as_str()).collect();
        let x: Vec<&str> = s.extras.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(w, ["九成新", "山地", "自行车", "送", "配件"]);
        for inner in ["九成", "自行", "行车"] {
            assert!(x.contains(&inner), "{inner} missing from {x:?}");
        }
        // Spans point into the original text.
        let bike = s.words.iter().find(|p| p.text == "自行车").unwrap();
        assert_eq!((bike.start, bike.end), (6, 9));
    }

    #[test]
    fn latin_and_digits_are_pieces_of_their_own() {
        assert_eq!(words("iPad 2021"), ["ipad", "2021"]);
        assert_eq!(words("iPhone13 Pro"), ["iphone", "13", "pro"]);
        assert_eq!(words("考研 408"), ["考研", "408"]);
        assert_eq!(words("ＡｉｒＰｏｄｓ，全新！"), ["airpods", "全新"]);
        assert_eq!(query_words("iphone13"), vec![vec!["iphone", "13"]]);
        assert!(
            query_words("*:^()-\"").is_empty(),
            "punctuation is not searchable"
        );
        assert!(
            words(&"9".repeat(40)).is_empty(),
            "over-long pieces are dropped"
        );
    }

    /// What jieba does with the campus abbreviation 高数 (高等数学, "advanced mathematics"): the query word is
    /// `高数` (found by jieba's HMM), while 高等数学 is indexed as `高等数学`, `高等` and `数学` — no piece in
    /// common, so segmentation alone cannot make one find the other (the query side adds it; see `query.rs`).
    #[test]
    fn gaoshu_and_gaodengshuxue_share_no_piece() {
        assert_eq!(query_words("高数"), vec![vec!["高数"]]);
        let indexed = index_tokens("高等数学教材");
        assert!(indexed.contains(&"高等数学".to_string()));
        assert!(indexed.contains(&"数学".to_string()));
        assert!(!indexed.contains(&"高数".to_string()));
        assert!(index_tokens("高数期末复习笔记").contains(&"高数".to_string()));
    }

    #[test]
    fn highlighting_marks_matched_words_and_escapes_the_rest() {
        let w: HashSet<String> = ["自行车".to_string(), "ipad".to_string()].into();
        assert_eq!(
            highlight("山地自行车<b>", &w),
            "山地<em>自行车</em>&lt;b&gt;"
        );
        assert_eq!(
            highlight("ｉＰａｄ Air & 自行車", &w),
            "<em>ｉＰａｄ</em> Air &amp; <em>自行車</em>"
        );
        assert_eq!(highlight("台灯", &w), "台灯");
    }
}
