"""Models shared by the gateway, the dialogue workers and external producers.

Everything that crosses a process boundary (Kafka records, worker HTTP bodies,
error bodies) is defined here once, with a version where it travels on Kafka.
"""
