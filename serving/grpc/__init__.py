"""The gRPC transport: the Storefront service built from the registry, health, and message conversion."""
