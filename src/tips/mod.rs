//! The tip domain: categories, priority, the status machine, response deadlines, routing.

use crate::config::SlaConfig;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in display order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable name used in the database, the API and the texts.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }

            /// Parses a stable name.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

string_enum! {
    /// What a tip is about (the plans' own list).
    Category {
        Dealing = "dealing",
        Hotspot = "hotspot",
        Users = "users",
        Psychosis = "psychosis",
        Cultivation = "cultivation",
        School = "school",
        Online = "online",
        Disguised = "disguised",
        Other = "other",
    }
}

string_enum! {
    /// Where a tip came from.
    Channel {
        Web = "web",
        Api = "api",
        Hotline = "hotline",
        Telegram = "telegram",
        Zalo = "zalo",
        Sms = "sms",
    }
}

string_enum! {
    /// Where a tip stands in the police's work.
    Status {
        New = "new",
        Triaged = "triaged",
        InProgress = "in_progress",
        Closed = "closed",
    }
}

string_enum! {
    /// How a closed tip ended.
    Outcome {
        Actioned = "actioned",
        Unfounded = "unfounded",
        Duplicate = "duplicate",
        Referred = "referred",
    }
}

/// How soon a tip must be answered; lower is more urgent (stored as this number).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Urgent = 0,
    High = 1,
    Normal = 2,
    Low = 3,
}

impl Priority {
    /// The priority a new tip gets from its category and whether it is happening now.
    pub fn assess(category: Category, happening_now: bool) -> Priority {
        use Category::*;
        match (category, happening_now) {
            (Psychosis, true) => Priority::Urgent,
            (Psychosis, false) => Priority::High,
            (Other, false) => Priority::Low,
            (Other, true) => Priority::Normal,
            (_, true) => Priority::High,
            (_, false) => Priority::Normal,
        }
    }

    /// The stored number.
    pub fn as_i64(self) -> i64 {
        self as i64
    }

    /// From the stored number.
    pub fn from_i64(n: i64) -> Option<Priority> {
        match n {
            0 => Some(Priority::Urgent),
            1 => Some(Priority::High),
            2 => Some(Priority::Normal),
            3 => Some(Priority::Low),
            _ => None,
        }
    }

    /// The response deadline after `created_ms` (Unix milliseconds).
    pub fn due_at(self, created_ms: i64, sla: &SlaConfig) -> i64 {
        let minutes = match self {
            Priority::Urgent => sla.urgent_minutes,
            Priority::High => sla.high_minutes,
            Priority::Normal => sla.normal_minutes,
            Priority::Low => sla.low_minutes,
        };
        created_ms + minutes * 60_000
    }
}

/// What the tipster is told about a tip's status, in plain words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PublicStatus {
    Received,
    BeingVerified,
    Processed,
}

impl Status {
    /// Whether the status machine allows moving from `self` to `next`.
    pub fn can_become(self, next: Status) -> bool {
        use Status::*;
        matches!(
            (self, next),
            (New, Triaged)
                | (New, InProgress)
                | (New, Closed)
                | (Triaged, InProgress)
                | (Triaged, Closed)
                | (InProgress, Closed)
                | (Closed, InProgress)
        )
    }

    /// What the tipster sees.
    pub fn public(self) -> PublicStatus {
        match self {
            Status::New => PublicStatus::Received,
            Status::Triaged | Status::InProgress => PublicStatus::BeingVerified,
            Status::Closed => PublicStatus::Processed,
        }
    }
}

impl PublicStatus {
    /// The stable name used in the texts.
    pub fn as_str(self) -> &'static str {
        match self {
            PublicStatus::Received => "received",
            PublicStatus::BeingVerified => "being_verified",
            PublicStatus::Processed => "processed",
        }
    }
}

/// Which queue a tip lands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Queue {
    Commune(i64),
    Province(i64),
    Unplaced,
}

/// Routing: the commune's queue, else the province's, else the unplaced queue.
pub fn route(province: Option<i64>, commune: Option<i64>) -> Queue {
    match (commune, province) {
        (Some(c), _) => Queue::Commune(c),
        (None, Some(p)) => Queue::Province(p),
        (None, None) => Queue::Unplaced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psychosis_happening_now_is_urgent_and_due_within_the_hour() {
        let p = Priority::assess(Category::Psychosis, true);
        assert_eq!(p, Priority::Urgent);
        assert_eq!(p.due_at(0, &SlaConfig::default()), 3_600_000);
        assert_eq!(Priority::assess(Category::Other, false), Priority::Low);
        assert_eq!(
            Priority::assess(Category::Dealing, false).due_at(0, &SlaConfig::default()),
            24 * 3_600_000
        );
    }

    #[test]
    fn status_machine_allows_only_forward_moves_and_reopening() {
        assert!(Status::New.can_become(Status::Triaged));
        assert!(Status::InProgress.can_become(Status::Closed));
        assert!(!Status::Closed.can_become(Status::New));
        assert!(!Status::InProgress.can_become(Status::Triaged));
        assert_eq!(Status::Triaged.public(), PublicStatus::BeingVerified);
    }

    #[test]
    fn routing_prefers_commune_then_province() {
        assert_eq!(route(Some(1), Some(70)), Queue::Commune(70));
        assert_eq!(route(Some(1), None), Queue::Province(1));
        assert_eq!(route(None, None), Queue::Unplaced);
    }

    #[test]
    fn names_round_trip() {
        for c in Category::ALL {
            assert_eq!(Category::parse(c.as_str()), Some(*c));
        }
        assert_eq!(Category::parse("nope"), None);
    }
}
