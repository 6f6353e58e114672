"""Run-time helpers the gateway and the dialogue workers share.

`contracts/` holds what crosses a process boundary (records, API shapes, error codes,
request rules); this package holds what both services do the same way inside: log
lines (`logs`), HTTP answers (`http`), retries (`retry`), the local-mode defaults
(`local`), bounded fan-outs of calls (`gather`), a consumer's tolerance of header
keys that are not UTF-8 (`kafka_records`) and the message of invalid settings, which
never repeats a value (`settings_errors`). See docs/decisions.md, "Shared code".
"""
