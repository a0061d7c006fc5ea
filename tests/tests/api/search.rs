//! Search: Chinese full-text search over a fixed corpus of campus listings (relevance, segmentation,
//! syntax, filters, sorts, cursors), the index following every listing change, suggestions, hot queries,
//! history and saved searches. Every listing is published through the API, so the index is written by the
//! real code path.

use std::collections::{HashMap, HashSet};

use campus_trade::listings::model::Transition;
use campus_trade::listings::service::{Actor, transition};
use campus_trade_tests::{Student, TestApp, app_test};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The corpus: (title, description, category slug, price in fen). 56 listings of one school.
const CORPUS: &[(&str, &str, &str, i64)] = &[
    (
        "九成新山地自行车 捷安特",
        "骑了一年，刹车灵敏，送打气筒",
        "bicycles",
        35_000,
    ),
    ("二手自行车 通勤代步", "毕业出，送车锁", "bicycles", 15_000),
    (
        "公路自行车 碳纤维车架",
        "成色很好，适合骑行爱好者",
        "bicycles",
        120_000,
    ),
    (
        "折叠自行车 可放宿舍",
        "轻便，一只手就能拎",
        "bicycles",
        30_000,
    ),
    ("U型车锁", "结实耐用，带两把钥匙", "bicycles", 3_000),
    ("车筐 塑料", "适用于大部分自行车，安装简单", "daily", 1_500),
    (
        "电动车 雅迪 续航50公里",
        "电池去年换过，充电器齐全",
        "e-bikes",
        180_000,
    ),
    ("电动滑板车", "小米款，可折叠", "scooters", 80_000),
    ("护眼台灯 LED", "三档调光，宿舍必备", "lamps", 4_500),
    ("宿舍台灯 可充电", "夹子款，不占桌面", "lamps", 2_500),
    ("落地灯", "暖光，搬家出", "lamps", 6_000),
    (
        "高等数学教材 同济第七版 上下册",
        "有少量笔记，不影响阅读",
        "textbooks",
        2_000,
    ),
    ("高数期末复习笔记", "手写整理，重点都标出来了", "notes", 500),
    ("线性代数课本", "考完了，便宜出", "textbooks", 1_500),
    ("大学物理教材", "附习题答案", "textbooks", 1_800),
    ("C语言程序设计 谭浩强", "计算机专业入门", "textbooks", 1_200),
    (
        "408计算机考研资料 全套",
        "王道四本，含真题",
        "exam-prep",
        5_000,
    ),
    ("考研英语真题 黄皮书", "2015到2024年", "exam-prep", 3_000),
    ("考研数学复习全书", "李永乐，基本全新", "exam-prep", 4_000),
    ("四六级词汇书", "乱序版", "exam-prep", 1_000),
    ("公务员考试资料", "行测申论都有", "exam-prep", 2_000),
    (
        "iPad 2021 64G 深空灰",
        "电池健康95%，带壳",
        "tablets",
        150_000,
    ),
    ("IPAD mini 6", "紫色，几乎没用", "tablets", 220_000),
    ("ipad air 4 带笔", "二代笔一起出", "tablets", 260_000),
    ("华为平板 MatePad", "看网课用的", "tablets", 120_000),
    ("AirPods Pro 二代", "降噪正常，盒子有划痕", "audio", 90_000),
    ("蓝牙耳机 索尼", "音质很好", "audio", 30_000),
    ("iPhone 13 128G", "国行，无拆修", "phones", 300_000),
    ("小米手机 红米", "备用机", "phones", 60_000),
    ("联想笔记本电脑 小新", "i5，16G内存", "computers", 250_000),
    ("27寸显示器", "2K屏，带支架", "computers", 70_000),
    ("游戏本 拯救者", "3060显卡", "computers", 500_000),
    ("机械键盘 青轴", "打字很爽", "accessories", 15_000),
    ("无线鼠标 罗技", "静音款", "accessories", 5_000),
    ("移动电源 充电宝", "两万毫安", "accessories", 4_000),
    ("拍立得 mini11", "送相纸", "cameras", 30_000),
    ("吹风机", "大功率，宿舍慎用", "small-appliances", 5_000),
    ("小电锅 宿舍可用", "煮面很方便", "small-appliances", 6_000),
    ("电风扇 静音", "夏天必备", "small-appliances", 5_000),
    ("收纳箱 三个", "透明带盖", "storage", 2_000),
    ("床垫 1米2", "学校宿舍尺寸", "bedding", 8_000),
    ("羽毛球拍 尤尼克斯", "送三个球", "ball-sports", 15_000),
    ("篮球 斯伯丁", "室外用", "ball-sports", 8_000),
    ("瑜伽垫", "加厚防滑", "fitness", 3_000),
    ("露营帐篷 双人", "只用过一次", "outdoor", 20_000),
    ("羽绒服 黑色 L码", "穿过一个冬天", "clothes", 25_000),
    ("运动鞋 耐克 42码", "鞋底磨损小", "shoes", 30_000),
    ("双肩包", "能放15寸电脑", "bags", 6_000),
    ("行李箱 24寸", "万向轮", "bags", 15_000),
    ("演唱会门票 周杰伦", "内场票一张", "event-tickets", 80_000),
    ("健身卡 剩半年", "校内健身房", "memberships", 50_000),
    ("雨伞 晴雨两用", "自动开合", "daily", 1_500),
    ("九成新 台灯灯泡", "暖白光两个", "lamps", 800),
    ("九成新 电饭煲", "三人份", "small-appliances", 9_000),
    ("九成新 衣架 十个", "晾衣服用", "daily", 600),
    ("九成新 书架", "三层", "storage", 3_500),
];

