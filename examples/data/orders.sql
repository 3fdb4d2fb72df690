-- The orders the support agent example looks up (loaded into a SQLite file on first use).
CREATE TABLE orders (
  id TEXT PRIMARY KEY,
  customer TEXT NOT NULL,
  state TEXT NOT NULL,
  total REAL NOT NULL,
  carrier TEXT,
  placed_on TEXT NOT NULL
);
CREATE TABLE refunds (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  order_id TEXT NOT NULL REFERENCES orders(id),
  amount REAL NOT NULL,
  reason TEXT NOT NULL
);
INSERT INTO orders VALUES ('A-1001', 'Maria Lopez', 'delivered late', 79.90, 'DHL', '2026-11-20');
INSERT INTO orders VALUES ('A-1002', 'Sam Chen', 'in transit', 249.00, 'UPS', '2026-11-28');
INSERT INTO orders VALUES ('A-1003', 'Ada Byron', 'cancelled', 15.50, NULL, '2026-12-01');
