//! The suite's SMTP catcher: `tests/support/smtp_sink.py` (aiosmtpd, from the venv) on a free
//! port, writing every message it accepts, parsed, to one folder per recipient.

use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;

use super::server::{Server, ServerSpec, fatal, start};
use super::watchdog::run_dir;
use crate::support::python;

/// The catcher script.
const SINK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_sink.py");

/// The SMTP server every test of the run may send to; each test uses addresses of its own.
pub struct SmtpSink {
    /// `smtp://127.0.0.1:<port>` (plain: it is loopback only).
    pub url: String,
    dir: PathBuf,
    _server: Server,
}

/// One message as the catcher received and parsed it.
#[derive(Debug, Clone, Deserialize)]
pub struct CaughtMail {
    /// The envelope sender.
    pub mail_from: String,
    /// The envelope recipients.
    pub rcpt_tos: Vec<String>,
    /// Every header, decoded, in order.
    pub headers: Vec<(String, String)>,
    /// The decoded subject.
    pub subject: String,
    /// The top-level content type, e.g. `multipart/alternative`.
    pub content_type: String,
    /// The decoded plain-text part.
    pub text: Option<String>,
    /// The decoded HTML part.
    pub html: Option<String>,
    /// The message as it came over the wire.
    pub raw: String,
}

impl CaughtMail {
    /// The decoded value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The text part; panics when there is none.
    pub fn text(&self) -> &str {
        self.text
            .as_deref()
            .unwrap_or_else(|| panic!("no text part: {self:?}"))
    }

    /// The HTML part; panics when there is none.
    pub fn html(&self) -> &str {
        self.html
            .as_deref()
            .unwrap_or_else(|| panic!("no HTML part: {self:?}"))
    }

    /// The first run of six digits in the text part: the code.
    pub fn code(&self) -> String {
        let digits: Vec<char> = self.text().chars().collect();
        digits
            .windows(6)
            .enumerate()
            .find(|(i, w)| {
                w.iter().all(char::is_ascii_digit)
                    && !digits.get(i + 6).is_some_and(char::is_ascii_digit)
                    && (*i == 0 || !digits[i - 1].is_ascii_digit())
            })
            .map(|(_, w)| w.iter().collect())
            .unwrap_or_else(|| panic!("no six-digit code in {:?}", self.text))
    }
}

impl SmtpSink {
    /// Every message delivered to `address` so far, oldest first. The catcher writes each one
    /// before it answers 250, so a mail the app has sent is already here.
    pub fn mail_for(&self, address: &str) -> Vec<CaughtMail> {
        let folder = self.dir.join(address.to_lowercase());
        let mut files: Vec<PathBuf> = fs::read_dir(&folder)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|path| {
                let json = fs::read_to_string(path)
                    .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
                serde_json::from_str(&json)
                    .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
            })
            .collect()
    }

    fn start() -> Result<Self, String> {
        let python = python::python();
        let dir = run_dir().join("smtp");
        fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let server = start(|port| ServerSpec {
            name: "smtp",
            program: python.to_path_buf(),
            // -I: nothing from the machine's Python environment variables or user site.
            args: [
                "-I".into(),
                SINK.into(),
                "--port".into(),
                port.to_string().into(),
                "--dir".into(),
                dir.clone().into_os_string(),
            ]
            .into(),
            user: None,
            stop_signal: "TERM",
            ready: Box::new(move || greets(port)),
        })?;
        Ok(Self {
            url: format!("smtp://127.0.0.1:{}", server.port),
            dir,
            _server: server,
        })
    }
}

/// The suite's SMTP catcher, started on first use; ends the run with one line if it cannot be.
pub fn smtp() -> &'static SmtpSink {
    static SMTP: OnceLock<Result<SmtpSink, String>> = OnceLock::new();
    SMTP.get_or_init(SmtpSink::start)
        .as_ref()
        .unwrap_or_else(|e| fatal(e))
}

/// The server's `220` greeting arrives.
fn greets(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 8];
    stream
        .read(&mut reply)
        .is_ok_and(|n| reply[..n].starts_with(b"220"))
}
