//! Sessions in PostgreSQL, known by the hash of a random cookie; a new one at every
//! sign-in (so a cookie planted before sign-in is worth nothing), ended when idle, by
//! sign-out, or everywhere at once. Every form carries the session's CSRF token.

use axum::http::HeaderMap;
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;

use crate::people::{self, Person, Role};
use crate::WebError;

pub const COOKIE: &str = "himaya_session";
/// Before sign-in: the token the sign-in form must send back (double submit).
pub const PRE_COOKIE: &str = "himaya_pre";

/// A signed-in person and the token their forms must carry.
#[derive(Debug, Clone)]
pub struct Session {
    pub person: Person,
    pub csrf: String,
}

/// A `sessions` row as [`current`] reads it.
#[derive(sqlx::FromRow)]
struct SessionRow {
    person_id: String,
    csrf: String,
    last_seen: DateTime<Utc>,
}

/// 32 random bytes, hex.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new session for `person_id`: its cookie value and CSRF token.
pub async fn create(pool: &PgPool, person_id: &str) -> Result<(String, String), WebError> {
    let (token, csrf) = (random_token(), random_token());
    sqlx::query("INSERT INTO sessions (token_hash, person_id, csrf) VALUES ($1, $2, $3)")
        .bind(hash(&token))
        .bind(person_id)
        .bind(&csrf)
        .execute(pool)
        .await?;
    Ok((token, csrf))
}

/// The session behind the request's cookie, if it is live: unused for less than the
/// idle limit of the person's roles (shorter for operators). Using it keeps it alive.
pub async fn current(
    pool: &PgPool,
    web: &himaya_settings::WebSettings,
    headers: &HeaderMap,
) -> Result<Option<Session>, WebError> {
    let Some(token) = cookie(headers, COOKIE) else {
        return Ok(None);
    };
    let row = sqlx::query_as::<_, SessionRow>(
        "SELECT person_id, csrf, last_seen FROM sessions WHERE token_hash = $1",
    )
    .bind(hash(&token))
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let Some(person) = people::load(pool, &row.person_id).await? else {
        return Ok(None);
    };
    let idle = if person.has(Role::HotlineOperator) {
        web.operator_idle_minutes
    } else {
        web.session_idle_minutes
    };
    if Utc::now() - row.last_seen > Duration::minutes(idle) {
        end(pool, headers).await?;
        return Ok(None);
    }
    sqlx::query("UPDATE sessions SET last_seen = now() WHERE token_hash = $1")
        .bind(hash(&token))
        .execute(pool)
        .await?;
    Ok(Some(Session {
        person,
        csrf: row.csrf,
    }))
}

/// Ends the request's session.
pub async fn end(pool: &PgPool, headers: &HeaderMap) -> Result<(), WebError> {
    if let Some(token) = cookie(headers, COOKIE) {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(hash(&token))
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Ends every session of a person (sign-out everywhere).
pub async fn end_all(pool: &PgPool, person_id: &str) -> Result<u64, WebError> {
    Ok(sqlx::query("DELETE FROM sessions WHERE person_id = $1")
        .bind(person_id)
        .execute(pool)
        .await?
        .rows_affected())
}

/// Whether a submitted CSRF token is the expected one (constant time).
pub fn csrf_ok(expected: &str, given: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// A cookie's value from the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|c| c.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Path=/, Secure unless turned off for
/// a plain-HTTP test; `max_age` 0 removes it.
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<i64>) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if secure {
        c.push_str("; Secure");
    }
    if let Some(a) = max_age {
        c.push_str(&format!("; Max-Age={a}"));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_and_written_strictly() {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            "a=1; himaya_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "missing"), None);
        let c = set_cookie(COOKIE, "v", true, None);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"));
        assert!(csrf_ok("abc", "abc") && !csrf_ok("abc", "abd") && !csrf_ok("", ""));
    }
}
