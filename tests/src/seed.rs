//! Realistic bulk data for benchmarks: campus listings with Chinese titles built from word lists, their sellers
//! and cover images, and WeChat Pay orders waiting for their payment notification, written straight into the
//! database in large transactions.

use anyhow::Context;
use campus_trade::{
    images::model::image,
    listings::model::{Condition, Status, category, hot_score, listing},
    users::model::{campus, school, user},
};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    TransactionTrait,
};

use crate::bench::SeedReport;

/// (item, category slug): what students sell.
pub const ITEMS: &[(&str, &str)] = &[
    ("山地自行车", "bicycles"),
    ("公路自行车", "bicycles"),
    ("折叠自行车", "bicycles"),
    ("二手自行车", "bicycles"),
    ("电动车", "e-bikes"),
    ("电动滑板车", "scooters"),
    ("护眼台灯", "lamps"),
    ("LED台灯", "lamps"),
    ("高等数学教材", "textbooks"),
    ("线性代数课本", "textbooks"),
    ("大学物理教材", "textbooks"),
    ("C语言程序设计", "textbooks"),
    ("考研英语真题", "exam-prep"),
    ("考研数学复习全书", "exam-prep"),
    ("408计算机考研资料", "exam-prep"),
    ("公务员考试资料", "exam-prep"),
    ("四六级词汇书", "exam-prep"),
    ("期末复习笔记", "notes"),
    ("三体全集", "leisure-books"),
    ("iPad 2021", "tablets"),
    ("iPad Air", "tablets"),
    ("AirPods Pro", "audio"),
    ("蓝牙耳机", "audio"),
    ("机械键盘", "accessories"),
    ("无线鼠标", "accessories"),
    ("移动电源", "accessories"),
    ("27寸显示器", "computers"),
    ("笔记本电脑", "computers"),
    ("游戏本", "computers"),
    ("iPhone 13", "phones"),
    ("小米手机", "phones"),
    ("华为手机", "phones"),
    ("佳能相机", "cameras"),
    ("拍立得", "cameras"),
    ("吹风机", "small-appliances"),
    ("小电锅", "small-appliances"),
    ("电风扇", "small-appliances"),
    ("收纳箱", "storage"),
    ("床垫", "bedding"),
    ("四件套", "bedding"),
    ("羽毛球拍", "ball-sports"),
    ("篮球", "ball-sports"),
    ("瑜伽垫", "fitness"),
    ("哑铃", "fitness"),
    ("露营帐篷", "outdoor"),
    ("卫衣", "clothes"),
    ("羽绒服", "clothes"),
    ("运动鞋", "shoes"),
    ("双肩包", "bags"),
    ("行李箱", "bags"),
    ("演唱会门票", "event-tickets"),
    ("健身卡", "memberships"),
    ("雨伞", "daily"),
    ("晾衣架", "daily"),
];

pub const PREFIXES: &[&str] = &[
    "九成新",
    "全新未拆",
    "八成新",
    "自用",
    "毕业出",
    "低价转让",
    "急出",
    "99新",
    "闲置",
];
pub const SUFFIXES: &[&str] = &[
    "送配件",
    "可小刀",
    "限本校",
    "可送到宿舍",
    "面交优先",
    "带发票",
    "原价购入",
    "",
];
pub const SENTENCES: &[&str] = &[
    "成色很好，没有磕碰。",
    "毕业了带不走，便宜出。",
    "用了一个学期，功能完好。",
    "图书馆门口或者食堂面交。",
    "价格可以商量，诚心要的私聊。",
    "买来基本没怎么用过。",
    "有使用痕迹，介意勿拍。",
];

/// A title and description that read like a real listing of that item.
pub fn listing_text(rng: &mut impl Rng, item: &str) -> (String, String) {
    let prefix = PREFIXES.choose(rng).expect("non-empty");
    let suffix = SUFFIXES.choose(rng).expect("non-empty");
    let title = format!("{prefix} {item} {suffix}").trim().to_string();
    let description = format!(
        "{prefix}{item}。{}{}",
        SENTENCES.choose(rng).expect("non-empty"),
        SENTENCES.choose(rng).expect("non-empty")
    );
    (title, description)
}

