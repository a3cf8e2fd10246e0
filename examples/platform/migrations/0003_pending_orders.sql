-- order service: the reconciler looks for orders still pending past a
-- deadline, oldest first; only pending orders are in this index.
CREATE INDEX orders_pending ON orders (created_ms, id) WHERE status = 'pending';
