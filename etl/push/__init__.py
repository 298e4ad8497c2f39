"""Push destinations fed by a transactional outbox (Databox's Ingestion API first).

datasets   what can be pushed: raw events or an aggregate, with its schema and key
store      the push side's SQL: declare, read the outbox, record acceptances
databox    the Ingestion API client (errors translated into etl.errors)
pacing     a token bucket with Retry-After pauses, on an injected clock
pusher     drains the outbox in chunks of <= 100, verifies the ingestions
log        one delivery record per request (delivery_log + delivery.jsonl)
"""