/// A small PNG, uploaded as `wx.uploadFile` would; returns the image id.
async fn upload(app: &TestApp, who: &Student) -> i64 {
    let img = image::RgbImage::from_fn(32, 24, |x, y| {
        image::Rgb([(x * 7) as u8, (y * 9) as u8, 60])
    });
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).unwrap();
    let (status, body) = app
        .upload_file(
            Some(&who.token),
            "photo.png",
            "image/png",
            &png.into_inner(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["id"].as_i64().unwrap()
}

struct Demo {
    school: i64,
    campus: i64,
    categories: HashMap<String, i64>,
}

async fn demo(app: &TestApp) -> Demo {
    let (_, schools) = app.get("/api/v1/schools", None).await;
    let school = schools
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["slug"] == "demo-university")
        .unwrap();
    let (_, cats) = app.get("/api/v1/categories", None).await;
    let mut categories = HashMap::new();
    for parent in cats.as_array().unwrap() {
        categories.insert(
            parent["slug"].as_str().unwrap().to_string(),
            parent["id"].as_i64().unwrap(),
        );
        for child in parent["children"].as_array().unwrap() {
            categories.insert(
                child["slug"].as_str().unwrap().to_string(),
                child["id"].as_i64().unwrap(),
            );
        }
    }
    Demo {
        school: school["id"].as_i64().unwrap(),
        campus: school["campuses"][0]["id"].as_i64().unwrap(),
        categories,
    }
}

