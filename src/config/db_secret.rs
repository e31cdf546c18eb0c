//! The RDS secret's JSON (`AIDLC_DB_SECRET`, or the value of `AIDLC_DB_SECRET_ARN`) and the
//! PostgreSQL URL it stands for.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The fields of an RDS database secret that make a connection (the others are ignored).
#[derive(Clone, Deserialize)]
pub struct DbSecret {
    username: String,
    password: SecretString,
    host: String,
    #[serde(default = "default_port", deserialize_with = "port")]
    port: u16,
    #[serde(default = "default_dbname")]
    dbname: String,
    #[serde(default)]
    engine: Option<String>,
}

fn default_port() -> u16 {
    5432
}

fn default_dbname() -> String {
    "postgres".to_owned()
}

/// RDS writes the port as a number; a hand-made secret often has it as a string.
fn port<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Port {
        Number(u16),
        Text(String),
    }
    match Port::deserialize(d)? {
        Port::Number(n) => Ok(n),
        Port::Text(t) => t.trim().parse().map_err(serde::de::Error::custom),
    }
}

impl DbSecret {
    /// Reads the secret's JSON. The error never quotes the input (it holds the password): it
    /// names what is missing or wrong.
    pub fn parse(json: &str) -> Result<Self, String> {
        let secret: Self = serde_json::from_str(json).map_err(|e| {
            // serde_json's messages quote unknown values only for enums and numbers we do not
            // have; keep the category and position, never the text around it.
            format!(
                "is not an RDS secret's JSON (username, password, host, port, dbname): {} at \
                 line {} column {}",
                match e.classify() {
                    serde_json::error::Category::Data => "a field is missing or has the wrong type",
                    serde_json::error::Category::Syntax | serde_json::error::Category::Eof =>
                        "malformed JSON",
                    serde_json::error::Category::Io => "unreadable",
                },
                e.line(),
                e.column()
            )
        })?;
        if let Some(engine) = &secret.engine
            && !engine.to_ascii_lowercase().contains("postgres")
        {
            return Err(format!(
                "names engine {engine:?}; this service speaks PostgreSQL only"
            ));
        }
        if secret.username.is_empty() || secret.host.is_empty() {
            return Err("has an empty username or host".to_owned());
        }
        secret.url().map(|_| secret)
    }

    /// `postgres://username:password@host:port/dbname`, every part percent-encoded (a rotated
    /// password may hold `@`, `/`, `:` or `%`).
    pub fn url(&self) -> Result<SecretString, String> {
        let mut url = url::Url::parse("postgres://localhost/").map_err(|e| e.to_string())?;
        url.set_host(Some(&self.host))
            .map_err(|_| "has a host that is not a host name or address".to_owned())?;
        let _ = url.set_port(Some(self.port));
        // The URL setters keep `%` as it is (it reads as an escape already); a password's `%`
        // is a character, so it is escaped first.
        let escape = |part: &str| part.replace('%', "%25");
        url.set_username(&escape(&self.username))
            .and_then(|()| url.set_password(Some(&escape(self.password.expose_secret()))))
            .map_err(|()| "cannot be written as a URL".to_owned())?;
        url.path_segments_mut()
            .map_err(|()| "cannot be written as a URL".to_owned())?
            .clear()
            .push(&self.dbname);
        Ok(SecretString::from(url.to_string()))
    }
}

/// Everything but the password.
impl fmt::Debug for DbSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbSecret")
            .field("username", &self.username)
            .field("password", &"***")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::postgres::PgConnectOptions;

    use super::*;

    const RDS: &str = r#"{"username":"aidlc","password":"p@ss:w/rd%41?#","engine":"postgres",
        "host":"db.abc.eu-west-1.rds.amazonaws.com","port":5432,"dbname":"aidlc_auth",
        "dbInstanceIdentifier":"aidlc"}"#;

    #[test]
    fn the_url_carries_every_field_and_a_password_sqlx_reads_back() {
        let url = DbSecret::parse(RDS).unwrap().url().unwrap();
        let options = PgConnectOptions::from_str(url.expose_secret()).unwrap();
        assert_eq!(options.get_host(), "db.abc.eu-west-1.rds.amazonaws.com");
        assert_eq!(options.get_port(), 5432);
        assert_eq!(options.get_username(), "aidlc");
        assert_eq!(options.get_database(), Some("aidlc_auth"));
        let parsed = url::Url::parse(url.expose_secret()).unwrap();
        let password = parsed.password().unwrap();
        let pair = format!("p={password}");
        let decoded = url::form_urlencoded::parse(pair.as_bytes())
            .next()
            .unwrap()
            .1;
        assert_eq!(decoded, "p@ss:w/rd%41?#");
    }

    #[test]
    fn a_string_port_and_missing_dbname_are_accepted() {
        let secret =
            DbSecret::parse(r#"{"username":"u","password":"p","host":"10.0.0.5","port":"6432"}"#)
                .unwrap();
        assert_eq!(
            secret.url().unwrap().expose_secret(),
            "postgres://u:p@10.0.0.5:6432/postgres"
        );
    }

    #[test]
    fn errors_and_debug_never_show_the_password() {
        for bad in [
            r#"{"username":"u","password":"hunter2"}"#,
            r#"{"username":"u","password":"hunter2","host":"h","engine":"mysql"}"#,
            r#"{"username":"u","password":"hunter2","host":"h","port":"x"#,
            r#"{"username":"u","password":"hunter2","host":"a/b","port":1}"#,
        ] {
            let err = DbSecret::parse(bad).unwrap_err();
            assert!(!err.contains("hunter2"), "{err}");
        }
        let shown = format!("{:?}", DbSecret::parse(RDS).unwrap());
        assert!(!shown.contains("p@ss"), "{shown}");
    }
}
