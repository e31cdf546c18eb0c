//! Parsing: each setting's variable stands for its flag, so the environment, flags and tests
//! go through one clap parser; plus the value parsers the declaration names.

use std::collections::HashMap;
use std::ffi::OsString;
use std::time::Duration;

use clap::FromArgMatches;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use secrecy::SecretString;

use super::{DbSecret, OffOrSeconds};

/// Parses `args` with `command` (which flattens [`Settings`]). Each setting's variable in
/// `vars` stands for its flag, placed before `args` so a flag given there wins; variables that
/// are empty count as unset, and values are trimmed. Only `vars` is read, never the process
/// environment directly, so `main` and the tests parse the same way.
pub fn parse<T: FromArgMatches>(
    command: clap::Command,
    vars: impl IntoIterator<Item = (String, String)>,
    args: impl IntoIterator<Item = OsString>,
) -> Result<T, clap::Error> {
    let vars: HashMap<String, String> = vars.into_iter().collect();
    let mut args = args.into_iter();
    let mut argv: Vec<OsString> = args.next().into_iter().collect();
    let mut explicit: Vec<OsString> = args.collect();
    for arg in command.get_arguments() {
        let (Some(env), Some(long)) = (arg.get_env().and_then(|e| e.to_str()), arg.get_long())
        else {
            continue;
        };
        if let Some(value) = vars.get(env).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            argv.push(format!("--{long}={value}").into());
        }
    }
    let all_args = argv
        .iter()
        .chain(explicit.iter())
        .cloned()
        .collect::<Vec<_>>();
    let stripped = command
        .clone()
        .args_override_self(true)
        .mut_args(|arg| arg.env(None::<&'static str>));
    match stripped.try_get_matches_from(all_args) {
        Ok(matches) => T::from_arg_matches(&matches),
        // The help names each setting's variable: render it from the full declaration.
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            argv.truncate(1);
            argv.append(&mut explicit);
            Err(command.try_get_matches_from(argv).err().unwrap_or(e))
        }
        Err(e) => Err(name_the_variable(e, &command)),
    }
}

/// A bad value is reported by its variable (what an operator sets), not by its flag.
fn name_the_variable(e: clap::Error, command: &clap::Command) -> clap::Error {
    let Some(ContextValue::String(flag)) = e.get(ContextKind::InvalidArg) else {
        return e;
    };
    let long = flag
        .trim_start_matches("--")
        .split([' ', '='])
        .next()
        .unwrap_or("");
    let Some(env) = command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(long))
        .and_then(|arg| arg.get_env()?.to_str())
    else {
        return e;
    };
    if SECRET_VARIABLES.contains(&env) {
        // A secret's value is never echoed: the parser's reason says what is wrong with it.
        let why = std::error::Error::source(&e).map_or_else(String::new, ToString::to_string);
        return clap::Error::raw(e.kind(), format!("{env} (--{long}) {why}\n"));
    }
    let value = match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(v)) => v.clone(),
        _ => String::new(),
    };
    clap::Error::raw(
        e.kind(),
        format!("{env} (--{long}) has an invalid value {value:?}\n"),
    )
}

pub(super) fn seconds(raw: &str) -> Result<Duration, String> {
    raw.trim()
        .parse()
        .map(Duration::from_secs)
        .map_err(|_| format!("{raw:?} is not a whole number of seconds"))
}

pub(super) fn millis(raw: &str) -> Result<Duration, String> {
    raw.trim()
        .parse()
        .map(Duration::from_millis)
        .map_err(|_| format!("{raw:?} is not a whole number of milliseconds"))
}

pub(super) fn off_or_seconds(raw: &str) -> Result<OffOrSeconds, String> {
    seconds(raw).map(|d| (!d.is_zero()).then_some(d))
}

pub(super) fn secret(raw: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(raw.trim().to_owned()))
}

/// Settings whose value is a secret parsed into a type: an error names the problem, never
/// the value.
const SECRET_VARIABLES: &[&str] = &["AIDLC_DB_SECRET"];

pub(super) fn db_secret(raw: &str) -> Result<DbSecret, String> {
    DbSecret::parse(raw.trim())
}

pub(super) fn issuer(raw: &str) -> Result<String, String> {
    Ok(raw.trim().trim_end_matches('/').to_owned())
}
