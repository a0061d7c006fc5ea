//! Schema migrations of campus_trade. The same migrations build the schema on SQLite (the embedded default)
//! and on PostgreSQL (the scaled deployment); anything backend-specific is confined to the migration that
//! needs it and says why. The server runs them at start-up and through `campus-trade migrate`.

pub use sea_orm_migration::prelude::*;

mod m20261124_000001_foundation;
mod m20261124_000002_images;
mod m20261124_000003_moderation;
mod m20261124_000004_listings;
mod m20261124_000005_forum;
mod m20261124_000006_notifications;
mod m20261124_000007_chat;

/// The contact-sharing rules the chat migration seeds (the chat capability's unit tests check them).
pub use m20261124_000007_chat::SEED_CONTACT_RULES;
mod m20261124_000008_orders;
mod m20261124_000009_search;
mod m20261124_000010_operators;
mod m20261124_000011_price_drops;
mod m20261124_000012_reviews;
mod m20261125_000012_operator_stats;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_foundation::Migration),
            Box::new(m20261124_000002_images::Migration),
            Box::new(m20261124_000003_moderation::Migration),
            Box::new(m20261124_000004_listings::Migration),
            Box::new(m20261124_000005_forum::Migration),
            Box::new(m20261124_000006_notifications::Migration),
            Box::new(m20261124_000007_chat::Migration),
            Box::new(m20261124_000008_orders::Migration),
            Box::new(m20261124_000009_search::Migration),
            Box::new(m20261124_000010_operators::Migration),
            Box::new(m20261124_000011_price_drops::Migration),
            Box::new(m20261124_000012_reviews::Migration),
            Box::new(m20261125_000012_operator_stats::Migration),
        ]
    }
}

/// A named foreign key from `from` (table, column) to `to` (table, column).
pub(crate) fn fk(
    name: &str,
    from: (impl IntoIden, impl IntoIden),
    to: (impl IntoIden, impl IntoIden),
    on_delete: ForeignKeyAction,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(from.0, from.1)
        .to(to.0, to.1)
        .on_delete(on_delete)
        .to_owned()
}

/// A fresh random salt (32 bytes, hex) for hashing a school's student numbers.
pub fn new_roster_salt() -> String {
    use rand::RngCore;
    let mut buf = [0u8; 32];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}
