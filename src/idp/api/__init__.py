"""The integrator REST API (/api/v1): client-credentials tokens with per-resource scopes,
problem+json errors, cursor pagination, idempotent POSTs and ETag/If-Match updates."""
