//! The suite's local AWS (`--features aws`): `moto_server` from the venv on a free loopback
//! port, standing in for SES and Secrets Manager. The app finds it the way it finds AWS: the
//! SDK's standard `AWS_ENDPOINT_URL`, region and key variables, set once for this process.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use serde::Deserialize;

use super::server::{Server, ServerSpec, fatal, start};
use crate::support::python;

/// The region every test client and app uses.
pub const REGION: &str = "eu-west-1";

/// The local AWS every test of the run shares; each test uses secrets and addresses of its own.
pub struct Moto {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// An SDK configuration for the tests' own calls (creating secrets, verifying senders).
    pub config: SdkConfig,
    _server: Server,
}

/// One mail SES accepted, as moto records it.
#[derive(Debug, Clone, Deserialize)]
pub struct SesMail {
    /// The `From` the app gave.
    pub source: String,
    /// The recipients by kind (`ToAddresses`, …).
    pub destinations: std::collections::HashMap<String, Vec<String>>,
    /// The subject.
    pub subject: String,
    /// The body moto keeps: the HTML part when there is one.
    pub body: String,
}

impl SesMail {
    /// The first run of exactly six digits in the body: the code.
    pub fn code(&self) -> String {
        let digits: Vec<char> = self.body.chars().collect();
        (0..digits.len().saturating_sub(5))
            .find(|&i| {
                digits[i..i + 6].iter().all(char::is_ascii_digit)
                    && !digits.get(i + 6).is_some_and(char::is_ascii_digit)
                    && (i == 0 || !digits[i - 1].is_ascii_digit())
            })
            .map(|i| digits[i..i + 6].iter().collect())
            .unwrap_or_else(|| panic!("no six-digit code in {:?}", self.body))
    }
}

impl Moto {
    /// Every mail SES accepted for `address` so far, oldest first.
    pub async fn ses_mail_for(&self, address: &str) -> Vec<SesMail> {
        #[derive(Deserialize)]
        struct Data {
            #[serde(default)]
            ses: SesData,
        }
        #[derive(Default, Deserialize)]
        struct SesData {
            #[serde(default, rename = "Message")]
            messages: Vec<SesMail>,
        }
        let data: Data = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("building the HTTP client")
            .get(format!("{}/moto-api/data.json", self.url))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("reading moto's recorded data")
            .json()
            .await
            .expect("parsing moto's recorded data");
        data.ses
            .messages
            .into_iter()
            .filter(|m| {
                m.destinations
                    .get("ToAddresses")
                    .is_some_and(|to| to.iter().any(|a| a.eq_ignore_ascii_case(address)))
            })
            .collect()
    }

    fn start() -> Result<Self, String> {
        let python = python::python();
        let server = start(|port| ServerSpec {
            name: "moto",
            program: python.to_path_buf(),
            // -I: nothing from the machine's Python environment variables or user site.
            args: [
                "-I".into(),
                "-m".into(),
                "moto.server".into(),
                "-H".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string().into(),
            ]
            .into(),
            user: None,
            stop_signal: "TERM",
            ready: Box::new(move || answers(port)),
        })?;
        let url = format!("http://127.0.0.1:{}", server.port);
        point_the_sdk_at(&url);
        let config = aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(&url)
            .credentials_provider(
                aws_sdk_secretsmanager::config::SharedCredentialsProvider::new(
                    aws_sdk_secretsmanager::config::Credentials::new(
                        "testing", "testing", None, None, "tests",
                    ),
                ),
            )
            .build();
        Ok(Self {
            url,
            config,
            _server: server,
        })
    }
}

/// The SDK's standard variables, for the apps this process builds: they reach moto with test
/// keys, and never look for an instance role.
fn point_the_sdk_at(url: &str) {
    for (name, value) in [
        ("AWS_ENDPOINT_URL", url),
        ("AWS_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ] {
        // SAFETY: set once, inside the `OnceLock` that starts moto, before any app of this
        // process asks for AWS; std's environment lock orders it with every other std read,
        // and nothing else in the test process writes the environment.
        unsafe { std::env::set_var(name, value) };
    }
}

/// The suite's local AWS, started on first use; ends the run with one line if it cannot be.
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Result<Moto, String>> = OnceLock::new();
    MOTO.get_or_init(Moto::start)
        .as_ref()
        .unwrap_or_else(|e| fatal(e))
}

/// Its API answers an HTTP request.
fn answers(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(1000)));
    let mut reply = [0u8; 12];
    stream
        .write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_ok()
        && stream
            .read(&mut reply)
            .is_ok_and(|n| reply[..n].starts_with(b"HTTP/1."))
}
