use himaya_proto::status::{invalid_argument, msg, status, Lang, Msg};
use himaya_record::Violations;
use tonic::{Code, Status};

/// Everything that can go wrong in the cases service, mapped once to a gRPC status. What
/// the caller reads is a message of the catalogue (`himaya_words`, `cases.ftl`), sent in
/// English and rendered again by the gateway in the caller's language.
#[derive(Debug, thiserror::Error)]
pub enum CasesError {
    #[error("invalid request: {0}")]
    Invalid(Violations, Lang),
    #[error("{0}")]
    NotFound(Msg),
    #[error("{0}")]
    Unauthenticated(Msg),
    #[error("{0}")]
    PermissionDenied(Msg),
    /// A move the case's status does not allow, or a rule (caseload, closure) not met.
    #[error("{0}")]
    Precondition(Msg),
    #[error("{}", case_stale(.case_id, *.current, *.expected))]
    Stale {
        case_id: String,
        current: i64,
        expected: i64,
    },
    #[error("{}", referral_stale(.id, *.current, *.expected))]
    StaleReferral {
        id: String,
        current: i64,
        expected: i64,
    },
    /// Routine intake refused while the backlog behind it is over its bound (see
    /// `backlog.rs`); the retry hint.
    #[error("the backlog behind intake is at its bound")]
    Busy(std::time::Duration),
    #[error("storage failed")]
    Store(#[from] himaya_store::StoreError),
    #[error("the bus failed")]
    Bus(#[from] himaya_bus::BusError),
    #[error("an event could not be encoded")]
    Codec(#[from] himaya_events::CodecError),
    #[error("a record could not be disclosed")]
    Redact(#[from] himaya_sharing::RedactError),
}

himaya_store::from_sqlx!(CasesError::Store);

fn case_stale(case_id: &str, current: i64, expected: i64) -> Msg {
    msg!(
        "case-stale",
        case_id = case_id,
        current = current,
        expected = expected
    )
}

fn referral_stale(id: &str, current: i64, expected: i64) -> Msg {
    msg!(
        "service-referral-stale",
        service_referral_id = id,
        current = current,
        expected = expected
    )
}

impl From<CasesError> for Status {
    fn from(e: CasesError) -> Status {
        match e {
            CasesError::Invalid(v, lang) => {
                // Every refusal is logged: the fields and rule codes, never the values.
                let fields: Vec<String> = v
                    .iter()
                    .map(|f| format!("{}:{}", f.field, f.problem.code()))
                    .collect();
                tracing::info!(fields = ?fields, "request refused: invalid fields");
                invalid_argument(&v, lang)
            }
            CasesError::NotFound(m) => status(Code::NotFound, &m),
            CasesError::Busy(retry_after) => himaya_proto::status::busy(retry_after),
            CasesError::Unauthenticated(m) => status(Code::Unauthenticated, &m),
            CasesError::PermissionDenied(m) => {
                // The message id only: its arguments are ids, but the id says why.
                tracing::info!(reason = m.id(), "request refused: permission denied");
                status(Code::PermissionDenied, &m)
            }
            CasesError::Precondition(m) => status(Code::FailedPrecondition, &m),
            CasesError::Stale {
                case_id,
                current,
                expected,
            } => status(Code::Aborted, &case_stale(&case_id, current, expected)),
            CasesError::StaleReferral {
                id,
                current,
                expected,
            } => status(Code::Aborted, &referral_stale(&id, current, expected)),
            CasesError::Store(ref s) if s.is_retryable() => {
                tracing::warn!(error = %s, "storage unavailable");
                status(Code::Unavailable, &msg!("storage-unavailable-resubmit"))
            }
            CasesError::Bus(_) => status(Code::Unavailable, &msg!("bus-unavailable")),
            other => {
                // Internal: the cause is logged (it holds no personal data: ids and
                // library error kinds only), never sent.
                tracing::error!(error = %other, source = ?std::error::Error::source(&other).map(|s| s.to_string()), "internal error");
                status(Code::Internal, &msg!("internal"))
            }
        }
    }
}
