//! The CLI's commands and what each one sends.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::client::{CliError, Client};
use super::output;

#[derive(Debug, Args)]
pub struct Connection {
    /// The control plane's base URL.
    #[arg(
        long,
        env = "KEYGATE_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// A control-plane token (`keygate bootstrap` prints the first one).
    #[arg(long, env = "KEYGATE_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create and manage API keys.
    Keys {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Manage users, roles and their control-plane tokens (admins).
    Users {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        action: UsersAction,
    },
    /// Read and extend the permission catalogue.
    Permissions {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        action: PermissionsAction,
    },
    /// Read the audit log, newest first.
    Audit {
        #[command(flatten)]
        connection: Connection,
        #[arg(long)]
        actor: Option<String>,
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        target: Option<String>,
        /// RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show the user the token belongs to, and when the token expires.
    Whoami {
        #[command(flatten)]
        connection: Connection,
    },
    /// Your own control-plane tokens: list them, revoke one.
    Tokens {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        action: TokensAction,
    },
    /// Grant ceilings: the most a role, or one user, may put on a key.
    Ceilings {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        action: CeilingsAction,
    },
}

/// Whose ceiling: a role's, or one user's.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct CeilingSubject {
    /// `member` or `key_manager`.
    #[arg(long)]
    role: Option<String>,
    /// A user's id.
    #[arg(long = "user", value_name = "USER_ID")]
    user_id: Option<String>,
}

impl CeilingSubject {
    fn path(&self) -> String {
        match (&self.role, &self.user_id) {
            (Some(role), _) => format!("/v1/roles/{}/ceiling", encode_path(role)),
            (None, Some(user)) => format!("/v1/users/{}/ceiling", encode_path(user)),
            (None, None) => "/v1/users/me/ceiling".to_owned(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum CeilingsAction {
    /// The ceiling that binds you; key managers and admins may name a role or a user.
    Show {
        #[arg(long, conflicts_with = "user_id")]
        role: Option<String>,
        #[arg(long = "user", value_name = "USER_ID")]
        user_id: Option<String>,
    },
    /// Replace a role's or one user's ceiling (admins). Lists the keys it leaves above it.
    Set {
        #[command(flatten)]
        subject: CeilingSubject,
        /// A grant keys may hold, wildcards included (repeat for more). None: any catalogued
        /// permission by its exact name, and no wildcard.
        #[arg(long = "permission", value_name = "GRANT")]
        permissions: Vec<String>,
        /// A permission set keys may use whatever it holds (repeat for more).
        #[arg(long = "set", value_name = "SET")]
        permission_sets: Vec<String>,
        /// Keys must expire within this many days of any change.
        #[arg(long)]
        max_lifetime_days: Option<u32>,
        /// Keys must be scoped to a customer.
        #[arg(long)]
        require_customer: bool,
        /// REQUESTS/SECONDS: keys must have a rate limit no looser than this.
        #[arg(long, value_parser = parse_rate_limit)]
        max_rate_limit: Option<Value>,
    },
    /// Put a role back on its default, or a user back on their role's ceiling (admins).
    Reset {
        #[command(flatten)]
        subject: CeilingSubject,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokensAction {
    /// Your tokens: ids, names, when they expire or were revoked.
    List,
    /// Revoke one of your tokens, at once (the one you call with, too).
    Revoke { token_id: String },
}

#[derive(Debug, Args)]
pub struct KeySettings {
    /// Catalogued permission (repeat for more).
    #[arg(long = "permission", value_name = "PERMISSION")]
    permissions: Vec<String>,
    /// Named permission set (repeat for more).
    #[arg(long = "set", value_name = "SET")]
    permission_sets: Vec<String>,
    #[arg(long)]
    description: Option<String>,
    #[arg(long = "customer")]
    customer_id: Option<String>,
    #[arg(long, conflicts_with = "expires_at")]
    expires_in_days: Option<u32>,
    /// RFC 3339 time.
    #[arg(long)]
    expires_at: Option<String>,
    /// REQUESTS/SECONDS, e.g. 100/60.
    #[arg(long, value_parser = parse_rate_limit)]
    rate_limit: Option<Value>,
    /// CIDR network the key may be used from (repeat for more).
    #[arg(long = "allow-ip", value_name = "CIDR")]
    ip_allowlist: Vec<String>,
    /// A JSON object of your own labels.
    #[arg(long, value_parser = parse_object)]
    metadata: Option<Value>,
}

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Create a key; prints it once (or writes it to --output).
    Create {
        #[arg(long)]
        name: String,
        /// production, staging or development.
        #[arg(long)]
        environment: Option<String>,
        /// The user to own the key (default: you).
        #[arg(long = "owner")]
        owner_id: Option<String>,
        #[command(flatten)]
        settings: KeySettings,
        /// Write the key to this new file (mode 0600) instead of printing it.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// List keys, newest first.
    List {
        /// active, disabled, expired or revoked.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        environment: Option<String>,
        #[arg(long = "owner")]
        owner_id: Option<String>,
        #[arg(long = "customer")]
        customer_id: Option<String>,
        /// Part of the name.
        #[arg(long)]
        name: Option<String>,
        /// Only keys not used for this many days (never used: created that long ago).
        #[arg(long)]
        unused_days: Option<u32>,
        /// Only keys whose owner is deactivated.
        #[arg(long)]
        owner_deactivated: bool,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one key.
    Show { key_id: String },
    /// Change a key's settings; only the options given change.
    Update {
        key_id: String,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        settings: KeySettings,
        /// Remove the expiry.
        #[arg(long, conflicts_with_all = ["expires_at", "expires_in_days"])]
        never_expires: bool,
        /// Remove the rate limit.
        #[arg(long, conflicts_with = "rate_limit")]
        no_rate_limit: bool,
        /// Remove the customer scope.
        #[arg(long, conflicts_with = "customer_id")]
        no_customer: bool,
    },
    /// Switch a key off (reversible).
    Disable { key_id: String },
    /// Switch a disabled key back on.
    Enable { key_id: String },
    /// Revoke a key for good.
    Revoke {
        key_id: String,
        #[arg(long)]
        reason: String,
    },
    /// Delete a key for good (its audit trail stays).
    Delete {
        key_id: String,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
    /// New secret, same key id and settings; prints it once (or writes it to --output).
    Regenerate {
        key_id: String,
        /// Keep the old secret working this many seconds (at most 604800).
        #[arg(long, default_value_t = 0)]
        grace_period_seconds: u32,
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersAction {
    /// Create a user.
    Create {
        #[arg(long)]
        email: String,
        /// admin, key_manager or member.
        #[arg(long)]
        role: String,
    },
    List,
    Show {
        user_id: String,
    },
    /// Change a user's role.
    SetRole {
        user_id: String,
        role: String,
    },
    /// Deactivate a user: their tokens stop at once, and their keys are disabled.
    Deactivate {
        user_id: String,
        /// Leave the user's keys working (find them later with `keys list --owner-deactivated`).
        #[arg(long)]
        keep_keys: bool,
    },
    /// Issue a control-plane token for a user; prints it once (or writes it to --output).
    Token {
        user_id: String,
        #[arg(long)]
        name: String,
        /// Days until it stops working (1 to 3650; the server's default is 90).
        #[arg(long)]
        expires_in_days: Option<u32>,
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Revoke one of a user's tokens.
    RevokeToken {
        user_id: String,
        token_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PermissionsAction {
    /// The catalogue: permissions and sets.
    List,
    /// Add a permission (`resource:action`).
    Add {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Create or replace a named set.
    Set {
        name: String,
        #[arg(long = "permission", value_name = "PERMISSION", required = true)]
        permissions: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
}

fn parse_rate_limit(text: &str) -> Result<Value, String> {
    let (requests, window) = text
        .split_once('/')
        .ok_or_else(|| "write the rate limit as REQUESTS/SECONDS, e.g. 100/60".to_owned())?;
    let number = |part: &str| {
        part.trim()
            .parse::<u32>()
            .map_err(|_| format!("{part:?} is not a whole number"))
    };
    Ok(json!({ "requests": number(requests)?, "window_seconds": number(window)? }))
}

fn parse_object(text: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(value @ Value::Object(_)) => Ok(value),
        _ => Err("metadata must be a JSON object, e.g. '{\"team\":\"billing\"}'".into()),
    }
}

const KEY_COLUMNS: &[&str] = &[
    "key_id",
    "name",
    "environment",
    "status",
    "owner_id",
    "grants",
    "expires_at",
    "last_used_at",
];

fn encode_path(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

impl KeySettings {
    fn into_body(self, body: &mut Map<String, Value>) {
        let mut put = |name: &str, value: Option<Value>| {
            if let Some(value) = value {
                body.insert(name.to_owned(), value);
            }
        };
        let list = |items: Vec<String>| (!items.is_empty()).then(|| json!(items));
        put("permissions", list(self.permissions));
        put("permission_sets", list(self.permission_sets));
        put("description", self.description.map(Value::String));
        put("customer_id", self.customer_id.map(Value::String));
        put("expires_in_days", self.expires_in_days.map(Value::from));
        put("expires_at", self.expires_at.map(Value::String));
        put("rate_limit", self.rate_limit);
        put("ip_allowlist", list(self.ip_allowlist));
        put("metadata", self.metadata);
    }
}

/// Checked before asking for a new secret, so a refused --output file costs no key. (The file
/// is created with `create_new` as well, so a race still cannot overwrite one.)
fn refuse_existing(output: Option<&Path>) -> Result<(), CliError> {
    match output {
        Some(path) if path.exists() => Err(CliError::Usage(format!(
            "{} already exists; refusing to overwrite it",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// Writes a new secret to a file only its owner can read, refusing to replace an existing file.
fn save_secret(path: &Path, secret: &str) -> Result<(), CliError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|error| {
        CliError::Usage(format!(
            "cannot create {} ({error}); it must not exist yet",
            path.display()
        ))
    })?;
    writeln!(file, "{secret}")
        .and_then(|()| file.sync_all())
        .map_err(|error| CliError::Usage(format!("cannot write {}: {error}", path.display())))
}

/// Prints a create/regenerate answer: the key once, or where it went.
fn show_secret(
    answer: &Value,
    field: &str,
    output: Option<&Path>,
    json: bool,
) -> Result<(), CliError> {
    let secret = answer[field].as_str().unwrap_or_default();
    if let Some(path) = output {
        save_secret(path, secret)?;
        let mut redacted = answer.clone();
        redacted[field] = Value::String(format!("(written to {})", path.display()));
        print_answer(&redacted, json, |value| {
            format!(
                "{}\n{field} written to {} (mode 0600)\n",
                output::record(value.get("record").unwrap_or(value)),
                path.display()
            )
        });
    } else {
        print_answer(answer, json, |value| {
            format!(
                "{}\n{field} (shown only this once; store it now):\n\n    {secret}\n",
                output::record(value.get("record").unwrap_or(value))
            )
        });
    }
    Ok(())
}

fn print_answer(answer: &Value, json: bool, human: impl FnOnce(&Value) -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(answer).unwrap_or_default()
        );
    } else {
        print!("{}", human(answer));
    }
}

fn query(pairs: &[(&'static str, Option<String>)]) -> Vec<(&'static str, String)> {
    pairs
        .iter()
        .filter_map(|(name, value)| value.clone().map(|value| (*name, value)))
        .collect()
}

fn page(answer: &Value, columns: &[&str]) -> String {
    let items = answer["items"].as_array().cloned().unwrap_or_default();
    let mut out = output::table(&items, columns);
    if let Some(cursor) = answer["next_cursor"].as_str() {
        out.push_str(&format!("\nmore: --cursor {cursor}\n"));
    }
    out
}

pub(crate) async fn execute(command: ClientCommand) -> Result<(), CliError> {
    match command {
        ClientCommand::Keys { connection, action } => keys(&connection, action).await,
        ClientCommand::Users { connection, action } => users(&connection, action).await,
        ClientCommand::Permissions { connection, action } => permissions(&connection, action).await,
        ClientCommand::Audit {
            connection,
            actor,
            action,
            target,
            since,
            until,
            limit,
            cursor,
        } => {
            let client = Client::new(&connection.url, connection.token.as_deref())?;
            let pairs = query(&[
                ("actor_id", actor),
                ("action", action),
                ("target_id", target),
                ("since", since),
                ("until", until),
                ("limit", Some(limit.to_string())),
                ("cursor", cursor),
            ]);
            let answer = client
                .send(Method::GET, "/v1/audit-log", &pairs, None)
                .await?;
            let answer = answer.unwrap_or_default();
            print_answer(&answer, connection.json, |value| {
                page(
                    value,
                    &[
                        "id",
                        "occurred_at",
                        "actor_id",
                        "action",
                        "target_id",
                        "summary",
                    ],
                )
            });
            Ok(())
        }
        ClientCommand::Whoami { connection } => {
            let client = Client::new(&connection.url, connection.token.as_deref())?;
            let answer = client.send(Method::GET, "/v1/users/me", &[], None).await?;
            print_answer(&answer.unwrap_or_default(), connection.json, output::record);
            Ok(())
        }
        ClientCommand::Ceilings { connection, action } => ceilings(&connection, action).await,
        ClientCommand::Tokens { connection, action } => {
            let client = Client::new(&connection.url, connection.token.as_deref())?;
            match action {
                TokensAction::List => {
                    let answer = client
                        .send(Method::GET, "/v1/users/me/tokens", &[], None)
                        .await?
                        .unwrap_or_default();
                    print_answer(&answer, connection.json, |tokens| {
                        let rows = tokens.as_array().cloned().unwrap_or_default();
                        output::table(
                            &rows,
                            &["token_id", "name", "created_at", "expires_at", "revoked_at"],
                        )
                    });
                }
                TokensAction::Revoke { token_id } => {
                    let path = format!("/v1/users/me/tokens/{}/revoke", encode_path(&token_id));
                    client.send(Method::POST, &path, &[], None).await?;
                    if !connection.json {
                        println!("revoked token {}", output::cell(&json!(token_id)));
                    }
                }
            }
            Ok(())
        }
    }
}

async fn keys(connection: &Connection, action: KeysAction) -> Result<(), CliError> {
    let client = Client::new(&connection.url, connection.token.as_deref())?;
    let json = connection.json;
    let path = |id: &str, suffix: &str| format!("/v1/keys/{}{suffix}", encode_path(id));
    let (method, url, body) = match action {
        KeysAction::Create {
            name,
            environment,
            owner_id,
            settings,
            output,
        } => {
            let mut body = Map::new();
            body.insert("name".into(), Value::String(name));
            if let Some(environment) = environment {
                body.insert("environment".into(), Value::String(environment));
            }
            if let Some(owner) = owner_id {
                body.insert("owner_id".into(), Value::String(owner));
            }
            settings.into_body(&mut body);
            refuse_existing(output.as_deref())?;
            let answer = client
                .send(Method::POST, "/v1/keys", &[], Some(&Value::Object(body)))
                .await?
                .unwrap_or_default();
            return show_secret(&answer, "key", output.as_deref(), json);
        }
        KeysAction::Regenerate {
            key_id,
            grace_period_seconds,
            output,
        } => {
            refuse_existing(output.as_deref())?;
            let body = json!({ "grace_period_seconds": grace_period_seconds });
            let answer = client
                .send(
                    Method::POST,
                    &path(&key_id, "/regenerate"),
                    &[],
                    Some(&body),
                )
                .await?
                .unwrap_or_default();
            return show_secret(&answer, "key", output.as_deref(), json);
        }
        KeysAction::List {
            status,
            environment,
            owner_id,
            customer_id,
            name,
            unused_days,
            owner_deactivated,
            limit,
            cursor,
        } => {
            let pairs = query(&[
                ("unused_days", unused_days.map(|days| days.to_string())),
                (
                    "owner_deactivated",
                    owner_deactivated.then(|| "true".to_owned()),
                ),
                ("status", status),
                ("environment", environment),
                ("owner_id", owner_id),
                ("customer_id", customer_id),
                ("name", name),
                ("limit", Some(limit.to_string())),
                ("cursor", cursor),
            ]);
            let answer = client.send(Method::GET, "/v1/keys", &pairs, None).await?;
            print_answer(&answer.unwrap_or_default(), json, |value| {
                page(value, KEY_COLUMNS)
            });
            return Ok(());
        }
        KeysAction::Show { key_id } => (Method::GET, path(&key_id, ""), None),
        KeysAction::Update {
            key_id,
            name,
            settings,
            never_expires,
            no_rate_limit,
            no_customer,
        } => {
            let mut body = Map::new();
            if let Some(name) = name {
                body.insert("name".into(), Value::String(name));
            }
            settings.into_body(&mut body);
            for (cleared, field) in [
                (never_expires, "expires_at"),
                (no_rate_limit, "rate_limit"),
                (no_customer, "customer_id"),
            ] {
                if cleared {
                    body.insert(field.into(), Value::Null);
                }
            }
            (Method::PATCH, path(&key_id, ""), Some(Value::Object(body)))
        }
        KeysAction::Disable { key_id } => (Method::POST, path(&key_id, "/disable"), None),
        KeysAction::Enable { key_id } => (Method::POST, path(&key_id, "/enable"), None),
        KeysAction::Revoke { key_id, reason } => (
            Method::POST,
            path(&key_id, "/revoke"),
            Some(json!({ "reason": reason })),
        ),
        KeysAction::Delete { key_id, yes } => {
            if !yes {
                return Err(CliError::Usage(format!(
                    "deleting {key_id} is permanent; add --yes to confirm"
                )));
            }
            client
                .send(Method::DELETE, &path(&key_id, ""), &[], None)
                .await?;
            if !json {
                println!("deleted {key_id}");
            }
            return Ok(());
        }
    };
    let answer = client.send(method, &url, &[], body.as_ref()).await?;
    print_answer(&answer.unwrap_or_default(), json, output::record);
    Ok(())
}

async fn users(connection: &Connection, action: UsersAction) -> Result<(), CliError> {
    let client = Client::new(&connection.url, connection.token.as_deref())?;
    let json = connection.json;
    let path = |id: &str, suffix: &str| format!("/v1/users/{}{suffix}", encode_path(id));
    let (method, url, body) = match action {
        UsersAction::Create { email, role } => (
            Method::POST,
            "/v1/users".to_owned(),
            Some(json!({ "email": email, "role": role })),
        ),
        UsersAction::List => {
            let answer = client.send(Method::GET, "/v1/users", &[], None).await?;
            print_answer(&answer.unwrap_or_default(), json, |value| {
                page(value, &["user_id", "email", "role", "active", "created_at"])
            });
            return Ok(());
        }
        UsersAction::Show { user_id } => (Method::GET, path(&user_id, ""), None),
        UsersAction::SetRole { user_id, role } => (
            Method::PATCH,
            path(&user_id, ""),
            Some(json!({ "role": role })),
        ),
        UsersAction::Deactivate { user_id, keep_keys } => (
            Method::POST,
            path(&user_id, "/deactivate"),
            Some(json!({ "disable_keys": !keep_keys })),
        ),
        UsersAction::Token {
            user_id,
            name,
            expires_in_days,
            output,
        } => {
            refuse_existing(output.as_deref())?;
            let answer = client
                .send(
                    Method::POST,
                    &path(&user_id, "/tokens"),
                    &[],
                    Some(&json!({ "name": name, "expires_in_days": expires_in_days })),
                )
                .await?
                .unwrap_or_default();
            return show_secret(&answer, "token", output.as_deref(), json);
        }
        UsersAction::RevokeToken { user_id, token_id } => {
            let url = path(
                &user_id,
                &format!("/tokens/{}/revoke", encode_path(&token_id)),
            );
            client.send(Method::POST, &url, &[], None).await?;
            if !json {
                println!("revoked token {token_id}");
            }
            return Ok(());
        }
    };
    let answer = client.send(method, &url, &[], body.as_ref()).await?;
    print_answer(&answer.unwrap_or_default(), json, output::record);
    Ok(())
}

async fn permissions(connection: &Connection, action: PermissionsAction) -> Result<(), CliError> {
    let client = Client::new(&connection.url, connection.token.as_deref())?;
    let json = connection.json;
    let answer = match action {
        PermissionsAction::List => {
            let answer = client
                .send(Method::GET, "/v1/permissions", &[], None)
                .await?;
            print_answer(&answer.unwrap_or_default(), json, |value| {
                let empty = Vec::new();
                let permissions = value["permissions"].as_array().unwrap_or(&empty);
                let sets = value["sets"].as_array().unwrap_or(&empty);
                format!(
                    "{}\n{}",
                    output::table(permissions, &["name", "description"]),
                    output::table(sets, &["name", "permissions", "description"])
                )
            });
            return Ok(());
        }
        PermissionsAction::Add { name, description } => {
            let body = json!({ "name": name, "description": description });
            client
                .send(Method::POST, "/v1/permissions", &[], Some(&body))
                .await?
        }
        PermissionsAction::Set {
            name,
            permissions,
            description,
        } => {
            let body = json!({ "permissions": permissions, "description": description });
            let url = format!("/v1/permission-sets/{}", encode_path(&name));
            client.send(Method::PUT, &url, &[], Some(&body)).await?
        }
    };
    print_answer(&answer.unwrap_or_default(), json, output::record);
    Ok(())
}

async fn ceilings(connection: &Connection, action: CeilingsAction) -> Result<(), CliError> {
    let client = Client::new(&connection.url, connection.token.as_deref())?;
    let answer = match action {
        CeilingsAction::Show { role, user_id } => {
            let path = CeilingSubject { role, user_id }.path();
            client.send(Method::GET, &path, &[], None).await?
        }
        CeilingsAction::Set {
            subject,
            permissions,
            permission_sets,
            max_lifetime_days,
            require_customer,
            max_rate_limit,
        } => {
            let body = json!({
                "permissions": (!permissions.is_empty()).then_some(permissions),
                "permission_sets": permission_sets,
                "max_lifetime_days": max_lifetime_days,
                "require_customer": require_customer,
                "max_rate_limit": max_rate_limit,
            });
            client
                .send(Method::PUT, &subject.path(), &[], Some(&body))
                .await?
        }
        CeilingsAction::Reset { subject } => {
            client
                .send(Method::DELETE, &subject.path(), &[], None)
                .await?
        }
    };
    print_answer(&answer.unwrap_or_default(), connection.json, output::record);
    Ok(())
}
