"""The HTTP edge: routes decode, call a service and encode; middlewares map errors."""
