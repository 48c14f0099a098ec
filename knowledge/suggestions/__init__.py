"""Suggestions: knowledge gaps that review decisions reveal, for ops to accept or reject."""
