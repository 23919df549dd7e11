"""Ledger backends: `memory` (the reference), `sqlite` (aiosqlite) and `s3` (boto3), each behind the store contract."""
