//! `elock atlantis run -- CMD ...`: a step of an Atlantis custom workflow, run under the lock
//! Atlantis's own locking would take for the project, with everything `elock run` gives (its own
//! holder, loss reaching the command within a second, exit codes of its own).
//!
//! Atlantis runs workflow steps with the project's context in the environment
//! (runatlantis.io, "Custom Workflows", custom run command): `BASE_REPO_OWNER`,
//! `BASE_REPO_NAME`, `PULL_NUM`, `PULL_AUTHOR`, `REPO_REL_DIR`, `WORKSPACE`, `PROJECT_NAME`,
//! `USER_NAME`, `COMMAND_NAME`. The lock key and owner are derived from them exactly as the
//! adapter and `import-boltdb` derive them from Atlantis's ProjectLock, and the lease carries
//! that ProjectLock in `metadata.atlantis`, so the adapter lists it, and Atlantis sees it where
//! it shares Redis with elock.

use elock_atlantis::{owner_name, LockKey, ProjectLock};
use elock_client::api::Metadata;
use elock_client::Client;

use super::errors::CliError;
use super::run::{self, code, RunArgs, RunOptions};

/// Atlantis's environment of a workflow step, as read.
#[derive(Debug, Clone, PartialEq)]
pub struct StepEnv {
    pub repo: String,
    pub pull: i64,
    pub author: String,
    pub user: String,
    pub path: String,
    pub workspace: String,
    pub project: String,
    pub command: String,
}

impl StepEnv {
    /// Reads the variables with `get`; a missing or malformed one is named.
    pub fn read(get: &dyn Fn(&str) -> Option<String>) -> Result<StepEnv, String> {
        let need = |var: &str| {
            get(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                format!("{var} is not set: run this inside an Atlantis workflow step (or set it)")
            })
        };
        let pull = need("PULL_NUM")?;
        Ok(StepEnv {
            repo: format!("{}/{}", need("BASE_REPO_OWNER")?, need("BASE_REPO_NAME")?),
            pull: pull
                .parse()
                .map_err(|_| format!("PULL_NUM={pull:?}: expected a pull request number"))?,
            author: get("PULL_AUTHOR").unwrap_or_default(),
            user: get("USER_NAME").unwrap_or_default(),
            path: get("REPO_REL_DIR")
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| ".".into()),
            workspace: get("WORKSPACE")
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "default".into()),
            project: get("PROJECT_NAME").unwrap_or_default(),
            command: get("COMMAND_NAME").unwrap_or_default(),
        })
    }

    /// The ProjectLock Atlantis would write for this step.
    pub fn lock(&self) -> ProjectLock {
        let mut lock = ProjectLock::of_pull(
            &self.repo,
            &self.path,
            &self.workspace,
            self.pull,
            &self.user,
        );
        lock.project.project_name = self.project.clone();
        lock.pull.author = self.author.clone();
        lock.pull.base_repo.full_name = self.repo.clone();
        lock
    }

    /// The lock's resource (Atlantis's lock key) and owner (`{repo}#{pull}`).
    pub fn key_and_owner(&self) -> (String, String) {
        (
            LockKey::of(&self.lock()).to_string(),
            owner_name(&self.repo, self.pull),
        )
    }
}

/// `elock atlantis run`'s arguments: those of `elock run` but the resources and the owner,
/// which come from Atlantis's environment.
#[derive(clap::Args, Debug)]
#[command(after_long_help = run::EXIT_CODES)]
pub struct AtlantisRunArgs {
    #[command(flatten)]
    pub options: RunOptions,
}

pub async fn run(client: &Client, a: AtlantisRunArgs) -> Result<i32, CliError> {
    let mut args = RunArgs {
        resources: Vec::new(),
        owner: None,
        options: a.options,
        metadata: None,
    };
    let env = StepEnv::read(&|v| std::env::var(v).ok()).map_err(|message| CliError {
        exit: code::USAGE,
        message,
        body: None,
    })?;
    let (key, owner) = env.key_and_owner();
    let lock = env.lock();
    let mut map = serde_json::Map::new();
    map.insert(
        "atlantis".into(),
        serde_json::to_value(&lock).map_err(|e| CliError::usage(e.to_string()))?,
    );
    if !env.command.is_empty() {
        map.insert("command".into(), env.command.clone().into());
    }
    args.metadata = Some(
        Metadata::new(serde_json::Value::Object(map))
            .map_err(|e| CliError::usage(e.to_string()))?,
    );
    args.resources = vec![key];
    args.owner = Some(owner);
    run::run(client, args).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_key_and_owner_are_atlantis_own() {
        let vars = [
            ("BASE_REPO_OWNER", "acme"),
            ("BASE_REPO_NAME", "infra"),
            ("PULL_NUM", "42"),
            ("REPO_REL_DIR", "envs/prod"),
            ("WORKSPACE", "default"),
            ("PROJECT_NAME", ""),
            ("USER_NAME", "alice"),
        ];
        let step = StepEnv::read(&env(&vars)).unwrap();
        let (key, owner) = step.key_and_owner();
        assert_eq!(key, "acme/infra/envs/prod/default/");
        assert_eq!(owner, "acme/infra#42");
        // The same key the adapter and the import derive from Atlantis's own ProjectLock.
        let from_atlantis = ProjectLock::of_pull("acme/infra", "envs/prod", "default", 42, "x");
        assert_eq!(key, LockKey::of(&from_atlantis).to_string());
        let named = [
            ("PROJECT_NAME", "prod"),
            ("REPO_REL_DIR", "."),
            ("BASE_REPO_OWNER", "acme"),
            ("BASE_REPO_NAME", "infra"),
            ("PULL_NUM", "7"),
        ];
        let (key, _) = StepEnv::read(&env(&named)).unwrap().key_and_owner();
        assert_eq!(key, "acme/infra/./default/prod");
    }

    #[test]
    fn a_missing_variable_is_named() {
        let e = StepEnv::read(&env(&[("BASE_REPO_OWNER", "acme")])).unwrap_err();
        assert!(e.contains("PULL_NUM"), "{e}");
        let e = StepEnv::read(&env(&[
            ("BASE_REPO_OWNER", "a"),
            ("BASE_REPO_NAME", "b"),
            ("PULL_NUM", "x"),
        ]))
        .unwrap_err();
        assert!(e.contains("PULL_NUM=\"x\""), "{e}");
    }
}
