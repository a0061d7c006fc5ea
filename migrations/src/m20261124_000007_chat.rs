//! Buyer–seller chat: conversations (one per listing and buyer), their messages (text, image, offer, system
//! cards), offers with their state machine, the contact-sharing rules operators can change (seeded here), and the
//! durable outbox of WeChat subscribe messages.

use sea_orm_migration::{prelude::*, schema::*};

use crate::fk;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Listings {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Conversations {
    Table,
    Id,
    ListingId,
    BuyerId,
    SellerId,
    LastMessageId,
    LastActivityAt,
    BuyerLastReadId,
    SellerLastReadId,
    BuyerNotifiedAt,
    SellerNotifiedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ChatMessages {
    Table,
    Id,
    ConversationId,
    SenderId,
    ClientMsgId,
    Kind,
    Body,
    ImageId,
    OfferId,
    CardKind,
    OrderId,
    VisibleTo,
    ContactKinds,
    ModerationLabel,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ChatOffers {
    Table,
    Id,
    ConversationId,
    ListingId,
    BuyerId,
    Price,
    Status,
    CreatedAt,
    DecidedAt,
}

#[derive(DeriveIden)]
enum ChatContactRules {
    Table,
    Id,
    Kind,
    Pattern,
    Description,
    Enabled,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum NotificationOutbox {
    Table,
    Id,
    UserId,
    TemplateKey,
    TemplateId,
    Page,
    Data,
    Attempts,
    NextAttemptAt,
    Status,
    LastError,
    CreatedAt,
    SentAt,
}

/// The contact-sharing rules every deployment starts with: (kind, pattern, description). Patterns are Rust
/// `regex` syntax, matched against the message text after full-width characters were folded to ASCII and
/// letters lower-cased (see `server/src/chat/rules.rs`).
pub const SEED_CONTACT_RULES: [(&str, &str, &str); 4] = [
    (
        "phone",
        r"(?:^|[^\d])(?:\+?86[\s\-]?)?1[3-9](?:[\s\-.]?\d){9}(?:[^\d]|$)",
        "Mainland mobile numbers, also with spaces, dashes or dots between the digits and a +86 prefix",
    ),
    (
        "wechat",
        r"(?:微信|威信|薇信|徽信|v信|vx|wx|weixin|wechat|加v)\s*(?:号|id)?\s*[:：]?\s*[a-z][-_a-z0-9]{5,19}",
        "A WeChat id (6–20 characters starting with a letter) after a word that announces one",
    ),
    (
        "qq",
        r"(?:qq|扣扣|企鹅)\s*(?:号)?\s*[:：]?\s*[1-9]\d{4,11}",
        "A QQ number after a word that announces one",
    ),
    (
        "link",
        r"(?:https?://|www\.)\S+|(?:^|[^a-z0-9\-])[a-z0-9][a-z0-9\-]*\.(?:com|cn|net|org|top|xyz|cc|io|me|vip|club|link|site|shop)(?:[/?#]\S*)?(?:[^a-z0-9]|$)",
        "Web links and bare domain names",
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Conversations::Table)
                    .col(big_pk_auto(Conversations::Id))
                    .col(big_integer(Conversations::ListingId))
                    .col(big_integer(Conversations::BuyerId))
                    .col(big_integer(Conversations::SellerId))
                    .col(big_integer_null(Conversations::LastMessageId))
                    .col(timestamp_with_time_zone(Conversations::LastActivityAt))
                    .col(big_integer(Conversations::BuyerLastReadId).default(0))
                    .col(big_integer(Conversations::SellerLastReadId).default(0))
                    .col(timestamp_with_time_zone_null(
                        Conversations::BuyerNotifiedAt,
                    ))
                    .col(timestamp_with_time_zone_null(
                        Conversations::SellerNotifiedAt,
                    ))
                    .col(timestamp_with_time_zone(Conversations::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_conversations_listing",
                        (Conversations::Table, Conversations::ListingId),
                        (Listings::Table, Listings::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "fk_conversations_buyer",
                        (Conversations::Table, Conversations::BuyerId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "fk_conversations_seller",
                        (Conversations::Table, Conversations::SellerId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        // One conversation per listing and buyer: opening it again finds the same row.
        manager
            .create_index(
                Index::create()
                    .name("ux_conversations_listing_buyer")
                    .table(Conversations::Table)
                    .col(Conversations::ListingId)
                    .col(Conversations::BuyerId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // Each side's conversation list, newest activity first.
        for (name, col) in [
            ("ix_conversations_buyer_activity", Conversations::BuyerId),
            ("ix_conversations_seller_activity", Conversations::SellerId),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Conversations::Table)
                        .col(col)
                        .col(Conversations::LastActivityAt)
                        .col(Conversations::Id)
                        .to_owned(),
                )
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(ChatOffers::Table)
                    .col(big_pk_auto(ChatOffers::Id))
                    .col(big_integer(ChatOffers::ConversationId))
                    .col(big_integer(ChatOffers::ListingId))
                    .col(big_integer(ChatOffers::BuyerId))
                    .col(big_integer(ChatOffers::Price))
                    .col(string_len(ChatOffers::Status, 16).default("pending"))
                    .col(timestamp_with_time_zone(ChatOffers::CreatedAt))
                    .col(timestamp_with_time_zone_null(ChatOffers::DecidedAt))
                    .foreign_key(&mut fk(
                        "fk_chat_offers_conversation",
                        (ChatOffers::Table, ChatOffers::ConversationId),
                        (Conversations::Table, Conversations::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_chat_offers_conversation")
                    .table(ChatOffers::Table)
                    .col(ChatOffers::ConversationId)
                    .col(ChatOffers::Status)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ChatMessages::Table)
                    .col(big_pk_auto(ChatMessages::Id))
                    .col(big_integer(ChatMessages::ConversationId))
                    .col(big_integer_null(ChatMessages::SenderId))
                    .col(string_len_null(ChatMessages::ClientMsgId, 64))
                    .col(string_len(ChatMessages::Kind, 16))
                    .col(text(ChatMessages::Body))
                    .col(big_integer_null(ChatMessages::ImageId))
                    .col(big_integer_null(ChatMessages::OfferId))
                    .col(string_len_null(ChatMessages::CardKind, 32))
                    .col(big_integer_null(ChatMessages::OrderId))
                    .col(big_integer_null(ChatMessages::VisibleTo))
                    .col(string_len_null(ChatMessages::ContactKinds, 64))
                    .col(string_len_null(ChatMessages::ModerationLabel, 40))
                    .col(timestamp_with_time_zone(ChatMessages::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_chat_messages_conversation",
                        (ChatMessages::Table, ChatMessages::ConversationId),
                        (Conversations::Table, Conversations::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "fk_chat_messages_sender",
                        (ChatMessages::Table, ChatMessages::SenderId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        // History and unread counts walk a conversation by id.
        manager
            .create_index(
                Index::create()
                    .name("ix_chat_messages_conversation")
                    .table(ChatMessages::Table)
                    .col(ChatMessages::ConversationId)
                    .col(ChatMessages::Id)
                    .to_owned(),
            )
            .await?;
        // A client's retry of the same message finds the stored one (system cards have neither column).
        manager
            .create_index(
                Index::create()
                    .name("ux_chat_messages_client")
                    .table(ChatMessages::Table)
                    .col(ChatMessages::SenderId)
                    .col(ChatMessages::ClientMsgId)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ChatContactRules::Table)
                    .col(big_pk_auto(ChatContactRules::Id))
                    .col(string_len(ChatContactRules::Kind, 16))
                    .col(string_len(ChatContactRules::Pattern, 500))
                    .col(string_len(ChatContactRules::Description, 200).default(""))
                    .col(boolean(ChatContactRules::Enabled).default(true))
                    .col(timestamp_with_time_zone(ChatContactRules::CreatedAt))
                    .col(timestamp_with_time_zone(ChatContactRules::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        let now = chrono::Utc::now();
        for (kind, pattern, description) in SEED_CONTACT_RULES {
            manager
                .exec_stmt(
                    Query::insert()
                        .into_table(ChatContactRules::Table)
                        .columns([
                            ChatContactRules::Kind,
                            ChatContactRules::Pattern,
                            ChatContactRules::Description,
                            ChatContactRules::Enabled,
                            ChatContactRules::CreatedAt,
                            ChatContactRules::UpdatedAt,
                        ])
                        .values_panic([
                            kind.into(),
                            pattern.into(),
                            description.into(),
                            true.into(),
                            now.into(),
                            now.into(),
                        ])
                        .to_owned(),
                )
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(NotificationOutbox::Table)
                    .col(big_pk_auto(NotificationOutbox::Id))
                    .col(big_integer(NotificationOutbox::UserId))
                    .col(string_len(NotificationOutbox::TemplateKey, 32))
                    .col(string_len(NotificationOutbox::TemplateId, 128))
                    .col(string_len_null(NotificationOutbox::Page, 256))
                    .col(text(NotificationOutbox::Data))
                    .col(integer(NotificationOutbox::Attempts).default(0))
                    .col(timestamp_with_time_zone(NotificationOutbox::NextAttemptAt))
                    .col(string_len(NotificationOutbox::Status, 16).default("pending"))
                    .col(string_len_null(NotificationOutbox::LastError, 256))
                    .col(timestamp_with_time_zone(NotificationOutbox::CreatedAt))
                    .col(timestamp_with_time_zone_null(NotificationOutbox::SentAt))
                    .foreign_key(&mut fk(
                        "fk_notification_outbox_user",
                        (NotificationOutbox::Table, NotificationOutbox::UserId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        // The sender job looks for pending rows that are due.
        manager
            .create_index(
                Index::create()
                    .name("ix_notification_outbox_due")
                    .table(NotificationOutbox::Table)
                    .col(NotificationOutbox::Status)
                    .col(NotificationOutbox::NextAttemptAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            NotificationOutbox::Table.into_iden(),
            ChatContactRules::Table.into_iden(),
            ChatMessages::Table.into_iden(),
            ChatOffers::Table.into_iden(),
            Conversations::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
