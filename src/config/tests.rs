//! Unit tests of the settings: defaults, parsing, validation, redaction, the README table.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use clap::Args;

use super::*;

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A key-encryption key for the settings tests (32 bytes of 0x07, base64).
const TEST_KEK: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

#[test]
fn defaults_match_the_seed() {
    let s = Settings::from_vars(vars(&[])).unwrap();
    assert_eq!(s.port, 8001);
    assert_eq!(s.code_ttl, Duration::from_secs(900));
    assert_eq!(s.session_ttl, Duration::from_secs(86_400));
    assert!(s.uses_sqlite());
}

#[test]
fn staging_refuses_sqlite_and_missing_redis_unless_allowed() {
    let err = Settings::from_vars(vars(&[("ENVIRONMENT", "staging")])).unwrap_err();
    assert!(err.to_string().contains("refusing to start"), "{err}");
    let err = Settings::from_vars(vars(&[
        ("ENVIRONMENT", "production"),
        ("DATABASE_URL", "postgres://u:p@db/aidlc_auth"),
    ]))
    .unwrap_err();
    assert!(err.to_string().contains("REDIS_URL"), "{err}");
    assert!(
        Settings::from_vars(vars(&[
            ("ENVIRONMENT", "staging"),
            ("ALLOW_EMBEDDED_STORES", "true"),
            ("AIDLC_JWT_ISSUER", "https://auth.aidlc.example"),
            ("AIDLC_ALLOW_LOG_EMAIL", "true"),
            ("AIDLC_KEY_ENCRYPTION_KEY", TEST_KEK),
        ]))
        .is_ok()
    );
}

#[test]
fn passwords_never_appear_in_debug_or_redacted_urls() {
    let s = Settings::from_vars(vars(&[
        (
            "DATABASE_URL",
            "postgres://postgres:hunter2@db:5432/aidlc_auth",
        ),
        ("REDIS_URL", "rediss://:s3cret@cache:6379"),
    ]))
    .unwrap();
    let shown = format!("{s:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("s3cret"),
        "{shown}"
    );
    assert!(
        shown.contains("postgres://postgres:***@db:5432/aidlc_auth"),
        "{shown}"
    );
}

#[test]
fn query_parameter_passwords_are_redacted_too() {
    let shown =
        redact_url("postgres://db:5432/aidlc_auth?sslmode=verify-full&password=hunter2&PWD=x9y8");
    assert!(
        !shown.contains("hunter2") && !shown.contains("x9y8"),
        "{shown}"
    );
    assert!(shown.contains("sslmode=verify-full"), "{shown}");
    assert!(shown.contains("password=***"), "{shown}");
    let s = Settings::from_vars(vars(&[(
        "DATABASE_URL",
        "postgres://u@db/aidlc_auth?password=hunter2",
    )]))
    .unwrap();
    assert!(!format!("{s:?}").contains("hunter2"));
}

#[test]
fn unknown_aidlc_variables_are_reported() {
    let unknown = Settings::unknown_variables(vars(&[
        ("AIDLC_CODE_TTL_SECOND", "1"),
        ("AIDLC_LOG_FORMAT", "json"),
        ("HOME", "/"),
    ]));
    assert_eq!(unknown, vec!["AIDLC_CODE_TTL_SECOND".to_owned()]);
}

/// The README's settings table and the declaration (what `--help` prints) agree: the same
/// variables, and each declared default is the one the table gives.
#[test]
fn readme_settings_table_matches_the_declaration() {
    let readme = include_str!("../../README.md");
    let table = readme
        .split("## Settings")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README has a Settings section");
    let mut documented = HashMap::new();
    for row in table.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let names: Vec<&str> = cells[0].trim_start_matches("| ").split(" / ").collect();
        let defaults: Vec<&str> = cells[1].split(" / ").collect();
        let first = names[0].trim_matches('`');
        let stem = &first[..first.rfind('_').unwrap_or(0)];
        for (i, name) in names.iter().enumerate() {
            let name = name.trim_matches('`');
            let name = if name.starts_with('_') {
                format!("{}{name}", &stem[..stem.rfind('_').unwrap_or(0)])
            } else {
                name.to_owned()
            };
            let default = defaults.get(i).or(defaults.first()).copied().unwrap_or("");
            let default = default.split('`').nth(1).map(str::to_owned);
            documented.insert(name, default);
        }
    }
    documented.remove("RUST_LOG"); // read by the log filter, not a setting
    let command = Settings::augment_args(clap::Command::new("aidlc-auth"));
    let mut declared: Vec<String> = Settings::variables();
    declared.sort();
    let mut in_readme: Vec<String> = documented.keys().cloned().collect();
    in_readme.sort();
    assert_eq!(
        in_readme, declared,
        "README settings table vs declared variables"
    );
    for arg in command.get_arguments() {
        let Some(env) = arg.get_env().and_then(|e| e.to_str()) else {
            continue;
        };
        if let Some(default) = arg.get_default_values().first() {
            assert_eq!(
                documented[env].as_deref(),
                default.to_str(),
                "README default of {env}"
            );
        }
    }
}

