//! Reading back: open orders for recovery, orders, events and fills for `colony orders`.

use super::*;

impl Journal {
    /// Orders not closed (pending, accepted, partially filled), oldest first, on `venue` or
    /// on every venue: what start-up reconciles.
    pub async fn open_orders(
        &self,
        venue: Option<&str>,
    ) -> Result<Vec<JournalOrder>, JournalError> {
        let mut sql = Sql::new(format!(
            concat!(
                "SELECT ",
                order_columns!(),
                " FROM orders o WHERE o.status IN {}"
            ),
            OPEN_STATUSES
        ));
        if let Some(v) = venue {
            let p = sql.param(Bind::Text(v.to_string()));
            sql.text.push_str(&format!(" AND o.venue = {p}"));
        }
        sql.text.push_str(" ORDER BY o.created_ns, o.id");
        self.fetch_orders(&sql).await
    }

    /// Orders matching `filter`, newest first.
    pub async fn orders(&self, filter: &OrderFilter) -> Result<Vec<JournalOrder>, JournalError> {
        let mut sql = Sql::new(
            concat!("SELECT ", order_columns!(), " FROM orders o WHERE 1 = 1").to_string(),
        );
        if let Some(a) = &filter.agent {
            let p = sql.param(Bind::Text(a.clone()));
            sql.text.push_str(&format!(" AND o.agent = {p}"));
        }
        if let Some(s) = &filter.symbol {
            let p = sql.param(Bind::Text(s.clone()));
            sql.text.push_str(&format!(" AND o.symbol = {p}"));
        }
        if filter.open_only {
            sql.text
                .push_str(&format!(" AND o.status IN {OPEN_STATUSES}"));
        }
        sql.text.push_str(" ORDER BY o.created_ns DESC, o.id DESC");
        if let Some(n) = filter.limit {
            let p = sql.param(Bind::Int(i64::from(n)));
            sql.text.push_str(&format!(" LIMIT {p}"));
        }
        self.fetch_orders(&sql).await
    }

    /// The order `client_id` of `agent`, if journaled.
    pub async fn order(
        &self,
        agent: &str,
        client_id: &str,
    ) -> Result<Option<JournalOrder>, JournalError> {
        let raw = on_pool!(&self.backend, |pool, Db| {
            let row = sqlx::query::<Db>(SELECT_ORDER)
                .bind(agent)
                .bind(client_id)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(RawOrder::read).transpose()?
        });
        Ok(match raw {
            Some(raw) => Some(raw.parse()?.journal),
            None => None,
        })
    }

    /// The order's reports in the order they were recorded (empty for an unknown order).
    pub async fn events(
        &self,
        agent: &str,
        client_id: &str,
    ) -> Result<Vec<JournalEvent>, JournalError> {
        let raws = on_pool!(&self.backend, |pool, Db| {
            let rows = sqlx::query::<Db>(SELECT_EVENTS)
                .bind(agent)
                .bind(client_id)
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(RawEvent::read)
                .collect::<Result<Vec<_>, _>>()?
        });
        raws.into_iter()
            .map(|r| r.parse().map(|(_, event)| event))
            .collect()
    }

    /// The latest `limit` fills (of `agent`, or of every agent), newest first.
    pub async fn fills(
        &self,
        agent: Option<&str>,
        limit: u32,
    ) -> Result<Vec<JournalFill>, JournalError> {
        let mut sql = Sql::new(concat!(event_select!(), " WHERE e.kind = 'fill'").to_string());
        if let Some(a) = agent {
            let p = sql.param(Bind::Text(a.to_string()));
            sql.text.push_str(&format!(" AND o.agent = {p}"));
        }
        let p = sql.param(Bind::Int(i64::from(limit)));
        sql.text.push_str(&format!(
            " ORDER BY e.ts_ns DESC, e.order_id DESC, e.seq DESC LIMIT {p}"
        ));
        self.fetch_fills(&sql).await
    }

    /// Orders refused before a venue saw them, matching `filter` (`open_only` is ignored: a
    /// refusal is closed), newest first.
    pub async fn rejections(
        &self,
        filter: &OrderFilter,
    ) -> Result<Vec<JournalRejection>, JournalError> {
        let mut sql = Sql::new(
            concat!(
                "SELECT ",
                rejection_columns!(),
                " FROM order_rejections r WHERE 1 = 1"
            )
            .to_string(),
        );
        if let Some(a) = &filter.agent {
            let p = sql.param(Bind::Text(a.clone()));
            sql.text.push_str(&format!(" AND r.agent = {p}"));
        }
        if let Some(s) = &filter.symbol {
            let p = sql.param(Bind::Text(s.clone()));
            sql.text.push_str(&format!(" AND r.symbol = {p}"));
        }
        sql.text.push_str(" ORDER BY r.ts_ns DESC, r.id DESC");
        if let Some(n) = filter.limit {
            let p = sql.param(Bind::Int(i64::from(n)));
            sql.text.push_str(&format!(" LIMIT {p}"));
        }
        let raws = on_pool!(&self.backend, |pool, Db| {
            let rows = sql.query::<Db>().fetch_all(pool).await?;
            rows.iter()
                .map(RawRejection::read)
                .collect::<Result<Vec<_>, _>>()?
        });
        raws.into_iter().map(RawRejection::parse).collect()
    }

