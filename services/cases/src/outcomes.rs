//! Records what agencies answered to deliveries (`referral.delivery.recorded`).

use himaya_bus::{HandleError, Handler, Incoming};
use himaya_events::{decode, DeliveryRecorded};
use sqlx::PgPool;

use crate::db::history;
use crate::{CasesError, OUTCOMES_QUEUE};

pub struct Outcomes {
    pool: PgPool,
}

impl Outcomes {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    async fn record(&self, e: &DeliveryRecorded) -> Result<(), CasesError> {
        let mut tx = self.pool.begin().await?;
        if !himaya_store::inbox::claim(&mut tx, OUTCOMES_QUEUE, &e.message_id).await? {
            tx.rollback().await?;
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO referral_deliveries (referral_id, agency_id, case_id, outcome, http_status, agency_reference)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (referral_id, agency_id) DO UPDATE
               SET outcome = EXCLUDED.outcome, http_status = EXCLUDED.http_status,
                   agency_reference = EXCLUDED.agency_reference, recorded_at = now()",
        )
        .bind(&e.referral_id)
        .bind(&e.agency_id)
        .bind(&e.case_id)
        .bind(&e.outcome)
        .bind(e.http_status)
        .bind(&e.agency_reference)
        .execute(&mut *tx)
        .await?;
        let version: Option<i64> =
            sqlx::query_scalar("SELECT version FROM cases WHERE case_id = $1")
                .bind(&e.case_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(version) = version else {
            tx.rollback().await?;
            return Err(CasesError::NotFound(format!("no case {}", e.case_id)));
        };
        history(
            &mut tx,
            &e.case_id,
            version,
            &e.agency_id,
            &format!("delivery of {}: {}", e.referral_id, e.outcome),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

impl Handler for Outcomes {
    async fn handle(&self, msg: &Incoming) -> Result<(), HandleError> {
        let event = decode::<DeliveryRecorded>(msg.payload()).map_err(|e| HandleError::Park {
            reason: e.to_string(),
        })?;
        match self.record(&event).await {
            Ok(()) => Ok(()),
            Err(CasesError::NotFound(m)) => Err(HandleError::Park { reason: m }),
            Err(e) => Err(HandleError::Retry {
                reason: e.to_string(),
            }),
        }
    }
}
