"""Billing: plans and credit packages sold through Stripe Checkout, fulfilled by webhooks."""