/// A student of the demo school.
async fn student(app: &TestApp, who: &str, d: &Demo) -> Student {
    let s = app.login(who).await;
    let (status, _) = app
        .patch(
            "/api/v1/me",
            Some(&s.token),
            &json!({ "school_id": d.school, "campus_id": d.campus }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    s
}

async fn publish(
    app: &TestApp,
    s: &Student,
    d: &Demo,
    title: &str,
    description: &str,
    slug: &str,
    price: i64,
) -> Value {
    let img = upload(app, s).await;
    let body = json!({
        "title": title, "description": description, "price": price, "condition": "good",
        "category_id": d.categories[slug], "image_ids": [img], "trade_methods": ["delivery"], "campus_id": d.campus,
    });
    let (status, l) = app.post("/api/v1/listings", Some(&s.token), &body).await;
    assert_eq!(status, StatusCode::OK, "{title}: {l}");
    l
}

/// Publishes the corpus (three sellers, to stay under the hourly publishing limit); returns listing ids by title.
async fn corpus(app: &TestApp, d: &Demo) -> HashMap<&'static str, i64> {
    let mut sellers = Vec::new();
    for who in ["sellera", "sellerb", "sellerc"] {
        sellers.push(student(app, who, d).await);
    }
    let mut ids = HashMap::new();
    for (i, (title, description, slug, price)) in CORPUS.iter().enumerate() {
        let l = publish(app, &sellers[i % 3], d, title, description, slug, *price).await;
        ids.insert(*title, l["id"].as_i64().unwrap());
    }
    ids
}

fn enc(q: &str) -> String {
    let mut out = String::new();
    for b in q.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `GET /api/v1/search?q=…&<extra>`; returns status and body.
async fn search(app: &TestApp, q: &str, extra: &str) -> (StatusCode, Value) {
    app.get(
        &format!(
            "/api/v1/search?q={}{}{extra}",
            enc(q),
            if extra.is_empty() { "" } else { "&" }
        ),
        None,
    )
    .await
}

/// The titles of a successful search's first page, in order.
async fn titles(app: &TestApp, q: &str, extra: &str) -> Vec<String> {
    let (s, page) = search(app, q, extra).await;
    assert_eq!(s, StatusCode::OK, "{q}: {page}");
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["title"].as_str().unwrap().to_string())
        .collect()
}

fn set(items: &[&str]) -> HashSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

app_test!(
    async fn chinese_words_rank_titles_first_and_segmentation_decides_what_matches(backend) {
        let app = TestApp::spawn(backend).await;
        let d = demo(&app).await;
        corpus(&app, &d).await;

        // 自行车 (bicycle): every title containing it — also inside 山地自行车 and 二手自行车 — ranks above listings
        // that have it only in their category (U-lock, e-bike, scooter: "自行车与出行") or description (basket).
        let (s, page) = search(&app, "自行车", "").await;
        assert_eq!(s, StatusCode::OK, "{page}");
        let found: Vec<&str> = page["items"].as_array().unwrap().iter().map(|i| i["title"].as_str().unwrap()).collect();
        let title_hits = set(&["九成新山地自行车 捷安特", "二手自行车 通勤代步", "公路自行车 碳纤维车架", "折叠自行车 可放宿舍"]);
        let top: HashSet<String> = found[..4].iter().map(|s| s.to_string()).collect();
        assert_eq!(top, title_hits, "title matches first: {found:?}");
        for other in ["U型车锁", "车筐 塑料", "电动车 雅迪 续航50公里", "电动滑板车"] {
            let at = found.iter().position(|t| *t == other).unwrap_or_else(|| panic!("{other} missing: {found:?}"));
            assert!(at >= 4, "{other} ranked among title matches: {found:?}");
        }
        assert_eq!(page["total"], 8);
        assert_eq!(page["total_is_estimate"], false);
        let first = page["items"].as_array().unwrap().iter().find(|i| i["title"] == "九成新山地自行车 捷安特").unwrap();
        assert_eq!(first["highlighted_title"], "九成新山地<em>自行车</em> 捷安特");
        // The hit is a full browse card.
        for field in ["id", "price", "condition", "status", "cover", "seller", "school_id", "category_id", "bumped_at"] {
            assert!(first.get(field).is_some(), "card lacks {field}: {first}");
        }
        // 车 alone is a word of its own: it does not find 自行车 (search is by word, not by character).
        assert!(!titles(&app, "车", "").await.iter().any(|t| t.contains("自行车")));

        // 高数: jieba keeps it as one word that shares nothing with 高等数学 (see docs/search.md); the
        // abbreviation table makes each find the other.
        let gaoshu = set(&["高等数学教材 同济第七版 上下册", "高数期末复习笔记"]);
        assert_eq!(titles(&app, "高数", "").await.into_iter().collect::<HashSet<_>>(), gaoshu);
        assert_eq!(titles(&app, "高等数学", "").await.into_iter().collect::<HashSet<_>>(), gaoshu);
        assert_eq!(titles(&app, "线代", "").await, vec!["线性代数课本"]);

        // Latin is case-insensitive, full-width is half-width, digits stay words, traditional folds to simplified.
        let ipads = set(&["iPad 2021 64G 深空灰", "IPAD mini 6", "ipad air 4 带笔"]);
        for q in ["iPad", "ipad", "IPAD", "ｉＰａｄ"] {
            assert_eq!(titles(&app, q, "").await.into_iter().collect::<HashSet<_>>(), ipads, "{q}");
        }
        assert_eq!(titles(&app, "ipad mini", "").await, vec!["IPAD mini 6"]);
        assert_eq!(titles(&app, "ipad2021", "").await, vec!["iPad 2021 64G 深空灰"]);
        assert_eq!(titles(&app, "AirPods", "").await, vec!["AirPods Pro 二代"]);
        assert_eq!(titles(&app, "考研 408", "").await, vec!["408计算机考研资料 全套"]);
        let (_, trad) = search(&app, "自行車", "").await;
        assert_eq!(trad["total"], 8, "traditional 自行車 finds what 自行车 finds");
        assert!(titles(&app, "電腦", "").await.contains(&"联想笔记本电脑 小新".to_string()));
        let both = titles(&app, "台灯 九成新", "").await;
        assert_eq!(both, vec!["九成新 台灯灯泡"], "every word must match");

        // Exclusions and phrases.
        let no_used = titles(&app, "自行车 -二手", "").await;
        assert!(!no_used.contains(&"二手自行车 通勤代步".to_string()) && no_used.contains(&"公路自行车 碳纤维车架".to_string()));
        assert_eq!(titles(&app, "\"二手 自行车\"", "").await, vec!["二手自行车 通勤代步"]);
        assert!(titles(&app, "\"自行车 二手\"", "").await.is_empty(), "a phrase keeps its order");
        assert_eq!(titles(&app, "“山地自行车”", "").await, vec!["九成新山地自行车 捷安特"]);

        // What users type never reaches the database's query syntax.
        let (s, page) = search(&app, "自行车 \"*:^()-", "").await;
        assert_eq!(s, StatusCode::OK, "{page}");
        assert_eq!(page["total"], 8);
        for q in ["NEAR(自行车", "自行车 OR", "title:自行车", "^自行车*", "AND", "c++", "' OR 1=1 --", "自行车)", "!自行车 & |"] {
            let (s, b) = search(&app, q, "").await;
            assert_eq!(s, StatusCode::OK, "{q}: {b}");
        }
        for (q, code) in [
            ("", "query_empty"),
            ("   ", "query_empty"),
            ("*:^()-\"", "query_no_words"),
            ("，。！？", "query_no_words"),
            ("-自行车", "query_no_words"),
        ] {
            let (s, b) = search(&app, q, "").await;
            assert_eq!((s, b["code"].as_str()), (StatusCode::BAD_REQUEST, Some(code)), "{q:?}: {b}");
        }
        let (s, b) = search(&app, &"书".repeat(101), "").await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::BAD_REQUEST, Some("query_too_long")));
        let (s, b) = app.get("/api/v1/search", None).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::BAD_REQUEST, Some("query_empty")));
    }
);

