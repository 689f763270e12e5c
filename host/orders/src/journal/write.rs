//! Writing: intents, `sent` marks and reports, each in one transaction.

use super::*;

impl Journal {
    /// Writes the intent (the full request, the venue, `now` as created and updated, status
    /// `pending`, not sent) and returns once it is committed. A second intent with the same
    /// venue, agent and client id is [`JournalError::Duplicate`] and changes nothing.
    pub(crate) async fn record_intent(
        &self,
        venue: &str,
        order: &OrderRequest,
        now: Timestamp,
    ) -> Result<(), JournalError> {
        let now = ts_to_db(now)?;
        let zero = Decimal::ZERO.to_string();
        let inserted = on_pool!(&self.backend, |pool, Db| {
            bind_request!(sqlx::query::<Db>(INSERT_INTENT), venue, order)
                .bind(OrderStatus::Pending.as_str())
                .bind(zero.as_str())
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if inserted == 0 {
            return Err(JournalError::Duplicate {
                agent: order.agent.to_string(),
                client_id: order.client_id.clone(),
            });
        }
        Ok(())
    }

    /// Records that the request is being handed to the venue (the status stays as it is).
    /// Only the first call's time is kept. Lets reconciliation tell "never sent" from "maybe
    /// sent".
    pub(crate) async fn mark_sent(
        &self,
        agent: &str,
        client_id: &str,
        now: Timestamp,
    ) -> Result<(), JournalError> {
        let now = ts_to_db(now)?;
        let updated = on_pool!(&self.backend, |pool, Db| {
            sqlx::query::<Db>(MARK_SENT)
                .bind(now)
                .bind(agent)
                .bind(client_id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if updated == 0 {
            return Err(unknown(agent, client_id));
        }
        Ok(())
    }

    /// Appends `report` to its order's events and folds it into the order row
    /// ([`OrderState::apply`]), in one transaction.
    pub async fn record(&self, report: &ExecReport) -> Result<(), JournalError> {
        self.record_batch(std::slice::from_ref(report)).await
    }

    /// Records `reports` in order, in one transaction: all of them or, if any fails (a report
    /// for an order without an intent, a corrupt order row), none.
    pub(crate) async fn record_batch(&self, reports: &[ExecReport]) -> Result<(), JournalError> {
        if reports.is_empty() {
            return Ok(());
        }
        macro_rules! write_reports {
            ($tx:ident, $db:ty, $select:expr) => {{
                // Locked in sorted order, so two batches touching the same orders cannot
                // deadlock on PostgreSQL.
                let keys: BTreeSet<(&str, &str)> = reports.iter().map(report_key).collect();
                let mut orders: BTreeMap<(&str, &str), Loaded> = BTreeMap::new();
                for (agent, client_id) in keys {
                    let row = sqlx::query::<$db>($select)
                        .bind(agent)
                        .bind(client_id)
                        .fetch_optional(&mut *$tx)
                        .await?;
                    let Some(row) = row else {
                        return Err(unknown(agent, client_id));
                    };
                    orders.insert((agent, client_id), RawOrder::read(&row)?.parse()?);
                }
                for report in reports {
                    let (agent, client_id) = report_key(report);
                    let order = orders
                        .get_mut(&(agent, client_id))
                        .ok_or_else(|| unknown(agent, client_id))?;
                    order.check_identity(report);
                    order.journal.state.apply(report);
                    order.last_seq += 1;
                    let ev = EventColumns::of(&report.kind);
                    sqlx::query::<$db>(INSERT_EVENT)
                        .bind(order.id)
                        .bind(order.last_seq)
                        .bind(ts_to_db(report.ts)?)
                        .bind(ev.kind)
                        .bind(report.venue_order_id.as_deref())
                        .bind(ev.reject_code)
                        .bind(ev.message)
                        .bind(ev.qty)
                        .bind(ev.price)
                        .bind(ev.fee)
                        .bind(ev.fee_currency)
                        .bind(ev.liquidity)
                        .execute(&mut *$tx)
                        .await?;
                }
                for order in orders.values() {
                    let s = &order.journal.state;
                    sqlx::query::<$db>(UPDATE_ORDER)
                        .bind(s.status.as_str())
                        .bind(s.venue_order_id.as_deref())
                        .bind(s.filled_qty.to_string())
                        .bind(s.filled_notional.to_string())
                        .bind(s.fees.to_string())
                        .bind(s.reject_code.as_deref())
                        .bind(ts_to_db(s.updated)?)
                        .bind(order.last_seq)
                        .bind(order.id)
                        .execute(&mut *$tx)
                        .await?;
                }
                $tx.commit().await?;
                Ok(())
            }};
        }
        match &self.backend {
            Backend::Sqlite(pool) => {
                // IMMEDIATE takes the write lock up front, so reading an order row and
                // writing it back cannot interleave with another writer.
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                write_reports!(tx, sqlx::Sqlite, SELECT_ORDER)
            }
            Backend::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                write_reports!(tx, sqlx::Postgres, SELECT_ORDER_FOR_UPDATE)
            }
        }
    }

    /// Journals orders refused before the venue `venue` saw them (the request and its
    /// `rejected` report: reason code, message, time), in one transaction.
    pub(crate) async fn record_rejections(
        &self,
        venue: &str,
        refused: &[(OrderRequest, ExecReport)],
    ) -> Result<(), JournalError> {
        on_pool!(&self.backend, |pool, Db| {
            let mut tx = pool.begin().await?;
            for (order, report) in refused {
                let (code, message) = match &report.kind {
                    ExecKind::Rejected { code, message } => (code.as_str(), message.as_str()),
                    _ => ("", ""),
                };
                bind_request!(sqlx::query::<Db>(INSERT_REJECTION), venue, order)
                    .bind(code)
                    .bind(message)
                    .bind(ts_to_db(report.ts)?)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Journals agents' cancel requests that passed the cancel-rate check (agent, client id,
    /// when), in one transaction: start-up recovery rebuilds the cancel-rate window from
    /// them ([`cancel_requests_since`](Self::cancel_requests_since)).
    pub(crate) async fn record_cancel_requests(
        &self,
        venue: &str,
        cancels: &[CancelRequest],
    ) -> Result<(), JournalError> {
        on_pool!(&self.backend, |pool, Db| {
            let mut tx = pool.begin().await?;
            for c in cancels {
                sqlx::query::<Db>(INSERT_CANCEL_REQUEST)
                    .bind(venue)
                    .bind(&*c.agent)
                    .bind(c.client_id.as_str())
                    .bind(ts_to_db(c.ts)?)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}
