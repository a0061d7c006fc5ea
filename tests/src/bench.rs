//! Benchmark helpers behind the `loadgen` binary: bulk seeding of realistic data and a closed-loop HTTP load
//! generator (each of `concurrency` workers sends its next request when the previous answer arrives, over its own
//! keep-alive connection).

use std::{
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

/// What to load.
pub struct LoadSpec {
    /// Request targets, used round-robin; `{id}` is replaced by a random id in `1..=id_max`.
    pub urls: Vec<String>,
    pub id_max: u64,
    pub concurrency: usize,
    pub duration: Duration,
    pub warmup: Duration,
}

/// What was measured (after the warm-up).
pub struct LoadResult {
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl fmt::Display for LoadResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "requests={} errors={} seconds={:.1} rps={:.0} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2}",
            self.requests,
            self.errors,
            self.seconds,
            self.requests as f64 / self.seconds,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.max_ms
        )
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1000.0
}

/// Runs the load and returns latency percentiles of the successful requests measured after the warm-up.
pub async fn run_http(spec: Arc<LoadSpec>) -> anyhow::Result<LoadResult> {
    let start = Instant::now();
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration;
    let mut workers = Vec::new();
    for w in 0..spec.concurrency {
        let spec = Arc::clone(&spec);
        workers.push(tokio::spawn(async move {
            // One connection per worker, like a client with keep-alive.
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("client");
            let mut latencies = Vec::with_capacity(100_000);
            let mut errors = 0u64;
            let mut n = w;
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let template = &spec.urls[n % spec.urls.len()];
                n += 1;
                let url = if template.contains("{id}") {
                    template.replace(
                        "{id}",
                        &(1 + rand::random::<u64>() % spec.id_max.max(1)).to_string(),
                    )
                } else {
                    template.clone()
                };
                let sent = Instant::now();
                let ok = match client.get(&url).send().await {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        ok && resp.bytes().await.is_ok()
                    }
                    Err(_) => false,
                };
                if sent >= measure_from {
                    if ok {
                        latencies.push(sent.elapsed());
                    } else {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (lat, err) = w.await?;
        all.extend(lat);
        errors += err;
    }
    all.sort_unstable();
    Ok(LoadResult {
        requests: all.len() as u64,
        errors,
        seconds: spec.duration.as_secs_f64(),
        p50_ms: percentile(&all, 0.50),
        p90_ms: percentile(&all, 0.90),
        p99_ms: percentile(&all, 0.99),
        max_ms: all.last().map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0),
    })
}

/// How many rows seeding wrote, and how long the listings and their search index took.
pub struct SeedReport {
    pub listings: u64,
    pub sellers: u64,
    pub listings_seconds: f64,
    pub index_seconds: f64,
    /// On-disk size of the search index.
    pub index_bytes: i64,
}

/// Writes `count` listings of the demo school (with sellers and a cover image each) straight into the database
/// the configuration names, in large transactions. Titles are generated from word lists so they read like real
/// campus listings.
pub async fn seed_listings(
    config: &campus_trade::Config,
    count: u64,
) -> anyhow::Result<SeedReport> {
    crate::seed::seed_listings(config, count).await
}

/// What the payment-notification benchmark does.
pub struct NotifySpec {
    /// Orders seeded, each paid by one notification.
    pub orders: u64,
    /// Notifications in flight at once.
    pub concurrency: usize,
}

/// What it measured.
pub struct NotifyResult {
    pub notifications: u64,
    /// Answered 204 (verified, decrypted, applied).
    pub accepted: u64,
    pub errors: u64,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Orders `paid` afterwards (each exactly once: the event log is checked too).
    pub paid_orders: u64,
    pub paid_events: u64,
    /// Signing the notifications beforehand (the sender's cost, not measured above).
    pub signing_seconds: f64,
}

impl fmt::Display for NotifyResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "notifications={} accepted={} errors={} seconds={:.2} per_second={:.0} p50_ms={:.2} p99_ms={:.2} \
             max_ms={:.2} paid_orders={} paid_events={} (signing beforehand took {:.1} s)",
            self.notifications,
            self.accepted,
            self.errors,
            self.seconds,
            self.accepted as f64 / self.seconds,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.paid_orders,
            self.paid_events,
            self.signing_seconds
        )
    }
}

