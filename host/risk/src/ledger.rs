//! The position ledger: one agent's position in one symbol, kept by average-price accounting on
//! its cost basis. The paper exchange keeps one per account and symbol (its positions, cash and
//! equity) and the risk engine one per agent and symbol (position limits, the daily loss), so
//! both count the same fills with the same rounding.
//!
//! Adding to a position moves the average; reducing realises (price − average) × quantity on
//! the closed part; flipping realises the closed part and opens the rest at the fill price. The
//! ledger keeps the cost basis (Σ signed quantity × price of the open part) rather than a
//! rounded average, and the cost of a partly closed part is rounded to at least `COST_DP`
//! decimals; so `realised + unrealised = Σ signed qty × (mark − price)` holds exactly.
//!
//! **Architecture Invariant:** pure and checked: every sum and product is checked, and a fill
//! that would leave [`Decimal`]'s range is refused (`None`), never a panic or a wrong figure.

use rust_decimal::Decimal;

use colony_model::market::Side;

/// Fewest decimals the cost of a partly closed position is rounded to.
pub(crate) const COST_DP: u32 = 12;

/// `qty` with the sign of `side`: positive for a buy, negative for a sell.
pub(crate) fn signed(side: Side, qty: Decimal) -> Decimal {
    match side {
        Side::Buy => qty,
        Side::Sell => -qty,
    }
}

/// One position in one symbol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Signed quantity; negative is short.
    pub qty: Decimal,
    /// Cost basis of the open quantity, signed like it: Σ signed qty × price.
    pub(crate) cost: Decimal,
    /// PnL realised by reducing fills, before fees.
    pub realised: Decimal,
    /// Fees paid (negative for net rebates).
    pub fees: Decimal,
}

impl Ledger {
    /// The ledger after a fill; `None` on overflow.
    pub fn apply(self, side: Side, qty: Decimal, price: Decimal, fee: Decimal) -> Option<Ledger> {
        let fees = self.fees.checked_add(fee)?;
        let new_qty = self.qty.checked_add(signed(side, qty))?;
        let increasing = self.qty.is_zero() || (self.qty > Decimal::ZERO) == (side == Side::Buy);
        if increasing {
            return Some(Ledger {
                qty: new_qty,
                cost: self
                    .cost
                    .checked_add(signed(side, qty).checked_mul(price)?)?,
                realised: self.realised,
                fees,
            });
        }
        let held = self.qty.abs();
        let closed = qty.min(held);
        // The share of the cost basis the closed part takes with it. Rounding it once, and
        // deriving both the realised PnL and the new basis from the same number, keeps
        // realised + unrealised exactly equal to the cash flows.
        let removed = if closed == held {
            self.cost
        } else {
            self.cost
                .checked_mul(closed)?
                .checked_div(held)?
                .round_dp(self.cost.scale().max(COST_DP))
        };
        let realised = (-signed(side, closed))
            .checked_mul(price)?
            .checked_sub(removed)?;
        let opened = qty.checked_sub(closed)?;
        let cost = if opened.is_zero() {
            self.cost.checked_sub(removed)?
        } else {
            // Flipped through flat: the rest is opened at this fill's price.
            signed(side, opened).checked_mul(price)?
        };
        Some(Ledger {
            qty: new_qty,
            cost,
            realised: self.realised.checked_add(realised)?,
            fees,
        })
    }

    /// Average entry price of the open quantity (the cost basis over the quantity, rounded to
    /// `Decimal`'s 28 significant digits when inexact); zero when flat.
    pub fn avg_price(&self) -> Decimal {
        if self.qty.is_zero() {
            Decimal::ZERO
        } else {
            self.cost.checked_div(self.qty).unwrap_or(Decimal::ZERO)
        }
    }

    /// `qty × mark − cost`; zero without a mark or when flat.
    pub(crate) fn unrealised(&self, mark: Option<Decimal>) -> Decimal {
        match mark {
            Some(mark) if !self.qty.is_zero() => {
                self.qty.saturating_mul(mark).saturating_sub(self.cost)
            }
            _ => Decimal::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    /// (side, qty, price, fee) → (qty, avg price, realised, fees) after it.
    #[test]
    fn fills_move_the_position_and_realise_on_the_closed_part() {
        let steps = [
            (Side::Buy, "2", "100", "0", ("2", "100", "0", "0")),
            (Side::Buy, "1", "130", "0.5", ("3", "110", "0", "0.5")),
            (Side::Sell, "2", "120", "0", ("1", "110", "20", "0.5")),
            // Through flat: closes 1 (−10), opens a short of 2 at 100.
            (Side::Sell, "3", "100", "1", ("-2", "100", "10", "1.5")),
            (Side::Buy, "2", "90", "0", ("0", "0", "30", "1.5")),
        ];
        let mut l = Ledger::default();
        for (side, qty, price, fee, (q, avg, realised, fees)) in steps {
            l = l.apply(side, d(qty), d(price), d(fee)).unwrap();
            assert_eq!(
                (l.qty, l.avg_price(), l.realised, l.fees),
                (d(q), d(avg), d(realised), d(fees)),
                "after {side:?} {qty} @ {price}"
            );
        }
    }

    #[test]
    fn a_third_closed_keeps_pnl_and_basis_consistent() {
        let l = Ledger::default()
            .apply(Side::Buy, d("3"), d("1"), Decimal::ZERO)
            .and_then(|l| l.apply(Side::Buy, d("3"), d("2"), Decimal::ZERO))
            .and_then(|l| l.apply(Side::Sell, d("1"), d("2"), Decimal::ZERO))
            .unwrap();
        // Cost 9 over 6: one closed takes 1.5 of it (exact), realising 0.5.
        assert_eq!((l.qty, l.cost, l.realised), (d("5"), d("7.5"), d("0.5")));
        assert_eq!(l.unrealised(Some(d("2"))) + l.realised, d("3"));
        assert_eq!(l.unrealised(None), Decimal::ZERO);
    }

    #[test]
    fn overflow_is_refused() {
        let max = Decimal::MAX;
        assert_eq!(
            Ledger::default().apply(Side::Buy, max, max, Decimal::ZERO),
            None
        );
    }
}
