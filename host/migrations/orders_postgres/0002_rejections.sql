-- Orders refused before any venue saw them (a risk check, an approval denied or timed out, an
-- intent the journal could not take): the post-trade record of what each agent tried and why
-- it was refused, so that `colony orders list --rejected` is complete after a restart. Kept
-- apart from `orders`: a refused order does not take its (venue, agent, client_id) identity,
-- and the agent may send the same client id again. `code` is the reason code
-- (`risk.max-notional`, `approval.denied`, ...), `message` what was wrong.
CREATE TABLE order_rejections (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    venue       TEXT    NOT NULL,
    agent       TEXT    NOT NULL,
    client_id   TEXT    NOT NULL,
    symbol      TEXT    NOT NULL,
    side        TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    price       TEXT    NULL,
    qty         TEXT    NOT NULL,
    tif         TEXT    NOT NULL,
    post_only   BOOLEAN NOT NULL,
    reduce_only BOOLEAN NOT NULL,
    code        TEXT    NOT NULL,
    message     TEXT    NOT NULL,
    ts_ns       BIGINT  NOT NULL
);
CREATE INDEX order_rejections_ts ON order_rejections (ts_ns, id);
