"""The Kafka/PostgreSQL plumbing every LeadBridge service shares (the contracts are in ``leadbridge_contracts``)."""