app_test!(
    async fn filters_sorts_and_cursors_work_as_in_browsing(backend) {
        // A small rank window, so a query can match more listings than it; on SQLite, words in 6 or more listings
        // are sorted by checking listings one by one along the sort's index, rarer ones by collecting their matches.
        let app = TestApp::spawn_with(backend, &[("SEARCH_RANK_WINDOW", "10"), ("SEARCH_PROBE_FROM", "6")]).await;
        let d = demo(&app).await;
        corpus(&app, &d).await;

        // Filters: category (a parent includes its children), price range, school.
        let transport = d.categories["transport"];
        let found = titles(&app, "自行车", &format!("category_id={transport}")).await;
        assert!(!found.contains(&"车筐 塑料".to_string()) && found.len() == 7, "{found:?}");
        let cheap = titles(&app, "自行车", "max_price=30000&min_price=10000").await;
        assert_eq!(cheap.into_iter().collect::<HashSet<_>>(), set(&["二手自行车 通勤代步", "折叠自行车 可放宿舍"]));
        assert!(titles(&app, "自行车", &format!("school_id={}", d.school + 999)).await.is_empty());
        assert_eq!(titles(&app, "自行车", &format!("school_id={}&status=reserved", d.school)).await.len(), 0);
        let (s, b) = search(&app, "自行车", "min_price=5&max_price=1").await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed")));
        let (s, b) = search(&app, "自行车", "status=sold").await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed")));

        // Sorts.
        let prices = |page: &Value| -> Vec<i64> {
            page["items"].as_array().unwrap().iter().map(|i| i["price"].as_i64().unwrap()).collect()
        };
        let (_, asc) = search(&app, "自行车", "sort=price_asc").await;
        let p = prices(&asc);
        assert!(p.windows(2).all(|w| w[0] <= w[1]) && p.len() == 8, "{p:?}");
        let (_, desc) = search(&app, "自行车", "sort=price_desc").await;
        assert_eq!(prices(&desc).first(), Some(&180_000));
        let (_, newest) = search(&app, "自行车", "sort=newest").await;
        assert_eq!(newest["items"][0]["title"], "电动滑板车", "the last published first");
        let (s, _) = search(&app, "自行车", "sort=popular").await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "search has its own sorts");

        // Paging a few at a time gives the single page's order, without repeats or gaps.
        for sort in ["relevance", "price_asc", "newest"] {
            let (_, whole) = search(&app, "自行车", &format!("sort={sort}&limit=50")).await;
            let expected: Vec<i64> = whole["items"].as_array().unwrap().iter().map(|i| i["id"].as_i64().unwrap()).collect();
            assert_eq!(expected.len(), 8);
            let mut seen = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let extra = match &cursor {
                    Some(c) => format!("sort={sort}&limit=3&cursor={c}"),
                    None => format!("sort={sort}&limit=3"),
                };
                let (s, page) = search(&app, "自行车", &extra).await;
                assert_eq!(s, StatusCode::OK, "{page}");
                if cursor.is_some() {
                    assert_eq!(page["total"], Value::Null, "the total comes with the first page only");
                } else {
                    assert_eq!(page["total"], 8);
                }
                seen.extend(page["items"].as_array().unwrap().iter().map(|i| i["id"].as_i64().unwrap()));
                match page["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_string()),
                    None => break,
                }
            }
            assert_eq!(seen, expected, "{sort}");
        }
        // A relevance cursor belongs to its query.
        let (_, p1) = search(&app, "自行车", "limit=2").await;
        let c = p1["next_cursor"].as_str().unwrap();
        let (s, b) = search(&app, "台灯", &format!("cursor={c}")).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_cursor")));

        // 数码电子 (electronics, a parent category) covers 15 listings, more than the window of 10: the total
        // stops at 10 and says so; relevance ranks the newest 10; the other sorts page through all 15.
        let (_, wide) = search(&app, "数码电子", "limit=50").await;
        assert_eq!((wide["total"].as_i64(), wide["total_is_estimate"].as_bool()), (Some(10), Some(true)));
        assert_eq!(wide["items"].as_array().unwrap().len(), 10);
        assert!(!titles(&app, "数码电子", "limit=50").await.contains(&"iPad 2021 64G 深空灰".to_string()), "the oldest fall outside the window");
        let (_, by_price) = search(&app, "数码电子", "limit=50&sort=price_asc").await;
        assert_eq!(by_price["items"].as_array().unwrap().len(), 15);
        assert_eq!((by_price["total"].as_i64(), by_price["total_is_estimate"].as_bool()), (Some(10), Some(true)));
        let (_, few) = search(&app, "九成新", "").await;
        assert_eq!((few["total"].as_i64(), few["total_is_estimate"].as_bool()), (Some(5), Some(false)));
        let (_, few) = search(&app, "九成新", "sort=price_asc").await;
        assert_eq!(prices(&few), vec![600, 800, 3_500, 9_000, 35_000], "a rarer word, collected then sorted");
        let (_, few) = search(&app, "九成新", "sort=price_desc&limit=2").await;
        assert_eq!(prices(&few), vec![35_000, 9_000]);
    }
);