    /// Every fill journaled for orders routed to `venue`, oldest first: what start-up
    /// recovery replays into the risk engine (positions and the day's realised PnL).
    pub async fn venue_fills(&self, venue: &str) -> Result<Vec<JournalFill>, JournalError> {
        let mut sql = Sql::new(concat!(event_select!(), " WHERE e.kind = 'fill'").to_string());
        let p = sql.param(Bind::Text(venue.to_string()));
        sql.text.push_str(&format!(
            " AND o.venue = {p} ORDER BY e.ts_ns, e.order_id, e.seq"
        ));
        self.fetch_fills(&sql).await
    }

    /// The cancel requests journaled for `venue` at or after `since` (nanoseconds), oldest
    /// first: what start-up recovery puts back into the cancel-rate window.
    pub async fn cancel_requests_since(
        &self,
        venue: &str,
        since: Timestamp,
    ) -> Result<Vec<CancelRequest>, JournalError> {
        let mut sql = Sql::new(
            "SELECT id, agent, client_id, ts_ns FROM cancel_requests WHERE venue = ".into(),
        );
        let p = sql.param(Bind::Text(venue.to_string()));
        sql.text.push_str(&p);
        let p = sql.param(Bind::Int(ts_to_db(since)?));
        sql.text
            .push_str(&format!(" AND ts_ns >= {p} ORDER BY ts_ns, id"));
        let rows: Vec<(i64, String, String, i64)> = on_pool!(&self.backend, |pool, Db| {
            let rows = sql.query::<Db>().fetch_all(pool).await?;
            rows.iter()
                .map(|row| {
                    Ok::<_, sqlx::Error>((
                        row.try_get::<i64, _>(0)?,
                        row.try_get::<String, _>(1)?,
                        row.try_get::<String, _>(2)?,
                        row.try_get::<i64, _>(3)?,
                    ))
                })
                .collect::<Result<Vec<_>, _>>()?
        });
        rows.into_iter()
            .map(|(id, agent, client_id, ts)| {
                let ts = Timestamp::try_from(ts).map_err(|_| JournalError::Corrupt {
                    table: "cancel_requests",
                    row: format!("id {id}"),
                    column: "ts_ns",
                    what: format!("{ts} is before the epoch"),
                })?;
                Ok(CancelRequest {
                    agent: agent.into(),
                    client_id,
                    ts,
                })
            })
            .collect()
    }

    async fn fetch_fills(&self, sql: &Sql) -> Result<Vec<JournalFill>, JournalError> {
        let raws = on_pool!(&self.backend, |pool, Db| {
            let rows = sql.query::<Db>().fetch_all(pool).await?;
            rows.iter()
                .map(RawEvent::read)
                .collect::<Result<Vec<_>, _>>()?
        });
        let mut fills = Vec::with_capacity(raws.len());
        for raw in raws {
            let (venue, event) = raw.parse()?;
            let ExecReport {
                agent,
                client_id,
                symbol,
                side,
                venue_order_id,
                kind,
                ts,
            } = event.report;
            // The query selects fills only; anything else would have failed to parse above.
            if let ExecKind::Fill(fill) = kind {
                fills.push(JournalFill {
                    venue,
                    agent,
                    client_id,
                    symbol,
                    side,
                    venue_order_id,
                    seq: event.seq,
                    ts,
                    fill,
                });
            }
        }
        Ok(fills)
    }

    async fn fetch_orders(&self, sql: &Sql) -> Result<Vec<JournalOrder>, JournalError> {
        let raws = on_pool!(&self.backend, |pool, Db| {
            let rows = sql.query::<Db>().fetch_all(pool).await?;
            rows.iter()
                .map(RawOrder::read)
                .collect::<Result<Vec<_>, _>>()?
        });
        raws.into_iter()
            .map(|r| r.parse().map(|l| l.journal))
            .collect()
    }

    /// Runs raw SQL (one or more statements); for tests that damage the journal.
    #[cfg(test)]
    pub(super) async fn execute_raw(&self, sql: &str) -> Result<u64, JournalError> {
        Ok(on_pool!(&self.backend, |pool, _Db| {
            sqlx::raw_sql(sql).execute(pool).await?.rows_affected()
        }))
    }
}