pub async fn seed_listings(
    config: &campus_trade::Config,
    count: u64,
) -> anyhow::Result<SeedReport> {
    let db = campus_trade::db::connect(config).await?;
    campus_trade::db::migrate(&db).await?;
    let school = school::Entity::find()
        .filter(school::Column::Slug.eq("demo-university"))
        .one(&db)
        .await?
        .context("demo school missing")?;
    let campuses: Vec<i64> = campus::Entity::find()
        .filter(campus::Column::SchoolId.eq(school.id))
        .all(&db)
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect();
    let categories = category::Entity::find().all(&db).await?;
    let category_of = |slug: &str| {
        categories
            .iter()
            .find(|c| c.slug == slug)
            .map(|c| c.id)
            .unwrap_or(categories[0].id)
    };

    let now = chrono::Utc::now();
    let sellers = (count / 20).max(1);
    let first_user = next_id(&db, "users").await?;
    let txn = db.begin().await?;
    for chunk in (0..sellers).collect::<Vec<_>>().chunks(500) {
        let rows = chunk.iter().map(|i| user::ActiveModel {
            id: Set(first_user + *i as i64),
            openid: Set(format!("bench-seller-{}", first_user + *i as i64)),
            unionid: Set(None),
            nickname: Set(format!("同学{i}")),
            avatar_url: Set(None),
            bio: Set(String::new()),
            school_id: Set(Some(school.id)),
            campus_id: Set(campuses.first().copied()),
            status: Set(user::Status::Active),
            ban_reason: Set(None),
            banned_until: Set(None),
            verified_school_id: Set(None),
            verified_until: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            last_login_at: Set(None),
        });
        user::Entity::insert_many(rows)
            .exec_without_returning(&txn)
            .await?;
    }
    txn.commit().await?;

    let mut rng = StdRng::seed_from_u64(20261124);
    let first_listing = next_id(&db, "listings").await?;
    let first_image = next_id(&db, "images").await?;
    let mut done = 0u64;
    while done < count {
        let n = (count - done).min(1000); // 1000 rows × 24 columns stays under SQLite's 32,766 bound parameters
        let txn = db.begin().await?;
        let mut listings = Vec::with_capacity(n as usize);
        let mut images = Vec::with_capacity(n as usize);
        for k in 0..n {
            let i = done + k;
            let (item, slug) = ITEMS.choose(&mut rng).expect("non-empty");
            let (title, description) = listing_text(&mut rng, item);
            let listing_id = first_listing + i as i64;
            let image_id = first_image + i as i64;
            let seller = first_user + (i % sellers) as i64;
            // Spread over the last 90 days, newest last.
            let at = now - chrono::Duration::seconds(((count - i) * 77 % (90 * 86_400)) as i64);
            let (views, favs) = (rng.random_range(0..500), rng.random_range(0..30));
            let status = if rng.random_ratio(1, 10) {
                Status::Reserved
            } else {
                Status::OnSale
            };
            images.push(image::ActiveModel {
                id: Set(image_id),
                owner_id: Set(seller),
                display_key: Set("bench/cover_display.jpg".into()),
                thumb_key: Set("bench/cover_thumb.jpg".into()),
                width: Set(1200),
                height: Set(900),
                bytes: Set(120_000),
                sha256: Set("0".repeat(64)),
                target_type: Set(Some("listing".into())),
                target_id: Set(Some(listing_id)),
                position: Set(Some(0)),
                created_at: Set(at),
                attached_at: Set(Some(at)),
            });
            listings.push(listing::ActiveModel {
                id: Set(listing_id),
                seller_id: Set(seller),
                school_id: Set(school.id),
                campus_id: Set(campuses.get(i as usize % campuses.len().max(1)).copied()),
                category_id: Set(category_of(slug)),
                title: Set(title),
                description: Set(description),
                price: Set(rng.random_range(500..300_000)),
                original_price: Set(None),
                condition: Set(*[
                    Condition::New,
                    Condition::LikeNew,
                    Condition::Good,
                    Condition::Fair,
                ]
                .choose(&mut rng)
                .expect("non-empty")),
                trade_meetup: Set(true),
                trade_delivery: Set(rng.random_bool(0.3)),
                status: Set(status),
                moderation_label: Set(None),
                cover_image_id: Set(Some(image_id)),
                view_count: Set(views),
                favorite_count: Set(favs),
                chat_count: Set(0),
                hot_score: Set(hot_score(views, favs, 0, at)),
                created_at: Set(at),
                updated_at: Set(at),
                bumped_at: Set(at),
                sold_at: Set(None),
            });
        }
        listing::Entity::insert_many(listings)
            .exec_without_returning(&txn)
            .await?;
        image::Entity::insert_many(images)
            .exec_without_returning(&txn)
            .await?;
        txn.commit().await?;
        done += n;
    }
    if db.get_database_backend() == DbBackend::Postgres {
        for table in ["users", "listings", "images"] {
            db.execute_unprepared(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"
            ))
            .await?;
        }
        db.execute_unprepared("ANALYZE").await?;
    } else {
        db.execute_unprepared("ANALYZE").await?;
    }
    db.close().await?;
    Ok(SeedReport {
        listings: count,
        sellers,
    })
}

/// A WeChat Pay order seeded as prepaid and waiting for its payment notification.
#[derive(Debug, Clone)]
pub struct PendingOrder {
    pub order_id: i64,
    pub out_trade_no: String,
    pub amount: i64,
}

