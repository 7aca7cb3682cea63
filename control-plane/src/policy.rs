//! Least privilege on keys, decided in one place for every way a key can change:
//!
//! - **Grant ceilings.** A change by anyone but an admin keeps the key within the caller's
//!   ceiling and, when the key is someone else's, within its owner's too. Each of the four things
//!   a ceiling bounds (grants, lifetime, customer scope, rate limit) is checked unless the change
//!   leaves it no wider than it was, so a key that a later, narrower ceiling left above can still
//!   be renamed or tightened, but not widened, enabled or renewed.
//! - **Restrictions.** What a key manager or admin restricts on someone else's key (disabled, a
//!   customer scope, an expiry, a rate limit, an allowlist) is recorded on the key with who set
//!   it. The owner may tighten it further; only someone who manages others' keys can loosen or
//!   lift it.

use keygate_shared::{Grant, Grants, Status, expires_by};

use crate::store::catalog::Catalogue;
use crate::store::ceilings::{self, Ceiling};
use crate::store::keys::{Key, Restriction, SetBy};
use crate::store::users::{self, Role};
use crate::store::{Db, Refusal, StoreError};

/// Whose ceiling a [`Bound`] is, for the refusal's wording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Whose {
    Caller,
    Owner,
}

/// One ceiling a change must stay within.
#[derive(Clone, Debug)]
pub(crate) struct Bound {
    pub whose: Whose,
    pub ceiling: Ceiling,
}

/// The ceilings that bind `caller` changing a key owned by `owner_id`: none for an admin; the
/// caller's own; and the owner's, when that is someone else who is not an admin.
pub(crate) async fn bounds(
    db: &Db,
    caller_id: &str,
    caller_role: Role,
    owner_id: &str,
) -> Result<Vec<Bound>, StoreError> {
    if caller_role == Role::Admin {
        return Ok(Vec::new());
    }
    let mut bounds = vec![Bound {
        whose: Whose::Caller,
        ceiling: ceilings::of_user(db, caller_id, caller_role).await?.ceiling,
    }];
    if owner_id != caller_id {
        let owner = users::get(db, owner_id)
            .await?
            .ok_or(Refusal::NotFound("user"))?;
        if owner.role != Role::Admin {
            bounds.push(Bound {
                whose: Whose::Owner,
                ceiling: ceilings::of_user(db, owner_id, owner.role).await?.ceiling,
            });
        }
    }
    Ok(bounds)
}

/// What a ceiling bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dimension {
    Grants,
    Lifetime,
    Customer,
    RateLimit,
}

impl Dimension {
    const ALL: [Self; 4] = [
        Self::Grants,
        Self::Lifetime,
        Self::Customer,
        Self::RateLimit,
    ];

    /// Why `key` is above `ceiling` in this dimension, if it is.
    fn exceeds(
        self,
        ceiling: &Ceiling,
        catalogue: &Catalogue,
        key: &Key,
        now: i64,
    ) -> Option<String> {
        match self {
            Self::Grants => first_grant_above(ceiling, catalogue, &key.grants)
                .map(|grant| format!("the grant `{grant}`")),
            Self::Lifetime => {
                let days = ceiling.max_lifetime_days?;
                let latest = now + i64::from(days) * 86_400;
                match key.expires_at {
                    None => Some(format!("a key that never expires (at most {days} days)")),
                    Some(at) if at > latest => {
                        Some(format!("an expiry more than {days} days away"))
                    }
                    Some(_) => None,
                }
            }
            Self::Customer => (ceiling.require_customer && key.customer_id.is_none())
                .then(|| "a key for every customer (customer_id is required)".to_owned()),
            Self::RateLimit => {
                let most = ceiling.max_rate_limit?;
                let shown = format!(
                    "{} requests per {} s",
                    most.requests(),
                    most.window_seconds()
                );
                match key.rate_limit {
                    None => Some(format!("no rate limit (at most {shown})")),
                    Some(limit) if !limit.within(&most) => Some(format!(
                        "a rate limit of {} requests per {} s (at most {shown})",
                        limit.requests(),
                        limit.window_seconds()
                    )),
                    Some(_) => None,
                }
            }
        }
    }

    /// Whether `after` is no wider than `before` in this dimension.
    fn no_wider(self, after: &Key, before: &Key) -> bool {
        match self {
            Self::Grants => before.grants.first_uncovered(&after.grants).is_none(),
            Self::Lifetime => expires_by(after.expires_at, before.expires_at),
            Self::Customer => {
                before.customer_id.is_none() || after.customer_id == before.customer_id
            }
            Self::RateLimit => rate_limit_no_wider(after, before),
        }
    }
}

fn rate_limit_no_wider(after: &Key, before: &Key) -> bool {
    match (after.rate_limit, before.rate_limit) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(after), Some(before)) => after.within(&before),
    }
}

/// The first of `grants` that `ceiling` does not allow: one its `permissions` cover (any exact
/// permission when they are `null`), or one of the sets it names holds.
fn first_grant_above<'g>(
    ceiling: &Ceiling,
    catalogue: &Catalogue,
    grants: &'g Grants,
) -> Option<&'g Grant> {
    // A stored ceiling was validated when it was set; should one not parse, it allows nothing.
    let patterns = ceiling
        .permissions
        .as_ref()
        .map(|patterns| Grants::parse(patterns).unwrap_or_default());
    let from_sets: Vec<Grant> = ceiling
        .permission_sets
        .iter()
        .filter_map(|name| catalogue.set(name))
        .flat_map(|set| set.permissions.iter())
        .filter_map(|grant| Grant::parse(grant).ok())
        .collect();
    grants.iter().find(|grant| {
        let by_pattern = match &patterns {
            None => matches!(grant, Grant::Exact(_)),
            Some(patterns) => patterns.covers(grant),
        };
        !by_pattern && !from_sets.iter().any(|held| held.covers(grant))
    })
}

