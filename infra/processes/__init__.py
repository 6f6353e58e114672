"""The platform's processes, launched from Python for tests and benchmarks.

`worker.WorkerProcess` and `gateway.GatewayProcess` run `python -m dialogue_worker` /
`python -m gateway` as subprocesses configured only through their environment;
`private` starts private copies of infrastructure services on free ports. `make dev`
(infra/dev) runs the same modules as long-lived, pid-file managed processes instead.
"""
