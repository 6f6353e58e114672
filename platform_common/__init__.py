"""Run-time helpers the gateway and the dialogue workers share.

`contracts/` holds what crosses a process boundary (records, API shapes, error codes,
request rules); this package holds what both services do the same way inside: log
lines (`logs`), HTTP answers (`http`), retries (`retry`), the local-mode defaults
(`local`), bounded fan-outs of calls (`gather`) and a consumer's tolerance of header
keys that are not UTF-8 (`kafka_records`). See docs/decisions.md, "Shared code".
"""