/// Refuses `after` when it is above one of `bounds`. `before` is the key as it was (`None` for a
/// new key, and for enabling, renewing or giving a key to someone, which are checked whole).
pub(crate) fn check(
    bounds: &[Bound],
    catalogue: &Catalogue,
    after: &Key,
    before: Option<&Key>,
    now: i64,
) -> Result<(), Refusal> {
    for bound in bounds {
        for dimension in Dimension::ALL {
            if before.is_some_and(|before| dimension.no_wider(after, before)) {
                continue;
            }
            if let Some(what) = dimension.exceeds(&bound.ceiling, catalogue, after, now) {
                let whose = match bound.whose {
                    Whose::Caller => "your grant ceiling (GET /v1/users/me/ceiling)",
                    Whose::Owner => "the grant ceiling of the key's owner",
                };
                return Err(Refusal::forbidden(
                    "above_ceiling",
                    format!("{what} is above {whose}; an admin sets ceilings"),
                ));
            }
        }
    }
    Ok(())
}

/// Whether a key may hold `grants` under every one of `bounds` (what the dashboard offers).
pub(crate) fn allows(bounds: &[Bound], catalogue: &Catalogue, grants: &Grants) -> bool {
    bounds
        .iter()
        .all(|bound| first_grant_above(&bound.ceiling, catalogue, grants).is_none())
}

/// Whether `key` is within `ceiling` as a whole.
pub(crate) fn within(ceiling: &Ceiling, catalogue: &Catalogue, key: &Key, now: i64) -> bool {
    Dimension::ALL
        .iter()
        .all(|dimension| dimension.exceeds(ceiling, catalogue, key, now).is_none())
}

/// Whether `key` is restricted in `restriction`'s field at all.
fn restricted(restriction: Restriction, key: &Key) -> bool {
    match restriction {
        Restriction::Disabled => key.status == Status::Disabled,
        Restriction::CustomerId => key.customer_id.is_some(),
        Restriction::ExpiresAt => key.expires_at.is_some(),
        Restriction::RateLimit => key.rate_limit.is_some(),
        Restriction::IpAllowlist => !key.ip_allowlist.is_empty(),
    }
}

/// Whether `after` is at least as restrictive as `before` in `restriction`'s field.
fn holds(restriction: Restriction, after: &Key, before: &Key) -> bool {
    match restriction {
        Restriction::Disabled => {
            before.status != Status::Disabled || after.status != Status::Active
        }
        Restriction::CustomerId => {
            before.customer_id.is_none() || after.customer_id == before.customer_id
        }
        Restriction::ExpiresAt => expires_by(after.expires_at, before.expires_at),
        Restriction::RateLimit => rate_limit_no_wider(after, before),
        Restriction::IpAllowlist => after.ip_allowlist.within(&before.ip_allowlist),
    }
}

/// Whether the change touched `restriction`'s field.
fn changed(restriction: Restriction, after: &Key, before: &Key) -> bool {
    match restriction {
        Restriction::Disabled => after.status != before.status,
        Restriction::CustomerId => after.customer_id != before.customer_id,
        Restriction::ExpiresAt => after.expires_at != before.expires_at,
        Restriction::RateLimit => after.rate_limit != before.rate_limit,
        Restriction::IpAllowlist => after.ip_allowlist != before.ip_allowlist,
    }
}

/// What a change did to a key's restrictions, for its audit row.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Restricted {
    pub placed: Vec<&'static str>,
    pub lifted: Vec<&'static str>,
}

/// Who is changing a key, as restrictions see them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Changer<'a> {
    pub user_id: &'a str,
    /// Manages keys other than their own (key managers and admins).
    pub authority: bool,
}

/// Enforces and records restrictions for one change from `before` (`None`: a new key) to
/// `after`. Without authority, a change that loosens a restriction someone else placed is
/// refused. With it, each restricted field the change set on someone else's key is recorded as
/// theirs, and each it cleared is lifted.
pub(crate) fn restrict(
    changer: Changer<'_>,
    before: Option<&Key>,
    after: &mut Key,
    now: i64,
) -> Result<Restricted, Refusal> {
    let mut outcome = Restricted::default();
    if !changer.authority {
        if let Some(before) = before {
            for (restriction, set_by) in &before.restrictions {
                if !holds(*restriction, after, before) {
                    return Err(Refusal::forbidden(
                        "restricted",
                        format!(
                            "{} was restricted by {} (see the key's `restrictions`); only a key \
                             manager or admin can loosen or lift it",
                            restriction.as_str(),
                            set_by.by,
                        ),
                    ));
                }
            }
        }
        return Ok(outcome);
    }
    let someone_elses = after.owner_id.as_str() != changer.user_id;
    for restriction in Restriction::ALL {
        let touched = before.is_none_or(|before| changed(restriction, after, before));
        if !touched {
            continue;
        }
        if !restricted(restriction, after) {
            if after.restrictions.remove(&restriction).is_some() {
                outcome.lifted.push(restriction.as_str());
            }
        } else if someone_elses {
            let set_by = SetBy {
                by: changer.user_id.to_owned(),
                at: now,
            };
            after.restrictions.insert(restriction, set_by);
            outcome.placed.push(restriction.as_str());
        }
    }
    Ok(outcome)
}
