//! People: accounts that belong to one agency and hold roles, their passwords (argon2id)
//! and second factor (RFC 6238), and signing in with lockout after failures.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use chrono::{DateTime, Duration, Utc};
use himaya_settings::WebSettings;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use totp_rs::{Algorithm, Secret, TOTP};

use crate::WebError;

macro_rules! roles {
    ($($v:ident => $s:literal),* $(,)?) => {
        /// What a person may do; a person holds one or more.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Role { $($v),* }

        impl Role {
            pub const ALL: &'static [Role] = &[$(Role::$v),*];

            pub fn as_str(self) -> &'static str {
                match self { $(Role::$v => $s),* }
            }

            pub fn parse(s: &str) -> Option<Role> {
                match s { $($s => Some(Role::$v),)* _ => None }
            }
        }
    };
}

roles!(
    SchoolOfficer => "school_officer",
    CommitteeMember => "committee_member",
    HotlineOperator => "hotline_operator",
    Caseworker => "caseworker",
    Supervisor => "supervisor",
    AgencyStaff => "agency_staff",
    Auditor => "auditor",
    Admin => "admin",
);

impl Role {
    /// Supervisors, operators and administrators sign in with a second factor.
    pub fn needs_second_factor(self) -> bool {
        matches!(self, Role::Supervisor | Role::HotlineOperator | Role::Admin)
    }
}

/// Someone who can sign in.
#[derive(Debug, Clone)]
pub struct Person {
    /// `psn_…`: what every record of their actions names.
    pub person_id: String,
    pub agency_id: String,
    pub login: String,
    /// As given (Arabic script).
    pub name_ar: String,
    pub name_latin: Option<String>,
    pub roles: Vec<Role>,
}

impl Person {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    fn needs_second_factor(&self) -> bool {
        self.roles.iter().any(|r| r.needs_second_factor())
    }
}

/// A new account: its person, and the second factor's secret (base32, for an
/// authenticator app) when its roles need one.
pub struct Created {
    pub person: Person,
    pub totp_secret: Option<String>,
}

/// The shortest password accepted. Length is what resists guessing; no composition
/// rules (NIST SP 800-63B).
pub const MIN_PASSWORD: usize = 12;

/// Creates an account. The password must be at least [`MIN_PASSWORD`] characters and not
/// contain the login.
pub async fn add(
    pool: &PgPool,
    agency_id: &str,
    login: &str,
    names: (&str, Option<&str>),
    roles: &[Role],
    password: &str,
) -> Result<Created, WebError> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(WebError::Invalid(format!(
            "password: at least {MIN_PASSWORD} characters"
        )));
    }
    if password.to_lowercase().contains(&login.to_lowercase()) {
        return Err(WebError::Invalid(
            "password: must not contain the login".into(),
        ));
    }
    if roles.is_empty() {
        return Err(WebError::Invalid("roles: at least one".into()));
    }
    let hash = hash_password(password.to_owned()).await?;
    let needs_totp = roles.iter().any(|r| r.needs_second_factor());
    let totp_secret = needs_totp.then(|| {
        let mut raw = [0u8; 20];
        rand::thread_rng().fill_bytes(&mut raw);
        Secret::Raw(raw.to_vec()).to_encoded().to_string()
    });
    let person_id = format!("psn_{}", uuid::Uuid::now_v7().simple());
    let role_names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    sqlx::query(
        "INSERT INTO persons (person_id, agency_id, login, name_ar, name_latin, roles, password_hash, totp_secret)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&person_id)
    .bind(agency_id)
    .bind(login)
    .bind(names.0)
    .bind(names.1)
    .bind(&role_names)
    .bind(&hash)
    .bind(&totp_secret)
    .execute(pool)
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            WebError::Invalid("login: already taken".into())
        }
        other => other.into(),
    })?;
    let person = Person {
        person_id,
        agency_id: agency_id.to_owned(),
        login: login.to_owned(),
        name_ar: names.0.to_owned(),
        name_latin: names.1.map(str::to_owned),
        roles: roles.to_vec(),
    };
    Ok(Created {
        person,
        totp_secret,
    })
}

/// Why a sign-in was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// An unknown login and a wrong password are one answer.
    WrongCredentials,
    /// Too many failures: locked until then.
    Locked(DateTime<Utc>),
    /// The second factor was missing or wrong.
    SecondFactor,
}

