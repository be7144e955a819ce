"""Pricing, credits, packages and the ledger."""