/// Seeds `count` listings (as [`seed_listings`]), reserves each for one bench buyer with a `pending_payment`
/// WeChat Pay order whose prepay was made, and returns the orders. No timer touches them during a benchmark: the
/// deadline is a day away and the overdue-payment query is not scheduled.
pub async fn seed_pending_orders(
    config: &campus_trade::Config,
    count: u64,
) -> anyhow::Result<Vec<PendingOrder>> {
    use campus_trade::{
        orders::model::{OrderStatus, PaymentMethod, order},
        payments::model::{PaymentStatus, payment},
    };
    let db = campus_trade::db::connect(config).await?;
    campus_trade::db::migrate(&db).await?;
    let first_listing = next_id(&db, "listings").await?;
    db.close().await?;
    seed_listings(config, count).await?;

    let db = campus_trade::db::connect(config).await?;
    let now = chrono::Utc::now();
    let buyer = next_id(&db, "users").await?;
    user::Entity::insert(user::ActiveModel {
        id: Set(buyer),
        openid: Set(format!("bench-buyer-{buyer}")),
        unionid: Set(None),
        nickname: Set("买家".into()),
        avatar_url: Set(None),
        bio: Set(String::new()),
        school_id: Set(None),
        campus_id: Set(None),
        status: Set(user::Status::Active),
        ban_reason: Set(None),
        banned_until: Set(None),
        verified_school_id: Set(None),
        verified_until: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        last_login_at: Set(None),
    })
    .exec_without_returning(&db)
    .await?;
    listing::Entity::update_many()
        .col_expr(
            listing::Column::Status,
            sea_orm::sea_query::Expr::value(Status::Reserved),
        )
        .filter(listing::Column::Id.gte(first_listing))
        .exec(&db)
        .await?;
    let listings = listing::Entity::find()
        .filter(listing::Column::Id.gte(first_listing))
        .all(&db)
        .await?;
    let first_order = next_id(&db, "orders").await?;
    let mut out = Vec::with_capacity(listings.len());
    for (c, chunk) in listings.chunks(500).enumerate() {
        let txn = db.begin().await?;
        let mut orders = Vec::with_capacity(chunk.len());
        let mut payments = Vec::with_capacity(chunk.len());
        for (k, l) in chunk.iter().enumerate() {
            let id = first_order + (c * 500 + k) as i64;
            let out_trade_no = format!("BENCH{id:012}");
            orders.push(order::ActiveModel {
                id: Set(id),
                listing_id: Set(l.id),
                buyer_id: Set(buyer),
                seller_id: Set(l.seller_id),
                title: Set(l.title.clone()),
                amount: Set(l.price),
                payment_method: Set(PaymentMethod::WechatPay),
                status: Set(OrderStatus::PendingPayment),
                offer_id: Set(None),
                meetup_place_id: Set(None),
                handover_code: Set(format!("{:06}", id % 1_000_000)),
                handover_failures: Set(0),
                handover_fail_day: Set(None),
                expires_at: Set(Some(now + chrono::Duration::days(1))),
                refund_reason: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
                paid_at: Set(None),
                completed_at: Set(None),
                cancelled_at: Set(None),
                settled_at: Set(None),
            });
            payments.push(payment::ActiveModel {
                order_id: Set(id),
                out_trade_no: Set(out_trade_no.clone()),
                amount: Set(l.price),
                status: Set(PaymentStatus::Unpaid),
                prepay_id: Set(Some(format!("wx{id:030}"))),
                prepaid_at: Set(Some(now)),
                transaction_id: Set(None),
                payer_openid: Set(None),
                paid_at: Set(None),
                query_after: Set(None),
                shipping_uploaded_at: Set(None),
                shipping_next_at: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            });
            out.push(PendingOrder {
                order_id: id,
                out_trade_no,
                amount: l.price,
            });
        }
        order::Entity::insert_many(orders)
            .exec_without_returning(&txn)
            .await?;
        payment::Entity::insert_many(payments)
            .exec_without_returning(&txn)
            .await?;
        txn.commit().await?;
    }
    if db.get_database_backend() == DbBackend::Postgres {
        for table in ["users", "orders"] {
            db.execute_unprepared(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"
            ))
            .await?;
        }
    }
    db.execute_unprepared("ANALYZE").await?;
    db.close().await?;
    Ok(out)
}

/// The next free id of a table (explicit ids let listings and their cover images refer to each other in bulk).
async fn next_id(db: &impl ConnectionTrait, table: &str) -> anyhow::Result<i64> {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!("SELECT COALESCE(MAX(id), 0) + 1 AS n FROM {table}"),
        ))
        .await?
        .context("no row")?;
    Ok(row.try_get::<i64>("", "n")?)
}
