//! Tables and rules of chat: conversations, messages and their kinds, offers and their state machine, and the
//! contact-sharing rules. The rules are plain functions and enums, tested without a database.

use sea_orm::sea_query::StringLen;

/// What a message is.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    sea_orm::EnumIter,
    sea_orm::DeriveActiveEnum,
    poem_openapi::Enum,
    serde::Serialize,
    serde::Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// Text typed by a participant, 1–1000 characters, shown as plain text (links are never made clickable).
    #[sea_orm(string_value = "text")]
    Text,
    /// A photo the sender uploaded through `POST /api/v1/images`.
    #[sea_orm(string_value = "image")]
    Image,
    /// A price in fen the buyer proposes; the seller accepts or declines it.
    #[sea_orm(string_value = "offer")]
    Offer,
    /// A card the service writes itself (listing reserved, sold, price changed; offer decided; order events;
    /// a warning about shared contact details).
    #[sea_orm(string_value = "system")]
    System,
}

/// Where an offer stands.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    sea_orm::EnumIter,
    sea_orm::DeriveActiveEnum,
    poem_openapi::Enum,
    serde::Serialize,
    serde::Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum OfferStatus {
    /// Waiting for the seller.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// The seller agreed: an order of this buyer for this listing may use the price.
    #[sea_orm(string_value = "accepted")]
    Accepted,
    /// The seller said no.
    #[sea_orm(string_value = "declined")]
    Declined,
    /// The buyer took it back before the seller decided.
    #[sea_orm(string_value = "withdrawn")]
    Withdrawn,
    /// Replaced: the buyer made a newer offer while this one was pending, or the seller accepted a newer one.
    #[sea_orm(string_value = "superseded")]
    Superseded,
}

impl OfferStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OfferStatus::Pending => "pending",
            OfferStatus::Accepted => "accepted",
            OfferStatus::Declined => "declined",
            OfferStatus::Withdrawn => "withdrawn",
            OfferStatus::Superseded => "superseded",
        }
    }
}

/// Who is acting on an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Buyer,
    Seller,
    /// The service itself (a newer offer replaces an older one).
    System,
}

/// A change of an offer's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferAction {
    /// The seller agrees to the price.
    Accept,
    /// The seller refuses the price.
    Decline,
    /// The buyer takes the offer back.
    Withdraw,
    /// A newer offer of the same buyer replaces a pending one.
    SupersedePending,
    /// The seller accepted a newer offer: an older accepted one no longer counts.
    SupersedeAccepted,
}

impl OfferAction {
    /// The status the action starts from, where it leads, and who may take it.
    pub fn rule(self) -> (OfferStatus, OfferStatus, Party) {
        use OfferStatus::*;
        match self {
            OfferAction::Accept => (Pending, Accepted, Party::Seller),
            OfferAction::Decline => (Pending, Declined, Party::Seller),
            OfferAction::Withdraw => (Pending, Withdrawn, Party::Buyer),
            OfferAction::SupersedePending => (Pending, Superseded, Party::System),
            OfferAction::SupersedeAccepted => (Accepted, Superseded, Party::System),
        }
    }

    /// Where the action leads from `from` when `who` takes it; `None` when the rules do not allow it.
    pub fn apply(self, from: OfferStatus, who: Party) -> Option<OfferStatus> {
        let (source, to, party) = self.rule();
        (source == from && party == who).then_some(to)
    }

    pub fn verb(self) -> &'static str {
        match self {
            OfferAction::Accept => "accept",
            OfferAction::Decline => "decline",
            OfferAction::Withdraw => "withdraw",
            OfferAction::SupersedePending | OfferAction::SupersedeAccepted => "supersede",
        }
    }
}

pub mod conversation {
    use sea_orm::entity::prelude::*;

