//! Rows as stored, parsed back into orders and events; whatever does not parse is
//! [`JournalError::Corrupt`] naming its table, row and column.

use super::*;

/// An order row with its bookkeeping, parsed.
pub(super) struct Loaded {
    pub(super) id: i64,
    pub(super) last_seq: i64,
    pub(super) journal: JournalOrder,
}

impl Loaded {
    /// The order's stored symbol and side are authoritative; a report that disagrees points
    /// at a venue adapter bug, worth a warning but not worth losing the report.
    pub(super) fn check_identity(&self, report: &ExecReport) {
        let request = &self.journal.state.request;
        if request.symbol != report.symbol || request.side != report.side {
            tracing::warn!(
                agent = %report.agent,
                client_id = %report.client_id,
                order_symbol = %request.symbol,
                report_symbol = %report.symbol,
                "execution report disagrees with the journaled order's symbol or side"
            );
        }
    }
}

/// Where a stored value came from, for [`JournalError::Corrupt`].
pub(super) struct At<'a> {
    table: &'static str,
    row: &'a str,
}

impl At<'_> {
    pub(super) fn corrupt(&self, column: &'static str, what: impl Into<String>) -> JournalError {
        JournalError::Corrupt {
            table: self.table,
            row: self.row.to_string(),
            column,
            what: what.into(),
        }
    }

    pub(super) fn get<'r, R, T>(&self, row: &'r R, column: &'static str) -> Result<T, JournalError>
    where
        R: Row,
        &'static str: ColumnIndex<R>,
        T: Decode<'r, R::Database> + Type<R::Database>,
    {
        row.try_get(column)
            .map_err(|e| self.corrupt(column, e.to_string()))
    }

    pub(super) fn decimal(&self, column: &'static str, s: &str) -> Result<Decimal, JournalError> {
        Decimal::from_str_exact(s)
            .map_err(|e| self.corrupt(column, format!("{s:?} is not a decimal ({e})")))
    }

    pub(super) fn timestamp(
        &self,
        column: &'static str,
        ns: i64,
    ) -> Result<Timestamp, JournalError> {
        Timestamp::try_from(ns).map_err(|_| self.corrupt(column, format!("{ns} is negative")))
    }

    pub(super) fn count(&self, column: &'static str, n: i64) -> Result<u64, JournalError> {
        u64::try_from(n).map_err(|_| self.corrupt(column, format!("{n} is negative")))
    }

    pub(super) fn text<T>(
        &self,
        column: &'static str,
        s: &str,
        parse: fn(&str) -> Option<T>,
        what: &str,
    ) -> Result<T, JournalError> {
        parse(s).ok_or_else(|| self.corrupt(column, format!("{s:?} is not {what}")))
    }

    pub(super) fn required(
        &self,
        column: &'static str,
        v: Option<String>,
        kind: &str,
    ) -> Result<String, JournalError> {
        v.ok_or_else(|| self.corrupt(column, format!("is NULL in a {kind} event")))
    }
}

/// The request's columns, which an `orders` row and an `order_rejections` row share, as stored.
pub(super) struct RawRequest {
    agent: String,
    client_id: String,
    symbol: String,
    side: String,
    kind: String,
    price: Option<String>,
    qty: String,
    tif: String,
    post_only: bool,
    reduce_only: bool,
}

impl RawRequest {
    fn read<'r, R>(at: &At<'_>, row: &'r R) -> Result<RawRequest, JournalError>
    where
        R: Row,
        &'static str: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        bool: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(RawRequest {
            agent: at.get(row, "agent")?,
            client_id: at.get(row, "client_id")?,
            symbol: at.get(row, "symbol")?,
            side: at.get(row, "side")?,
            kind: at.get(row, "kind")?,
            price: at.get(row, "price")?,
            qty: at.get(row, "qty")?,
            tif: at.get(row, "tif")?,
            post_only: at.get(row, "post_only")?,
            reduce_only: at.get(row, "reduce_only")?,
        })
    }

    fn parse(self, at: &At<'_>) -> Result<OrderRequest, JournalError> {
        Ok(OrderRequest {
            side: at.text("side", &self.side, Side::parse, "a side")?,
            kind: at.text("kind", &self.kind, OrderKind::parse, "an order kind")?,
            price: match &self.price {
                Some(p) => Some(at.decimal("price", p)?),
                None => None,
            },
            qty: at.decimal("qty", &self.qty)?,
            tif: at.text("tif", &self.tif, TimeInForce::parse, "a time in force")?,
            post_only: self.post_only,
            reduce_only: self.reduce_only,
            client_id: self.client_id,
            agent: self.agent.into(),
            symbol: self.symbol.into(),
        })
    }
}

