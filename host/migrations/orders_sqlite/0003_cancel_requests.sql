-- Cancel requests of agents that passed the cancel-rate check, one row each, written behind
-- the router: start-up recovery rebuilds each agent's cancel-rate window from the last
-- minute's rows, so a restart does not reset the throttle. The venue's answer to a cancel is
-- an order event (`order_events`); this is the request, whatever the venue answers.
CREATE TABLE cancel_requests (
    id        INTEGER PRIMARY KEY,
    venue     TEXT    NOT NULL,
    agent     TEXT    NOT NULL,
    client_id TEXT    NOT NULL,
    ts_ns     INTEGER NOT NULL
);
CREATE INDEX cancel_requests_ts ON cancel_requests (venue, ts_ns);
