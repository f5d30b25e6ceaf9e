"""crm-sync: routed leads into CRMs and signed webhooks; the CRMs' activity back as follow-ups."""