/// An `orders` row as stored.
pub(super) struct RawOrder {
    id: i64,
    venue: String,
    request: RawRequest,
    status: String,
    venue_order_id: Option<String>,
    filled_qty: String,
    filled_notional: String,
    fees: String,
    reject_code: Option<String>,
    created_ns: i64,
    updated_ns: i64,
    sent_ns: Option<i64>,
    last_seq: i64,
}

impl RawOrder {
    pub(super) fn read<'r, R>(row: &'r R) -> Result<RawOrder, JournalError>
    where
        R: Row,
        &'static str: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
        bool: Decode<'r, R::Database> + Type<R::Database>,
    {
        let id: i64 = At {
            table: "orders",
            row: "?",
        }
        .get(row, "id")?;
        let key = format!("id {id}");
        let at = At {
            table: "orders",
            row: &key,
        };
        Ok(RawOrder {
            id,
            venue: at.get(row, "venue")?,
            request: RawRequest::read(&at, row)?,
            status: at.get(row, "status")?,
            venue_order_id: at.get(row, "venue_order_id")?,
            filled_qty: at.get(row, "filled_qty")?,
            filled_notional: at.get(row, "filled_notional")?,
            fees: at.get(row, "fees")?,
            reject_code: at.get(row, "reject_code")?,
            created_ns: at.get(row, "created_ns")?,
            updated_ns: at.get(row, "updated_ns")?,
            sent_ns: at.get(row, "sent_ns")?,
            last_seq: at.get(row, "last_seq")?,
        })
    }

    pub(super) fn parse(self) -> Result<Loaded, JournalError> {
        let key = format!(
            "id {} (agent {:?}, client_id {:?})",
            self.id, self.request.agent, self.request.client_id
        );
        let at = At {
            table: "orders",
            row: &key,
        };
        let request = self.request.parse(&at)?;
        let state = OrderState {
            request,
            status: at.text("status", &self.status, OrderStatus::parse, "a status")?,
            venue_order_id: self.venue_order_id,
            filled_qty: at.decimal("filled_qty", &self.filled_qty)?,
            filled_notional: at.decimal("filled_notional", &self.filled_notional)?,
            fees: at.decimal("fees", &self.fees)?,
            reject_code: self.reject_code,
            created: at.timestamp("created_ns", self.created_ns)?,
            updated: at.timestamp("updated_ns", self.updated_ns)?,
        };
        if let Some(ns) = self.sent_ns {
            at.timestamp("sent_ns", ns)?;
        }
        at.count("last_seq", self.last_seq)?;
        Ok(Loaded {
            id: self.id,
            last_seq: self.last_seq,
            journal: JournalOrder {
                venue: self.venue,
                state,
                sent: self.sent_ns.is_some(),
            },
        })
    }
}

/// An `order_events` row as stored, with its order's venue, agent, client id, symbol and side.
pub(super) struct RawEvent {
    venue: String,
    agent: String,
    client_id: String,
    symbol: String,
    side: String,
    order_id: i64,
    seq: i64,
    ts_ns: i64,
    kind: String,
    venue_order_id: Option<String>,
    reject_code: Option<String>,
    message: Option<String>,
    qty: Option<String>,
    price: Option<String>,
    fee: Option<String>,
    fee_currency: Option<String>,
    liquidity: Option<String>,
}

