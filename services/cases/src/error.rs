use himaya_proto::status::{invalid_argument, Lang};
use himaya_record::Violations;
use tonic::Status;

/// Everything that can go wrong in the cases service, mapped once to a gRPC status.
#[derive(Debug, thiserror::Error)]
pub enum CasesError {
    #[error("invalid request: {0}")]
    Invalid(Violations, Lang),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// A move the case's status does not allow, or a rule (caseload, closure) not met.
    /// The text is bilingual (English — Arabic): build it with [`CasesError::precondition`].
    #[error("{0}")]
    Precondition(String),
    #[error("case {case_id} is at version {current}, not {expected}: reload it and try again — الحالة {case_id} في الإصدار {current} وليس {expected}: أعد تحميلها ثم حاول مجددًا")]
    Stale {
        case_id: String,
        current: i64,
        expected: i64,
    },
    #[error("service referral {id} is at version {current}, not {expected}: reload it and try again — إحالة الخدمة {id} في الإصدار {current} وليس {expected}: أعد تحميلها ثم حاول مجددًا")]
    StaleReferral {
        id: String,
        current: i64,
        expected: i64,
    },
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
            CasesError::NotFound(m) => Status::not_found(m),
            CasesError::Unauthenticated(m) => Status::unauthenticated(m),
            CasesError::PermissionDenied(m) => {
                // Messages are built from ids, agency types and purposes only.
                tracing::info!(reason = %m, "request refused: permission denied");
                Status::permission_denied(m)
            }
            CasesError::Precondition(m) => Status::failed_precondition(m),
            e @ (CasesError::Stale { .. } | CasesError::StaleReferral { .. }) => {
                Status::aborted(e.to_string())
            }
            CasesError::Store(ref s) if s.is_retryable() => {
                tracing::warn!(error = %s, "storage unavailable");
                Status::unavailable("storage is unavailable; retry with the same submission_id")
            }
            CasesError::Bus(_) => Status::unavailable("the message bus is unavailable; retry"),
            other => {
                // Internal: the cause is logged (it holds no personal data: ids and
                // library error kinds only), never sent.
                tracing::error!(error = %other, source = ?std::error::Error::source(&other).map(|s| s.to_string()), "internal error");
                Status::internal("internal error; the operators have been told")
            }
        }
    }
}

impl CasesError {
    /// A refusal people can read in English and Arabic.
    pub fn precondition(en: impl std::fmt::Display, ar: impl std::fmt::Display) -> CasesError {
        CasesError::Precondition(format!("{en} — {ar}"))
    }
}