app_test!(
    async fn every_listing_change_shows_in_the_next_search(backend) {
        let app = TestApp::spawn(backend).await;
        let d = demo(&app).await;
        let alice = student(&app, "alice", &d).await;
        let l = publish(&app, &alice, &d, "捷安特山地自行车", "骑了一年", "bicycles", 35_000).await;
        let id = l["id"].as_i64().unwrap();
        let path = format!("/api/v1/listings/{id}");
        let found = |q: &'static str| {
            let app = &app;
            async move { titles(app, q, "").await.len() }
        };
        assert_eq!(found("自行车").await, 1);

        let act = |a: &'static str| {
            let (app, path, token) = (&app, path.clone(), alice.token.clone());
            async move {
                let (s, b) = app.post(&format!("{path}/{a}"), Some(&token), &Value::Null).await;
                assert_eq!(s, StatusCode::OK, "{a}: {b}");
            }
        };
        act("withdraw").await;
        assert_eq!(found("自行车").await, 0, "withdrawn");
        act("relist").await;
        assert_eq!(found("自行车").await, 1, "relisted");
        act("reserve").await;
        assert_eq!(found("自行车").await, 1, "reserved listings are still shown");
        act("unreserve").await;

        // An edit replaces the indexed text in its own transaction.
        let (s, _) = app.patch(&path, Some(&alice.token), &json!({ "title": "美利达公路车", "description": "碳纤维" })).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(found("自行车").await, 1, "still in the bicycles category");
        assert_eq!(found("捷安特").await, 0, "the old title is gone");
        assert_eq!(found("美利达").await, 1);
        assert_eq!(found("碳纤维").await, 1);
        let (s, _) = app.patch(&path, Some(&alice.token), &json!({ "category_id": d.categories["lamps"] })).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(found("自行车").await, 0, "the category names follow the category");
        assert_eq!(found("台灯照明").await, 1);

        // Held by an operator, removed, sold, deleted: gone at once.
        transition(&app.state.db, id, Actor::System, Transition::HoldForReview, Some("abuse".into())).await.unwrap();
        assert_eq!(found("美利达").await, 0, "held for review");
        transition(&app.state.db, id, Actor::System, Transition::Approve, None).await.unwrap();
        assert_eq!(found("美利达").await, 1, "approved");
        act("mark-sold").await;
        assert_eq!(found("美利达").await, 0, "sold");

        let other = publish(&app, &alice, &d, "护眼台灯", "", "lamps", 3_000).await;
        let (s, _, _) = app.send(Method::DELETE, &format!("/api/v1/listings/{}", other["id"]), Some(&alice.token), None).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        assert_eq!(found("护眼").await, 0, "deleted");

        // Text content security holds back is not found until an operator approves it.
        let held = publish(&app, &alice, &d, "罗技鼠标 加微信", "", "accessories", 5_000).await;
        assert_eq!(held["status"], "pending_review");
        assert_eq!(found("罗技").await, 0);
        transition(&app.state.db, held["id"].as_i64().unwrap(), Actor::System, Transition::Approve, None).await.unwrap();
        assert_eq!(found("罗技").await, 1);
    }
);

app_test!(
    async fn listings_written_before_search_existed_are_indexed_by_the_backfill(backend) {
        use sea_orm::ConnectionTrait;
        let app = TestApp::spawn(backend).await;
        let d = demo(&app).await;
        let alice = student(&app, "alice", &d).await;
        let l = publish(&app, &alice, &d, "二手单反相机", "", "cameras", 150_000).await;
        let id = l["id"].as_i64().unwrap();
        // As if the listing predated the index.
        campus_trade::search::index::remove(&app.state.db, id).await.unwrap();
        assert!(titles(&app, "单反", "").await.is_empty());
        let done = campus_trade::search::index::backfill(&app.state, 0, 100).await.unwrap();
        assert_eq!(done, vec![id]);
        assert_eq!(titles(&app, "单反", "").await, vec!["二手单反相机"]);
        assert!(campus_trade::search::index::backfill(&app.state, 0, 100).await.unwrap().is_empty(), "nothing left");
        // The index row exists exactly once.
        let sql = match app.state.db.get_database_backend() {
            sea_orm::DbBackend::Postgres => format!("SELECT COUNT(*) AS n FROM listing_search WHERE listing_id = {id}"),
            _ => format!("SELECT COUNT(*) AS n FROM listing_search WHERE rowid = {id}"),
        };
        let row = app.state.db.query_one_raw(sea_orm::Statement::from_string(app.state.db.get_database_backend(), sql)).await.unwrap().unwrap();
        assert_eq!(row.try_get::<i64>("", "n").unwrap(), 1);
    }
);