/// Checks a sign-in; every attempt is recorded (the login only as a hash).
pub async fn sign_in(
    pool: &PgPool,
    web: &WebSettings,
    login: &str,
    password: &str,
    code: &str,
) -> Result<Result<Person, Refused>, WebError> {
    let row = sqlx::query_as::<_, SignInRow>(
        "SELECT person_id, agency_id, login, name_ar, name_latin, roles, password_hash, totp_secret,
                failed_signins, locked_until
           FROM persons WHERE login = $1 AND NOT disabled",
    )
    .bind(login)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        // The same work as a real check (hashing costs what verifying does), so that
        // timing tells nothing about which logins exist.
        let _ = hash_password(password.to_owned()).await;
        record(pool, login, None, "unknown_login").await?;
        return Ok(Err(Refused::WrongCredentials));
    };
    let SignInRow {
        person,
        password_hash,
        totp_secret,
        failed_signins,
        locked_until,
    } = row;
    let person = Person::from(person);
    let now = Utc::now();
    if let Some(until) = locked_until.filter(|u| *u > now) {
        record(pool, login, Some(&person.person_id), "locked").await?;
        return Ok(Err(Refused::Locked(until)));
    }
    if !verify_password(password_hash, password.to_owned()).await? {
        let until = lock_after(web, failed_signins + 1, now);
        sqlx::query("UPDATE persons SET failed_signins = failed_signins + 1, locked_until = $2 WHERE person_id = $1")
            .bind(&person.person_id)
            .bind(until)
            .execute(pool)
            .await?;
        record(pool, login, Some(&person.person_id), "wrong_password").await?;
        return Ok(Err(match until {
            Some(u) => Refused::Locked(u),
            None => Refused::WrongCredentials,
        }));
    }
    if person.needs_second_factor() && !totp_secret.is_some_and(|s| code_is_valid(&s, code)) {
        record(pool, login, Some(&person.person_id), "second_factor").await?;
        return Ok(Err(Refused::SecondFactor));
    }
    sqlx::query("UPDATE persons SET failed_signins = 0, locked_until = NULL WHERE person_id = $1")
        .bind(&person.person_id)
        .execute(pool)
        .await?;
    record(pool, login, Some(&person.person_id), "signed_in").await?;
    tracing::info!(person = %person.person_id, agency = %person.agency_id, "signed in");
    Ok(Ok(person))
}

/// After `failures` in a row: locked until when (none below the threshold). The lock
/// doubles with each further failure, up to an hour.
pub fn lock_after(web: &WebSettings, failures: i32, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let over = failures - web.max_failed_signins;
    if over < 0 {
        return None;
    }
    let secs = web
        .lockout_secs
        .saturating_mul(1i64 << over.min(12))
        .min(3600);
    Some(now + Duration::seconds(secs))
}

/// A new account's password: 16 characters from an alphabet without look-alikes, shown
/// once to whoever makes the account.
pub fn generate_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    (0..16)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

/// The person with this id.
pub async fn load(pool: &PgPool, person_id: &str) -> Result<Option<Person>, WebError> {
    let row = sqlx::query_as::<_, PersonRow>(
        "SELECT person_id, agency_id, login, name_ar, name_latin, roles FROM persons
          WHERE person_id = $1 AND NOT disabled",
    )
    .bind(person_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Person::from))
}

/// The person of `agency_id` who signs in as `login`.
pub async fn by_login(
    pool: &PgPool,
    agency_id: &str,
    login: &str,
) -> Result<Option<Person>, WebError> {
    let row = sqlx::query_as::<_, PersonRow>(
        "SELECT person_id, agency_id, login, name_ar, name_latin, roles FROM persons
          WHERE agency_id = $1 AND login = $2 AND NOT disabled",
    )
    .bind(agency_id)
    .bind(login)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Person::from))
}

