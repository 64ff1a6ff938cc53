"""stuck-runs: recover background runs left PENDING/PROCESSING by a worker that died.

The product is the SQL in sql/ and migrations/; this package is the thin runner
that installs it and calls it from an application's start-up.
"""
