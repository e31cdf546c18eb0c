//! What each connection sends in each scenario, and what it keeps from the answers.

use serde_json::{Value, json};

use crate::http::Req;
use crate::load::Job;

/// The password of every benchmark account: long, not on the common list, and sharing no
/// word with the name or the address.
pub const PASSWORD: &str = "violet harbor lantern 4821";
/// The name of every benchmark account.
pub const FULL_NAME: &str = "Kim Minsoo";

/// A verified account and its newest session's tokens.
#[derive(Debug, Clone)]
pub struct Account {
    pub email: String,
    pub access: String,
    pub refresh: String,
}

/// The access and refresh tokens of a token-pair answer.
fn tokens(body: &[u8]) -> Option<(String, String)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    Some((
        v.get("access_token")?.as_str()?.to_owned(),
        v.get("refresh_token")?.as_str()?.to_owned(),
    ))
}

/// Registers unique addresses `<prefix>-<connection>-<n>@example.com`.
pub struct Register {
    prefix: String,
    connection: usize,
    n: usize,
    last: String,
    /// Addresses answered 202 (a code is on its way).
    pub registered: Vec<String>,
}

impl Register {
    pub fn new(prefix: &str, connection: usize) -> Self {
        Self {
            prefix: prefix.to_owned(),
            connection,
            n: 0,
            last: String::new(),
            registered: Vec::new(),
        }
    }
}

impl Job for Register {
    fn next(&mut self) -> Option<Req> {
        self.n += 1;
        self.last = format!("{}-{}-{}@example.com", self.prefix, self.connection, self.n);
        let body = json!({ "email": self.last, "password": PASSWORD, "full_name": FULL_NAME });
        Some(Req::post("/api/auth/register", &body))
    }

    fn answer(&mut self, status: u16, _body: &[u8]) -> String {
        if status == 202 {
            self.registered.push(std::mem::take(&mut self.last));
        }
        status.to_string()
    }

    fn expected(&self) -> &'static str {
        "202"
    }
}

/// Sends each prepared (address, code) once to a verify endpoint; keeps the sessions.
pub struct Verify {
    path: &'static str,
    items: Vec<(String, String)>,
    next: usize,
    pub accounts: Vec<Account>,
}

impl Verify {
    /// `path` is `/api/auth/verify-registration` (the guide's two-field body) or
    /// `/api/auth/verify-login`.
    pub fn new(path: &'static str, items: Vec<(String, String)>) -> Self {
        Self {
            path,
            items,
            next: 0,
            accounts: Vec::new(),
        }
    }
}

impl Job for Verify {
    fn next(&mut self) -> Option<Req> {
        let (email, code) = self.items.get(self.next)?;
        self.next += 1;
        Some(Req::post(
            self.path,
            &json!({ "email": email, "verification_code": code }),
        ))
    }

    fn answer(&mut self, status: u16, body: &[u8]) -> String {
        if status == 200
            && let (Some((email, _)), Some((access, refresh))) =
                (self.items.get(self.next - 1), tokens(body))
        {
            self.accounts.push(Account {
                email: email.clone(),
                access,
                refresh,
            });
        }
        status.to_string()
    }

    fn expected(&self) -> &'static str {
        "200"
    }
}

/// The scenarios that cycle over signed-in accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    LoginPassword,
    /// Asks for a login code, once per account.
    LoginCodeRequest,
    Me,
    /// One refresh-token chain per account: each answer's token is the next request's.
    Refresh,
    Introspect,
}

/// One connection's share of the accounts, used in turn.
pub struct Accounts {
    kind: Kind,
    pub accounts: Vec<Account>,
    next: usize,
    last: usize,
    /// For `LoginCodeRequest`: the addresses answered 202.
    pub asked: Vec<String>,
}

impl Accounts {
    pub fn new(kind: Kind, accounts: Vec<Account>) -> Self {
        Self {
            kind,
            accounts,
            next: 0,
            last: 0,
            asked: Vec::new(),
        }
    }
}

