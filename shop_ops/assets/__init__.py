"""Asset groups, one module each: images, database, deployments (later: backups, performance, costs, security, docs)."""
