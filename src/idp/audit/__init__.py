"""The audit log: who changed what, in which organisation, from what to what."""
