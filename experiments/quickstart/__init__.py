"""``quickstart``: every head's quick run (what ``make run`` runs), shown beside the committed
full reports it is a smoke test of."""
