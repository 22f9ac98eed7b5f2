"""Organisations: members and their roles, owners, products and access, invitations, contacts,
policies (capability C5)."""
