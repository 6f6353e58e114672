"""Soak run: the platform under steady, bounded, mixed load for a long time, sampled
every few seconds, with the no-loss invariants checked at the end (issue 17).

    .venv/bin/python -m bench.soak [--minutes 30] [--use-running] ...   (make soak)

Processes, so that the load never shares an event loop with what it measures:

- this one (`run.py`): starts the platform as `make dev` does (or uses the running one),
  makes the users and chats (`prepare.py`), starts the load processes, samples every
  `--interval` seconds (`sampler.py`), checks the invariants (`invariants.py`) and
  writes the CSV, the PNG and the summary (`report.py`, `plot.py`);
- `load_rest.py`: sign-ins, posts, history and chat-list reads with paging, read-marker
  moves, and one external producer writing records straight to the message topic;
- `load_live.py`: the WebSocket clients of `GET /v1/stream`.

They talk over the load processes' stdin/stdout (`channel.py`): each sample asks both
for what they measured since the previous one. docs/soak.md describes the series.
"""
