//! Who may do what with a broadcast, in one place: the service enforces these rules and
//! the console asks the same functions which buttons to show.

use crate::accounts::{Account, Role};
use crate::store::{BroadcastRow, BroadcastStatus};

/// Whether the account writes broadcasts: a village head (to its village) or a chief (to
/// any village of its commune).
pub fn composes(a: &Account) -> bool {
    matches!(a.role, Role::VillageHead | Role::Chief)
}

/// Whether the account approves others' broadcasts: the commune's police.
pub fn approves(a: &Account) -> bool {
    matches!(a.role, Role::Officer | Role::Chief)
}

/// Whether the account sees the broadcast: the police of its commune all of them, a
/// village head its own and those to its village only.
pub fn may_see(a: &Account, b: &BroadcastRow) -> bool {
    if a.commune_code != Some(b.commune_code) {
        return false;
    }
    match a.role {
        Role::Officer | Role::Chief => true,
        Role::VillageHead => {
            let mine = a.village_id.map(|v| v.to_string());
            b.author_id == a.id || b.villages.split(',').all(|v| Some(v) == mine.as_deref())
        }
        _ => false,
    }
}

/// Whether the account may approve this broadcast, whatever its status: the police of
/// its commune, never its author (nobody approves their own message).
pub fn is_approver_of(a: &Account, b: &BroadcastRow) -> bool {
    approves(a) && b.author_id != a.id
}

/// Whether the account may approve it now: an approver, and it is waiting.
pub fn may_approve(a: &Account, b: &BroadcastRow) -> bool {
    is_approver_of(a, b) && b.status == BroadcastStatus::Pending
}

/// Whether the account may cancel this broadcast, whatever its status: its author, or the
/// police of its commune.
pub fn is_canceller_of(a: &Account, b: &BroadcastRow) -> bool {
    b.author_id == a.id || approves(a)
}

/// Whether the account may cancel it now: a canceller, and it is not finished.
pub fn may_cancel(a: &Account, b: &BroadcastRow) -> bool {
    is_canceller_of(a, b) && b.status.is_live()
}
