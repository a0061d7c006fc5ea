//! Listings: the category tree, named meet-up places per campus, listings with their meet-up places, the price
//! history, and favourites. Seeds the campus categories and a few places for the demo school.

use sea_orm_migration::{prelude::*, schema::*};

use crate::fk;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Categories {
    Table,
    Id,
    ParentId,
    Slug,
    NameZh,
    NameEn,
    Position,
    Hidden,
    CreatedAt,
}

#[derive(DeriveIden)]
enum CampusPlaces {
    Table,
    Id,
    CampusId,
    Name,
    Position,
    Hidden,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Campuses {
    Table,
    Id,
    SchoolId,
    Name,
}

#[derive(DeriveIden)]
enum Schools {
    Table,
    Id,
    Slug,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Listings {
    Table,
    Id,
    SellerId,
    SchoolId,
    CampusId,
    CategoryId,
    Title,
    Description,
    Price,
    OriginalPrice,
    Condition,
    TradeMeetup,
    TradeDelivery,
    Status,
    ModerationLabel,
    CoverImageId,
    ViewCount,
    FavoriteCount,
    ChatCount,
    HotScore,
    CreatedAt,
    UpdatedAt,
    BumpedAt,
    SoldAt,
}

#[derive(DeriveIden)]
enum ListingPlaces {
    Table,
    ListingId,
    PlaceId,
}

#[derive(DeriveIden)]
enum ListingPriceHistory {
    Table,
    Id,
    ListingId,
    OldPrice,
    NewPrice,
    ChangedAt,
}

#[derive(DeriveIden)]
enum Favorites {
    Table,
    UserId,
    ListingId,
    CreatedAt,
}

fn index(name: &str, table: impl IntoIden, cols: Vec<IndexColumnCreate>) -> IndexCreateStatement {
    let mut idx = Index::create().name(name).table(table).to_owned();
    for c in cols {
        idx.col(c);
    }
    idx
}

type IndexColumnCreate = sea_orm_migration::sea_query::IndexColumn;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Categories::Table)
                    .col(big_pk_auto(Categories::Id))
                    .col(big_integer_null(Categories::ParentId))
                    .col(string_len_uniq(Categories::Slug, 64))
                    .col(string_len(Categories::NameZh, 40))
                    .col(string_len(Categories::NameEn, 60))
                    .col(integer(Categories::Position).default(0))
                    .col(boolean(Categories::Hidden).default(false))
                    .col(timestamp_with_time_zone(Categories::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_categories_parent",
                        (Categories::Table, Categories::ParentId),
                        (Categories::Table, Categories::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(CampusPlaces::Table)
                    .col(big_pk_auto(CampusPlaces::Id))
                    .col(big_integer(CampusPlaces::CampusId))
                    .col(string_len(CampusPlaces::Name, 60))
                    .col(integer(CampusPlaces::Position).default(0))
                    .col(boolean(CampusPlaces::Hidden).default(false))
                    .col(timestamp_with_time_zone(CampusPlaces::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_campus_places_campus",
                        (CampusPlaces::Table, CampusPlaces::CampusId),
                        (Campuses::Table, Campuses::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_campus_places_campus",
                CampusPlaces::Table,
                vec![CampusPlaces::CampusId.into()],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Listings::Table)
                    .col(big_pk_auto(Listings::Id))
                    .col(big_integer(Listings::SellerId))
                    .col(big_integer(Listings::SchoolId))
                    .col(big_integer_null(Listings::CampusId))
                    .col(big_integer(Listings::CategoryId))
                    .col(string_len(Listings::Title, 120))
                    .col(text(Listings::Description))
                    .col(big_integer(Listings::Price))
                    .col(big_integer_null(Listings::OriginalPrice))
                    .col(string_len(Listings::Condition, 16))
                    .col(boolean(Listings::TradeMeetup))
                    .col(boolean(Listings::TradeDelivery))
                    .col(string_len(Listings::Status, 16))
                    .col(string_len_null(Listings::ModerationLabel, 40))
                    .col(big_integer_null(Listings::CoverImageId))
                    .col(big_integer(Listings::ViewCount).default(0))
                    .col(big_integer(Listings::FavoriteCount).default(0))
                    .col(big_integer(Listings::ChatCount).default(0))
                    .col(double(Listings::HotScore).default(0.0))
                    .col(timestamp_with_time_zone(Listings::CreatedAt))
                    .col(timestamp_with_time_zone(Listings::UpdatedAt))
                    .col(timestamp_with_time_zone(Listings::BumpedAt))
                    .col(timestamp_with_time_zone_null(Listings::SoldAt))
                    .foreign_key(&mut fk(
                        "fk_listings_seller",
                        (Listings::Table, Listings::SellerId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .foreign_key(&mut fk(
                        "fk_listings_school",
                        (Listings::Table, Listings::SchoolId),
                        (Schools::Table, Schools::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .foreign_key(&mut fk(
                        "fk_listings_campus",
                        (Listings::Table, Listings::CampusId),
                        (Campuses::Table, Campuses::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .foreign_key(&mut fk(
                        "fk_listings_category",
                        (Listings::Table, Listings::CategoryId),
                        (Categories::Table, Categories::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .to_owned(),
            )
            .await?;
        // The public feeds. Partial indexes over on-sale and reserved listings only (sold history does not slow
        // the feed down), per school and across schools, one per sort key. The predicate is the literal the
        // service filters with (`PUBLIC_PREDICATE`), which both SQLite and PostgreSQL need to use them.
        for (name, cols) in [
            (
                "ix_listings_public_school_newest",
                "school_id, bumped_at, id",
            ),
            ("ix_listings_public_school_price", "school_id, price, id"),
            ("ix_listings_public_school_hot", "school_id, hot_score, id"),
            ("ix_listings_public_newest", "bumped_at, id"),
            ("ix_listings_public_price", "price, id"),
            ("ix_listings_public_hot", "hot_score, id"),
        ] {
            manager
                .get_connection()
                .execute_unprepared(&format!(
                    "CREATE INDEX {name} ON listings ({cols}) WHERE status IN ('on_sale', 'reserved')"
                ))
                .await?;
        }
        manager
            .create_index(index(
                "ix_listings_seller",
                Listings::Table,
                vec![
                    Listings::SellerId.into(),
                    Listings::Status.into(),
                    Listings::Id.into(),
                ],
            ))
            .await?;
        manager
            .create_index(index(
                "ix_listings_category",
                Listings::Table,
                vec![Listings::CategoryId.into()],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ListingPlaces::Table)
                    .col(big_integer(ListingPlaces::ListingId))
                    .col(big_integer(ListingPlaces::PlaceId))
                    .primary_key(
                        Index::create()
                            .col(ListingPlaces::ListingId)
                            .col(ListingPlaces::PlaceId),
                    )
                    .foreign_key(&mut fk(
                        "fk_listing_places_listing",
                        (ListingPlaces::Table, ListingPlaces::ListingId),
                        (Listings::Table, Listings::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "fk_listing_places_place",
                        (ListingPlaces::Table, ListingPlaces::PlaceId),
                        (CampusPlaces::Table, CampusPlaces::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ListingPriceHistory::Table)
                    .col(big_pk_auto(ListingPriceHistory::Id))
                    .col(big_integer(ListingPriceHistory::ListingId))
                    .col(big_integer(ListingPriceHistory::OldPrice))
                    .col(big_integer(ListingPriceHistory::NewPrice))
                    .col(timestamp_with_time_zone(ListingPriceHistory::ChangedAt))
                    .foreign_key(&mut fk(
                        "fk_price_history_listing",
                        (ListingPriceHistory::Table, ListingPriceHistory::ListingId),
                        (Listings::Table, Listings::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_price_history_listing",
                ListingPriceHistory::Table,
                vec![
                    ListingPriceHistory::ListingId.into(),
                    ListingPriceHistory::Id.into(),
                ],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Favorites::Table)
                    .col(big_integer(Favorites::UserId))
                    .col(big_integer(Favorites::ListingId))
                    .col(timestamp_with_time_zone(Favorites::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(Favorites::UserId)
                            .col(Favorites::ListingId),
                    )
                    .foreign_key(&mut fk(
                        "fk_favorites_user",
                        (Favorites::Table, Favorites::UserId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "fk_favorites_listing",
                        (Favorites::Table, Favorites::ListingId),
                        (Listings::Table, Listings::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_favorites_user_time",
                Favorites::Table,
                vec![Favorites::UserId.into(), Favorites::CreatedAt.into()],
            ))
            .await?;
        manager
            .create_index(index(
                "ix_favorites_listing",
                Favorites::Table,
                vec![Favorites::ListingId.into()],
            ))
            .await?;

        seed(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Favorites::Table.into_iden(),
            ListingPriceHistory::Table.into_iden(),
            ListingPlaces::Table.into_iden(),
            Listings::Table.into_iden(),
            CampusPlaces::Table.into_iden(),
            Categories::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

/// A category: (slug, 中文, English).
type Cat = (&'static str, &'static str, &'static str);

/// The seeded tree: each parent with its children.
const CATEGORY_TREE: &[(Cat, &[Cat])] = &[
    (
        ("books", "教材书籍", "Textbooks and notes"),
        &[
            ("textbooks", "课本教材", "Course textbooks"),
            ("exam-prep", "考研考公", "Exam preparation"),
            ("notes", "笔记资料", "Notes and handouts"),
            ("leisure-books", "课外读物", "Leisure reading"),
        ],
    ),
    (
        ("electronics", "数码电子", "Electronics"),
        &[
            ("phones", "手机", "Phones"),
            ("computers", "电脑", "Computers"),
            ("tablets", "平板", "Tablets"),
            ("audio", "耳机音箱", "Headphones and speakers"),
            ("cameras", "相机", "Cameras"),
            ("accessories", "数码配件", "Accessories"),
        ],
    ),
    (
        ("dorm", "宿舍日用", "Dorm and daily goods"),
        &[
            ("small-appliances", "小家电", "Small appliances"),
            ("lamps", "台灯照明", "Lamps"),
            ("storage", "收纳整理", "Storage"),
            ("bedding", "床上用品", "Bedding"),
            ("daily", "日用杂货", "Daily goods"),
        ],
    ),
    (
        ("clothing", "服饰鞋包", "Clothing and bags"),
        &[
            ("clothes", "衣服", "Clothes"),
            ("shoes", "鞋", "Shoes"),
            ("bags", "箱包", "Bags"),
        ],
    ),
    (
        ("sports", "运动户外", "Sports and outdoor"),
        &[
            ("ball-sports", "球类", "Ball sports"),
            ("fitness", "健身器材", "Fitness"),
            ("outdoor", "户外装备", "Outdoor"),
        ],
    ),
    (
        ("transport", "自行车与出行", "Bikes and transport"),
        &[
            ("bicycles", "自行车", "Bicycles"),
            ("e-bikes", "电动车", "E-bikes"),
            ("scooters", "滑板车", "Scooters"),
        ],
    ),
    (
        ("tickets", "票券卡", "Tickets and cards"),
        &[
            ("event-tickets", "演出赛事票", "Event tickets"),
            ("memberships", "会员卡", "Memberships"),
            ("vouchers", "优惠券", "Vouchers"),
        ],
    ),
    (
        ("other", "其他", "Other"),
        &[("misc", "其他闲置", "Miscellaneous")],
    ),
];

const DEMO_PLACES: &[(&str, &[&str])] = &[
    ("主校区", &["图书馆正门", "第一食堂", "东门", "体育馆"]),
    ("东校区", &["东区食堂", "快递驿站", "宿舍区南门"]),
];

async fn seed(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let now = chrono::Utc::now();
    for (pos, ((slug, zh, en), children)) in CATEGORY_TREE.iter().enumerate() {
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(Categories::Table)
                    .columns([
                        Categories::Slug,
                        Categories::NameZh,
                        Categories::NameEn,
                        Categories::Position,
                        Categories::CreatedAt,
                    ])
                    .values_panic([
                        (*slug).into(),
                        (*zh).into(),
                        (*en).into(),
                        (pos as i32).into(),
                        now.into(),
                    ])
                    .to_owned(),
            )
            .await?;
        for (cpos, (cslug, czh, cen)) in children.iter().enumerate() {
            let insert = Query::insert()
                .into_table(Categories::Table)
                .columns([
                    Categories::ParentId,
                    Categories::Slug,
                    Categories::NameZh,
                    Categories::NameEn,
                    Categories::Position,
                    Categories::CreatedAt,
                ])
                .select_from(
                    Query::select()
                        .expr(Expr::col(Categories::Id))
                        .expr(Expr::val(*cslug))
                        .expr(Expr::val(*czh))
                        .expr(Expr::val(*cen))
                        .expr(Expr::val(cpos as i32))
                        .expr(Expr::val(now))
                        .from(Categories::Table)
                        .and_where(Expr::col(Categories::Slug).eq(*slug))
                        .to_owned(),
                )
                .map_err(|e| DbErr::Custom(e.to_string()))?
                .to_owned();
            manager.exec_stmt(insert).await?;
        }
    }
    for (campus, places) in DEMO_PLACES {
        for (pos, place) in places.iter().enumerate() {
            let insert = Query::insert()
                .into_table(CampusPlaces::Table)
                .columns([
                    CampusPlaces::CampusId,
                    CampusPlaces::Name,
                    CampusPlaces::Position,
                    CampusPlaces::CreatedAt,
                ])
                .select_from(
                    Query::select()
                        .expr(Expr::col((Campuses::Table, Campuses::Id)))
                        .expr(Expr::val(*place))
                        .expr(Expr::val(pos as i32))
                        .expr(Expr::val(now))
                        .from(Campuses::Table)
                        .inner_join(
                            Schools::Table,
                            Expr::col((Schools::Table, Schools::Id))
                                .equals((Campuses::Table, Campuses::SchoolId)),
                        )
                        .and_where(Expr::col((Schools::Table, Schools::Slug)).eq("demo-university"))
                        .and_where(Expr::col((Campuses::Table, Campuses::Name)).eq(*campus))
                        .to_owned(),
                )
                .map_err(|e| DbErr::Custom(e.to_string()))?
                .to_owned();
            manager.exec_stmt(insert).await?;
        }
    }
    Ok(())
}
