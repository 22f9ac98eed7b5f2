"""Webhooks: subscriptions, the transactional outbox of deliveries, and the delivery worker.

The audit log (audit/) says what happened; every audit event is also offered to the webhook
subscriptions that want it, in the same transaction (so a delivery exists exactly when the change
does), and a worker sends the deliveries later with retries.
"""
