"""Who a message is from: contacts, their identities and conversations, opt-outs,
merging and erasure."""
