"""Coordination between instances: one leader, fenced; heartbeats; signal locks.

Redis elects quickly; the store's ``leader_term`` row decides who may act (docs/HA.md).
Nothing here touches the event log or the projections: this is operational state.
"""
