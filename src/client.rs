//! The gRPC client side of the CLI: a person's commands against a running hub.

use std::time::Duration;

use anyhow::{bail, Context};
use himaya_proto::convert::{purpose_to, referral_details_to_pb, source_to};
use himaya_proto::v1 as pb;
use himaya_record::{Purpose, ReferralDetails, SourceKind};
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

/// A referral file for `himaya referral submit --file` (see `examples/`): the path in and
/// the referral. `submission_id` makes a resubmission of the same file safe; when absent
/// a fresh one is generated and printed. Read with [`crate::referral_file::load`], which
/// owns the wire shape (`"path": "school" | "hotline" | "agency"` and each one's fields)
/// so that every error names the field and place and never quotes the file's values.
#[derive(Debug)]
pub enum ReferralFile {
    School {
        submission_id: Option<String>,
        school_agency_id: String,
        officer_ref: String,
        referral: ReferralDetails,
    },
    Hotline {
        submission_id: Option<String>,
        hotline_agency_id: String,
        call_ref: String,
        operator_ref: String,
        referral: ReferralDetails,
    },
    Agency {
        submission_id: Option<String>,
        agency_id: String,
        source_kind: SourceKind,
        referral: ReferralDetails,
    },
}

/// The language of the CLI's and the server's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Ar,
    En,
}

impl Lang {
    pub fn pick<'a>(self, en: &'a str, ar: &'a str) -> &'a str {
        match self {
            Lang::Ar => ar,
            Lang::En => en,
        }
    }
}

/// A channel to the hub as `agency`. With an `https://` server the call is made under
/// mutual TLS with the agency's certificate from `--certs` (`ca.pem`, `<agency>.pem`,
/// `<agency>.key`); the hub takes the caller's identity from that certificate.
pub async fn connect(args: &crate::cli::ClientArgs, agency: &str) -> anyhow::Result<Channel> {
    connect_as(args, agency, true).await
}

/// [`connect`]; over https without a client certificate when `identified` is false (an
/// agency enrolling, which has none yet).
pub async fn connect_as(
    args: &crate::cli::ClientArgs,
    agency: &str,
    identified: bool,
) -> anyhow::Result<Channel> {
    let server = &args.server;
    let mut endpoint = Channel::from_shared(server.clone())
        .context("the --server address is not a URL (e.g. http://127.0.0.1:50051)")?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30));
    if server.starts_with("https://") {
        let read = |name: String| {
            let path = args.certs.join(name);
            std::fs::read(&path).with_context(|| {
                format!(
                    "reading {} for `--as {agency}` (set --certs or HIMAYA_CERTS to the folder of \
                     certificates; `himaya dev-certs` makes a development set)",
                    path.display()
                )
            })
        };
        let mut tls =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("ca.pem".into())?));
        if identified {
            tls = tls.identity(Identity::from_pem(
                read(format!("{agency}.pem"))?,
                read(format!("{agency}.key"))?,
            ));
        }
        endpoint = endpoint
            .tls_config(tls)
            .context("the certificate files are not valid PEM")?;
    }
    endpoint
        .connect()
        .await
        .with_context(|| format!("cannot reach the hub at {server}; is `himaya up` running?"))
}

fn request<T>(msg: T, lang: Lang, agency: Option<&str>) -> anyhow::Result<Request<T>> {
    let mut req = Request::new(msg);
    let tag = match lang {
        Lang::Ar => "ar",
        Lang::En => "en",
    };
    req.metadata_mut()
        .insert("accept-language", MetadataValue::from_static(tag));
    if let Some(a) = agency {
        let v = MetadataValue::try_from(a)
            .context("the agency id has characters that cannot be sent")?;
        req.metadata_mut().insert("x-himaya-agency", v);
    }
    Ok(req)
}

/// Turns a status into a message a person can act on, field by field.
pub fn explain(status: &Status, lang: Lang) -> String {
    let details = status.get_error_details();
    let summary = details
        .localized_message()
        .map(|m| m.message.clone())
        .unwrap_or_else(|| status.message().to_owned());
    let mut out = format!("{summary} ({:?})", status.code());
    if status.code() == Code::Unknown && summary.contains("h2 protocol error") {
        out.push_str(lang.pick(
            "\n(the hub speaks mutual TLS: use an https:// --server with your agency's certificate)",
            "\n(الخادم يستخدم TLS المتبادل: استخدم عنوان https:// مع شهادة جهتك)",
        ));
    }
    if let Some(bad) = details.bad_request() {
        out.push('\n');
        out.push_str(lang.pick("fields to fix:", "الحقول المطلوب تصحيحها:"));
        for v in &bad.field_violations {
            out.push_str(&format!("\n  - {}: {}", v.field, v.description));
        }
    }
    out
}

