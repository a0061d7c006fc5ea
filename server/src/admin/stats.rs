//! The dashboard's statistics, per day: computed from the capabilities' tables by indexed per-day counts (and
//! the chat capability's pre-aggregated daily chatters; see `crate::stats`), cheap enough to load on every
//! dashboard view.

use chrono::NaiveDate;
use poem::web::Data;
use poem_openapi::{Object, OpenApi, param::Query, payload::Json};

use super::{
    AdminTags,
    auth::{Need, perm},
};
use crate::{
    error::AppResult,
    state::AppState,
    stats::{self, Counter},
};

/// Order status changes of a day, by the status reached.
#[derive(Debug, Clone, Default, Object)]
pub struct OrdersByState {
    /// Orders placed (WeChat Pay orders waiting for payment, and offline orders).
    pub placed: i64,
    pub paid: i64,
    pub refund_requested: i64,
    /// Disputes opened (the seller refused a refund).
    pub disputed: i64,
    pub refunded: i64,
    /// Completed by hand-over, receipt, the timer or an operator's decision.
    pub completed: i64,
    /// Payouts received by sellers.
    pub settled: i64,
    /// Cancelled or expired before payment.
    pub cancelled: i64,
}

impl OrdersByState {
    fn add(&mut self, status: &str, n: i64) {
        match status {
            "pending_payment" | "pending_handover" => self.placed += n,
            "paid" => self.paid += n,
            "refund_requested" => self.refund_requested += n,
            "disputed" => self.disputed += n,
            "refunded" => self.refunded += n,
            "completed" => self.completed += n,
            "settled" => self.settled += n,
            "cancelled" => self.cancelled += n,
            _ => {}
        }
    }

    fn sum(&mut self, o: &OrdersByState) {
        self.placed += o.placed;
        self.paid += o.paid;
        self.refund_requested += o.refund_requested;
        self.disputed += o.disputed;
        self.refunded += o.refunded;
        self.completed += o.completed;
        self.settled += o.settled;
        self.cancelled += o.cancelled;
    }
}

/// One day of the dashboard.
#[derive(Debug, Clone, Default, Object)]
pub struct DayStats {
    /// A calendar day in China Standard Time (UTC+8).
    pub day: NaiveDate,
    /// Students who joined (first login), by the school in their profile.
    pub new_users: i64,
    /// Verification requests approved (by the roster or an operator).
    pub verified_students: i64,
    /// Listings published.
    pub listings_published: i64,
    /// Orders reaching each status that day.
    pub orders: OrdersByState,
    /// GMV paid: fen of WeChat Pay orders paid that day.
    pub gmv_paid: i64,
    /// GMV settled: fen of the deals whose payout reached the seller that day (the seller's part plus the
    /// platform fee: the order amount less refunds).
    pub gmv_settled: i64,
    /// Refunds back in buyers' accounts that day.
    pub refunds: i64,
    /// Fen of those refunds.
    pub refunded_fen: i64,
    /// Disputes opened that day (the seller refused a refund).
    pub disputes_opened: i64,
    /// Disputes decided by an operator that day.
    pub disputes_decided: i64,
    /// Students who sent at least one chat message that day (in `totals`: the sum of the days, not distinct
    /// students).
    pub active_chatters: i64,
}

/// Statistics of a range of days.
#[derive(Debug, Clone, Object)]
pub struct StatsReport {
    /// The school asked for; absent for every school the operator covers.
    pub school: Option<i64>,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Every day from `from` to `to`, days without activity included.
    pub days: Vec<DayStats>,
    /// The sums over the range (`day` is `from`).
    pub totals: DayStats,
}

pub struct StatsApi;

#[OpenApi(tag = "AdminTags::Stats")]
impl StatsApi {
    /// Per-day figures for the dashboard: new students, verified students, listings published, orders by the
    /// status they reached, GMV paid and settled (fen), refunds (count and fen), disputes opened and decided,
    /// and daily active chatters. Each figure is one indexed (or pre-aggregated) per-day query. `from` and `to`
    /// are calendar days in China Standard Time, both included (default: the last 30 days up to today; at
    /// most 366 days). Limited to the operator's schools (or `school`).
    ///
    /// Permission: `stats`.
    #[oai(path = "/v1/stats", method = "get", operation_id = "get_stats")]
    async fn stats(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Stats>,
        school: Query<Option<i64>>,
        from: Query<Option<NaiveDate>>,
        to: Query<Option<NaiveDate>>,
    ) -> AppResult<Json<StatsReport>> {
        let to = to.0.unwrap_or_else(stats::today);
        let from = from.0.unwrap_or(to - chrono::Duration::days(29));
        stats::check_range(from, to)?;
        let schools = auth.school_filter(school.0)?;
        let schools = schools.as_deref();
        let count = |c: Counter| stats::per_day(&state.db, c, schools, from, to);
        let new_users = count(stats::NEW_USERS).await?;
        let verified = count(stats::VERIFIED_STUDENTS).await?;
        let listings = count(stats::LISTINGS_PUBLISHED).await?;
        let gmv_paid = count(stats::GMV_PAID).await?;
        let gmv_settled = count(stats::GMV_SETTLED).await?;
        let refunds = count(stats::REFUNDS).await?;
        let refunded_fen = count(stats::REFUNDED_FEN).await?;
        let decided = count(stats::DISPUTES_DECIDED).await?;
        let chatters = count(stats::ACTIVE_CHATTERS).await?;
        let events = stats::per_day_by(
            &state.db,
            stats::ORDER_EVENTS,
            "to_status",
            schools,
            from,
            to,
        )
        .await?;
        let mut days = Vec::new();
        let mut totals = DayStats {
            day: from,
            ..Default::default()
        };
        let mut day = from;
        while day <= to {
            let on =
                |m: &std::collections::BTreeMap<NaiveDate, i64>| m.get(&day).copied().unwrap_or(0);
            let mut orders = OrdersByState::default();
            for ((_, status), n) in
                events.range((day, String::new())..(day + chrono::Duration::days(1), String::new()))
            {
                orders.add(status, *n);
            }
            let d = DayStats {
                day,
                new_users: on(&new_users),
                verified_students: on(&verified),
                listings_published: on(&listings),
                disputes_opened: orders.disputed,
                orders,
                gmv_paid: on(&gmv_paid),
                gmv_settled: on(&gmv_settled),
                refunds: on(&refunds),
                refunded_fen: on(&refunded_fen),
                disputes_decided: on(&decided),
                active_chatters: on(&chatters),
            };
            totals.new_users += d.new_users;
            totals.verified_students += d.verified_students;
            totals.listings_published += d.listings_published;
            totals.orders.sum(&d.orders);
            totals.gmv_paid += d.gmv_paid;
            totals.gmv_settled += d.gmv_settled;
            totals.refunds += d.refunds;
            totals.refunded_fen += d.refunded_fen;
            totals.disputes_opened += d.disputes_opened;
            totals.disputes_decided += d.disputes_decided;
            totals.active_chatters += d.active_chatters;
            days.push(d);
            day += chrono::Duration::days(1);
        }
        Ok(Json(StatsReport {
            school: school.0,
            from,
            to,
            days,
            totals,
        }))
    }
}