/// Payment notifications processed per second: seeds `orders` prepaid WeChat Pay orders, starts the service
/// in-process (sandbox mode), has the sandbox sign one genuine `TRANSACTION.SUCCESS` per order beforehand, then
/// posts them to `POST /api/v1/payments/wechat/notify` from `concurrency` connections and times until every one
/// is answered. Each answer covers the whole path: signature verification over the raw body, AES-256-GCM
/// decryption, the checks against the order, and the `pending_payment → paid` transaction (payment, order,
/// event, card, the seller's notification).
pub async fn run_notify_bench(
    config: campus_trade::Config,
    spec: NotifySpec,
) -> anyhow::Result<NotifyResult> {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use anyhow::Context;
    use campus_trade::{
        orders::model::{OrderStatus, order, order_event},
        payments::model::{PaymentStatus, payment},
    };
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

    let pending = crate::seed::seed_pending_orders(&config, spec.orders).await?;
    let app = campus_trade::App::build(config).await?;
    let state = app.state.clone();
    let url = format!(
        "http://{}{}",
        app.local_addr,
        campus_trade::wechat::pay::NOTIFY_PATH
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async move {
        let _ = stopped.await;
    }));
    let sandbox = state
        .pay_sandbox
        .clone()
        .context("the benchmark needs the WeChat Pay sandbox (leave WECHATPAY_MCHID unset)")?;

    // Sign beforehand, on every core: RSA signing is the sender's cost, not ours.
    let signing = Instant::now();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per = pending.len().div_ceil(cores).max(1);
    let mut jobs = Vec::new();
    for chunk in pending.chunks(per) {
        let chunk = chunk.to_vec();
        let sandbox = Arc::clone(&sandbox);
        jobs.push(tokio::task::spawn_blocking(move || {
            chunk
                .iter()
                .map(|p| {
                    sandbox.signed_payment_notification(&p.out_trade_no, p.amount, "bench-payer")
                })
                .collect::<Vec<_>>()
        }));
    }
    let mut signed = Vec::with_capacity(pending.len());
    for j in jobs {
        signed.extend(j.await?);
    }
    let signing_seconds = signing.elapsed().as_secs_f64();
    let signed = Arc::new(signed);

    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..spec.concurrency.max(1) {
        let (signed, next, url) = (Arc::clone(&signed), Arc::clone(&next), url.clone());
        workers.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("client");
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((h, body)) = signed.get(i) else {
                    break;
                };
                let header = |v: &Option<String>| v.clone().unwrap_or_default();
                let sent = Instant::now();
                let answer = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("wechatpay-timestamp", header(&h.timestamp))
                    .header("wechatpay-nonce", header(&h.nonce))
                    .header("wechatpay-signature", header(&h.signature))
                    .header("wechatpay-serial", header(&h.serial))
                    .header("wechatpay-signature-type", "WECHATPAY2-SHA256-RSA2048")
                    .body(body.clone())
                    .send()
                    .await;
                match answer {
                    Ok(r) if r.status().as_u16() == 204 => latencies.push(sent.elapsed()),
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (lat, err) = w.await?;
        all.extend(lat);
        errors += err;
    }
    let seconds = started.elapsed().as_secs_f64();
    all.sort_unstable();

    let ids: Vec<i64> = pending.iter().map(|p| p.order_id).collect();
    let mut paid_orders = 0;
    let mut paid_events = 0;
    for chunk in ids.chunks(500) {
        paid_orders += order::Entity::find()
            .filter(order::Column::Id.is_in(chunk.iter().copied()))
            .filter(order::Column::Status.eq(OrderStatus::Paid))
            .count(&state.db)
            .await?;
        paid_events += order_event::Entity::find()
            .filter(order_event::Column::OrderId.is_in(chunk.iter().copied()))
            .filter(order_event::Column::ToStatus.eq("paid"))
            .count(&state.db)
            .await?;
    }
    let unpaid = payment::Entity::find()
        .filter(payment::Column::OrderId.is_in(ids.iter().take(500).copied()))
        .filter(payment::Column::Status.eq(PaymentStatus::Unpaid))
        .count(&state.db)
        .await?;
    if unpaid > 0 {
        eprintln!("warning: {unpaid} of the first 500 payments stayed unpaid");
    }
    let _ = stop.send(());
    server.await??;
    Ok(NotifyResult {
        notifications: pending.len() as u64,
        accepted: all.len() as u64,
        errors,
        seconds,
        p50_ms: percentile(&all, 0.50),
        p99_ms: percentile(&all, 0.99),
        max_ms: all.last().map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0),
        paid_orders,
        paid_events,
        signing_seconds,
    })
}

