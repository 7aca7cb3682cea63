//! Grant ceilings: what an admin lets a role, or one user, put on a key. A user's own ceiling wins
//! over their role's, and a role nobody set has the built-in default. Admins have none: they set
//! the ceilings. What a ceiling means for a key is `crate::policy`'s business.

use keygate_shared::{RateLimit, RateLimitFields};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row;

use super::users::Role;
use super::{Actor, Db, StoreError, audit};

/// The most a key may hold and the least it must be restricted by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Ceiling {
    /// Grants a key may hold, wildcards included: `orders:*` lets a key hold `orders:*` or any
    /// `orders:...`, `*` lets it hold anything. `null`: any catalogued permission by its exact
    /// name, and no wildcard.
    #[serde(default)]
    #[schema(schema_with = keygate_shared::openapi::optional_grant_list)]
    pub permissions: Option<Vec<String>>,
    /// Permission sets a key may use whatever they hold. Any other set only if each of its
    /// grants is within `permissions`.
    #[serde(default)]
    #[schema(schema_with = keygate_shared::openapi::set_name_list)]
    pub permission_sets: Vec<String>,
    /// A key must expire at most this many days after it is created or changed (1 to 3650).
    /// `null`: keys may live for ever.
    #[serde(default, deserialize_with = "keygate_shared::whole::option_u32")]
    #[schema(minimum = 1, maximum = 3650)]
    pub max_lifetime_days: Option<u32>,
    /// A key must be scoped to one customer (`customer_id`).
    #[serde(default)]
    pub require_customer: bool,
    /// A key must have a rate limit no looser than this: no larger burst, no higher rate.
    /// `null`: no rate limit is required.
    #[serde(default)]
    #[schema(value_type = Option<RateLimitFields>)]
    pub max_rate_limit: Option<RateLimit>,
}

impl Ceiling {
    /// No ceiling at all: anything the catalogue has, for ever, unrestricted.
    pub fn unbounded() -> Self {
        Self {
            permissions: Some(vec!["*".to_owned()]),
            permission_sets: Vec::new(),
            max_lifetime_days: None,
            require_customer: false,
            max_rate_limit: None,
        }
    }

    /// A role's ceiling until an admin sets one: key managers are unbounded; members may put any
    /// catalogued permission or set on a key, but no wildcard (and so no `*`).
    pub fn default_for(role: Role) -> Self {
        match role {
            Role::Member => Self {
                permissions: None,
                ..Self::unbounded()
            },
            Role::Admin | Role::KeyManager => Self::unbounded(),
        }
    }
}

/// Whose ceiling a row is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    Role(Role),
    User(String),
}

impl Subject {
    pub fn key(&self) -> String {
        match self {
            Self::Role(role) => format!("role:{}", role.as_str()),
            Self::User(user_id) => format!("user:{user_id}"),
        }
    }
}

/// Where a user's ceiling comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Admins have no ceiling.
    Admin,
    /// Set for this user.
    User,
    /// Set for the user's role.
    Role,
    /// The role's built-in default.
    Default,
}

/// A ceiling with where it comes from, and who set it last.
#[derive(Clone, Debug)]
pub struct Effective {
    pub ceiling: Ceiling,
    pub source: Source,
    pub updated_at: Option<i64>,
    pub updated_by: Option<String>,
}

async fn row(db: &Db, subject: &Subject) -> Result<Option<Effective>, StoreError> {
    let key = subject.key();
    let Some(row) =
        sqlx::query("SELECT ceiling, updated_at, updated_by FROM grant_ceiling WHERE subject = $1")
            .bind(&key)
            .fetch_optional(db.reader())
            .await?
    else {
        return Ok(None);
    };
    let text: String = row.try_get("ceiling")?;
    Ok(Some(Effective {
        ceiling: serde_json::from_str(&text)
            .map_err(|error| super::corrupt("grant ceiling", &key, error))?,
        source: match subject {
            Subject::Role(_) => Source::Role,
            Subject::User(_) => Source::User,
        },
        updated_at: Some(row.try_get("updated_at")?),
        updated_by: Some(row.try_get("updated_by")?),
    }))
}

/// A role's ceiling: the one an admin set, or the default.
pub async fn of_role(db: &Db, role: Role) -> Result<Effective, StoreError> {
    if role == Role::Admin {
        return Ok(admin());
    }
    Ok(row(db, &Subject::Role(role))
        .await?
        .unwrap_or_else(|| Effective {
            ceiling: Ceiling::default_for(role),
            source: Source::Default,
            updated_at: None,
            updated_by: None,
        }))
}

/// The ceiling that binds a user of `role`: theirs, else their role's.
pub async fn of_user(db: &Db, user_id: &str, role: Role) -> Result<Effective, StoreError> {
    if role == Role::Admin {
        return Ok(admin());
    }
    match row(db, &Subject::User(user_id.to_owned())).await? {
        Some(own) => Ok(own),
        None => of_role(db, role).await,
    }
}

fn admin() -> Effective {
    Effective {
        ceiling: Ceiling::unbounded(),
        source: Source::Admin,
        updated_at: None,
        updated_by: None,
    }
}

/// Sets a ceiling (`Some`) or removes it (`None`: back to the role's, or the default), with its
/// audit row. Existing keys are not changed.
pub async fn put(
    db: &Db,
    subject: &Subject,
    ceiling: Option<&Ceiling>,
    actor: &Actor,
) -> Result<(), StoreError> {
    let key = subject.key();
    let mut tx = db.begin().await?;
    sqlx::query("DELETE FROM grant_ceiling WHERE subject = $1")
        .bind(&key)
        .execute(&mut *tx)
        .await?;
    if let Some(ceiling) = ceiling {
        sqlx::query(
            "INSERT INTO grant_ceiling (subject, ceiling, updated_at, updated_by) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&key)
        .bind(serde_json::to_string(ceiling).expect("a ceiling serialises"))
        .bind(actor.now)
        .bind(actor.user_id.as_deref())
        .execute(&mut *tx)
        .await?;
    }
    let (action, summary) = match ceiling {
        Some(ceiling) => ("ceiling.set", json!({ "ceiling": ceiling })),
        None => ("ceiling.reset", json!({})),
    };
    audit::record(&mut tx, actor, action, "ceiling", &key, &summary).await?;
    tx.commit().await?;
    Ok(())
}
