"""Lambda handlers: parse the event, call the core, report (Powertools logs, metrics, traces)."""
