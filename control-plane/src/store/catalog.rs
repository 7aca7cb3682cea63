//! The permission catalogue: the permissions keys may hold, and named sets of them ("API sets").
//! Sets are expanded into a key's grants when the key is written, so changing a set later does not
//! change existing keys.

use keygate_shared::{Grant, Permission};
use serde::Serialize;
use serde_json::json;
use sqlx::Row;

use super::{Actor, Db, Refusal, StoreError, audit};

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CataloguedPermission {
    /// `resource:action`.
    pub name: String,
    pub description: String,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct NamedSet {
    pub name: String,
    pub description: String,
    /// Grants, as a key would hold them (`resource:action`, `resource:*`, `*`).
    pub permissions: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Catalogue {
    pub permissions: Vec<CataloguedPermission>,
    pub sets: Vec<NamedSet>,
}

impl Catalogue {
    /// A grant may be held if it names a catalogued permission, or is a wildcard covering at
    /// least one.
    pub fn covers(&self, grant: &Grant) -> bool {
        match grant {
            Grant::Exact(exact) => self
                .permissions
                .iter()
                .any(|permission| permission.name == exact.as_str()),
            wildcard => self.permissions.iter().any(|permission| {
                Permission::parse(&permission.name).is_ok_and(|parsed| wildcard.allows(&parsed))
            }),
        }
    }

    pub fn set(&self, name: &str) -> Option<&NamedSet> {
        self.sets.iter().find(|set| set.name == name)
    }
}

pub async fn load(db: &Db) -> Result<Catalogue, StoreError> {
    let permissions = sqlx::query("SELECT name, description FROM permission ORDER BY name")
        .fetch_all(db.reader())
        .await?
        .iter()
        .map(|row| {
            Ok(CataloguedPermission {
                name: row.try_get("name")?,
                description: row.try_get("description")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let sets =
        sqlx::query("SELECT name, description, permissions FROM permission_set ORDER BY name")
            .fetch_all(db.reader())
            .await?
            .iter()
            .map(|row| {
                let name: String = row.try_get("name")?;
                let permissions: String = row.try_get("permissions")?;
                Ok(NamedSet {
                    permissions: serde_json::from_str(&permissions)
                        .map_err(|error| super::corrupt("permission set", &name, error))?,
                    description: row.try_get("description")?,
                    name,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Catalogue { permissions, sets })
}

pub async fn add_permission(
    db: &Db,
    permission: &CataloguedPermission,
    actor: &Actor,
) -> Result<(), StoreError> {
    let mut tx = db.begin().await?;
    let inserted =
        sqlx::query("INSERT INTO permission (name, description, created_at) VALUES ($1, $2, $3)")
            .bind(&permission.name)
            .bind(&permission.description)
            .bind(actor.now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from);
    match inserted {
        Err(error) if error.is_unique_violation() => {
            return Err(Refusal::conflict(
                "permission_exists",
                format!(
                    "permission {:?} is already in the catalogue",
                    permission.name
                ),
            )
            .into());
        }
        other => other?,
    };
    let summary = json!({ "description": permission.description });
    audit::record(
        &mut tx,
        actor,
        "permission.add",
        "permission",
        &permission.name,
        &summary,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Creates or replaces a set; true when it was new.
pub async fn put_set(db: &Db, set: &NamedSet, actor: &Actor) -> Result<bool, StoreError> {
    let mut tx = db.begin().await?;
    let permissions = serde_json::to_string(&set.permissions).expect("strings serialise");
    let updated = sqlx::query(
        "UPDATE permission_set SET description = $2, permissions = $3, updated_at = $4 WHERE name = $1",
    )
    .bind(&set.name)
    .bind(&set.description)
    .bind(&permissions)
    .bind(actor.now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let created = updated == 0;
    if created {
        sqlx::query(
            "INSERT INTO permission_set (name, description, permissions, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(&set.name)
        .bind(&set.description)
        .bind(&permissions)
        .bind(actor.now)
        .execute(&mut *tx)
        .await?;
    }
    let action = if created {
        "permission_set.create"
    } else {
        "permission_set.update"
    };
    let summary = json!({ "description": set.description, "permissions": set.permissions });
    audit::record(
        &mut tx,
        actor,
        action,
        "permission_set",
        &set.name,
        &summary,
    )
    .await?;
    tx.commit().await?;
    Ok(created)
}