    /// The conversation between one buyer and the seller about one listing.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "conversations")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub listing_id: i64,
        pub buyer_id: i64,
        pub seller_id: i64,
        /// The newest message (the largest id).
        pub last_message_id: Option<i64>,
        /// When the newest message was written (the opening time until then); orders the conversation list.
        pub last_activity_at: DateTimeUtc,
        /// The buyer has read every message up to this id.
        pub buyer_last_read_id: i64,
        pub seller_last_read_id: i64,
        /// When the buyer was last sent a WeChat "new message" reminder about this conversation.
        pub buyer_notified_at: Option<DateTimeUtc>,
        pub seller_notified_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
    }

    impl Model {
        /// Whether `user_id` takes part.
        pub fn has(&self, user_id: i64) -> bool {
            self.buyer_id == user_id || self.seller_id == user_id
        }

        /// The participant who is not `user_id`.
        pub fn other(&self, user_id: i64) -> i64 {
            if self.buyer_id == user_id {
                self.seller_id
            } else {
                self.buyer_id
            }
        }

        /// `user_id`'s read mark.
        pub fn last_read_of(&self, user_id: i64) -> i64 {
            if self.buyer_id == user_id {
                self.buyer_last_read_id
            } else {
                self.seller_last_read_id
            }
        }
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod message {
    use sea_orm::entity::prelude::*;

    pub use super::MessageKind;

    /// One line of a conversation. Messages of a conversation are ordered by `id`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "chat_messages")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub conversation_id: i64,
        /// `None` for system cards.
        pub sender_id: Option<i64>,
        /// The sender's own id for the message, which makes a retry idempotent.
        pub client_msg_id: Option<String>,
        pub kind: MessageKind,
        /// The text of a text message or a card; empty otherwise.
        pub body: String,
        pub image_id: Option<i64>,
        pub offer_id: Option<i64>,
        /// What a system card is about (`listing_reserved`, `order_paid`, `contact_warning`, …).
        pub card_kind: Option<String>,
        pub order_id: Option<i64>,
        /// A card meant for one participant only (the contact warning goes to the receiver).
        pub visible_to: Option<i64>,
        /// Comma-separated kinds of contact details found in a text (`phone,link`).
        pub contact_kinds: Option<String>,
        /// What content security said when it did not simply pass the message (`unchecked`, a label, or
        /// `image_flagged` once an image was flagged and hidden).
        pub moderation_label: Option<String>,
        pub created_at: DateTimeUtc,
    }

    impl Model {
        /// Whether `user_id` (a participant) may see this message.
        pub fn visible_for(&self, user_id: i64) -> bool {
            self.visible_to.is_none_or(|v| v == user_id)
        }
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod offer {
    use sea_orm::entity::prelude::*;

    pub use super::OfferStatus;

    /// A price the buyer proposed in a conversation.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "chat_offers")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub conversation_id: i64,
        pub listing_id: i64,
        pub buyer_id: i64,
        /// Fen.
        pub price: i64,
        pub status: OfferStatus,
        pub created_at: DateTimeUtc,
        pub decided_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod contact_rule {
    use sea_orm::entity::prelude::*;

    /// A pattern that recognises contact details in a message (see `chat::rules`).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "chat_contact_rules")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        /// What it finds: `phone`, `wechat`, `qq`, `link`, or another short word.
        pub kind: String,
        /// A regular expression (Rust `regex` syntax) matched against the normalised text.
        pub pattern: String,
        pub description: String,
        pub enabled: bool,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Longest text message, in characters.
pub const TEXT_MAX_CHARS: usize = 1000;
/// Longest `client_msg_id`, in bytes.
pub const CLIENT_MSG_ID_MAX: usize = 64;

/// Checks a text message: 1–1000 characters after trimming, no control characters other than line breaks and
/// tabs. Returns the trimmed text.
pub fn validate_text(text: &str) -> Result<String, &'static str> {
    let t = text.trim();
    let n = t.chars().count();
    if n == 0 {
        return Err("must not be empty");
    }
    if n > TEXT_MAX_CHARS {
        return Err("must be at most 1000 characters");
    }
    if t.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err("must not contain control characters");
    }
    Ok(t.to_string())
}

/// Checks a `client_msg_id`: 1–64 printable ASCII characters.
pub fn validate_client_msg_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() || id.len() > CLIENT_MSG_ID_MAX || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be 1–64 printable ASCII characters");
    }
    Ok(())
}

/// A price in yuan as people write it: `¥12.50`.
pub fn yuan(fen: i64) -> String {
    format!("¥{}.{:02}", fen / 100, fen % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_state_machine() {
        use OfferAction::*;
        use OfferStatus::*;
        assert_eq!(Accept.apply(Pending, Party::Seller), Some(Accepted));
        assert_eq!(
            Accept.apply(Pending, Party::Buyer),
            None,
            "buyers cannot accept"
        );
        assert_eq!(Decline.apply(Pending, Party::Seller), Some(Declined));
        assert_eq!(Withdraw.apply(Pending, Party::Buyer), Some(Withdrawn));
        assert_eq!(Withdraw.apply(Pending, Party::Seller), None);
        assert_eq!(
            Accept.apply(Declined, Party::Seller),
            None,
            "decided offers stay decided"
        );
        assert_eq!(Decline.apply(Accepted, Party::Seller), None);
        assert_eq!(Withdraw.apply(Accepted, Party::Buyer), None);
        assert_eq!(
            SupersedePending.apply(Pending, Party::System),
            Some(Superseded)
        );
        assert_eq!(
            SupersedeAccepted.apply(Accepted, Party::System),
            Some(Superseded)
        );
        assert_eq!(SupersedePending.apply(Accepted, Party::System), None);
    }

    #[test]
    fn texts_and_ids_are_checked() {
        assert_eq!(validate_text("  你好 ").unwrap(), "你好");
        assert!(validate_text("   ").is_err());
        assert!(validate_text(&"字".repeat(1000)).is_ok());
        assert!(validate_text(&"字".repeat(1001)).is_err());
        assert!(validate_text("a\u{0007}b").is_err());
        assert!(validate_text("line\nbreak").is_ok());
        assert!(validate_client_msg_id("c-1").is_ok());
        assert!(validate_client_msg_id("").is_err());
        assert!(validate_client_msg_id(&"x".repeat(65)).is_err());
        assert!(validate_client_msg_id("has space").is_err());
    }

    #[test]
    fn prices_read_as_yuan() {
        assert_eq!(yuan(1250), "¥12.50");
        assert_eq!(yuan(5), "¥0.05");
        assert_eq!(yuan(100_000), "¥1000.00");
    }
}