/// Writes the buffered search log (after the de-duplication tasks searches spawn have run).
async fn settle(app: &TestApp) {
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    app.state.search.log.flush(&app.state.db).await.unwrap();
}

app_test!(
    async fn history_hot_queries_and_suggestions(backend) {
        let app = TestApp::spawn(backend).await;
        let d = demo(&app).await;
        let seller = student(&app, "seller", &d).await;
        for (t, slug) in [("九成新山地自行车", "bicycles"), ("二手自行车 送车锁", "bicycles"), ("护眼台灯", "lamps"), ("iPad 2021", "tablets"), ("ipad air", "tablets")] {
            publish(&app, &seller, &d, t, "", slug, 10_000).await;
        }
        let alice = student(&app, "alice", &d).await;
        let bob = student(&app, "bob", &d).await;
        let q = |who: &Student, text: &str| {
            let (app, token, text) = (&app, who.token.clone(), text.to_string());
            async move {
                let (s, b) = app.get(&format!("/api/v1/search?q={}", enc(&text)), Some(&token)).await;
                assert_eq!(s, StatusCode::OK, "{b}");
            }
        };

        // History: newest first, distinct, normalised; it is there at once (before the log is written).
        q(&alice, "自行车").await;
        q(&alice, "  台灯 ").await;
        q(&alice, "ＩＰＡＤ").await;
        q(&alice, "自行车").await;
        q(&alice, "无人问津的东西").await;
        let (s, h) = app.get("/api/v1/me/search-history", Some(&alice.token)).await;
        assert_eq!(s, StatusCode::OK);
        let qs: Vec<&str> = h["items"].as_array().unwrap().iter().map(|i| i["q"].as_str().unwrap()).collect();
        assert_eq!(qs, vec!["无人问津的东西", "自行车", "ipad", "台灯"]);
        settle(&app).await;
        let (_, h2) = app.get("/api/v1/me/search-history", Some(&alice.token)).await;
        assert_eq!(h2["items"], h["items"], "the same after it is written");
        let (_, theirs) = app.get("/api/v1/me/search-history", Some(&bob.token)).await;
        assert!(theirs["items"].as_array().unwrap().is_empty(), "history is private");
        let (s, _) = app.get("/api/v1/me/search-history", None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        // Capped at 20.
        for i in 0..22 {
            q(&alice, &format!("自行车{i}")).await;
        }
        settle(&app).await;
        let (_, h) = app.get("/api/v1/me/search-history", Some(&alice.token)).await;
        assert_eq!(h["items"].as_array().unwrap().len(), 20);
        assert_eq!(h["items"][0]["q"], "自行车21");
        // Forget one, then everything.
        let (s, _, _) = app.send(Method::DELETE, &format!("/api/v1/me/search-history?q={}", enc("自行车21")), Some(&alice.token), None).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (_, h) = app.get("/api/v1/me/search-history", Some(&alice.token)).await;
        assert_eq!(h["items"][0]["q"], "自行车20");
        let (s, _, _) = app.send(Method::DELETE, "/api/v1/me/search-history", Some(&alice.token), None).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (_, h) = app.get("/api/v1/me/search-history", Some(&alice.token)).await;
        assert!(h["items"].as_array().unwrap().is_empty());

        // Hot: distinct searchers per day; queries that found nothing do not count.
        q(&bob, "自行车").await;
        q(&bob, "自行车").await;
        q(&bob, "台灯").await;
        let (s, _) = app.get(&format!("/api/v1/search?q={}", enc("自行车")), None).await;
        assert_eq!(s, StatusCode::OK);
        settle(&app).await;
        let (s, hot) = app.get(&format!("/api/v1/search/hot?school_id={}", d.school), None).await;
        assert_eq!(s, StatusCode::OK);
        let hot: Vec<(String, i64)> = hot["items"].as_array().unwrap().iter()
            .map(|i| (i["q"].as_str().unwrap().to_string(), i["searches"].as_i64().unwrap())).collect();
        assert!(hot.contains(&("自行车".to_string(), 2)), "alice and bob (the anonymous search had no school): {hot:?}");
        assert!(hot.contains(&("台灯".to_string(), 2)), "{hot:?}");
        assert_eq!(hot.iter().map(|(_, n)| *n).max(), Some(2), "bob's second search counted once: {hot:?}");
        assert!(!hot.iter().any(|(q, _)| q == "无人问津的东西"), "found nothing: {hot:?}");
        let (_, mine) = app.get("/api/v1/search/hot", Some(&bob.token)).await;
        assert_eq!(mine["items"].as_array().unwrap().len(), hot.len(), "the caller's school by default");
        let (_, everywhere) = app.get("/api/v1/search/hot", None).await;
        assert_eq!(everywhere["items"][0]["searches"], 3, "every school, the anonymous searcher included");

        // Suggestions: completions from titles, popular queries first, blocklisted words never.
        let suggest = |prefix: &str| {
            let (app, prefix) = (&app, prefix.to_string());
            async move {
                let (s, b) = app.get(&format!("/api/v1/search/suggest?q={}&school_id={}", enc(&prefix), d.school), None).await;
                assert_eq!(s, StatusCode::OK, "{b}");
                b["items"].as_array().unwrap().iter().map(|i| i.as_str().unwrap().to_string()).collect::<Vec<_>>()
            }
        };
        let bikes = suggest("自行").await;
        assert_eq!(bikes[0], "自行车", "{bikes:?}");
        assert!(suggest("山地").await.contains(&"山地自行车".to_string()));
        let ipads = suggest("IP").await;
        assert!(ipads.contains(&"ipad".to_string()) && ipads.contains(&"ipad 2021".to_string()), "{ipads:?}");
        assert!(suggest("").await.is_empty());
        assert!(suggest("完全不存在").await.is_empty());
        let (s, b) = app.get(&format!("/api/v1/search/suggest?q={}", "车".repeat(101)), None).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::BAD_REQUEST, Some("query_too_long")));
        campus_trade::moderation::service::add_blocked_word(&app.state, "台灯", campus_trade::moderation::model::blocked_word::Action::Review, "advertising").await.unwrap();
        app.state.search.suggest.invalidate();
        assert!(suggest("台").await.is_empty(), "blocklisted");
        assert_eq!(suggest("护眼").await, vec!["护眼"], "the pair 护眼台灯 holds the blocked word");
    }
);

