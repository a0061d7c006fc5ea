//! The dashboard's statistics, per day: computed from the capabilities' tables by indexed per-day counts (see
//! `crate::stats`), cheap enough to load on every dashboard view.

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

/// One day of the dashboard. (Orders, GMV, refunds, disputes and chat figures join as their capabilities
/// land.)
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
    /// Per-day figures for the dashboard: new students, verified students, listings published. `from` and `to`
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
        let mut days = Vec::new();
        let mut totals = DayStats {
            day: from,
            ..Default::default()
        };
        let mut day = from;
        while day <= to {
            let d = DayStats {
                day,
                new_users: new_users.get(&day).copied().unwrap_or(0),
                verified_students: verified.get(&day).copied().unwrap_or(0),
                listings_published: listings.get(&day).copied().unwrap_or(0),
            };
            totals.new_users += d.new_users;
            totals.verified_students += d.verified_students;
            totals.listings_published += d.listings_published;
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
