"""Credits: prices, balances, the append-only ledger and the JSON API that moves them."""