#[test]
fn development_listens_on_loopback_and_derives_its_issuer_from_the_bound_port() {
    let dev = Settings::from_vars(vars(&[])).unwrap();
    assert_eq!(dev.host(), IpAddr::from([127, 0, 0, 1]));
    let bound = std::net::SocketAddr::from(([127, 0, 0, 1], 45591));
    assert_eq!(dev.issuer(bound), "http://127.0.0.1:45591");
    let any = std::net::SocketAddr::from(([0, 0, 0, 0], 8001));
    assert_eq!(dev.issuer(any), "http://127.0.0.1:8001");
    let set = Settings::from_vars(vars(&[("AIDLC_JWT_ISSUER", "https://auth.example/")])).unwrap();
    assert_eq!(set.issuer(bound), "https://auth.example");
}

#[test]
fn deployed_environments_listen_everywhere_and_require_an_issuer() {
    let deployed = [
        ("ENVIRONMENT", "staging"),
        ("DATABASE_URL", "postgres://u@db/aidlc_auth"),
        ("REDIS_URL", "redis://cache:6379"),
        ("AIDLC_KEY_ENCRYPTION_KEY", TEST_KEK),
    ];
    let err = Settings::from_vars(vars(&deployed)).unwrap_err();
    assert!(err.to_string().contains("AIDLC_JWT_ISSUER"), "{err}");
    let mut with_issuer = deployed.to_vec();
    with_issuer.push(("AIDLC_JWT_ISSUER", "https://auth.aidlc.example"));
    with_issuer.push(("AIDLC_ALLOW_LOG_EMAIL", "true"));
    let s = Settings::from_vars(vars(&with_issuer)).unwrap();
    assert_eq!(s.host(), IpAddr::from([0, 0, 0, 0]));
}

#[test]
fn deployed_environments_refuse_log_mail_unless_allowed() {
    let deployed = [
        ("ENVIRONMENT", "production"),
        ("DATABASE_URL", "postgres://u@db/aidlc_auth"),
        ("REDIS_URL", "redis://cache:6379"),
        ("AIDLC_JWT_ISSUER", "https://auth.aidlc.example"),
        ("AIDLC_KEY_ENCRYPTION_KEY", TEST_KEK),
    ];
    let err = Settings::from_vars(vars(&deployed)).unwrap_err();
    assert!(err.to_string().contains("AIDLC_ALLOW_LOG_EMAIL"), "{err}");
    let mut allowed = deployed.to_vec();
    allowed.push(("AIDLC_ALLOW_LOG_EMAIL", "true"));
    assert!(Settings::from_vars(vars(&allowed)).is_ok());
    let mut smtp = deployed.to_vec();
    smtp.push(("AIDLC_EMAIL_TRANSPORT", "smtp"));
    smtp.push(("AIDLC_SMTP_URL", "smtps://user:pw@mail.example:465"));
    let s = Settings::from_vars(vars(&smtp)).unwrap();
    assert_eq!(s.email_transport, EmailTransport::Smtp);
}

