//! The directory as a service: the config behind a lock, read by everyone, changed only
//! through the operations here (which the admin API calls), each written back to the file.

use crate::behaviour::Behaviour;
use crate::config::Config;
use crate::entries::{App, Tenant, User, default_permissions};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard};

/// Why a directory change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// (what, id): no such tenant, app or user.
    NotFound(&'static str, String),
    /// The change clashes with what exists (an id taken, a tenant still in use).
    Conflict(String),
    /// The change itself is wrong (an unknown tenant, an invalid script).
    Invalid(String),
    /// The file could not be written.
    Save(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NotFound(what, id) => write!(f, "{what} {id} does not exist."),
            Error::Conflict(m) | Error::Invalid(m) | Error::Save(m) => f.write_str(m),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewTenant {
    pub id: Option<String>,
    pub name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewApp {
    pub id: Option<String>,
    #[serde(default)]
    pub certificates: Vec<String>,
    pub tenant: String,
    pub name: Option<String>,
    pub secret: Option<String>,
    pub permissions: Option<Vec<String>>,
    pub webhook: Option<String>,
    #[serde(default)]
    pub addresses: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppPatch {
    pub name: Option<String>,
    pub secret: Option<String>,
    pub permissions: Option<Vec<String>>,
    pub webhook: Option<String>,
    pub addresses: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewUser {
    pub id: Option<String>,
    pub tenant: String,
    pub display_name: Option<String>,
    #[serde(default)]
    pub behaviour: Behaviour,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserPatch {
    pub display_name: Option<String>,
    pub behaviour: Option<Behaviour>,
}

pub struct Directory {
    config: RwLock<Config>,
    path: PathBuf,
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Directory {
    pub fn new(config: Config, path: PathBuf) -> Directory {
        Directory {
            config: RwLock::new(config),
            path,
        }
    }

    /// The settings and directory as they are now.
    pub fn read(&self) -> RwLockReadGuard<'_, Config> {
        self.config.read().expect("directory")
    }

    /// The file changes are written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Apply a change under the write lock, then write the file.
    fn change<T>(&self, f: impl FnOnce(&mut Config) -> Result<T, Error>) -> Result<T, Error> {
        let (v, snapshot) = {
            let mut c = self.config.write().expect("directory");
            let v = f(&mut c)?;
            (v, c.clone())
        };
        snapshot.save_directory(&self.path).map_err(Error::Save)?;
        Ok(v)
    }

    pub fn add_tenant(&self, t: NewTenant) -> Result<Tenant, Error> {
        let tenant = Tenant {
            id: t.id.unwrap_or_else(new_id),
            name: t.name,
        };
        self.change(|c| {
            if c.tenants
                .iter()
                .any(|x| x.id.eq_ignore_ascii_case(&tenant.id))
            {
                return Err(Error::Conflict(format!("Tenant {} exists.", tenant.id)));
            }
            c.tenants.push(tenant.clone());
            Ok(tenant)
        })
    }

    pub fn delete_tenant(&self, id: &str) -> Result<(), Error> {
        self.change(|c| {
            if !c.tenants.iter().any(|x| x.id.eq_ignore_ascii_case(id)) {
                return Err(Error::NotFound("Tenant", id.into()));
            }
            if c.apps.iter().any(|a| a.tenant.eq_ignore_ascii_case(id))
                || c.users.iter().any(|u| u.tenant.eq_ignore_ascii_case(id))
            {
                return Err(Error::Conflict(format!(
                    "Tenant {id} still has apps or users; delete them first."
                )));
            }
            c.tenants.retain(|x| !x.id.eq_ignore_ascii_case(id));
            Ok(())
        })
    }

    /// A new app and its secret in clear text (the only time it is seen: the file keeps its
    /// hash).
    pub fn add_app(&self, a: NewApp) -> Result<(App, String), Error> {
        let plain = a.secret.clone().unwrap_or_else(identity::new_secret);
        let app = App {
            id: a.id.unwrap_or_else(new_id),
            tenant: a.tenant,
            name: a.name,
            secret: None,
            secret_hash: Some(identity::hash_secret(&plain)),
            certificates: a.certificates,
            permissions: a.permissions.unwrap_or_else(default_permissions),
            webhook: a.webhook,
            addresses: a.addresses,
        };
        self.change(|c| {
            if !c
                .tenants
                .iter()
                .any(|t| t.id.eq_ignore_ascii_case(&app.tenant))
            {
                return Err(Error::Invalid(format!(
                    "Tenant {} does not exist.",
                    app.tenant
                )));
            }
            if c.app(&app.id).is_some() {
                return Err(Error::Conflict(format!("App {} exists.", app.id)));
            }
            c.apps.push(app.clone());
            Ok((app, plain))
        })
    }

    pub fn update_app(&self, id: &str, p: AppPatch) -> Result<App, Error> {
        self.change(|c| {
            let Some(a) = c.apps.iter_mut().find(|a| a.id.eq_ignore_ascii_case(id)) else {
                return Err(Error::NotFound("App", id.into()));
            };
            if let Some(v) = p.name {
                a.name = Some(v);
            }
            if let Some(v) = p.secret {
                a.secret_hash = Some(identity::hash_secret(&v));
                a.secret = None;
            }
            if let Some(v) = p.permissions {
                a.permissions = v;
            }
            if let Some(v) = p.webhook {
                a.webhook = Some(v);
            }
            if let Some(v) = p.addresses {
                a.addresses = v;
            }
            Ok(a.clone())
        })
    }

    /// A new random secret for an app, returned in clear text once.
    pub fn reset_secret(&self, id: &str) -> Result<String, Error> {
        let plain = identity::new_secret();
        self.change(|c| {
            let Some(a) = c.apps.iter_mut().find(|a| a.id.eq_ignore_ascii_case(id)) else {
                return Err(Error::NotFound("App", id.into()));
            };
            a.secret_hash = Some(identity::hash_secret(&plain));
            a.secret = None;
            Ok(plain)
        })
    }

    pub fn delete_app(&self, id: &str) -> Result<(), Error> {
        self.change(|c| {
            let before = c.apps.len();
            c.apps.retain(|a| !a.id.eq_ignore_ascii_case(id));
            if c.apps.len() == before {
                return Err(Error::NotFound("App", id.into()));
            }
            Ok(())
        })
    }

    /// A new simulated user.
    pub fn add_user(&self, u: NewUser) -> Result<User, Error> {
        u.behaviour.validate().map_err(Error::Invalid)?;
        let user = User {
            id: u.id.unwrap_or_else(new_id),
            tenant: u.tenant,
            display_name: u.display_name,
            endpoint: "simulated".into(),
            behaviour: u.behaviour,
            sip_user: None,
            sip_password: None,
            sip_ha1: None,
        };
        self.change(|c| {
            if !c
                .tenants
                .iter()
                .any(|t| t.id.eq_ignore_ascii_case(&user.tenant))
            {
                return Err(Error::Invalid(format!(
                    "Tenant {} does not exist.",
                    user.tenant
                )));
            }
            if c.user(&user.id).is_some() {
                return Err(Error::Conflict(format!("User {} exists.", user.id)));
            }
            c.users.push(user.clone());
            Ok(user)
        })
    }

    pub fn update_user(&self, id: &str, p: UserPatch) -> Result<User, Error> {
        if let Some(b) = &p.behaviour {
            b.validate().map_err(Error::Invalid)?;
        }
        self.change(|c| {
            let Some(u) = c.users.iter_mut().find(|u| u.id.eq_ignore_ascii_case(id)) else {
                return Err(Error::NotFound("User", id.into()));
            };
            if let Some(n) = p.display_name {
                u.display_name = Some(n);
            }
            if let Some(b) = p.behaviour {
                u.behaviour = b;
            }
            Ok(u.clone())
        })
    }

    pub fn delete_user(&self, id: &str) -> Result<(), Error> {
        self.change(|c| {
            let before = c.users.len();
            c.users.retain(|u| !u.id.eq_ignore_ascii_case(id));
            if c.users.len() == before {
                return Err(Error::NotFound("User", id.into()));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> (Directory, PathBuf) {
        let dir = std::env::temp_dir().join(format!("ringside-dir-{}", new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ringside.toml");
        (Directory::new(Config::seed_dev(), path.clone()), path)
    }

    #[test]
    fn a_change_is_written_to_the_file_and_a_refused_one_changes_nothing() {
        let (d, path) = fresh();
        let t = d
            .add_tenant(NewTenant {
                id: Some("t2".into()),
                name: None,
            })
            .unwrap();
        assert_eq!(t.id, "t2");
        let on_disk = Config::load(&path).unwrap();
        assert!(on_disk.tenants.iter().any(|t| t.id == "t2"));
        let again = d.add_tenant(NewTenant {
            id: Some("T2".into()),
            name: None,
        });
        assert!(matches!(again, Err(Error::Conflict(_))));
        assert_eq!(d.read().tenants.len(), 2);
        let seeded = d.read().tenants[0].id.clone();
        assert!(matches!(d.delete_tenant(&seeded), Err(Error::Conflict(_))));
        assert!(matches!(
            d.delete_user("nobody"),
            Err(Error::NotFound("User", _))
        ));
    }

    #[test]
    fn a_new_app_keeps_only_the_hash_of_its_secret() {
        let (d, path) = fresh();
        let tenant = d.read().tenants[0].id.clone();
        let (app, plain) = d
            .add_app(NewApp {
                id: None,
                certificates: vec![],
                tenant,
                name: Some("b".into()),
                secret: None,
                permissions: None,
                webhook: None,
                addresses: vec![],
            })
            .unwrap();
        let stored = Config::load(&path).unwrap();
        let a = stored.app(&app.id).unwrap();
        assert!(a.secret.is_none());
        assert!(identity::verify_secret(
            a.secret_hash.as_deref().unwrap(),
            &plain
        ));
        let new = d.reset_secret(&app.id).unwrap();
        assert_ne!(new, plain);
        assert!(identity::verify_secret(
            d.read()
                .app(&app.id)
                .unwrap()
                .secret_hash
                .as_deref()
                .unwrap(),
            &new
        ));
    }
}
