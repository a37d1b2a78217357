//! `himaya person add`: an account for someone who signs in to the web front. The
//! password is generated and shown once; roles that need a second factor get their
//! RFC 6238 secret, to enter in an authenticator app.

use anyhow::Context;
use himaya_settings::Settings;
use himaya_web::people::{self, Role};
use rand::Rng;

#[derive(Debug, clap::Subcommand)]
pub enum PersonCommand {
    /// Create an account in an agency of the directory.
    Add {
        /// The agency the person belongs to (its directory id).
        #[arg(long)]
        agency: String,
        /// What they type to sign in (unique across the hub).
        #[arg(long)]
        login: String,
        /// Their name as given (Arabic script).
        #[arg(long)]
        name: String,
        /// Its Latin transliteration (optional).
        #[arg(long)]
        latin: Option<String>,
        /// school_officer | committee_member | hotline_operator | caseworker | supervisor |
        /// agency_staff | auditor | admin (repeat for several).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
    },
}

pub async fn run(command: PersonCommand, settings: Settings) -> anyhow::Result<()> {
    let PersonCommand::Add {
        agency,
        login,
        name,
        latin,
        roles,
    } = command;
    if !settings.agencies.contains_key(&agency) {
        anyhow::bail!("--agency: not an agency of the directory (himaya agencies lists them)");
    }
    let roles = roles
        .iter()
        .map(|r| {
            Role::parse(r).with_context(|| {
                let all: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
                format!("--role: one of {}", all.join(", "))
            })
        })
        .collect::<anyhow::Result<Vec<Role>>>()?;
    let password = generate_password();
    let pool = himaya_web::connect(&settings)
        .await
        .context("connecting to PostgreSQL (is it running? scripts/services starts it)")?;
    let created = people::add(
        &pool,
        &agency,
        &login,
        (&name, latin.as_deref()),
        &roles,
        &password,
    )
    .await?;
    println!("person {} ({agency})", created.person.person_id);
    println!("  login:    {login}");
    println!(
        "  password: {password}   (shown once: hand it over, ask for a change at first sign-in)"
    );
    if let Some(secret) = created.totp_secret {
        println!("  second factor (RFC 6238, 6 digits, 30 s): {secret}");
        if let Some(code) = people::current_code(&secret) {
            println!("  current code: {code}");
        }
    }
    Ok(())
}

/// 16 characters from an alphabet without look-alikes.
fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    (0..16)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}