#[test]
fn smtp_needs_a_url_of_its_own_scheme_and_its_password_is_redacted() {
    let err = Settings::from_vars(vars(&[("AIDLC_EMAIL_TRANSPORT", "smtp")])).unwrap_err();
    assert!(err.to_string().contains("AIDLC_SMTP_URL"), "{err}");
    let err =
        Settings::from_vars(vars(&[("AIDLC_SMTP_URL", "http://u:hunter2@mail:25")])).unwrap_err();
    assert!(err.to_string().contains("AIDLC_SMTP_URL"), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let s = Settings::from_vars(vars(&[
        ("AIDLC_EMAIL_TRANSPORT", "smtp"),
        (
            "AIDLC_SMTP_URL",
            "smtp://ses-user:hunter2@email-smtp.aws:587?tls=required",
        ),
    ]))
    .unwrap();
    let shown = format!("{s:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("ses-user:***@email-smtp.aws"), "{shown}");
}

#[test]
fn the_default_locale_is_korean_and_can_be_english() {
    assert_eq!(Settings::default().default_locale, Locale::Ko);
    let s = Settings::from_vars(vars(&[("AIDLC_DEFAULT_LOCALE", "en")])).unwrap();
    assert_eq!(s.default_locale, Locale::En);
    let err = Settings::from_vars(vars(&[("AIDLC_DEFAULT_LOCALE", "fr")])).unwrap_err();
    assert!(err.to_string().contains("AIDLC_DEFAULT_LOCALE"), "{err}");
}

#[test]
fn bad_values_name_their_variable() {
    let err = Settings::from_vars(vars(&[("PORT", "eighty")])).unwrap_err();
    assert!(err.to_string().contains("PORT"));
}

#[test]
fn the_outbox_defaults_and_bounds() {
    let s = Settings::default();
    assert_eq!(s.outbox_poll, Duration::from_millis(1000));
    assert_eq!(s.outbox_max_attempts, 8);
    let err = Settings::from_vars(vars(&[("AIDLC_OUTBOX_POLL_MS", "0")])).unwrap_err();
    assert!(err.to_string().contains("AIDLC_OUTBOX_POLL_MS"), "{err}");
    assert!(Settings::from_vars(vars(&[("AIDLC_OUTBOX_MAX_ATTEMPTS", "0")])).is_err());
    let s = Settings::from_vars(vars(&[("AIDLC_OUTBOX_MAX_ATTEMPTS", "3")])).unwrap();
    assert_eq!(s.outbox_max_attempts, 3);
}

const PG: &str = "postgres://u:p@db.example:5432/aidlc_auth";

fn deployed(extra: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let mut pairs = vec![
        ("ENVIRONMENT", "production"),
        ("REDIS_URL", "rediss://cache.example:6379"),
        ("AIDLC_JWT_ISSUER", "https://auth.aidlc.example"),
        ("AIDLC_ALLOW_LOG_EMAIL", "true"),
        ("AIDLC_KEY_ENCRYPTION_KEY", TEST_KEK),
    ];
    pairs.extend_from_slice(extra);
    if !pairs.iter().any(|(k, _)| *k == "DATABASE_URL") {
        pairs.push(("DATABASE_URL", PG));
    }
    Settings::from_vars(vars(&pairs))
}

#[test]
fn database_tls_defaults_to_prefer_in_development_and_verify_full_with_rds_when_deployed() {
    let dev = Settings::from_vars(vars(&[("DATABASE_URL", PG)])).unwrap();
    assert_eq!(dev.database_tls(), DatabaseTls::Prefer);
    let prod = deployed(&[]).unwrap();
    assert_eq!(prod.database_tls(), DatabaseTls::VerifyFull);
    assert_eq!(prod.database_ca(), DatabaseCa::BuiltInRds);
    assert!(!prod.weak_database_tls());
}

#[test]
fn the_database_tls_setting_overrides_the_url_which_overrides_the_default() {
    let url = format!("{PG}?sslmode=require&sslrootcert=/etc/url-ca.pem");
    let from_url = Settings::from_vars(vars(&[("DATABASE_URL", &url)])).unwrap();
    assert_eq!(from_url.database_tls(), DatabaseTls::Require);
    assert_eq!(
        from_url.database_ca(),
        DatabaseCa::File {
            path: "/etc/url-ca.pem".into(),
            from: "DATABASE_URL sslrootcert"
        }
    );
    let set = Settings::from_vars(vars(&[
        ("DATABASE_URL", &url),
        ("AIDLC_DATABASE_TLS", "verify-ca"),
        ("AIDLC_DATABASE_CA_FILE", "/etc/ca.pem"),
    ]))
    .unwrap();
    assert_eq!(set.database_tls(), DatabaseTls::VerifyCa);
    assert_eq!(
        set.database_ca(),
        DatabaseCa::File {
            path: "/etc/ca.pem".into(),
            from: "AIDLC_DATABASE_CA_FILE"
        }
    );
    let err = Settings::from_vars(vars(&[("AIDLC_DATABASE_TLS", "allow")])).unwrap_err();
    assert!(err.to_string().contains("AIDLC_DATABASE_TLS"), "{err}");
    let url = format!("{PG}?sslmode=allow");
    let err = Settings::from_vars(vars(&[("DATABASE_URL", &url)])).unwrap_err();
    assert!(err.to_string().contains("sslmode=allow"), "{err}");
}

#[test]
fn deployed_refuses_weaker_than_verify_full_unless_allowed() {
    for weak in ["disable", "prefer", "require", "verify-ca"] {
        let err = deployed(&[("AIDLC_DATABASE_TLS", weak)]).unwrap_err();
        assert!(
            err.to_string().contains("AIDLC_DATABASE_TLS=verify-full"),
            "{err}"
        );
        assert!(
            err.to_string().contains("AIDLC_ALLOW_WEAK_DATABASE_TLS"),
            "{err}"
        );
        let allowed = deployed(&[
            ("AIDLC_DATABASE_TLS", weak),
            ("AIDLC_ALLOW_WEAK_DATABASE_TLS", "true"),
        ])
        .unwrap();
        assert!(allowed.weak_database_tls(), "{weak}");
    }
    // The URL's sslmode counts the same as the setting.
    let url = format!("{PG}?sslmode=prefer");
    assert!(deployed(&[("DATABASE_URL", &url)]).is_err());
    // SQLite has no TLS to weaken.
    assert!(
        deployed(&[
            ("DATABASE_URL", "sqlite://data/x.db"),
            ("ALLOW_EMBEDDED_STORES", "true")
        ])
        .is_ok()
    );
}

#[test]
fn redis_tls_settings_need_a_redis_url_and_the_token_is_never_shown() {
    let err = Settings::from_vars(vars(&[
        ("REDIS_URL", "redis://cache:6379"),
        ("AIDLC_REDIS_CA_FILE", "/etc/ca.pem"),
    ]))
    .unwrap_err();
    assert!(err.to_string().contains("rediss://"), "{err}");
    let err = Settings::from_vars(vars(&[("AIDLC_REDIS_AUTH_TOKEN", "t0k3n-value")])).unwrap_err();
    assert!(err.to_string().contains("REDIS_URL"), "{err}");
    assert!(!err.to_string().contains("t0k3n-value"), "{err}");
    let s = Settings::from_vars(vars(&[
        ("REDIS_URL", "rediss://:urlpass@cache:6379"),
        ("AIDLC_REDIS_AUTH_TOKEN", "t0k3n-value"),
        ("AIDLC_REDIS_CA_FILE", "/etc/ca.pem"),
    ]))
    .unwrap();
    let shown = format!("{s:?}");
    assert!(
        !shown.contains("t0k3n-value") && !shown.contains("urlpass"),
        "{shown}"
    );
    assert!(shown.contains("redis_auth_token: Some(\"***\")"), "{shown}");
}

#[test]
fn key_encryption_keys_are_32_bytes_of_base64_required_when_deployed_and_never_shown() {
    let dev = Settings::default();
    assert!(
        dev.key_encryption_key.is_none(),
        "development generates its own"
    );
    for variable in [
        "AIDLC_KEY_ENCRYPTION_KEY",
        "AIDLC_KEY_ENCRYPTION_KEY_PREVIOUS",
    ] {
        for bad in ["c2hvcnQ=", "not base64 at all", "hunter2hunter2"] {
            let err = Settings::from_vars(vars(&[(variable, bad)])).unwrap_err();
            assert!(err.to_string().contains(variable), "{err}");
            assert!(!err.to_string().contains(bad), "the value is echoed: {err}");
        }
    }
    let deployed = [
        ("ENVIRONMENT", "production"),
        ("DATABASE_URL", "postgres://u@db/aidlc_auth"),
        ("REDIS_URL", "redis://cache:6379"),
        ("AIDLC_JWT_ISSUER", "https://auth.aidlc.example"),
        ("AIDLC_ALLOW_LOG_EMAIL", "true"),
    ];
    let err = Settings::from_vars(vars(&deployed)).unwrap_err();
    assert!(
        err.to_string()
            .contains("AIDLC_KEY_ENCRYPTION_KEY is required"),
        "{err}"
    );
    let mut with_keys = deployed.to_vec();
    with_keys.push(("AIDLC_KEY_ENCRYPTION_KEY", TEST_KEK));
    with_keys.push((
        "AIDLC_KEY_ENCRYPTION_KEY_PREVIOUS",
        "CAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAg=",
    ));
    let s = Settings::from_vars(vars(&with_keys)).unwrap();
    let shown = format!("{s:?}");
    assert!(
        !shown.contains(TEST_KEK) && !shown.contains("CAgICAgICAgI"),
        "{shown}"
    );
    assert!(
        shown.contains("key_encryption_key: Some(\"***\")"),
        "{shown}"
    );
}

#[test]
fn shutdown_metrics_and_cors_defaults_and_bounds() {
    let r = Settings::default().runtime;
    assert_eq!(r.shutdown_drain, Duration::from_secs(5));
    assert_eq!(r.shutdown_grace, Duration::from_secs(20));
    assert_eq!(r.metrics_addr, None);
    assert!(r.cors_origins.is_empty());

    let err = Settings::from_vars(vars(&[("AIDLC_SHUTDOWN_DRAIN_SECONDS", "20")])).unwrap_err();
    assert!(
        err.to_string().contains("AIDLC_SHUTDOWN_GRACE_SECONDS"),
        "{err}"
    );
    let s = Settings::from_vars(vars(&[
        ("AIDLC_METRICS_ADDR", "127.0.0.1:9090"),
        (
            "AIDLC_CORS_ORIGINS",
            "https://app.example.com, http://localhost:3000",
        ),
    ]))
    .unwrap();
    assert_eq!(
        s.runtime.metrics_addr,
        Some("127.0.0.1:9090".parse().unwrap())
    );
    assert_eq!(
        s.runtime.cors_origins,
        ["https://app.example.com", "http://localhost:3000"]
    );
    for bad in [
        "*",
        "https://app.example.com/",
        "https://app.example.com/path",
        "app.example.com",
    ] {
        let err = Settings::from_vars(vars(&[("AIDLC_CORS_ORIGINS", bad)])).unwrap_err();
        assert!(
            err.to_string().contains("AIDLC_CORS_ORIGINS"),
            "{bad}: {err}"
        );
    }
}

const RDS_SECRET: &str = r#"{"username":"aidlc","password":"hunter2@x","engine":"postgres","host":"db.internal","port":5432,"dbname":"aidlc_auth"}"#;

#[test]
fn the_database_url_comes_from_the_injected_secret_and_never_shows_its_password() {
    let s = Settings::from_vars(vars(&[("AIDLC_DB_SECRET", RDS_SECRET)])).unwrap();
    assert_eq!(s.database_kind(), Some(DatabaseKind::Postgres));
    let url = s.database_url_or_secret().unwrap();
    assert_eq!(
        url.expose_secret(),
        "postgres://aidlc:hunter2%40x@db.internal:5432/aidlc_auth"
    );
    let shown = format!("{s:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[test]
fn a_malformed_secret_is_refused_without_echoing_it() {
    let err = Settings::from_vars(vars(&[(
        "AIDLC_DB_SECRET",
        r#"{"username":"aidlc","password":"hunter2""#,
    )]))
    .unwrap_err()
    .to_string();
    assert!(err.contains("AIDLC_DB_SECRET"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn two_sources_for_the_database_are_refused_as_ambiguous() {
    for extra in [
        ("DATABASE_URL", "postgres://u:p@db/aidlc_auth"),
        (
            "AIDLC_DB_SECRET_ARN",
            "arn:aws:secretsmanager:eu-west-1:1:secret:x",
        ),
    ] {
        let err = Settings::from_vars(vars(&[("AIDLC_DB_SECRET", RDS_SECRET), extra]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("only one of"), "{err}");
    }
}

#[cfg(not(feature = "aws"))]
#[test]
fn without_the_aws_feature_ses_and_secret_arns_say_how_to_build() {
    for pair in [
        ("AIDLC_EMAIL_TRANSPORT", "ses"),
        (
            "AIDLC_DB_SECRET_ARN",
            "arn:aws:secretsmanager:eu-west-1:1:secret:x",
        ),
    ] {
        let err = Settings::from_vars(vars(&[pair])).unwrap_err().to_string();
        assert!(err.contains("--features aws"), "{err}");
    }
}

#[cfg(feature = "aws")]
#[test]
fn with_the_aws_feature_ses_and_a_secret_arn_are_accepted() {
    let s = Settings::from_vars(vars(&[
        ("AIDLC_EMAIL_TRANSPORT", "ses"),
        (
            "AIDLC_DB_SECRET_ARN",
            "arn:aws:secretsmanager:eu-west-1:1:secret:x",
        ),
    ]))
    .unwrap();
    assert_eq!(s.email_transport, EmailTransport::Ses);
    assert_eq!(s.database_kind(), Some(DatabaseKind::Postgres));
}