impl RawEvent {
    pub(super) fn read<'r, R>(row: &'r R) -> Result<RawEvent, JournalError>
    where
        R: Row,
        &'static str: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        let at = At {
            table: "order_events",
            row: "?",
        };
        let order_id: i64 = at.get(row, "order_id")?;
        let seq: i64 = at.get(row, "seq")?;
        let key = format!("order_id {order_id} seq {seq}");
        let at = At {
            table: "order_events",
            row: &key,
        };
        let order_key = format!("id {order_id}");
        let order_at = At {
            table: "orders",
            row: &order_key,
        };
        Ok(RawEvent {
            venue: order_at.get(row, "venue")?,
            agent: order_at.get(row, "agent")?,
            client_id: order_at.get(row, "client_id")?,
            symbol: order_at.get(row, "symbol")?,
            side: order_at.get(row, "side")?,
            order_id,
            seq,
            ts_ns: at.get(row, "ts_ns")?,
            kind: at.get(row, "kind")?,
            venue_order_id: at.get(row, "venue_order_id")?,
            reject_code: at.get(row, "reject_code")?,
            message: at.get(row, "message")?,
            qty: at.get(row, "qty")?,
            price: at.get(row, "price")?,
            fee: at.get(row, "fee")?,
            fee_currency: at.get(row, "fee_currency")?,
            liquidity: at.get(row, "liquidity")?,
        })
    }

    /// The event and its order's venue.
    pub(super) fn parse(self) -> Result<(String, JournalEvent), JournalError> {
        let key = format!("order_id {} seq {}", self.order_id, self.seq);
        let at = At {
            table: "order_events",
            row: &key,
        };
        let order_key = format!("id {}", self.order_id);
        let side = At {
            table: "orders",
            row: &order_key,
        }
        .text("side", &self.side, Side::parse, "a side")?;
        let kind = match self.kind.as_str() {
            "accepted" => ExecKind::Accepted,
            "rejected" => ExecKind::Rejected {
                code: at.required("reject_code", self.reject_code, "rejected")?,
                message: at.required("message", self.message, "rejected")?,
            },
            "fill" => ExecKind::Fill(FillReport {
                qty: at.decimal("qty", &at.required("qty", self.qty, "fill")?)?,
                price: at.decimal("price", &at.required("price", self.price, "fill")?)?,
                fee: at.decimal("fee", &at.required("fee", self.fee, "fill")?)?,
                fee_currency: at
                    .required("fee_currency", self.fee_currency, "fill")?
                    .into(),
                liquidity: at.text(
                    "liquidity",
                    &at.required("liquidity", self.liquidity, "fill")?,
                    Liquidity::parse,
                    "maker or taker",
                )?,
            }),
            "cancelled" => ExecKind::Cancelled,
            "expired" => ExecKind::Expired,
            other => return Err(at.corrupt("kind", format!("{other:?} is not an event kind"))),
        };
        let event = JournalEvent {
            seq: at.count("seq", self.seq)?,
            report: ExecReport {
                agent: self.agent.into(),
                client_id: self.client_id,
                symbol: self.symbol.into(),
                side,
                venue_order_id: self.venue_order_id,
                kind,
                ts: at.timestamp("ts_ns", self.ts_ns)?,
            },
        };
        Ok((self.venue, event))
    }
}

/// An `order_rejections` row as stored.
pub(super) struct RawRejection {
    id: i64,
    venue: String,
    request: RawRequest,
    code: String,
    message: String,
    ts_ns: i64,
}

impl RawRejection {
    pub(super) fn read<'r, R>(row: &'r R) -> Result<RawRejection, JournalError>
    where
        R: Row,
        &'static str: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
        bool: Decode<'r, R::Database> + Type<R::Database>,
    {
        let id: i64 = At {
            table: "order_rejections",
            row: "?",
        }
        .get(row, "id")?;
        let key = format!("id {id}");
        let at = At {
            table: "order_rejections",
            row: &key,
        };
        Ok(RawRejection {
            id,
            venue: at.get(row, "venue")?,
            request: RawRequest::read(&at, row)?,
            code: at.get(row, "code")?,
            message: at.get(row, "message")?,
            ts_ns: at.get(row, "ts_ns")?,
        })
    }

    pub(super) fn parse(self) -> Result<JournalRejection, JournalError> {
        let key = format!("id {}", self.id);
        let at = At {
            table: "order_rejections",
            row: &key,
        };
        let request = self.request.parse(&at)?;
        let ts = at.timestamp("ts_ns", self.ts_ns)?;
        let mut state = OrderState::new(request, ts);
        state.apply(&ExecReport::new(
            &state.request,
            None,
            ExecKind::Rejected {
                code: self.code,
                message: self.message.clone(),
            },
            ts,
        ));
        Ok(JournalRejection {
            venue: self.venue,
            state,
            message: self.message,
        })
    }
}

/// The `order_events` columns of one report's kind.
pub(super) struct EventColumns<'a> {
    pub(super) kind: &'static str,
    pub(super) reject_code: Option<&'a str>,
    pub(super) message: Option<&'a str>,
    pub(super) qty: Option<String>,
    pub(super) price: Option<String>,
    pub(super) fee: Option<String>,
    pub(super) fee_currency: Option<&'a str>,
    pub(super) liquidity: Option<&'static str>,
}

impl<'a> EventColumns<'a> {
    pub(super) fn of(kind: &'a ExecKind) -> EventColumns<'a> {
        let bare = |kind| EventColumns {
            kind,
            reject_code: None,
            message: None,
            qty: None,
            price: None,
            fee: None,
            fee_currency: None,
            liquidity: None,
        };
        match kind {
            ExecKind::Accepted => bare("accepted"),
            ExecKind::Rejected { code, message } => EventColumns {
                reject_code: Some(code.as_str()),
                message: Some(message.as_str()),
                ..bare("rejected")
            },
            ExecKind::Fill(f) => EventColumns {
                qty: Some(f.qty.to_string()),
                price: Some(f.price.to_string()),
                fee: Some(f.fee.to_string()),
                fee_currency: Some(&*f.fee_currency),
                liquidity: Some(Liquidity::as_str(f.liquidity)),
                ..bare("fill")
            },
            ExecKind::Cancelled => bare("cancelled"),
            ExecKind::Expired => bare("expired"),
        }
    }
}
