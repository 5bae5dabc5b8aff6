"""Process helpers the pipeline needs at run time too: a PostgreSQL cluster or Redis server on a free port."""