impl Job for Accounts {
    fn next(&mut self) -> Option<Req> {
        if self.accounts.is_empty()
            || (self.kind == Kind::LoginCodeRequest && self.next >= self.accounts.len())
        {
            return None;
        }
        self.last = self.next % self.accounts.len();
        self.next += 1;
        let a = &self.accounts[self.last];
        Some(match self.kind {
            Kind::LoginPassword => Req::post(
                "/api/auth/login",
                &json!({ "email": a.email, "password": PASSWORD }),
            ),
            Kind::LoginCodeRequest => Req::post("/api/auth/login", &json!({ "email": a.email })),
            Kind::Me => Req::get("/api/auth/me", &a.access),
            Kind::Refresh => Req::post("/api/auth/refresh", &json!({ "refresh_token": a.refresh })),
            Kind::Introspect => Req::post("/api/auth/introspect", &json!({ "token": a.access })),
        })
    }

    fn answer(&mut self, status: u16, body: &[u8]) -> String {
        let Some(account) = self.accounts.get_mut(self.last) else {
            return status.to_string();
        };
        match (self.kind, status) {
            (Kind::LoginPassword | Kind::Refresh, 200) => {
                if let Some((access, refresh)) = tokens(body) {
                    account.access = access;
                    account.refresh = refresh;
                }
            }
            (Kind::LoginCodeRequest, 202) => self.asked.push(account.email.clone()),
            (Kind::Introspect, 200) => {
                let active = serde_json::from_slice::<Value>(body)
                    .ok()
                    .and_then(|v| v.get("active")?.as_bool())
                    .unwrap_or(false);
                if !active {
                    return "200-inactive".to_owned();
                }
            }
            _ => {}
        }
        status.to_string()
    }

    fn expected(&self) -> &'static str {
        match self.kind {
            Kind::LoginCodeRequest => "202",
            _ => "200",
        }
    }
}

/// A registration whose address is not one: refused at the edge with 422.
pub struct BadInput;

impl Job for BadInput {
    fn next(&mut self) -> Option<Req> {
        let body =
            json!({ "email": "not-an-address", "password": PASSWORD, "full_name": FULL_NAME });
        Some(Req::post("/api/auth/register", &body))
    }

    fn expected(&self) -> &'static str {
        "422"
    }
}

/// Deals `accounts` round-robin into `n` shares.
pub fn deal<T>(items: Vec<T>, n: usize) -> Vec<Vec<T>> {
    let mut shares: Vec<Vec<T>> = (0..n.max(1)).map(|_| Vec::new()).collect();
    let len = shares.len();
    for (i, item) in items.into_iter().enumerate() {
        shares[i % len].push(item);
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dealing_spreads_items_evenly() {
        let shares = deal((0..7).collect(), 3);
        assert_eq!(shares, vec![vec![0, 3, 6], vec![1, 4], vec![2, 5]]);
        assert_eq!(deal::<u8>(Vec::new(), 2).len(), 2);
    }

    #[test]
    fn a_refresh_answer_becomes_the_next_request() {
        let a = Account {
            email: "a@example.com".into(),
            access: "A0".into(),
            refresh: "R0".into(),
        };
        let mut job = Accounts::new(Kind::Refresh, vec![a]);
        let first = job.next().and_then(|r| r.body).unwrap_or_default();
        assert!(String::from_utf8_lossy(&first).contains("R0"));
        job.answer(200, br#"{"access_token":"A1","refresh_token":"R1"}"#);
        let second = job.next().and_then(|r| r.body).unwrap_or_default();
        assert!(String::from_utf8_lossy(&second).contains("R1"));
    }

    #[test]
    fn an_inactive_introspection_is_not_counted_as_success() {
        let a = Account {
            email: "a@example.com".into(),
            access: "A".into(),
            refresh: "R".into(),
        };
        let mut job = Accounts::new(Kind::Introspect, vec![a]);
        let _ = job.next();
        assert_eq!(job.answer(200, br#"{"active":false}"#), "200-inactive");
        let _ = job.next();
        assert_eq!(job.answer(200, br#"{"active":true,"sub":"x"}"#), "200");
    }
}
