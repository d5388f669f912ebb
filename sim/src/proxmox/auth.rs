//! Authentication as `pveproxy` does it: API tokens in the `Authorization` header, and tickets from
//! `POST /access/ticket` sent back as the `PVEAuthCookie` cookie, with a `CSRFPreventionToken` header
//! on every write.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::errors::ApiError;
use super::state::unix_now;
use crate::clock::SimClock;

/// Who a request authenticated as.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    /// `root@pam`, or `root@pam!tokenid` for an API token (as UPIDs show it).
    pub user: String,
}

#[derive(Debug, Clone)]
struct Ticket {
    user: String,
    csrf: String,
    issued: Instant,
}

/// Accepted credentials and issued tickets.
#[derive(Debug)]
pub struct Auth {
    pub user: String,
    pub password: String,
    pub token_id: String,
    pub token_secret: String,
    pub ticket_ttl: Duration,
    /// What ticket ages are measured on.
    clock: SimClock,
    tickets: BTreeMap<String, Ticket>,
}

impl Auth {
    pub fn new(ticket_ttl: Duration, clock: SimClock) -> Self {
        Auth {
            user: "root@pam".to_string(),
            password: uuid::Uuid::new_v4().simple().to_string(),
            token_id: "root@pam!janitor".to_string(),
            token_secret: uuid::Uuid::new_v4().to_string(),
            ticket_ttl,
            clock,
            tickets: BTreeMap::new(),
        }
    }

    /// `POST /access/ticket`: `password` is the user's password or a still valid ticket (renewal).
    pub fn issue_ticket(&mut self, username: &str, password: &str) -> Result<serde_json::Value, ApiError> {
        let renewing = self.valid_ticket(password).is_some_and(|t| t.user == username);
        if username != self.user || (password != self.password && !renewing) {
            return Err(ApiError::bare(401, "authentication failure"));
        }
        let ticket = format!(
            "PVE:{username}:{:08X}::{}",
            unix_now(),
            uuid::Uuid::new_v4().simple()
        );
        let csrf = format!("{:08X}:{}", unix_now(), uuid::Uuid::new_v4().simple());
        let now = self.clock.now();
        let ttl = self.ticket_ttl;
        self.tickets
            .retain(|_, t| now.saturating_duration_since(t.issued) < ttl);
        self.tickets.insert(
            ticket.clone(),
            Ticket {
                user: username.to_string(),
                csrf: csrf.clone(),
                issued: now,
            },
        );
        Ok(serde_json::json!({
            "username": username, "ticket": ticket, "CSRFPreventionToken": csrf,
            "cap": {"vms": {}, "storage": {}, "nodes": {}, "access": {}, "dc": {}},
        }))
    }

    fn valid_ticket(&self, ticket: &str) -> Option<&Ticket> {
        self.tickets
            .get(ticket)
            .filter(|t| self.clock.since(t.issued) < self.ticket_ttl)
    }

    /// Checks a request's credentials; `write` requests authenticated by ticket need the CSRF token.
    pub fn check(
        &self,
        authorization: Option<&str>,
        cookie: Option<&str>,
        csrf: Option<&str>,
        write: bool,
    ) -> Result<Caller, ApiError> {
        let ticket = cookie
            .and_then(|c| {
                c.split(';')
                    .find_map(|kv| kv.trim().strip_prefix("PVEAuthCookie="))
            })
            .or_else(|| authorization.and_then(|a| a.strip_prefix("PVEAuthCookie=")));
        if let Some(ticket) = ticket {
            let ticket = percent_decode(ticket);
            let known = self
                .valid_ticket(&ticket)
                .ok_or_else(|| ApiError::bare(401, "invalid ticket"))?;
            if write && csrf != Some(known.csrf.as_str()) {
                return Err(ApiError::bare(401, "Permission denied - invalid csrf token"));
            }
            return Ok(Caller {
                user: known.user.clone(),
            });
        }
        let Some(token) = authorization.and_then(|a| a.trim().strip_prefix("PVEAPIToken=")) else {
            return Err(ApiError::bare(401, "No ticket"));
        };
        let (id, secret) = token
            .split_once('=')
            .or_else(|| token.split_once(':'))
            .ok_or_else(|| ApiError::bare(401, "invalid token value!"))?;
        if id != self.token_id || secret != self.token_secret {
            return Err(ApiError::bare(401, "invalid token value!"));
        }
        Ok(Caller { user: id.to_string() })
    }
}

/// Decodes `%XX` escapes (cookies may carry an encoded ticket).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(byte) = u8::from_str_radix(hex, 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_expire_and_writes_need_the_csrf_token() {
        let clock = SimClock::new();
        let mut auth = Auth::new(Duration::from_secs(7200), clock.clone());
        let password = auth.password.clone();
        let data = auth.issue_ticket("root@pam", &password).unwrap();
        let ticket = data["ticket"].as_str().unwrap().to_string();
        let csrf = data["CSRFPreventionToken"].as_str().unwrap().to_string();
        let cookie = format!("PVEAuthCookie={ticket}");
        assert_eq!(
            auth.check(None, Some(&cookie), None, false).unwrap().user,
            "root@pam"
        );
        let refused = auth.check(None, Some(&cookie), None, true).unwrap_err();
        assert_eq!(
            (refused.status, refused.message.as_str()),
            (401, "Permission denied - invalid csrf token")
        );
        assert_eq!(
            auth.check(None, Some(&cookie), Some(&csrf), true).unwrap().user,
            "root@pam"
        );
        clock.advance(Duration::from_secs(7200));
        assert_eq!(
            auth.check(None, Some(&cookie), None, false).unwrap_err().message,
            "invalid ticket"
        );
    }

    #[test]
    fn api_tokens_are_checked() {
        let auth = Auth::new(Duration::from_secs(60), SimClock::new());
        let header = format!("PVEAPIToken={}={}", auth.token_id, auth.token_secret);
        assert_eq!(
            auth.check(Some(&header), None, None, true).unwrap().user,
            "root@pam!janitor"
        );
        let refused = auth
            .check(Some("PVEAPIToken=root@pam!janitor=wrong"), None, None, false)
            .unwrap_err();
        assert_eq!(
            (refused.status, refused.message.as_str()),
            (401, "invalid token value!")
        );
        assert_eq!(percent_decode("PVE%3Aroot%40pam"), "PVE:root@pam");
    }
}