impl ReferralFile {
    /// The submitting agency, which the call is made as.
    pub fn agency(&self) -> &str {
        match self {
            ReferralFile::School {
                school_agency_id: a,
                ..
            }
            | ReferralFile::Hotline {
                hotline_agency_id: a,
                ..
            }
            | ReferralFile::Agency { agency_id: a, .. } => a,
        }
    }

    fn submission_id(&self) -> Option<&str> {
        match self {
            ReferralFile::School { submission_id, .. }
            | ReferralFile::Hotline { submission_id, .. }
            | ReferralFile::Agency { submission_id, .. } => submission_id.as_deref(),
        }
    }
}

/// Submits a referral file. The submission id is fixed before the first attempt, so a
/// retry after a transient failure can never open a second case.
pub async fn submit(
    channel: Channel,
    file: ReferralFile,
    lang: Lang,
) -> anyhow::Result<(pb::SubmitReferralResponse, String)> {
    let mut client = pb::intake_client::IntakeClient::new(channel);
    let id = file
        .submission_id()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("cli-{}", uuid::Uuid::new_v4().simple()));
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = match &file {
            ReferralFile::School {
                school_agency_id,
                officer_ref,
                referral,
                ..
            } => {
                let msg = pb::SchoolReferralRequest {
                    submission_id: id.clone(),
                    school_agency_id: school_agency_id.clone(),
                    officer_ref: officer_ref.clone(),
                    referral: Some(referral_details_to_pb(referral)),
                };
                client
                    .submit_school_referral(request(msg, lang, Some(school_agency_id))?)
                    .await
            }
            ReferralFile::Hotline {
                hotline_agency_id,
                call_ref,
                operator_ref,
                referral,
                ..
            } => {
                let msg = pb::HotlineEscalationRequest {
                    submission_id: id.clone(),
                    hotline_agency_id: hotline_agency_id.clone(),
                    call_ref: call_ref.clone(),
                    operator_ref: operator_ref.clone(),
                    referral: Some(referral_details_to_pb(referral)),
                };
                client
                    .escalate_hotline_call(request(msg, lang, Some(hotline_agency_id))?)
                    .await
            }
            ReferralFile::Agency {
                agency_id,
                source_kind,
                referral,
                ..
            } => {
                let msg = pb::AgencyReferralRequest {
                    submission_id: id.clone(),
                    agency_id: agency_id.clone(),
                    source_kind: source_to(*source_kind).into(),
                    referral: Some(referral_details_to_pb(referral)),
                };
                client
                    .submit_agency_referral(request(msg, lang, Some(agency_id))?)
                    .await
            }
        };
        match result {
            Ok(r) => return Ok((r.into_inner(), id)),
            // A busy hub (RESOURCE_EXHAUSTED) says when to send again; an unavailable one
            // gets a growing wait. The same submission id either way: never a second case.
            Err(s)
                if matches!(s.code(), Code::Unavailable | Code::ResourceExhausted)
                    && attempt < 4 =>
            {
                use tonic_types::StatusExt;
                let hinted = s.get_details_retry_info().and_then(|i| i.retry_delay);
                let wait = hinted
                    .unwrap_or(Duration::from_millis(500 * attempt))
                    .min(Duration::from_secs(30));
                tokio::time::sleep(wait).await;
            }
            Err(s) => bail!("{}", explain(&s, lang)),
        }
    }
}

pub async fn show_case(
    channel: Channel,
    case_id: &str,
    agency: &str,
    purpose: Purpose,
    lang: Lang,
) -> anyhow::Result<pb::SharedCase> {
    let mut client = pb::cases_client::CasesClient::new(channel);
    let msg = pb::GetCaseRequest {
        case_id: case_id.to_owned(),
        purpose: purpose_to(purpose).into(),
    };
    client
        .get_case(request(msg, lang, Some(agency))?)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| anyhow::anyhow!("{}", explain(&s, lang)))
}

pub async fn list_agencies(channel: Channel, agency: &str) -> anyhow::Result<Vec<pb::Agency>> {
    let mut client = pb::directory_client::DirectoryClient::new(channel);
    let mut all = Vec::new();
    let mut after = String::new();
    // Page by page (500 each), as far as a national directory goes.
    for _ in 0..MAX_AGENCY_PAGES {
        let page = client
            .list_agencies(request(
                pb::ListAgenciesRequest {
                    after: after.clone(),
                    ..Default::default()
                },
                Lang::En,
                Some(agency),
            )?)
            .await
            .map_err(|s| anyhow::anyhow!("{}", explain(&s, Lang::En)))?
            .into_inner();
        all.extend(page.agencies);
        if page.next_after.is_empty() {
            break;
        }
        after = page.next_after;
    }
    Ok(all)
}

/// The most pages of agencies the CLI reads (100,000 agencies).
const MAX_AGENCY_PAGES: usize = 200;
