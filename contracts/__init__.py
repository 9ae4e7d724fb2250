"""The contracts every layer shares: result types, job configuration, identifiers, statuses, the manifest.

Pydantic and the standard library only; nothing of ours is imported here, and every layer imports this.
"""
