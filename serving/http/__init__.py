"""The HTTP transport: capability routes built from the registry (routes.py), the operations routes
(health, models, admin), middleware and error handlers. Handlers live in the capabilities."""
