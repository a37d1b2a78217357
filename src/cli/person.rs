//! `himaya person add`: an account for someone who signs in to the web front. The
//! password is generated and shown once; roles that need a second factor get their
//! RFC 6238 secret, to enter in an authenticator app.
//!
//! People are one list: a caseworker's or supervisor's account is also their staff
//! record in the case-owning ministry, registered through the hub (`AddStaff`) under the
//! person's id (`psn_…`), so the caseload caps and the per-person rules count the very
//! person who signs in. Should that registration fail, the account is taken back.

use anyhow::Context;
use himaya_record::lifecycle::StaffRole;
use himaya_settings::Settings;
use himaya_web::people::{self, Role};

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
        /// A caseworker's supervisor, by login (a person of the same agency).
        #[arg(long)]
        supervisor: Option<String>,
        /// Where caseworkers and supervisors are registered as staff (as `--agency`).
        #[command(flatten)]
        client: crate::cli::ClientArgs,
    },
}

pub async fn run(command: PersonCommand, settings: Settings) -> anyhow::Result<()> {
    let PersonCommand::Add {
        agency,
        login,
        name,
        latin,
        roles,
        supervisor,
        client,
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
    let staff_role = if roles.contains(&Role::Supervisor) {
        Some(StaffRole::Supervisor)
    } else if roles.contains(&Role::Caseworker) {
        Some(StaffRole::Caseworker)
    } else {
        None
    };
    let pool = himaya_web::connect(&settings)
        .await
        .context("connecting to PostgreSQL (is it running? scripts/services starts it)")?;
    // Checked before anything is written: a caseworker needs a supervisor who is one.
    let supervisor_id = match (staff_role, supervisor.as_deref()) {
        (Some(StaffRole::Caseworker), None) => {
            anyhow::bail!("--supervisor: a caseworker needs their supervisor's login")
        }
        (_, Some(login)) => {
            let s = people::by_login(&pool, &agency, login)
                .await?
                .filter(|p| p.has(Role::Supervisor))
                .context("--supervisor: not the login of a supervisor of this agency")?;
            Some(s.person_id)
        }
        (_, None) => None,
    };
    let password = people::generate_password();
    let created = people::add(
        &pool,
        &agency,
        &login,
        (&name, latin.as_deref()),
        &roles,
        &password,
    )
    .await?;
    if let Some(role) = staff_role {
        let msg = himaya_proto::v1::AddStaffRequest {
            staff_id: created.person.person_id.clone(),
            role: himaya_proto::convert::staff_role_to(role).into(),
            supervisor_id: supervisor_id.filter(|_| role == StaffRole::Caseworker),
        };
        if let Err(e) = register_staff(&client, &agency, msg).await {
            people::undo_add(&pool, &created.person.person_id).await?;
            return Err(e.context(
                "registering the staff record in the hub (is it running? scripts/setup starts it); the account was not kept",
            ));
        }
    }
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

/// The person's staff record, through the hub as their agency.
async fn register_staff(
    client: &crate::cli::ClientArgs,
    agency: &str,
    msg: himaya_proto::v1::AddStaffRequest,
) -> anyhow::Result<()> {
    let channel = crate::client::connect(client, agency).await?;
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        "x-himaya-agency",
        tonic::metadata::MetadataValue::try_from(agency)?,
    );
    himaya_proto::v1::staff_client::StaffClient::new(channel)
        .add_staff(req)
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
    Ok(())
}