app_test!(
    async fn saved_searches_notify_exactly_once_about_matching_new_listings(backend) {
        use campus_trade::search::saved::match_publications;
        let app = TestApp::spawn(backend).await;
        let d = demo(&app).await;
        let seller = student(&app, "seller", &d).await;
        let bob = student(&app, "bob", &d).await;
        let carol = student(&app, "carol", &d).await;
        let save = |who: &Student, body: Value| {
            let (app, token) = (&app, who.token.clone());
            async move { app.post("/api/v1/me/saved-searches", Some(&token), &body).await }
        };
        let inbox = |who: &Student| {
            let (app, token) = (&app, who.token.clone());
            async move {
                let (_, b) = app.get("/api/v1/me/notifications", Some(&token)).await;
                b["items"].as_array().unwrap().iter().filter(|n| n["kind"] == "saved_search_match").cloned().collect::<Vec<_>>()
            }
        };

        // Published before the search was saved: not news to bob.
        publish(&app, &seller, &d, "iPad 2020 旧款", "", "tablets", 100_000).await;
        let (s, ipad) = save(&bob, json!({ "q": "iPad", "max_price": 150_000 })).await;
        assert_eq!(s, StatusCode::OK, "{ipad}");
        assert_eq!(ipad["q"], "ipad");
        assert_eq!(ipad["max_price"], 150_000);
        let (_, again) = save(&bob, json!({ "q": "IPAD", "max_price": 150_000 })).await;
        assert_eq!(again["id"], ipad["id"], "the same search saved twice is one");
        let (s, lamp) = save(&carol, json!({ "q": "台灯 -二手", "filters": { "category_id": d.categories["dorm"], "conditions": ["good", "like_new"] } })).await;
        assert_eq!(s, StatusCode::OK, "{lamp}");
        assert_eq!(lamp["filters"]["conditions"], json!(["good", "like_new"]));
        let (_, own) = save(&seller, json!({ "q": "ipad" })).await;
        assert!(own["id"].is_i64());
        match_publications(&app.state).await.unwrap();
        assert!(inbox(&bob).await.is_empty());

        // Too expensive, then a match, then an excluded word, then a match for carol.
        publish(&app, &seller, &d, "iPad Pro 2022", "", "tablets", 500_000).await;
        let cheap = publish(&app, &seller, &d, "iPad 2021 64G", "", "tablets", 120_000).await;
        publish(&app, &seller, &d, "二手台灯", "", "lamps", 2_000).await;
        let lamp_listing = publish(&app, &seller, &d, "护眼台灯", "", "lamps", 3_000).await;
        assert_eq!(match_publications(&app.state).await.unwrap(), 2);
        let bobs = inbox(&bob).await;
        assert_eq!(bobs.len(), 1, "{bobs:?}");
        assert_eq!(bobs[0]["target_id"], cheap["id"]);
        assert!(bobs[0]["title"].as_str().unwrap().contains("ipad"));
        assert!(bobs[0]["body"].as_str().unwrap().contains("¥1200.00"));
        let carols = inbox(&carol).await;
        assert_eq!(carols.len(), 1);
        assert_eq!(carols[0]["target_id"], lamp_listing["id"]);
        assert!(inbox(&seller).await.is_empty(), "nobody hears of their own listing");
        assert_eq!(match_publications(&app.state).await.unwrap(), 0, "the queue is empty");

        // Held by content security: nobody hears until it is approved, and a second approval tells nobody again.
        let held = publish(&app, &seller, &d, "iPad mini 加微信", "", "tablets", 90_000).await;
        assert_eq!(held["status"], "pending_review");
        match_publications(&app.state).await.unwrap();
        assert_eq!(inbox(&bob).await.len(), 1);
        let held_id = held["id"].as_i64().unwrap();
        transition(&app.state.db, held_id, Actor::System, Transition::Approve, None).await.unwrap();
        assert_eq!(match_publications(&app.state).await.unwrap(), 1);
        assert_eq!(inbox(&bob).await.len(), 2);
        transition(&app.state.db, held_id, Actor::System, Transition::HoldForReview, Some("abuse".into())).await.unwrap();
        transition(&app.state.db, held_id, Actor::System, Transition::Approve, None).await.unwrap();
        assert_eq!(match_publications(&app.state).await.unwrap(), 0, "exactly once per saved search and listing");
        assert_eq!(inbox(&bob).await.len(), 2);

        // Blocking the seller silences them.
        let (s, _, _) = app.send(Method::PUT, &format!("/api/v1/users/{}/block", seller.id), Some(&bob.token), None).await;
        assert!(s.is_success());
        publish(&app, &seller, &d, "iPad 2019", "", "tablets", 80_000).await;
        match_publications(&app.state).await.unwrap();
        assert_eq!(inbox(&bob).await.len(), 2);

        // Listing, counting, deleting; someone else's is 404.
        let (_, mine) = app.get("/api/v1/me/saved-searches", Some(&bob.token)).await;
        assert_eq!(mine["items"].as_array().unwrap().len(), 1);
        assert_eq!(mine["items"][0]["notified_count"], 2);
        let path = format!("/api/v1/me/saved-searches/{}", ipad["id"]);
        let (s, _, _) = app.send(Method::DELETE, &path, Some(&carol.token), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _, _) = app.send(Method::DELETE, &path, Some(&bob.token), None).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (_, mine) = app.get("/api/v1/me/saved-searches", Some(&bob.token)).await;
        assert!(mine["items"].as_array().unwrap().is_empty());

        // Validation and limits.
        for (body, code) in [
            (json!({ "q": "" }), "query_empty"),
            (json!({ "q": "*:^()" }), "query_no_words"),
            (json!({ "q": "书".repeat(101) }), "query_too_long"),
        ] {
            let (s, b) = save(&bob, body).await;
            assert_eq!((s, b["code"].as_str()), (StatusCode::BAD_REQUEST, Some(code)));
        }
        for body in [
            json!({ "q": "台灯", "filters": { "category_id": 999_999 } }),
            json!({ "q": "台灯", "filters": { "campus_id": 999_999 } }),
            json!({ "q": "台灯", "filters": { "min_price": 500 }, "max_price": 100 }),
            json!({ "q": "台灯", "max_price": -1 }),
        ] {
            let (s, b) = save(&bob, body.clone()).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {b}");
        }
        let nobody = app.login("dave").await;
        let (s, b) = save(&nobody, json!({ "q": "台灯" })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("school_required")));
        for i in 0..20 {
            let (s, b) = save(&bob, json!({ "q": format!("台灯 {i}号") })).await;
            assert_eq!(s, StatusCode::OK, "{b}");
        }
        let (s, b) = save(&bob, json!({ "q": "台灯 再来" })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("saved_search_limit")));
    }
);

app_test!(
    async fn the_saved_search_job_runs_by_itself(backend) {
        let app = TestApp::spawn_with(backend, &[("SAVED_SEARCH_INTERVAL_SECONDS", "1")]).await;
        let d = demo(&app).await;
        let seller = student(&app, "seller", &d).await;
        let bob = student(&app, "bob", &d).await;
        let (s, _) = app.post("/api/v1/me/saved-searches", Some(&bob.token), &json!({ "q": "AirPods" })).await;
        assert_eq!(s, StatusCode::OK);
        let l = publish(&app, &seller, &d, "airpods pro 二代", "", "audio", 90_000).await;
        let mut told = Vec::new();
        for _ in 0..50 {
            let (_, b) = app.get("/api/v1/me/notifications", Some(&bob.token)).await;
            told = b["items"].as_array().unwrap().iter().filter(|n| n["kind"] == "saved_search_match").cloned().collect();
            if !told.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        assert_eq!(told.len(), 1, "the job notified within 10 s");
        assert_eq!(told[0]["target_id"], l["id"]);
    }
);
