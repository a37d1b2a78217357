//! How the hub proves itself to an agency's system: nothing, a static bearer token
//! (`outbound_token`), or a login (Primero: `POST {endpoint}/api/v2/tokens` with a user and
//! password, answered with a JWT in the `Authorization` header that expires after an
//! hour). One [`Credentials`] per agency is shared by its delivery consumer and its
//! poller, so they share one token and log in once.
//!
//! A token is renewed before it can expire and at once after the agency answers 401: an
//! agency that does not accept the hub's credentials is a fault to fix, never the agency
//! refusing a child, so deliveries wait for it (see `TransientError::Unauthorized`).

use std::time::{Duration, Instant};

use himaya_settings::{AgencySettings, ExposeSecret, SecretString};
use serde_json::json;
use tokio::sync::Mutex;

use crate::executor::{Call, Executor, Method, Outcome, TransientError};

/// A login's token is used for this long (Primero's live for 60 minutes).
pub const TOKEN_USE: Duration = Duration::from_secs(50 * 60);

/// The path of Primero's login, after the agency's endpoint.
pub const PRIMERO_TOKENS: &str = "/api/v2/tokens";

pub enum Credentials {
    None,
    Bearer(SecretString),
    Login(Login),
}

pub struct Login {
    url: String,
    user: String,
    password: SecretString,
    token: Mutex<Option<(SecretString, Instant)>>,
}

impl Credentials {
    pub fn of(agency: &AgencySettings) -> Credentials {
        match (
            &agency.login_user,
            &agency.login_password,
            &agency.endpoint,
            &agency.outbound_token,
        ) {
            (Some(user), Some(password), Some(endpoint), _) => Credentials::Login(Login {
                url: format!("{}{PRIMERO_TOKENS}", endpoint.trim_end_matches('/')),
                user: user.clone(),
                password: password.clone(),
                token: Mutex::new(None),
            }),
            (_, _, _, Some(t)) => Credentials::Bearer(t.clone()),
            _ => Credentials::None,
        }
    }

    /// The `Authorization` header for the next call, logging in first when needed.
    pub async fn authorization(
        &self,
        executor: &Executor,
        agency_id: &str,
    ) -> Result<Option<String>, TransientError> {
        match self {
            Credentials::None => Ok(None),
            Credentials::Bearer(t) => Ok(Some(format!("Bearer {}", t.expose_secret()))),
            Credentials::Login(l) => l
                .token(executor, agency_id)
                .await
                .map(|t| Some(t.expose_secret().to_owned())),
        }
    }

    /// The agency answered 401 to `used` (the `Authorization` header sent): forget that
    /// token, so the next call logs in again. A token another call has just obtained
    /// meanwhile is kept.
    pub async fn rejected(&self, used: Option<&str>) {
        if let Credentials::Login(l) = self {
            let mut held = l.token.lock().await;
            if held.as_ref().map(|(t, _)| t.expose_secret()) == used {
                *held = None;
            }
        }
    }
}

impl Login {
    async fn token(
        &self,
        executor: &Executor,
        agency_id: &str,
    ) -> Result<SecretString, TransientError> {
        let mut held = self.token.lock().await;
        if let Some((token, at)) = held.as_ref() {
            if at.elapsed() < TOKEN_USE {
                return Ok(token.clone());
            }
        }
        let body =
            json!({"user": {"user_name": self.user, "password": self.password.expose_secret()}});
        let call = Call {
            agency_id,
            method: Method::Post,
            url: &self.url,
            headers: Vec::new(),
            content_type: "application/json",
            body: serde_json::to_vec(&body).unwrap_or_default(),
        };
        let answered = executor.call(&call).await.inspect_err(|e| {
            if *e == TransientError::Unauthorized {
                tracing::error!(
                    agency = agency_id,
                    "the agency refused the hub's login (401): check agencies.<id>.login_user and login_password"
                );
            }
        })?;
        match (answered.outcome, answered.authorization) {
            (Outcome::Delivered { .. }, Some(token))
                if token.expose_secret().starts_with("Bearer ") =>
            {
                tracing::info!(agency = agency_id, "logged in to the agency's system");
                *held = Some((token.clone(), Instant::now()));
                Ok(token)
            }
            (Outcome::Delivered { status, .. }, _) => {
                tracing::error!(
                    agency = agency_id,
                    status,
                    "the agency's login answered without a bearer token in its Authorization header"
                );
                Err(TransientError::Unauthorized)
            }
            (Outcome::Rejected { status, .. }, _) => {
                tracing::error!(
                    agency = agency_id,
                    status,
                    "the agency refused the hub's login: check agencies.<id>.login_user and login_password"
                );
                Err(TransientError::Unauthorized)
            }
        }
    }
}
