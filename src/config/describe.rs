//! The settings as data, read from their declaration: each one's variable, flag, default and
//! whether staging/production need it. `aidlc-auth settings` prints them for the deployment
//! checks, which compare them with what the task definition passes.

use clap::Args;
use serde::Serialize;

use super::Settings;

/// Help heading of a setting that staging and production refuse to start without.
pub const REQUIRED_WHEN_DEPLOYED: &str = "Required in staging/production";

/// Help heading of the settings that each name the database, one of which staging and
/// production need (the default is a SQLite file, which they refuse).
pub const REQUIRED_WHEN_DEPLOYED_DATABASE: &str =
    "Required in staging/production (one of: database)";

/// One declared setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettingInfo {
    /// The environment variable.
    pub name: String,
    /// The command-line flag, e.g. `--port`.
    pub flag: Option<String>,
    /// The declared default, as written.
    pub default: Option<String>,
    /// When staging/production need it: the requirement it meets (its own name, or the group
    /// of settings any one of which meets it); None when it is optional.
    pub required_when_deployed: Option<String>,
}

impl Settings {
    /// Every setting as declared, in declaration order.
    pub fn described() -> Vec<SettingInfo> {
        Self::augment_args(clap::Command::new("aidlc-auth"))
            .get_arguments()
            .filter_map(|arg| {
                let name = arg.get_env()?.to_str()?.to_owned();
                let required_when_deployed = arg
                    .get_help_heading()
                    .and_then(|heading| requirement(&name, heading));
                let default = arg
                    .get_default_values()
                    .first()
                    .and_then(|d| d.to_str())
                    .map(str::to_owned);
                Some(SettingInfo {
                    flag: arg.get_long().map(|long| format!("--{long}")),
                    default,
                    required_when_deployed,
                    name,
                })
            })
            .collect()
    }
}

/// The requirement a help heading states: the setting's own name for a plain
/// [`REQUIRED_WHEN_DEPLOYED`], the group for `… (one of: <group>)`.
fn requirement(name: &str, heading: &str) -> Option<String> {
    let rest = heading.strip_prefix(REQUIRED_WHEN_DEPLOYED)?;
    if rest.is_empty() {
        return Some(name.to_owned());
    }
    rest.strip_prefix(" (one of: ")?
        .strip_suffix(')')
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A value for each requirement, and what it needs alongside.
    fn sample(requirement: &str) -> &'static [(&'static str, &'static str)] {
        match requirement {
            "ENVIRONMENT" => &[("ENVIRONMENT", "staging")],
            "database" => &[("DATABASE_URL", "postgres://u@db/aidlc_auth")],
            "REDIS_URL" => &[("REDIS_URL", "rediss://cache:6379")],
            "AIDLC_JWT_ISSUER" => &[("AIDLC_JWT_ISSUER", "https://auth.aidlc.example")],
            "AIDLC_KEY_ENCRYPTION_KEY" => &[(
                "AIDLC_KEY_ENCRYPTION_KEY",
                "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
            )],
            "AIDLC_EMAIL_TRANSPORT" => &[
                ("AIDLC_EMAIL_TRANSPORT", "smtp"),
                ("AIDLC_SMTP_URL", "smtps://u:p@mail.example:465"),
            ],
            other => panic!("no sample value for the deployed requirement {other}: add one"),
        }
    }

    fn requirements() -> Vec<String> {
        let mut all: Vec<String> = Settings::described()
            .into_iter()
            .filter_map(|s| s.required_when_deployed)
            .collect();
        all.sort();
        all.dedup();
        all
    }

    fn deployed_without(left_out: Option<&str>) -> Vec<(String, String)> {
        requirements()
            .iter()
            .filter(|r| Some(r.as_str()) != left_out)
            .flat_map(|r| sample(r).iter())
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// The headings are what validation enforces: the requirements together start a deployed
    /// service, and leaving out any one of them refuses it (`ENVIRONMENT` aside: without it the
    /// service is not deployed).
    #[test]
    fn the_deployed_requirements_are_exactly_what_validation_refuses_without() {
        let all = requirements();
        assert!(all.contains(&"database".to_owned()), "{all:?}");
        Settings::from_vars(deployed_without(None)).unwrap();
        for requirement in all.iter().filter(|r| *r != "ENVIRONMENT") {
            assert!(
                Settings::from_vars(deployed_without(Some(requirement))).is_err(),
                "staging started without {requirement}"
            );
        }
    }

    #[test]
    fn every_setting_is_described_once_with_its_default() {
        let described = Settings::described();
        let by_name: BTreeMap<_, _> = described.iter().map(|s| (s.name.as_str(), s)).collect();
        assert_eq!(by_name.len(), described.len(), "a variable declared twice");
        assert_eq!(by_name.len(), Settings::variables().len());
        let port = by_name["PORT"];
        assert_eq!(port.default.as_deref(), Some("8001"));
        assert_eq!(port.flag.as_deref(), Some("--port"));
        assert_eq!(port.required_when_deployed, None);
        assert_eq!(
            by_name["DATABASE_URL"].required_when_deployed.as_deref(),
            Some("database")
        );
    }

    #[test]
    fn headings_name_their_requirement() {
        assert_eq!(
            requirement("REDIS_URL", REQUIRED_WHEN_DEPLOYED).as_deref(),
            Some("REDIS_URL")
        );
        assert_eq!(
            requirement("DATABASE_URL", REQUIRED_WHEN_DEPLOYED_DATABASE).as_deref(),
            Some("database")
        );
        assert_eq!(requirement("PORT", "Networking"), None);
    }
}
