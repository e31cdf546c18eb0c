//! The codes the service mails, read back from its log: the `log` transport prints each
//! message (address and code) as a JSON line, and the service's output goes to a file, so
//! reading it costs the service nothing.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Seek as _, SeekFrom};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;

/// A reader of the service's log from a position on.
pub struct Mailbox {
    path: PathBuf,
    offset: u64,
    /// The newest code per address not yet taken.
    codes: HashMap<String, String>,
}

impl Mailbox {
    /// Reads `path` from its current end: only mail sent from now on.
    pub fn from_end(path: PathBuf) -> anyhow::Result<Self> {
        let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Ok(Self {
            path,
            offset,
            codes: HashMap::new(),
        })
    }

    /// Reads what the log gained since the last call.
    pub fn poll(&mut self) -> anyhow::Result<()> {
        let mut file = std::fs::File::open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        file.seek(SeekFrom::Start(self.offset))?;
        let mut reader = BufReader::new(file);
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader.read_line(&mut line)?;
            // A line still being written is read again, whole, next time.
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            self.offset += n as u64;
            if let Some((to, code)) = mail_code(&line) {
                self.codes.insert(to, code);
            }
        }
        Ok(())
    }

    /// Takes every code read so far.
    pub fn drain(&mut self) -> impl Iterator<Item = (String, String)> + '_ {
        self.codes.drain()
    }

    /// Waits (up to `limit`) until a code has come for every address of `emails`, and takes them
    /// in that order; an address without one after `limit` is an error.
    pub async fn wait_for(
        &mut self,
        emails: &[String],
        limit: Duration,
    ) -> anyhow::Result<Vec<String>> {
        let start = Instant::now();
        loop {
            self.poll()?;
            if emails.iter().all(|e| self.codes.contains_key(e)) {
                return Ok(emails.iter().filter_map(|e| self.codes.remove(e)).collect());
            }
            if start.elapsed() > limit {
                let missing = emails
                    .iter()
                    .filter(|e| !self.codes.contains_key(*e))
                    .count();
                bail!(
                    "{missing} of {} codes did not arrive within {limit:?}",
                    emails.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The address and code of a `log` transport line (`{"to": …, "code": …}`), if it is one.
fn mail_code(line: &str) -> Option<(String, String)> {
    // Cheap test first: most lines are request lines.
    if !line.contains("\"code\":\"") {
        return None;
    }
    let v: Value = serde_json::from_str(line).ok()?;
    let to = v.get("to")?.as_str()?.to_owned();
    let code = v.get("code")?.as_str()?.to_owned();
    Some((to, code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mail_line_gives_its_address_and_code() {
        let line = r#"{"timestamp":"t","level":"INFO","message":"📧 이메일 발송 시뮬레이션 (e-mail sending simulation)","to":"a@example.com","subject":"s","locale":"ko","code":"123456"}"#;
        assert_eq!(
            mail_code(line),
            Some(("a@example.com".into(), "123456".into()))
        );
        assert_eq!(mail_code(r#"{"message":"response","status":200}"#), None);
    }
}
