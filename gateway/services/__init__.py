"""Use cases of the gateway, written against the ports in `ports.py`."""