/// Takes back an account that was just made and has done nothing yet (its staff record
/// could not be registered): no session, sign-in or submission names it.
pub async fn undo_add(pool: &PgPool, person_id: &str) -> Result<(), WebError> {
    sqlx::query(
        "DELETE FROM persons p WHERE p.person_id = $1
            AND NOT EXISTS (SELECT 1 FROM submissions s WHERE s.person_id = p.person_id)
            AND NOT EXISTS (SELECT 1 FROM signins g WHERE g.person_id = p.person_id)",
    )
    .bind(person_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// A `persons` row's public columns; the role names become [`Role`]s (an unknown one is
/// left out) in the conversion to [`Person`].
#[derive(sqlx::FromRow)]
struct PersonRow {
    person_id: String,
    agency_id: String,
    login: String,
    name_ar: String,
    name_latin: Option<String>,
    roles: Vec<String>,
}

impl From<PersonRow> for Person {
    fn from(r: PersonRow) -> Person {
        Person {
            person_id: r.person_id,
            agency_id: r.agency_id,
            login: r.login,
            name_ar: r.name_ar,
            name_latin: r.name_latin,
            roles: r.roles.iter().filter_map(|r| Role::parse(r)).collect(),
        }
    }
}

/// A `persons` row as [`sign_in`] checks it.
#[derive(sqlx::FromRow)]
struct SignInRow {
    #[sqlx(flatten)]
    person: PersonRow,
    password_hash: String,
    totp_secret: Option<String>,
    failed_signins: i32,
    locked_until: Option<DateTime<Utc>>,
}

async fn record(
    pool: &PgPool,
    login: &str,
    person_id: Option<&str>,
    outcome: &str,
) -> Result<(), WebError> {
    let login_hash = hex::encode(Sha256::digest(login.as_bytes()));
    sqlx::query("INSERT INTO signins (login_hash, person_id, outcome) VALUES ($1, $2, $3)")
        .bind(&login_hash)
        .bind(person_id)
        .bind(outcome)
        .execute(pool)
        .await?;
    if outcome != "signed_in" {
        tracing::warn!(
            person = person_id.unwrap_or("-"),
            outcome,
            "sign-in refused"
        );
    }
    Ok(())
}

/// A valid current code (one 30-second step of drift either way).
pub fn code_is_valid(secret_base32: &str, code: &str) -> bool {
    let Ok(bytes) = Secret::Encoded(secret_base32.to_owned()).to_bytes() else {
        return false;
    };
    let Ok(totp) = TOTP::new(Algorithm::SHA1, 6, 1, 30, bytes) else {
        return false;
    };
    totp.check_current(code.trim()).unwrap_or(false)
}

/// The current code for a secret (the CLI shows it; the tests sign in with it).
pub fn current_code(secret_base32: &str) -> Option<String> {
    let bytes = Secret::Encoded(secret_base32.to_owned()).to_bytes().ok()?;
    TOTP::new(Algorithm::SHA1, 6, 1, 30, bytes)
        .ok()?
        .generate_current()
        .ok()
}

/// argon2id with its default cost (19 MiB, 2 passes): tens of milliseconds of CPU, so
/// off the async workers.
async fn hash_password(password: String) -> Result<String, WebError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|_| WebError::Internal("password hashing failed"))
    })
    .await
    .map_err(|_| WebError::Internal("password hashing stopped"))?
}

async fn verify_password(hash: String, password: String) -> Result<bool, WebError> {
    tokio::task::spawn_blocking(move || {
        let Ok(parsed) = PasswordHash::new(&hash) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
    .await
    .map_err(|_| WebError::Internal("password check stopped"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_double_after_the_threshold_up_to_an_hour() {
        let web = WebSettings::default();
        let now = Utc::now();
        assert_eq!(lock_after(&web, 4, now), None);
        assert_eq!(lock_after(&web, 5, now), Some(now + Duration::seconds(60)));
        assert_eq!(lock_after(&web, 6, now), Some(now + Duration::seconds(120)));
        assert_eq!(
            lock_after(&web, 40, now),
            Some(now + Duration::seconds(3600))
        );
    }

    #[test]
    fn codes_follow_rfc_6238() {
        let secret = Secret::Raw(b"12345678901234567890".to_vec())
            .to_encoded()
            .to_string();
        let code = current_code(&secret).unwrap();
        assert!(code_is_valid(&secret, &code));
        assert!(!code_is_valid(&secret, "000000") || code == "000000");
        assert!(!code_is_valid("not base32!", &code));
    }

    #[test]
    fn roles_round_trip_and_name_their_second_factor() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(*r));
        }
        assert!(Role::HotlineOperator.needs_second_factor());
        assert!(!Role::SchoolOfficer.needs_second_factor());
    }
}
