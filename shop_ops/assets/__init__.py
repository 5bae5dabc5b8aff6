"""Asset groups, one module each: images, database (later: deployments, backups, performance, costs, security, docs)."""