/// The search benchmark's 200 queries, as students type them: single words, brands with items, condition words,
/// phrases and exclusions (130 queries), then 70 of them again with a sort or a filter. Each is the query and the
/// extra URL parameters; `{category:slug}` stands for that category's id.
pub fn search_queries() -> Vec<(String, String)> {
    const WORDS: &[&str] = &[
        "自行车",
        "山地自行车",
        "台灯",
        "护眼台灯",
        "高数",
        "高等数学",
        "线代",
        "教材",
        "考研",
        "考研英语",
        "考研政治",
        "408",
        "四六级",
        "雅思",
        "笔记",
        "iPad",
        "ipad air",
        "iPhone",
        "AirPods",
        "耳机",
        "蓝牙耳机",
        "键盘",
        "机械键盘",
        "鼠标",
        "显示器",
        "笔记本电脑",
        "游戏本",
        "手机",
        "华为手机",
        "小米",
        "相机",
        "拍立得",
        "Switch",
        "吹风机",
        "电风扇",
        "床垫",
        "椅子",
        "羽毛球拍",
        "篮球",
        "运动鞋",
        "行李箱",
        "门票",
        "健身卡",
        "吉他",
        "电动车",
        "滑板车",
        "Kindle",
        "移动硬盘",
        "充电宝",
        "数据结构",
    ];
    const BRANDED: &[&str] = &[
        "捷安特 自行车",
        "美利达",
        "罗技 鼠标",
        "罗技 键盘",
        "小米 台灯",
        "索尼 耳机",
        "戴尔 显示器",
        "联想 笔记本",
        "拯救者",
        "iPad 2021",
        "ipad mini",
        "iphone13",
        "iPhone 14",
        "华为 mate",
        "佳能 相机",
        "尤尼克斯 羽毛球拍",
        "耐克 运动鞋",
        "李宁",
        "王道 408",
        "李永乐",
        "肖秀荣",
        "同济 高数",
        "周杰伦 门票",
        "雅马哈 吉他",
        "戴森 吹风机",
        "九号 电动车",
        "小牛",
        "JBL 音箱",
        "新东方 四六级",
        "谭浩强 C语言",
        "MacBook Air",
        "Apple Watch",
        "索尼微单",
        "富士 相机",
        "达尔优",
        "安克 移动电源",
        "匡威",
        "波司登 羽绒服",
        "优衣库 卫衣",
        "红双喜",
    ];
    const MODIFIED: &[&str] = &[
        "九成新 自行车",
        "全新 iPad",
        "毕业出",
        "宿舍 台灯",
        "99新 耳机",
        "低价 教材",
        "急出 电动车",
        "闲置 键盘",
        "可小刀",
        "送配件",
        "全新未拆 AirPods",
        "九成新 显示器",
        "八成新 相机",
        "自用 吹风机",
        "毕业出 床垫",
        "限本校 自行车",
        "带发票 笔记本电脑",
        "原价购入 耳机",
        "面交 台灯",
        "黑色 羽绒服",
        "白色 运动鞋",
        "可送到宿舍 电风扇",
        "低价转让 考研资料",
        "九成新 游戏本",
        "闲置 Switch",
        "全新 四件套",
        "急出 iPhone",
        "二手 自行车",
        "二手教材",
        "考研资料 全套",
    ];
    const SYNTAX: &[&str] = &[
        "\"山地 自行车\"",
        "自行车 -电动",
        "耳机 -蓝牙",
        "\"考研 英语\"",
        "iPad -Pro",
        "台灯 -LED",
        "\"iPad Air\"",
        "手机 -华为",
        "\"机械 键盘\"",
        "教材 -考研",
    ];
    const VARIANTS: &[&str] = &[
        "sort=newest",
        "sort=price_asc",
        "sort=price_desc",
        "max_price=50000",
        "min_price=1000&max_price=30000",
        "condition=like_new&condition=new",
        "category_id={category:electronics}",
    ];
    let base: Vec<&str> = WORDS
        .iter()
        .chain(BRANDED)
        .chain(MODIFIED)
        .chain(SYNTAX)
        .copied()
        .collect();
    let mut out: Vec<(String, String)> = base
        .iter()
        .map(|q| (q.to_string(), String::new()))
        .collect();
    for (i, q) in base.iter().take(200 - base.len()).enumerate() {
        out.push((q.to_string(), VARIANTS[i % VARIANTS.len()].to_string()));
    }
    out
}

/// Prefixes a student types on the way to the benchmark's queries (the first one to three characters of each),
/// for the suggestion benchmark.
pub fn suggest_prefixes() -> Vec<String> {
    let mut out = Vec::new();
    for (q, _) in search_queries().into_iter().take(130) {
        let q = q.trim_matches('"').trim_start_matches('-');
        let chars: Vec<char> = q.chars().collect();
        let n = if chars.first().is_some_and(|c| c.is_ascii()) {
            3
        } else {
            1
        };
        for len in [n, n + 1] {
            if len <= chars.len() {
                let p: String = chars[..len].iter().collect();
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
    }
    out.truncate(200);
    out
}

/// Percent-encodes a query-string value.
pub fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
