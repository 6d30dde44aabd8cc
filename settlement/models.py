"""Settlement between tenants and the pool: periods, statements, reconciliation (issue 4)."""
