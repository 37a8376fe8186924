"""Outbound webhooks: ``service`` (an organization's endpoints, the delivery log), ``signing``
(Standard Webhooks signatures), ``guard`` (the SSRF guard), ``dispatch.fan_out`` (an outbox
event into deliveries) and ``delivery.deliver_due`` (claim, send, record, retry, disable)."""
