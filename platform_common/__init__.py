"""Run-time helpers the gateway and the dialogue workers share.

`contracts/` holds what crosses a process boundary (records, API shapes, error codes,
request rules); this package holds what both services do the same way inside: log
lines (`logs`), HTTP answers (`http`), retries (`retry`), the local-mode defaults
(`local`) and bounded fan-outs of calls (`gather`). See docs/decisions.md, "Shared code".
"""
